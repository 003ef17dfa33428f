"""`repack` (lc0distill/shards/repack.py): the index accounts for every chunk and position, the held-out split is
the training split, sampling is by chunk name (the same bytes whatever --jobs), and an interrupted repack
continues to the very bytes a clean one writes."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import lc0distill.shards.repack as repack_module
from lc0distill.chunks.reader import read_chunk
from lc0distill.chunks.selection import split_train_test
from lc0distill.chunks.sources import find_chunks
from lc0distill.errors import ChunkError, Lc0DistillError
from lc0distill.shards.format import decode_block
from lc0distill.shards.index import INDEX_NAME, is_shard_folder, read_index, side_summary
from lc0distill.shards.repack import PLAN_NAME, RepackSettings, block_positions, repack
from tests.shards.helpers import CHUNKS, RATE1, RATE4, TEST_RATIO, decode_side, shard_files

SIDES = ("train", "test")


@pytest.fixture(scope="module")
def record_counts(sources) -> dict[str, int]:
    return {s.name: len(read_chunk(s).records) for s in sources}


@pytest.fixture(scope="module", params=["rate1", "rate4"])
def result(request):
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="module")
def decoded(rate1, rate4):
    """folder -> side -> every position, decoded once."""
    return {r.out: {side: decode_side(r.out, side) for side in SIDES} for r in (rate1, rate4)}


def _table(index: dict) -> dict[str, tuple[int, int, str]]:
    return {name: (read, kept, side) for name, read, kept, side in index["chunks"]}


# ----------------------------------------------------------------------------------------------- the index

def test_the_index_lists_every_chunk_once_with_its_records(result, sources, record_counts):
    index = read_index(result.out)
    assert index == result.index  # what the call returned is what it wrote
    names = [entry[0] for entry in index["chunks"]]
    assert names == sorted(s.name for s in sources) and len(set(names)) == CHUNKS
    for name, read, kept, side in index["chunks"]:
        assert read == record_counts[name] and 0 <= kept <= read and side in SIDES
    assert index["records_read"] == sum(record_counts.values())
    assert index["bad_chunks"] == 0 and index["bad_records"] == 0  # lc0's own records are all fit for training


def test_the_setup_makes_several_shards_and_blocks(rate1, rate4):
    """The tests below mean something only if the folders hold several shards, and shards several blocks."""
    for result in (rate1, rate4):
        assert len(result.index["shards"]["train"]) >= 3 and len(result.index["shards"]["test"]) >= 1
    assert len(rate4.index["shards"]["test"]) >= 2 and sum(side == "test" for *_, side in rate4.index["chunks"]) >= 4
    assert max(len(s["blocks"]) for s in rate1.index["shards"]["train"]) >= 3


def test_positions_add_up_per_side_shard_and_block(result, decoded):
    index = result.index
    for side in SIDES:
        shards = index["shards"][side]
        assert index["positions"][side] == sum(s["positions"] for s in shards) == len(decoded[result.out][side])
        assert index["bytes"][side] == sum(s["bytes"] for s in shards)
        kept = sum(kept for _, _, kept, chunk_side in index["chunks"] if chunk_side == side)
        assert kept == index["positions"][side]
        for shard in shards:
            path = result.out / side / shard["file"]
            data = path.read_bytes()
            assert len(data) == shard["bytes"] == sum(size for _, size, _ in shard["blocks"])
            assert shard["positions"] == sum(n for _, _, n in shard["blocks"])
            offset = 0
            for number, (start, size, positions) in enumerate(shard["blocks"]):
                assert start == offset  # blocks back to back, no gap
                offset += size
                assert len(decode_block(data[start : start + size], f"{path}: block {number}", positions)) == positions
            assert all(n == block_positions(shard["positions"]) for _, _, n in shard["blocks"][:-1])


def test_the_held_out_side_is_the_training_split(result, sources):
    _, held_out = split_train_test(sources, TEST_RATIO)
    table = _table(result.index)
    assert {name for name, (_, _, side) in table.items() if side == "test"} == {s.name for s in held_out}
    assert 0 < len(held_out) < CHUNKS


def test_no_training_position_comes_from_a_held_out_chunk(result, decoded):
    sides = [entry[3] for entry in result.index["chunks"]]
    for side in SIDES:
        chunks = decoded[result.out][side]["chunk"]
        assert len(chunks) and all(sides[c] == side for c in np.unique(chunks)), side


def test_held_out_shards_keep_every_record(result, decoded, sources):
    table = _table(result.index)
    positions = decoded[result.out]["test"]
    names = [entry[0] for entry in result.index["chunks"]]
    expected = {(i, r) for i, name in enumerate(names) if table[name][2] == "test" for r in range(table[name][0])}
    assert all(read == kept for read, kept, side in table.values() if side == "test")
    assert set(zip(positions["chunk"].tolist(), positions["record"].tolist())) == expected
    assert len(positions) == len(expected)


def test_sample_rate_1_keeps_every_training_record_once(rate1, decoded):
    positions = decoded[rate1.out]["train"]
    table = rate1.index["chunks"]
    expected = {(i, r) for i, (_, read, _, side) in enumerate(table) if side == "train" for r in range(read)}
    assert all(read == kept for _, read, kept, _ in table)
    pairs = list(zip(positions["chunk"].tolist(), positions["record"].tolist()))
    assert len(pairs) == len(set(pairs)) and set(pairs) == expected


def test_sample_rate_4_keeps_about_a_quarter_each_position_once(rate4, decoded):
    table = rate4.index["chunks"]
    read = sum(r for _, r, _, side in table if side == "train")
    kept = sum(k for _, _, k, side in table if side == "train")
    assert read > 2500 and 0.18 < kept / read < 0.32  # the binomial's sd is under 0.01 here
    positions = decoded[rate4.out]["train"]
    pairs = list(zip(positions["chunk"].tolist(), positions["record"].tolist()))
    assert len(pairs) == len(set(pairs)) == kept
    per_chunk = Counter(positions["chunk"].tolist())
    assert all(per_chunk.get(i, 0) == k for i, (_, _, k, side) in enumerate(table) if side == "train")
    assert all(r < table[c][1] for c, r in pairs)  # a record number the chunk has
    assert len(per_chunk) > 0.8 * sum(side == "train" for *_, side in table)  # sampled from (nearly) every chunk


def test_each_position_is_the_record_it_names(rate4, decoded, sources):
    by_name = {s.name: s for s in sources}
    names = [entry[0] for entry in rate4.index["chunks"]]
    for side in SIDES:
        positions = decoded[rate4.out][side]
        for position in positions[:: max(1, len(positions) // 40)]:
            record = read_chunk(by_name[names[position["chunk"]]]).records[int(position["record"])]
            assert np.array_equal(position["planes"], record["planes"])
            assert position["played_idx"] == record["played_idx"] and position["best_q"] == record["best_q"]


def test_shards_are_shuffled_across_chunks(rate1):
    first = decode_side(rate1.out, "train")[: block_positions(rate1.index["shards"]["train"][0]["positions"])]
    assert len(np.unique(first["chunk"])) >= 5  # one block mixes many games
    assert not (np.diff(first["record"].astype(np.int64)) == 1).all()


def test_versions_and_input_formats_match_the_positions(result):
    for side in SIDES:
        for shard in result.index["shards"][side]:
            data = (result.out / side / shard["file"]).read_bytes()
            positions = np.concatenate([decode_block(data[o : o + s], "x", n) for o, s, n in shard["blocks"]])
            assert shard["versions"] == {str(k): v for k, v in Counter(positions["version"].tolist()).items()}
            assert shard["input_formats"] == {str(k): v for k, v in
                                              Counter(positions["input_format"].tolist()).items()}
        summary = side_summary(result.index, side)
        assert sum(summary["versions"].values()) == summary["positions"] == result.index["positions"][side]
        assert sum(summary["input_formats"].values()) == summary["positions"]


def test_the_index_records_the_sampling(rate4):
    sampling = rate4.index["sampling"]
    assert sampling["sample_rate"] == 4 and sampling["test_sample_rate"] == 1
    assert sampling["test_ratio"] == TEST_RATIO and sampling["seed"] == 0
    assert rate4.index["shard_positions"] == RATE4.shard_positions
    assert rate4.index["source_bytes"] == sum(Path(name).stat().st_size for name, *_ in rate4.index["chunks"])
    assert is_shard_folder(rate4.out) and (rate4.out / PLAN_NAME).is_file()


# ----------------------------------------------------------------------------------------------- determinism

def test_jobs_do_not_change_a_byte(sources, rate4, tmp_path):
    two = repack(sources, tmp_path / "jobs2", RATE4, jobs=2)
    assert shard_files(two.out) == shard_files(rate4.out) and len(shard_files(two.out)) >= 5
    assert two.index == rate4.index


def test_the_order_of_the_sources_does_not_matter(sources, rate4, tmp_path):
    shuffled = [sources[i] for i in np.random.default_rng(3).permutation(len(sources))]
    again = repack(shuffled + shuffled[:5], tmp_path / "shuffled", RATE4)  # and a chunk given twice counts once
    assert shard_files(again.out) == shard_files(rate4.out)
    assert [entry[0] for entry in again.index["chunks"]] == [entry[0] for entry in rate4.index["chunks"]]


def test_another_seed_samples_and_shuffles_otherwise(sources, rate4, tmp_path):
    other = repack(sources, tmp_path / "seed1", replace(RATE4, seed=1))
    assert shard_files(other.out) != shard_files(rate4.out)
    a, b = decode_side(rate4.out, "train"), decode_side(other.out, "train")
    assert set(zip(a["chunk"].tolist(), a["record"].tolist())) != set(zip(b["chunk"].tolist(), b["record"].tolist()))
    # the split is by name, not by seed; held-out chunks keep every record: the same positions
    ta, tb = decode_side(rate4.out, "test"), decode_side(other.out, "test")
    assert sorted(p.tobytes() for p in ta) == sorted(p.tobytes() for p in tb)


# ----------------------------------------------------------------------------------------------- resuming

@pytest.fixture(scope="module")
def interrupted(sources, tmp_path_factory):
    """A repack (RATE4 settings) stopped by an error in its second group, then run again to the end."""
    out = tmp_path_factory.mktemp("interrupted") / "shards"
    calls = []
    original = repack_module.repack_group

    def failing(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 2:
            raise RuntimeError("killed in the second group")
        return original(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(repack_module, "repack_group", failing)
        with pytest.raises(RuntimeError, match="second group"):
            repack(sources, out, RATE4, jobs=1)
    state = {"index_after_failure": (out / INDEX_NAME).exists(), "shards_after_failure": shard_files(out)}
    return out, state, repack(sources, out, RATE4, jobs=1)


def test_an_interrupted_repack_leaves_its_finished_shard_and_no_index(interrupted):
    _, state, _ = interrupted
    assert not state["index_after_failure"]
    assert len(state["shards_after_failure"]) == 1


def test_an_interrupted_repack_continues_to_the_bytes_of_a_clean_one(interrupted, rate4):
    out, state, result = interrupted
    assert result.groups_done_before >= 1 and result.groups_done_before == len(state["shards_after_failure"])
    assert shard_files(out) == shard_files(rate4.out)
    assert read_index(out) == rate4.index


def test_a_finished_repack_run_again_does_nothing(interrupted):
    out, _, _ = interrupted
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/shard-*")}
    again = repack(find_chunks_of(out), out, RATE4)
    groups = len(again.index["shards"]["train"]) + len(again.index["shards"]["test"])
    assert again.groups_done_before == groups > 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/shard-*")} == before


def find_chunks_of(out: Path) -> list:
    """The chunks a shard folder's index names, as sources."""
    return list(find_chunks([name for name, *_ in read_index(out)["chunks"]]))


