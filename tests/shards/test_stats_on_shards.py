"""`data stats` and `data inspect` read a shard folder as the chunks it was made from (issue 27): at sampling 1 the
same figures and the same decoded records as on the chunks themselves, whatever input formats and versions they
hold; at sampling N each chunk holds the records the repack kept, every one of them a record of that chunk."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lc0distill.chunks.packed import pack_records, unpack_positions
from lc0distill.chunks.reader import read_chunk
from lc0distill.chunks.sources import find_chunks
from lc0distill.shards.regroup import shard_folder_chunks
from tests.robustness.support import run_cli


@pytest.fixture(scope="module")
def every_format(lc0_data, tmp_path_factory):
    """All nine lc0-data folders (V4, V5, V6; input formats 1-5, 132, 133) repacked at sampling 1, and at 4."""
    base = tmp_path_factory.mktemp("shards")
    folders = sorted(str(p) for p in lc0_data.iterdir() if p.is_dir())
    from lc0distill.cli import main
    for rate in (1, 4):
        assert main(["data", "repack", *folders, "--out", str(base / f"r{rate}"), "--sample-rate", str(rate),
                     "--test-ratio", "0.2", "--shard-positions", "700"]) == 0
    return folders, base / "r1", base / "r4"


def _json(capsys, argv) -> dict:
    run = run_cli(capsys, argv)
    assert run.code == 0, run.err
    return json.loads(run.out)


def test_stats_on_a_shard_folder_equal_stats_on_its_chunks(every_format, capsys):
    folders, sampled_1, _ = every_format
    on_chunks = _json(capsys, ["data", "stats", *folders, "--json"])
    on_shards = _json(capsys, ["data", "stats", sampled_1, "--json"])
    assert on_chunks["positions"] > 3000 and len(on_chunks["input_formats"]) == 7
    assert on_shards == on_chunks


def test_inspect_on_a_shard_folder_decodes_the_same_records(every_format, capsys):
    folders, sampled_1, _ = every_format
    on_chunks = _json(capsys, ["data", "inspect", *folders, "--json", "--records", "5"])["files"]
    on_shards = _json(capsys, ["data", "inspect", sampled_1, "--json", "--records", "5"])["files"]
    assert sorted(on_shards, key=lambda f: f["path"]) == sorted(on_chunks, key=lambda f: f["path"])


def test_a_sampled_folder_gives_each_chunk_the_records_it_kept(every_format):
    folders, _, sampled_4 = every_format
    originals = {source.name: read_chunk(source).records for source in find_chunks(folders)}
    kept = 0
    for chunk in shard_folder_chunks(sampled_4):
        original = originals[chunk.name]
        assert 0 < len(chunk.records) <= len(original)  # held-out chunks are kept whole (test_sample_rate 1)
        matches = [np.flatnonzero((original["planes"] == planes).all(axis=1)) for planes in chunk.records["planes"]]
        assert all(len(m) for m in matches), chunk.name  # every kept record is one of that chunk's
        assert [int(m[0]) for m in matches] == sorted(int(m[0]) for m in matches)  # in record order
        kept += len(chunk.records)
    assert kept < sum(len(r) for r in originals.values()) / 2


def test_a_small_memory_budget_regroups_the_same_chunks(every_format):
    _, sampled_1, _ = every_format
    whole = [(c.name, c.records.tobytes()) for c in shard_folder_chunks(sampled_1)]
    assert [(c.name, c.records.tobytes()) for c in shard_folder_chunks(sampled_1, budget=150)] == whole


def test_unpacking_gives_back_every_field_of_lc0s_records(lc0_data):
    for source in find_chunks([lc0_data]):
        records = read_chunk(source).records
        back = unpack_positions(pack_records(records))
        for field in records.dtype.names:
            assert np.array_equal(records[field], back[field], equal_nan=records[field].dtype.kind == "f"), field
