"""One shard block (lc0distill/shards/format.py): an exact round trip of real packed positions, and every way a
block can be damaged is a ShardFormatError naming the block, never a wrong array or an unbounded allocation."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import zstandard

from lc0distill.chunks.packed import MAX_LEGAL_MOVES, POSITION_DTYPE, legal_entries, pack_records
from lc0distill.chunks.reader import read_chunk
from lc0distill.chunks.sources import find_chunks
from lc0distill.errors import ChunkError
from lc0distill.shards.format import (BLOCK_COLUMNS, BLOCK_MAGIC, POLICY_COLUMNS, ShardFormatError, decode_block,
                                      encode_block, max_block_bytes)

NAME = "some/folder/train/shard-000003.zst: block 7"


def _packed(sources) -> np.ndarray:
    parts = []
    for number, source in enumerate(sources):
        records = read_chunk(source).records
        parts.append(pack_records(records, legal_entries(records["probabilities"]), chunk=number))
    return np.concatenate(parts)


@pytest.fixture(scope="module")
def positions(sources) -> np.ndarray:
    """Every record of 4 real V6 chunks, packed as the loader packs them."""
    packed = _packed(sources[:4])
    assert len(packed) > 200 and set(packed["version"].tolist()) == {6}
    return packed


@pytest.fixture(scope="module")
def block(positions) -> bytes:
    return encode_block(positions)


def _raises(data: bytes, positions: int, name: str = NAME) -> ShardFormatError:
    with pytest.raises(ShardFormatError) as caught:
        decode_block(data, name, positions)
    assert isinstance(caught.value, ChunkError)  # the loader skips it like a bad chunk
    assert str(caught.value).startswith(name + ": ") and caught.value.path == name
    return caught.value


def _raw_block(magic: bytes, count: int, entries: int, body: bytes = b"", **frame) -> bytes:
    raw = struct.pack("<8sII", magic, count, entries) + body
    return zstandard.ZstdCompressor(**frame).compress(raw)


# ----------------------------------------------------------------------------------------------- round trips

def test_round_trip_of_real_positions_is_byte_identical(positions, block):
    decoded = decode_block(block, NAME, len(positions))
    assert decoded.dtype == POSITION_DTYPE and decoded.shape == positions.shape
    assert decoded.tobytes() == positions.tobytes()
    assert len(block) < 0.2 * positions.nbytes  # the columns compress: far smaller than the packed rows


def test_round_trip_of_every_record_version_and_input_format(lc0_data):
    """V3 (every move legal, FLAG_ALL_LEGAL), V4, V5 and V6 in every input format the shared data has."""
    folders = sorted(p for p in lc0_data.iterdir() if p.is_dir())
    seen = set()
    for folder in folders:
        packed = _packed(list(find_chunks([str(folder)]))[:2])
        seen |= set(zip(packed["version"].tolist(), packed["input_format"].tolist()))
        assert decode_block(encode_block(packed), str(folder), len(packed)).tobytes() == packed.tobytes(), folder
    assert {v for v, _ in seen} >= {4, 5, 6} and len(seen) >= 5


def test_round_trip_of_slices_and_single_positions(positions):
    for part in (positions[:1], positions[5:6], positions[::7], positions[-3:]):
        part = np.ascontiguousarray(part)
        assert decode_block(encode_block(part), NAME, len(part)).tobytes() == part.tobytes()


def test_an_empty_block_round_trips():
    empty = np.zeros(0, dtype=POSITION_DTYPE)
    decoded = decode_block(encode_block(empty), NAME, 0)
    assert decoded.dtype == POSITION_DTYPE and len(decoded) == 0


def test_positions_with_the_most_legal_moves_fit_the_bound(positions):
    """max_block_bytes is the exact size of a block whose positions all have 218 moves: such a block decodes."""
    full = np.ascontiguousarray(positions[:40]).copy()
    full["policy_count"] = MAX_LEGAL_MOVES
    full["policy_index"] = np.arange(MAX_LEGAL_MOVES, dtype=np.uint16)
    full["policy_value"] = np.float32(1.0 / MAX_LEGAL_MOVES)
    data = encode_block(full)
    assert len(zstandard.ZstdDecompressor().decompress(data)) == max_block_bytes(len(full))
    assert decode_block(data, NAME, len(full)).tobytes() == full.tobytes()


def test_unused_policy_slots_come_back_zero(positions):
    """Slots past policy_count are not stored; they decode as pack_records leaves them: zero."""
    dirty = np.ascontiguousarray(positions[:10]).copy()
    count = int(dirty["policy_count"][0])
    dirty["policy_index"][0, count:] = 77
    decoded = decode_block(encode_block(dirty), NAME, len(dirty))
    assert (decoded["policy_index"][0, count:] == 0).all()
    assert np.array_equal(decoded["policy_index"][0, :count], dirty["policy_index"][0, :count])
    assert decoded[1:].tobytes() == dirty[1:].tobytes()


def test_every_field_is_stored_once():
    assert set(BLOCK_COLUMNS) | set(POLICY_COLUMNS) == set(POSITION_DTYPE.names)
    assert not set(BLOCK_COLUMNS) & set(POLICY_COLUMNS)


# ----------------------------------------------------------------------------------------------- damage

def test_a_flipped_byte_in_the_compressed_block_is_an_error(positions, block):
    for where in (0, len(block) // 3, len(block) // 2, len(block) - 1):  # frame magic, data, checksum
        damaged = bytearray(block)
        damaged[where] ^= 0x10
        _raises(bytes(damaged), len(positions))


def test_no_flipped_byte_ever_decodes_to_other_positions(positions, block):
    """A flip zstd cannot notice (an unused bit of an entropy table) gives the same positions back; every other
    is an error: the checksum covers the content."""
    errors = same = 0
    for where in range(0, len(block), max(1, len(block) // 400)):
        damaged = bytearray(block)
        damaged[where] ^= 0x01
        try:
            decoded = decode_block(bytes(damaged), NAME, len(positions))
        except ShardFormatError as error:
            assert str(error).startswith(NAME)
            errors += 1
            continue
        assert decoded.tobytes() == positions.tobytes(), f"byte {where} flipped decodes to other positions"
        same += 1
    assert errors > 0.8 * (errors + same)


@pytest.mark.parametrize("keep", [0, 3, 8, 0.5, -1])
def test_a_truncated_block_is_an_error(positions, block, keep):
    cut = int(len(block) * keep) if isinstance(keep, float) else (len(block) + keep if keep < 0 else keep)
    assert len(block[:cut]) < len(block)
    _raises(block[:cut], len(positions))


@pytest.mark.parametrize("delta", [-1, 1, 100])
def test_a_wrong_position_count_is_an_error(positions, block, delta):
    error = _raises(block, len(positions) + delta)
    assert f"holds {len(positions)} positions" in str(error) or "zstandard" in str(error)


def test_a_wrong_position_count_names_both_counts(positions, block):
    error = _raises(block, len(positions) + 1)
    assert f"holds {len(positions)} positions, its index says {len(positions) + 1}" in str(error)


def test_bytes_that_are_not_zstandard_are_an_error():
    _raises(np.random.default_rng(0).bytes(5000), 10)
    _raises(b"", 10)


def test_a_zstandard_frame_that_is_not_a_block_is_an_error():
    error = _raises(zstandard.ZstdCompressor().compress(b"not a block at all, but long enough"), 1)
    assert "not an lc0distill shard block" in str(error)
    error = _raises(zstandard.ZstdCompressor().compress(b"short"), 1)
    assert "too short" in str(error)


def test_a_block_whose_columns_are_short_is_an_error():
    body = bytes(100)  # one position needs far more
    error = _raises(_raw_block(BLOCK_MAGIC, 1, 0, body), 1)
    assert "need" in str(error)


def _with_counts(positions: np.ndarray, counts: np.ndarray) -> bytes:
    """The block of `positions` with its policy_count column replaced (header and length left as they were)."""
    raw = bytearray(zstandard.ZstdDecompressor().decompress(encode_block(positions)))
    offset = struct.calcsize("<8sII")
    for column in BLOCK_COLUMNS:
        size = len(positions) * POSITION_DTYPE[column].itemsize
        if column == "policy_count":
            raw[offset : offset + size] = counts.astype("<u2").tobytes()
        offset += size
    return zstandard.ZstdCompressor().compress(bytes(raw))


def test_policy_counts_that_do_not_add_up_are_an_error(positions):
    some = np.ascontiguousarray(positions[:30])
    counts = some["policy_count"].astype(np.int64)
    assert decode_block(_with_counts(some, counts), NAME, len(some)).tobytes() == some.tobytes()
    counts[3] += 1  # one move more than the block holds
    assert "policy counts" in str(_raises(_with_counts(some, counts), len(some)))


def test_a_policy_count_past_218_is_an_error_even_when_the_sum_is_right(positions):
    some = np.ascontiguousarray(positions[:30])
    counts = some["policy_count"].astype(np.int64)
    total = int(counts.sum())
    assert total > 2 * MAX_LEGAL_MOVES
    moved = np.zeros_like(counts)
    moved[0] = MAX_LEGAL_MOVES + 1
    moved[1] = total - moved[0]  # the same number of moves in all, as the header says
    assert "policy counts" in str(_raises(_with_counts(some, moved), len(some)))


# ----------------------------------------------------------------------------------------------- bombs

def _zeros_frame(size: int, content_size: bool) -> bytes:
    """A zstd frame of `size` zero bytes made without holding them (it compresses to a few kilobytes)."""
    compressor = zstandard.ZstdCompressor(level=1, write_checksum=True, write_content_size=content_size)
    piece = bytes(1 << 20)
    chunker = compressor.chunker(size=size if content_size else -1, chunk_size=1 << 16)
    out = []
    for _ in range(size // len(piece)):
        out += list(chunker.compress(piece))
    out += list(chunker.finish())
    return b"".join(out)


BOMB = 64 << 20  # 64 MB of zeros against a bound of about 50 kB (one position)


@pytest.mark.parametrize("content_size", [True, False])
def test_a_zstd_bomb_is_refused(content_size):
    bomb = _zeros_frame(BOMB, content_size)
    assert len(bomb) < 100_000 and max_block_bytes(1) < 100_000
    _raises(bomb, 1)


def _peak_growth(bomb: bytes, tmp_path) -> int:
    """Bytes the peak resident memory of a fresh process grows by while decode_block refuses `bomb`. VmHWM
    (/proc/self/status) is the new process's own peak; ru_maxrss would carry the forking pytest's over exec."""
    if not os.path.exists("/proc/self/status"):
        pytest.skip("peak memory is read from /proc/self/status (Linux)")
    path = tmp_path / "bomb.zst"
    path.write_bytes(bomb)
    script = textwrap.dedent(f"""
        import json
        from lc0distill.shards.format import ShardFormatError, decode_block

        def peak():
            for line in open("/proc/self/status"):
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024

        data = open({str(path)!r}, "rb").read()
        before = peak()
        try:
            decode_block(data, "bomb", 1)
            refused = False
        except ShardFormatError:
            refused = True
        print(json.dumps({{"refused": refused, "growth": peak() - before}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    result = json.loads(done.stdout)
    assert result["refused"]
    return result["growth"]


def test_a_bomb_without_a_declared_size_is_refused_within_the_bound(tmp_path):
    assert _peak_growth(_zeros_frame(BOMB, content_size=False), tmp_path) < 16 << 20


def test_a_bomb_declaring_its_size_is_refused_before_it_is_inflated(tmp_path):
    assert _peak_growth(_zeros_frame(BOMB, content_size=True), tmp_path) < 16 << 20