def test_a_damaged_finished_shard_is_made_again(sources, rate4, tmp_path):
    out = tmp_path / "shards"
    shutil.copytree(rate4.out, out)
    victim = out / "train" / "shard-000001.zst"
    victim.write_bytes(victim.read_bytes()[:100])  # its sidecar says otherwise: not finished
    again = repack(sources, out, RATE4)
    groups = len(rate4.index["shards"]["train"]) + len(rate4.index["shards"]["test"])
    assert again.groups_done_before == groups - 1
    assert shard_files(out) == shard_files(rate4.out)


def test_other_settings_in_the_same_folder_are_an_error(interrupted, sources):
    out, _, _ = interrupted
    for settings in (replace(RATE4, sample_rate=8),
                     replace(RATE4, seed=5)):
        with pytest.raises(Lc0DistillError, match="other settings") as caught:
            repack(sources, out, settings)
        assert str(out) in str(caught.value)
    assert shard_files(out) and read_index(out)["sampling"]["sample_rate"] == 4  # nothing was touched


def test_other_data_in_the_same_folder_is_an_error(interrupted, sources):
    out, _, _ = interrupted
    with pytest.raises(Lc0DistillError, match="other data"):
        repack(sources[:30], out, RATE4)


def test_shards_without_a_plan_are_an_error(rate4, sources, tmp_path):
    out = tmp_path / "shards"
    shutil.copytree(rate4.out, out)
    (out / PLAN_NAME).unlink()
    with pytest.raises(Lc0DistillError, match="without a repack plan"):
        repack(sources, out, RATE4)


