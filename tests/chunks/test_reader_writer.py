"""Reading every real lc0 chunk, the upgrade rules, and writing lc0's bytes back exactly."""

import gzip
import math

import numpy as np
import pytest

from lc0distill.chunks.layouts import LAYOUTS, NO_MOVE, RECORD_DTYPE, RECORD_SIZES
from lc0distill.chunks.reader import parse_chunk, read_chunk
from lc0distill.chunks.sources import find_chunks
from lc0distill.chunks.writer import chunk_payload, gzip_like_lc0, write_chunk


def test_record_sizes_and_v6_offsets():
    assert RECORD_SIZES == {3: 8276, 4: 8292, 5: 8308, 6: 8356, 7: 8396}
    v6 = LAYOUTS[6]
    offsets = {name: v6.fields[name][1] for name in v6.names}
    assert offsets["probabilities"] == 8 and offsets["planes"] == 7440 and offsets["castling_us_ooo"] == 8272
    assert offsets["root_q"] == 8280 and offsets["result_q"] == 8308 and offsets["orig_q"] == 8328
    assert offsets["visits"] == 8340 and offsets["played_idx"] == 8344 and offsets["policy_kld"] == 8348
    assert offsets["q_st"] == 8352 and LAYOUTS[7].fields["d_st"][1] == 8356


def test_every_real_chunk_parses(lc0_data):
    versions, formats, records = set(), set(), 0
    for source in find_chunks([lc0_data]):
        chunk = read_chunk(source)
        assert chunk.records.dtype == RECORD_DTYPE and len(chunk.records) > 0
        assert (chunk.records["version"] == chunk.version).all()
        versions.add(chunk.version)
        formats |= set(chunk.records["input_format"].tolist())
        records += len(chunk.records)
        # Visit distributions: legal entries sum to 1 (lc0's own validation allows 0.01).
        probs = chunk.records["probabilities"]
        sums = np.where(probs >= 0, probs, 0).sum(axis=1)
        assert np.allclose(sums, 1.0, atol=0.01), source.name
    assert versions == {4, 5, 6} and formats == {1, 2, 3, 4, 5, 132, 133}
    assert records > 3000


def test_directory_search_ignores_non_chunks(lc0_data):
    names = [s.name for s in find_chunks([lc0_data])]
    assert not any(name.endswith(".jsonl") for name in names) and len(names) == 46


@pytest.mark.parametrize("folder", ["v6-fmt1-maia1900", "v6-fmt2-maia1100", "v6-fmt3-maia1100",
                                    "v6-fmt4-maia1100", "v6-fmt5-maia1100", "v6-fmt132-maia1100",
                                    "v6-fmt133-maia1100"])
def test_write_of_read_is_lc0s_file_byte_for_byte(lc0_data, tmp_path, folder):
    """Payload identical to lc0's, and the gzip file itself identical (level 6, mtime 0, as gzopen)."""
    for path in sorted((lc0_data / folder).glob("*.gz")):
        original = path.read_bytes()
        records = read_chunk(str(path)).records
        assert chunk_payload(records) == gzip.decompress(original)
        out = tmp_path / path.name
        write_chunk(out, records)
        assert out.read_bytes() == original, path


def test_v4_upgrade_follows_lc0(lc0_data):
    path = sorted((lc0_data / "v4-maia1100").glob("*.gz"))[0]
    raw = gzip.decompress(path.read_bytes())
    original = np.frombuffer(raw, dtype=LAYOUTS[4])
    records, version = parse_chunk(raw, str(path))
    assert version == 4
    assert (records["input_format"] == 1).all()
    assert np.array_equal(records["probabilities"], original["probabilities"], equal_nan=True)
    assert np.array_equal(records["planes"], original["planes"])
    assert np.array_equal(records["side_to_move_or_enpassant"], original["side_to_move"])
    assert np.array_equal(records["result_q"], original["result"].astype(np.float32))
    assert np.array_equal(records["result_d"], (original["result"] == 0).astype(np.float32))
    for field in ("root_q", "best_q", "root_d", "best_d"):
        assert np.array_equal(records[field], original[field])
    assert (records["root_m"] == 0).all() and (records["plies_left"] == 0).all()
    assert np.isnan(records["orig_q"]).all() and (records["visits"] == 0).all()
    assert (records["opp_played_idx"] == NO_MOVE).all()


