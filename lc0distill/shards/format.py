"""One block of a shard file: packed positions in a tighter, column-wise form, one zstandard frame.

A block holds up to a few thousand positions. Its uncompressed form is a fixed header (magic, positions N,
policy entries E) followed by the columns of POSITION_DTYPE in the order of BLOCK_COLUMNS, each one the N
positions' values back to back, and then the policy as two flat arrays over the E legal moves (indices, then
probabilities) instead of POSITION_DTYPE's 218 slots per position: about 1,000 bytes per position before
compression instead of 2,232, and about 120 after it (the shared maia self-play data: gzip chunks hold 168).
Decoding gives POSITION_DTYPE rows equal field for field to what pack_records made (the tests compare).
"""

from __future__ import annotations

import struct

import numpy as np
import zstandard

from lc0distill.chunks.packed import MAX_LEGAL_MOVES, POSITION_DTYPE
from lc0distill.errors import ChunkError

BLOCK_MAGIC = b"L0DBLK01"
_HEADER = struct.Struct("<8sII")  # magic, positions, policy entries
COMPRESSION_LEVEL = 6  # zstd: 7% smaller than level 3 for the same decoding speed; repacking is paid once

POLICY_COLUMNS = ("policy_index", "policy_value")
BLOCK_COLUMNS = tuple(name for name in POSITION_DTYPE.names if name not in POLICY_COLUMNS)
_ENTRY_BYTES = POSITION_DTYPE["policy_index"].base.itemsize + POSITION_DTYPE["policy_value"].base.itemsize
_FIXED_BYTES = sum(POSITION_DTYPE[name].itemsize for name in BLOCK_COLUMNS)  # per position, without the policy


class ShardFormatError(ChunkError):
    """A block that is not what its index says: damaged or not a shard (the loader skips it like a bad chunk)."""


def max_block_bytes(positions: int) -> int:
    """The largest uncompressed block of `positions` positions (every one with MAX_LEGAL_MOVES moves)."""
    return _HEADER.size + positions * (_FIXED_BYTES + MAX_LEGAL_MOVES * _ENTRY_BYTES)


def encode_block(packed: np.ndarray, level: int = COMPRESSION_LEVEL) -> bytes:
    """(N,) POSITION_DTYPE -> one compressed block."""
    counts = packed["policy_count"].astype(np.intp)
    used = np.arange(MAX_LEGAL_MOVES) < counts[:, None]  # (N, 218) the slots that hold a move
    parts = [_HEADER.pack(BLOCK_MAGIC, len(packed), int(counts.sum()))]
    parts += [np.ascontiguousarray(packed[name]).tobytes() for name in BLOCK_COLUMNS]
    parts += [packed[name][used].tobytes() for name in POLICY_COLUMNS]
    return zstandard.ZstdCompressor(level=level, write_checksum=True).compress(b"".join(parts))


def decode_block(data: bytes, name: str, positions: int) -> np.ndarray:
    """One compressed block -> (positions,) POSITION_DTYPE; `name` says where it came from in errors. The
    uncompressed size is bounded by `positions` (from the index) before anything is inflated."""
    limit = max_block_bytes(positions)
    try:
        # zstandard honours max_output_size only for frames that do not declare their size, so a declared size
        # is checked first: a forged header must not make us allocate it.
        declared = zstandard.frame_content_size(data)
        if declared > limit:
            raise ShardFormatError(name, f"declares {declared:,} bytes, more than {positions} positions can hold "
                                         f"({limit:,}): the shard is damaged")
        raw = zstandard.ZstdDecompressor().decompress(data, max_output_size=limit)
    except zstandard.ZstdError as error:
        raise ShardFormatError(name, f"not a valid zstandard block ({error}): the shard is damaged") from None
    if len(raw) < _HEADER.size:
        raise ShardFormatError(name, f"{len(raw)} bytes: too short for a block")
    magic, count, entries = _HEADER.unpack_from(raw)
    if magic != BLOCK_MAGIC:
        raise ShardFormatError(name, f"not an lc0distill shard block (magic {magic!r})")
    if count != positions:
        raise ShardFormatError(name, f"holds {count} positions, its index says {positions}")
    expected = _HEADER.size + count * _FIXED_BYTES + entries * _ENTRY_BYTES
    if len(raw) != expected:
        raise ShardFormatError(name, f"{len(raw):,} bytes, {count} positions with {entries} moves need {expected:,}")
    out = np.zeros(count, dtype=POSITION_DTYPE)
    offset = _HEADER.size
    for column in BLOCK_COLUMNS:
        field = POSITION_DTYPE[column]
        size = count * field.itemsize
        out[column] = np.frombuffer(raw, dtype=field.base, count=count * max(1, field.itemsize // field.base.itemsize),
                                    offset=offset).reshape((count, *field.shape))
        offset += size
    counts = out["policy_count"].astype(np.intp)
    if int(counts.sum()) != entries or (counts > MAX_LEGAL_MOVES).any():
        raise ShardFormatError(name, f"policy counts do not add up to the block's {entries} moves")
    used = np.arange(MAX_LEGAL_MOVES) < counts[:, None]
    for column in POLICY_COLUMNS:
        base = POSITION_DTYPE[column].base
        out[column][used] = np.frombuffer(raw, dtype=base, count=entries, offset=offset)
        offset += entries * base.itemsize
    return out