# ----------------------------------------------------------------------------------------------- bad input

@pytest.fixture(scope="module")
def with_a_bad_chunk(chunk_files, tmp_path_factory):
    folder = tmp_path_factory.mktemp("with-bad")
    for path in chunk_files[:6]:
        shutil.copy(path, folder / path.name)
    (folder / "game_999999.gz").write_bytes(b"\x1f\x8b\x08\x00 this is not a gzip stream" * 20)
    return list(find_chunks([str(folder)]))


def test_a_bad_chunk_is_skipped_named_and_counted(with_a_bad_chunk, tmp_path):
    settings = RepackSettings(sample_rate=1, shard_positions=200, test_ratio=0.0)
    result = repack(with_a_bad_chunk, tmp_path / "shards", settings)
    table = _table(result.index)
    bad = next(name for name in table if name.endswith("game_999999.gz"))
    assert table[bad][:2] == (0, 0) and result.index["bad_chunks"] == 1
    assert len(result.bad_chunks) == 1 and "game_999999.gz" in result.bad_chunks[0]
    assert "game_999999.gz" in result.index["bad_chunk_examples"][0]
    good = sum(len(read_chunk(s).records) for s in with_a_bad_chunk if s.name != bad)
    assert result.index["positions"]["train"] == good and result.index["positions"]["test"] == 0


def test_a_bad_chunk_stops_a_strict_repack(with_a_bad_chunk, tmp_path):
    settings = RepackSettings(sample_rate=1, shard_positions=200, test_ratio=0.0, strict=True)
    with pytest.raises(ChunkError, match="game_999999.gz"):
        repack(with_a_bad_chunk, tmp_path / "shards", settings)


def test_no_chunks_is_an_error(tmp_path):
    with pytest.raises(Lc0DistillError, match="no chunks"):
        repack([], tmp_path / "shards", RATE1)


def test_test_ratio_zero_holds_nothing_out(sources, tmp_path):
    result = repack(sources[:8], tmp_path / "shards", RepackSettings(sample_rate=1, shard_positions=250,
                                                                     test_ratio=0.0))
    assert result.index["shards"]["test"] == [] and result.index["positions"]["test"] == 0
    assert all(side == "train" for *_, side in result.index["chunks"])
    assert re.fullmatch(r"shard-\d{6}\.zst", result.index["shards"]["train"][0]["file"])
    assert json.loads((result.out / INDEX_NAME).read_text())["positions"]["train"] == result.index["records_read"]