def test_v5_upgrade_keeps_moves_left(lc0_data):
    path = sorted((lc0_data / "v5-maia1100").glob("*.gz"))[0]
    raw = gzip.decompress(path.read_bytes())
    original = np.frombuffer(raw, dtype=LAYOUTS[5])
    records, _ = parse_chunk(raw, str(path))
    for field in ("input_format", "plies_left", "root_m", "best_m", "invariance_info", "rule50_count"):
        assert np.array_equal(records[field], original[field]), field
    assert set(records["result_q"].tolist()) <= {-1.0, 0.0, 1.0}


def _synthetic_v3(v6_records: np.ndarray, marker: float) -> bytes:
    v3 = np.zeros(len(v6_records), dtype=LAYOUTS[3])
    v3["version"] = 3
    probs = v6_records["probabilities"].copy()
    probs[probs < 0] = marker
    v3["probabilities"] = probs
    v3["planes"] = v6_records["planes"]
    for field in ("castling_us_ooo", "castling_us_oo", "castling_them_ooo", "castling_them_oo", "rule50_count"):
        v3[field] = v6_records[field]
    v3["side_to_move"] = v6_records["side_to_move_or_enpassant"]
    v3["result"] = v6_records["result_q"].astype(np.int8)
    return v3.tobytes()


def test_v3_upgrade_and_illegal_marker(lc0_data):
    """V3 (lc0 0.16-0.20) marks illegal moves 0.0; the record keeps it and all else upgrades as lc0 does."""
    v6 = read_chunk(str(sorted((lc0_data / "v6-fmt1-maia1900").glob("*.gz"))[1])).records
    records, version = parse_chunk(_synthetic_v3(v6, 0.0), "synthetic-v3")
    assert version == 3 and len(records) == len(v6)
    assert np.array_equal(records["planes"], v6["planes"])
    assert (records["root_q"] == 0).all() and (records["input_format"] == 1).all()
    assert np.array_equal(records["result_q"], v6["result_q"]) and np.array_equal(records["result_d"], v6["result_d"])
    assert (records["probabilities"] >= 0).all()


def test_nan_marker_of_lc0_021_is_kept_as_illegal(lc0_data):
    from lc0distill.chunks.targets import policy_target

    v6 = read_chunk(str(sorted((lc0_data / "v6-fmt1-maia1900").glob("*.gz"))[0])).records
    raw = bytearray(_synthetic_v3(v6, math.nan))
    records, _ = parse_chunk(bytes(raw), "synthetic")
    target, legal = policy_target(records)
    assert np.array_equal(legal, v6["probabilities"] >= 0)
    assert not np.isnan(target).any()


def test_v7_write_and_read_back(lc0_data, tmp_path):
    records = read_chunk(str(sorted((lc0_data / "v6-fmt1-maia1900").glob("*.gz"))[0])).records.copy()
    records["d_st"] = 0.25
    records["opp_played_idx"] = 7
    write_chunk(tmp_path / "v7.gz", records, version=7)
    back = read_chunk(str(tmp_path / "v7.gz"))
    assert back.version == 7 and np.array_equal(back.records["opp_played_idx"], records["opp_played_idx"])
    assert (back.records["d_st"] == 0.25).all()
    assert np.array_equal(back.records["probabilities"], records["probabilities"])


def test_writer_output_is_what_zlib_gzip_reads(tmp_path):
    payload = b"\x06\x00\x00\x00" + bytes(8352)
    assert gzip.decompress(gzip_like_lc0(payload)) == payload
