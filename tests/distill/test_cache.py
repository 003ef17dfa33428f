"""The teacher cache: the live teacher's outputs and losses from stored rows, and every way a cache can fail to
belong to a run (another teacher, changed data, missing chunks, another sampling, damaged shards)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from lc0distill.chunks.config import DataConfig, make_loader
from lc0distill.chunks.sources import find_chunks
from lc0distill.cli import main
from lc0distill.distill import losses as L
from lc0distill.distill.cache import TeacherCache
from lc0distill.distill.teachers import NetTeacher
from lc0distill.nets import load_inference_net
from tests.conftest import SELFPLAY, SHARED, copy_games

MAIA = SHARED / "nets" / "maia-1900.pb.gz"
MAIA_1100 = SHARED / "nets" / "maia-1100.pb.gz"


@pytest.fixture(scope="module")
def games(tmp_path_factory) -> Path:
    """30 of the shared self-play games of maia-1900, copied (the tests change some)."""
    if not MAIA.exists():
        pytest.skip(f"the shared net {MAIA} is absent")
    return copy_games(SELFPLAY, tmp_path_factory.mktemp("games"), 30)


def _cache(capsys, data, out, *extra) -> dict:
    assert main(["teacher", "cache", str(data), "--teacher", str(MAIA), "--out", str(out), "--json",
                 "--workers", "0", *map(str, extra)]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def cached(games, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cache")
    assert main(["teacher", "cache", str(games), "--teacher", str(MAIA), "--out", str(out), "--workers", "0"]) == 0
    return out


def _batches(data, batch_size=256):
    sources = list(find_chunks([str(data)]))
    config = DataConfig(paths=[str(data)], sample_rate=1, shuffle_buffer=0, workers=0, batch_size=batch_size)
    return sources, list(make_loader(config, sources, passes=1))


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_cached_outputs_give_the_live_teachers_losses(games, cached, temperature):
    sources, batches = _batches(games)
    live = NetTeacher([load_inference_net(MAIA)])
    bound = TeacherCache(cached).bind(sources)
    torch.manual_seed(0)
    for batch in batches:
        student = torch.randn(batch.legal.shape) * 3  # (B, 1858): any student's logits
        a, b = live(batch.planes), bound(batch)
        for loss in (lambda t: L.policy_kl(student, t.policy_logits, batch.legal, temperature=temperature),
                     lambda t: L.policy_teacher_nll(student, t.policy_logits, batch.legal, t.best),
                     lambda t: L.policy_logit_mse(student, t.policy_logits, batch.legal)):
            assert abs(float(loss(a)) - float(loss(b))) < 1e-3
        assert torch.allclose(a.wdl, b.wdl, atol=1e-6)


def test_an_ensemble_caches_its_mixture(capsys, games, tmp_path):
    out = tmp_path / "ensemble"
    assert main(["teacher", "cache", str(games), "--teacher", str(MAIA), str(MAIA_1100), "--weights", "3", "1",
                 "--out", str(out), "--workers", "0", "--dtype", "float32"]) == 0
    sources, batches = _batches(games)
    live = NetTeacher([load_inference_net(MAIA), load_inference_net(MAIA_1100)], [3, 1])
    bound = TeacherCache(out).bind(sources)
    for batch in batches[:3]:
        a, b = live(batch.planes), bound(batch)
        log_a = a.policy_logits.masked_fill(~batch.legal, float("-inf")).log_softmax(1)[batch.legal]
        assert (log_a - b.policy_logits[batch.legal]).abs().max() < 1e-5
        assert torch.allclose(a.wdl, b.wdl, atol=1e-6)


def _train(capsys, games, run_dir, *extra) -> tuple[int, dict, str]:
    argv = ["train", f"data.paths=[{games}]", "data.workers=0", "data.batch_size=64", "data.sample_rate=1",
            "data.shuffle_buffer=512", "data.test_ratio=0.1", "net.size=16x2", "net.moves_left=false",
            "train.steps=12", "train.log_every=1", "train.eval_every=0", "train.eval_positions=300",
            f"train.run_dir={run_dir}", "export.lc0=false", f"teacher.nets=[{MAIA}]", *extra]
    code = main(argv)
    out, err = capsys.readouterr()
    records = {}
    if (run_dir / "metrics.jsonl").exists():
        for line in (run_dir / "metrics.jsonl").read_text().splitlines():
            record = json.loads(line)
            records[(record["kind"], record["step"])] = record
    return code, records, err


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_a_run_with_the_cache_trains_as_with_the_live_teacher(capsys, games, tmp_path, dtype):
    """The student barely moves (lr 1e-12), so every step compares the two on the same student and a new
    batch. At a real rate, any change of the targets, even float32 rounding (1e-7), makes SGD's trajectory
    drift apart (measured on this 16x2: float16 2e-5 at step 1, 1e-2 by step 12; float32 1e-6 by step 11),
    which says nothing about the cache."""
    cache = tmp_path / "cache"
    assert _cache(capsys, games, cache, "--dtype", dtype)["dtype"] == dtype
    code, live, err = _train(capsys, games, tmp_path / "live", "train.lr.lr=1e-12")
    assert code == 0, err
    code, from_cache, err = _train(capsys, games, tmp_path / "cached", f"teacher.cache={cache}", "train.lr.lr=1e-12")
    assert code == 0, err
    steps = sorted(k for k in live if k[0] == "train")
    assert len(steps) == 12 and steps == sorted(k for k in from_cache if k[0] == "train")
    for key in steps:
        for part in ("policy_distill", "value_distill", "policy", "value", "total"):
            assert abs(live[key][part] - from_cache[key][part]) < 1e-3, (key, part)
    test = [k for k in live if k[0] == "test"]
    assert test and {"teacher_agreement", "policy_loss"} <= set(from_cache[test[0]])
    assert abs(live[test[0]]["teacher_agreement"] - from_cache[test[0]]["teacher_agreement"]) < 1e-3


def test_a_cache_of_another_teacher_is_refused(capsys, games, cached, tmp_path):
    code, _, err = _train(capsys, games, tmp_path / "run", f"teacher.cache={cached}", f"teacher.nets=[{MAIA_1100}]")
    assert code == 2 and "maia-1900.pb.gz" in err and "maia-1100.pb.gz" in err and "Traceback" not in err


def test_changed_or_new_data_is_refused_naming_the_chunk(capsys, games, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(games, data)
    cache = tmp_path / "cache"
    _cache(capsys, data, cache)
    chunks = sorted(data.glob("game_*.gz"))
    sources, batches = _batches(data)
    shutil.copy(chunks[1], chunks[0])  # the same name, another game's positions (and size)
    code, _, err = _train(capsys, data, tmp_path / "changed", f"teacher.cache={cache}", "data.test_ratio=0")
    assert code == 2 and chunks[0].name in err and "changed since the cache was made" in err, err
    bound = TeacherCache(cache).bind(sources)  # the join itself, past the size check: the fingerprints
    with pytest.raises(Exception, match="is not the position the teacher cache"):
        for batch in _batches(data)[1]:
            bound.rows(batch)
    _cache(capsys, data, cache)  # made again: it matches
    shutil.copy(SELFPLAY / "game_000500.gz" if (SELFPLAY / "game_000500.gz").exists()
                else sorted(SELFPLAY.glob("game_*.gz"))[-1], data / "game_new.gz")
    code, _, err = _train(capsys, data, tmp_path / "new", f"teacher.cache={cache}", "data.test_ratio=0")
    assert code == 2 and "game_new.gz" in err and "not in it" in err, err


def test_a_sampled_cache_feeds_exactly_its_records(capsys, games, tmp_path):
    cache = tmp_path / "sampled"
    summary = _cache(capsys, games, cache, "--sample-rate", 4)
    total = summary["positions"]
    assert 0 < total < 28514 * 30 / 316  # about a quarter of the 30 games' positions
    code, _, err = _train(capsys, games, tmp_path / "wrong-rate", f"teacher.cache={cache}")
    assert code == 2 and "data.sample_rate" in err and "4" in err
    opened = TeacherCache(cache)
    sources = list(find_chunks([str(games)]))
    bound = opened.bind(sources)
    config = DataConfig(paths=[str(games)], sample_rate=4, shuffle_buffer=0, workers=0, batch_size=128)
    read = 0
    for batch in make_loader(config, sources, passes=1, keep=bound.keep_records()):
        bound.rows(batch)  # every position read is a cached one (else an error)
        read += len(batch)
    assert read == total
    code, _, err = _train(capsys, games, tmp_path / "sampled-run", f"teacher.cache={cache}", "data.sample_rate=4")
    assert code == 0, err


def test_a_damaged_shard_is_refused(capsys, games, tmp_path):
    cache = tmp_path / "cache"
    _cache(capsys, games, cache)
    shard = next(cache.glob("shard-*.npz.zst"))
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    code, _, err = _train(capsys, games, tmp_path / "run", f"teacher.cache={cache}")
    assert code == 2 and shard.name in err and "damaged" in err
