"""`lc0distill data repack` through the real entry point, and shard folders given to the other commands:
`train` reads them, the commands that read chunks record by record refuse them in one line."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from lc0distill.cli import main
from lc0distill.shards.index import read_index
from tests.conftest import SHARED
from tests.shards.helpers import CHUNKS, TEST_RATIO, shard_files

SUMMARY_KEYS = {"out", "chunks", "records_read", "train", "test", "sampling", "bytes_per_position",
                "source_bytes_per_position", "groups_done_before"}
MAIA = SHARED / "nets" / "maia-1900.pb.gz"


def _repack_args(data, out, *extra):
    return ["data", "repack", *map(str, data), "--out", str(out), "--sample-rate", "4", "--shard-positions", "300",
            "--test-ratio", str(TEST_RATIO), "--jobs", "1", *extra]


def _one_line_error(capsys, argv, *needles) -> str:
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if line.startswith("lc0distill: error: ")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(lines)
    assert all(line.startswith("lc0distill: warning: ") for line in lines if line not in errors)  # warnings only
    err = errors[0]
    for needle in needles:
        assert needle in err
    return err


@pytest.fixture(scope="module")
def cli_repack(chunk_files, tmp_path_factory):
    """(folder, summary) of a repack made by the command with --json (stdout captured by hand: module scope)."""
    out = tmp_path_factory.mktemp("cli") / "shards"
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main(_repack_args(chunk_files, out, "--json")) == 0
    return out, json.loads(buffer.getvalue())


def test_the_json_summary(cli_repack, rate4):
    out, summary = cli_repack
    assert SUMMARY_KEYS <= set(summary)
    index = read_index(out)
    assert summary["out"] == str(out) and summary["chunks"] == CHUNKS == len(index["chunks"])
    assert summary["records_read"] == index["records_read"] > 0
    for side in ("train", "test"):
        assert summary[side]["positions"] == index["positions"][side]
        assert summary[side]["shards"] == len(index["shards"][side]) and summary[side]["bytes"] == index["bytes"][side]
    assert summary["sampling"]["sample_rate"] == 4 and summary["sampling"]["test_ratio"] == TEST_RATIO
    positions = index["positions"]["train"] + index["positions"]["test"]
    assert summary["bytes_per_position"] == round((index["bytes"]["train"] + index["bytes"]["test"]) / positions, 1)
    assert 0 < summary["bytes_per_position"] < summary["source_bytes_per_position"]  # smaller than the gzip chunks
    assert summary["groups_done_before"] == 0 and summary["bad_chunks"] == 0
    # the command makes what the function makes with the same settings
    assert shard_files(out) == shard_files(rate4.out)


def test_run_again_the_command_continues_and_says_so(cli_repack, chunk_files, capsys):
    out, first = cli_repack
    assert main(_repack_args(chunk_files, out, "--json")) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["groups_done_before"] == first["train"]["shards"] + first["test"]["shards"] > 0
    assert {k: summary[k] for k in ("train", "test", "records_read")} == \
        {k: first[k] for k in ("train", "test", "records_read")}


def test_the_plain_summary(chunk_files, tmp_path, capsys):
    assert main(_repack_args(chunk_files, tmp_path / "shards")) == 0
    out = capsys.readouterr().out
    index = read_index(tmp_path / "shards")
    assert f"{CHUNKS} chunks, {index['records_read']:,} records" in out
    assert f"{index['positions']['train']:,} training positions" in out and "(1 in 4)" in out
    assert "bytes per position" in out and "continued" not in out


def test_a_missing_data_path_is_one_line(tmp_path, capsys):
    missing = tmp_path / "no_such_folder"
    _one_line_error(capsys, ["data", "repack", str(missing), "--out", str(tmp_path / "out"), "--jobs", "1"],
                    str(missing))


def test_a_test_ratio_out_of_range_is_one_line(chunk_files, tmp_path, capsys):
    _one_line_error(capsys, ["data", "repack", *map(str, chunk_files), "--out", str(tmp_path / "out"),
                             "--test-ratio", "1.5"], "--test-ratio")


def test_other_settings_in_the_folder_are_one_line(cli_repack, chunk_files, capsys):
    out, _ = cli_repack
    argv = _repack_args(chunk_files, out)
    argv[argv.index("--sample-rate") + 1] = "8"
    _one_line_error(capsys, argv, "other settings", str(out))


def test_a_bad_sample_rate_is_a_usage_error(chunk_files, tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        main(["data", "repack", *map(str, chunk_files), "--out", str(tmp_path / "out"), "--sample-rate", "0"])
    assert caught.value.code == 2 and "--sample-rate" in capsys.readouterr().err


def test_data_games_refuses_a_shard_folder(cli_repack, capsys):
    """(data stats and data inspect read one back as its chunks: test_stats_on_shards.py)"""
    out, _ = cli_repack
    _one_line_error(capsys, ["data", "games", str(out)], "shard folder", str(out))


# ----------------------------------------------------------------------------------------------- training

TINY = ["net.size=16x2", "train.steps=3", "data.workers=0", "train.device=cpu", "data.batch_size=32",
        "data.shuffle_buffer=200", "train.eval_every=0", "train.eval_positions=200", f"data.test_ratio={TEST_RATIO}",
        "data.sample_rate=4"]


def test_training_reads_a_shard_folder(cli_repack, tmp_path, capsys):
    out, _ = cli_repack
    run_dir = tmp_path / "run"
    assert main(["train", f"data.paths=[{out}]", *TINY, f"train.run_dir={run_dir}"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["steps"] == 3 and result["test"]["positions"] > 0
    assert (run_dir / "final.pt").is_file()


def test_training_with_another_test_ratio_is_one_line(cli_repack, tmp_path, capsys):
    out, _ = cli_repack
    _one_line_error(capsys, ["train", f"data.paths=[{out}]", *TINY, "data.test_ratio=0.05",
                             f"train.run_dir={tmp_path / 'run'}"], "0.05", "0.2")


def test_a_teacher_cache_with_a_shard_folder_is_one_line(cli_repack, tmp_path, capsys):
    if not MAIA.exists():
        pytest.skip(f"the shared net {MAIA} is absent")
    out, _ = cli_repack
    (tmp_path / "cache").mkdir()
    _one_line_error(capsys, ["train", f"data.paths=[{out}]", *TINY, f"teacher.nets=[{MAIA}]",
                             f"teacher.cache={tmp_path / 'cache'}", f"train.run_dir={tmp_path / 'run'}"],
                    "shard folder", "teacher.cache")


def test_evaluate_samples_a_shard_folder_at_its_sample_rate(cli_repack, tmp_path, capsys):
    import torch

    from lc0distill.models.config import NetConfig
    from lc0distill.models.net import SEResNet
    from lc0distill.models.store import save_model

    out, summary = cli_repack
    torch.manual_seed(0)
    net = tmp_path / "net.pt"
    save_model(SEResNet(NetConfig(filters=8, blocks=1)).eval(), net)
    counts = {}
    for rate in (1, 4):
        assert main(["evaluate", str(net), "--data", str(out), "--sample-rate", str(rate), "--json"]) == 0
        counts[rate] = json.loads(capsys.readouterr().out)["nets"][str(net)]["positions"]
    every = summary["train"]["positions"] + summary["test"]["positions"]
    assert counts[1] == every  # the whole folder, each position once
    assert abs(counts[4] - every / 4) < 4 * (every * 0.25 * 0.75) ** 0.5  # 1 in 4, within 4 sigma
