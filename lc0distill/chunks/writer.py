"""Write chunks as lc0 does: one gzip stream per game, records back to back (V6, or V7 on request).

lc0 writes with zlib's gzopen(..., "wb"): deflate level 6, no file name, mtime 0. Compressing the same
payload with those settings gives the very bytes of lc0's files, which the tests check on lc0's own chunks.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np

from lc0distill.chunks.layouts import RECORD_DTYPE, RECORD_SIZES
from lc0distill.fileio import write_atomic

LC0_GZIP_LEVEL = 6


def chunk_payload(records: np.ndarray, version: int = 6) -> bytes:
    """The uncompressed bytes of a chunk: records (in-memory layout) in the V6 or V7 layout."""
    if version not in (6, 7):
        raise ValueError(f"lc0distill writes V6 (what lc0 writes) or V7 chunks, not V{version}")
    if records.dtype != RECORD_DTYPE:
        raise TypeError(f"records must use the in-memory layout RECORD_DTYPE, not {records.dtype}")
    size = RECORD_SIZES[version]
    out = np.ascontiguousarray(records.view(np.uint8).reshape(len(records), -1)[:, :size])
    out[:, :4] = np.frombuffer(np.uint32(version).astype("<u4").tobytes(), dtype=np.uint8)
    return out.tobytes()


def gzip_like_lc0(payload: bytes) -> bytes:
    compressor = zlib.compressobj(LC0_GZIP_LEVEL, zlib.DEFLATED, 31)  # wbits 31: gzip container, mtime 0
    return compressor.compress(payload) + compressor.flush()


def write_chunk(path: str | os.PathLike, records: np.ndarray, version: int = 6, compress: bool = True) -> None:
    """Write one chunk file (gzip as lc0 does unless `compress` is False), atomically."""
    payload = chunk_payload(records, version)
    write_atomic(path, gzip_like_lc0(payload) if compress else payload)


class GameChunkWriter:
    """Writes one chunk per game into a folder with lc0's names: game_000000.gz, game_000001.gz, ..."""

    def __init__(self, folder: str | os.PathLike, version: int = 6, first_index: int = 0):
        self.folder = Path(folder)
        self.version = version
        self.next_index = first_index

    def write_game(self, records: np.ndarray) -> Path:
        return self.write_compressed(gzip_like_lc0(chunk_payload(records, self.version)))

    def write_compressed(self, chunk: bytes) -> Path:
        """Write an already gzip-compressed chunk as the next game file."""
        path = self.folder / f"game_{self.next_index:06d}.gz"
        write_atomic(path, chunk)
        self.next_index += 1
        return path
