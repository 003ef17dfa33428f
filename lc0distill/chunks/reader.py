"""Read whole chunk files into the one in-memory record layout, upgrading V3..V6 on the way.

A chunk is decompressed in one call and viewed with `np.frombuffer`; nothing loops over records in Python.
Upgrades follow lc0's reader (FORMATS.md §1.4.3). Illegal-move markers are kept as each era wrote them
(0.0 in V3, NaN in lc0 0.21's V4, -1 since): consumers treat "< 0 or NaN" as illegal (see targets.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lc0distill.chess.input_formats import SUPPORTED_INPUT_FORMATS
from lc0distill.chunks.layouts import NO_MOVE, RECORD_DTYPE, RECORD_SIZES
from lc0distill.chunks.sources import ChunkSource
from lc0distill.errors import ChunkError
from lc0distill.gzipio import GZIP_MAGIC, GzipError, gunzip

try:  # zlib-ng inflates the same streams about 5x faster than zlib; writing stays with zlib (lc0's bytes)
    from zlib_ng import zlib_ng as inflater
except ImportError:  # pragma: no cover - zlib-ng is a dependency; the standard library still works
    import zlib as inflater



@dataclass(frozen=True)
class Chunk:
    """The records of one chunk file (usually one game), in file order."""

    source: ChunkSource
    records: np.ndarray  # (N,) RECORD_DTYPE
    version: int  # the version the file was written in

    @property
    def name(self) -> str:
        return self.source.name


# One chunk is one game. lc0 self-play games rarely pass a few hundred plies (lc0 adjudicates long games), and
# 16,384 records (137 MB of V7 records) bound what one chunk may make the reader allocate; the 75-move rule
# allows games of about 17,700 plies in theory: data.max_chunk_records raises the bound for such data.
MAX_CHUNK_RECORDS = 16384


def max_chunk_bytes(max_records: int = MAX_CHUNK_RECORDS) -> int:
    return max_records * max(RECORD_SIZES.values())


def inflate(data: bytes, name: str, max_bytes: int | None = None) -> bytes:
    """Decompress a gzip file (every member of it); other data is returned as it is. Inflating stops with an
    error as soon as the output passes `max_bytes`: a small file that inflates to gigabytes is refused after
    `max_bytes`, not after the gigabytes."""
    if not data.startswith(GZIP_MAGIC):
        if max_bytes is not None and len(data) > max_bytes:
            raise ChunkError(name, f"{len(data):,} bytes is more than a chunk can hold ({max_bytes:,})")
        return data
    try:
        return gunzip(data, max_bytes, inflater)
    except GzipError as error:
        raise ChunkError(name, _GZIP_PROBLEMS[error.kind].format(detail=error.detail, limit=max_bytes)) from None


_GZIP_PROBLEMS = {
    "corrupt": "corrupt gzip stream ({detail})",
    "truncated": "truncated gzip stream (the file ends before the gzip trailer)",
    "trailing": "bytes after the end of the gzip stream are not gzip data",
    "too_big": "inflates to more than {limit:,} bytes, more than a chunk can hold (data.max_chunk_records sets "
               "the limit)",
}


def _version_at(raw: bytes, offset: int) -> int:
    return int.from_bytes(raw[offset : offset + 4], "little")


def _check_layout(raw: bytes, name: str) -> tuple[int, int]:
    """(version, record count) of a decompressed chunk, or a ChunkError saying what is wrong where."""
    if not raw:
        raise ChunkError(name, "empty chunk (no records)")
    if len(raw) < 4:
        raise ChunkError(name, f"only {len(raw)} bytes, not a chunk", record=0, field="version")
    version = _version_at(raw, 0)
    if version not in RECORD_SIZES:
        raise ChunkError(name, f"unknown record version {version} (supported: 3, 4, 5, 6, 7)",
                         record=0, field="version")
    size = RECORD_SIZES[version]
    count, rest = divmod(len(raw), size)
    versions = np.ndarray((count,), dtype="<u4", buffer=raw, strides=(size,))  # each record's first field
    mixed = np.flatnonzero(versions != version)
    if mixed.size:
        first = int(mixed[0])
        raise ChunkError(name, f"version {int(versions[first])} after version {version} records "
                         "(mixed versions in one file)", record=first, field="version")
    if rest >= 4 and _version_at(raw, count * size) != version:
        raise ChunkError(name, f"version {_version_at(raw, count * size)} after version {version} records "
                         "(mixed versions in one file)", record=count, field="version")
    if rest:
        raise ChunkError(name, f"size {len(raw)} is not a multiple of the V{version} record size {size} "
                         f"({rest} bytes left over: truncated or not a V{version} chunk)", record=count)
    return version, count


def _upgrade_result(out: np.ndarray, name: str) -> None:
    """V3..V5 int8 result (+1/0/-1 for the side to move, at V6's `dummy` byte) -> V6 result_q / result_d."""
    result = out["dummy"].view(np.int8)
    bad = np.flatnonzero((result != 1) & (result != 0) & (result != -1))
    if bad.size:
        raise ChunkError(name, f"result {int(result[bad[0]])} is not -1, 0 or 1", record=int(bad[0]), field="result")
    out["result_q"] = result
    out["result_d"] = result == 0
    out["dummy"] = 0


def upgrade(raw_records: np.ndarray, version: int, name: str) -> np.ndarray:
    """(N, record size) uint8 records of `version` -> RECORD_DTYPE, as lc0's reader upgrades them.

    Byte-wise, V5 is a prefix of V6, and V3/V4 are V5 without `input_format` (V4 without the moves-left
    fields, V3 also without root/best q and d), so each upgrade is one block copy plus a few fields.
    """
    count, size = raw_records.shape
    out = np.empty(count, dtype=RECORD_DTYPE)  # every byte is written below (np.zeros costs ~5%)
    out_bytes = out.view(np.uint8).reshape(count, -1)
    if version >= 5:
        out_bytes[:, :size] = raw_records
        out_bytes[:, size:] = 0
    else:  # V3/V4: insert input_format = 1 after the version; move_count becomes invariance_info
        out_bytes[:, 8 : size + 4] = raw_records[:, 4:]
        out_bytes[:, size + 4 :] = 0
        out["version"] = version
        out["input_format"] = 1
    if version < 7:
        out["opp_played_idx"] = NO_MOVE
        out["next_played_idx"] = NO_MOVE
    if version < 6:
        _upgrade_result(out, name)
        for field in ("orig_q", "orig_d", "orig_m"):
            out[field] = np.nan
    return out


def _check_input_formats(records: np.ndarray, name: str) -> None:
    formats = records["input_format"]
    if len(formats) == 0:
        return
    low, high = int(formats.min()), int(formats.max())
    if low == high and low in SUPPORTED_INPUT_FORMATS:  # the usual case: one format per chunk
        return
    bad = np.flatnonzero(~np.isin(formats, list(SUPPORTED_INPUT_FORMATS)))
    if bad.size:
        raise ChunkError(name, f"unknown input format {int(formats[bad[0]])}", record=int(bad[0]), field="input_format")


def parse_chunk(raw: bytes, name: str) -> tuple[np.ndarray, int]:
    """Decompressed chunk bytes -> (records in RECORD_DTYPE, file version)."""
    version, count = _check_layout(raw, name)
    records = np.frombuffer(raw, dtype=np.uint8, count=count * RECORD_SIZES[version]).reshape(count, -1)
    upgraded = upgrade(records, version, name)
    _check_input_formats(upgraded, name)
    return upgraded, version


def read_chunk(source: ChunkSource | str, max_records: int = MAX_CHUNK_RECORDS) -> Chunk:
    """Read one chunk (gzip or uncompressed; a loose file or a tar member) into the in-memory layout. Nothing
    beyond `max_records` records' worth of bytes is read or inflated."""
    if isinstance(source, str):
        source = ChunkSource(source)
    limit = max_chunk_bytes(max_records)
    raw = inflate(source.read_bytes(limit), source.name, limit)
    records, version = parse_chunk(raw, source.name)
    return Chunk(source, records, version)

