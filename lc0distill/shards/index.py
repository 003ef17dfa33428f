"""A shard folder: its index (lc0distill-shards.json), and its blocks as loader sources.

    DIR/lc0distill-shards.json       what the folder holds (written last, atomically)
    DIR/train/shard-000000.zst ...   training positions: blocks (format.py) back to back
    DIR/test/shard-000000.zst ...    held-out positions (the chunks the name split holds out), every record

The index names every source chunk once ("chunks": name, records read, records kept, test side or not);
each position in a block carries that table's number of its chunk and its record number in the chunk, so a
position can always be traced to the record it came from. Per shard: positions, bytes, versions and input
formats (counts), and its blocks (byte offset, bytes, positions). "sampling" says how the records were kept.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from lc0distill.errors import ChunkError, Lc0DistillError
from lc0distill.fileio import read_manifest_json
from lc0distill.shards.format import decode_block

INDEX_NAME = "lc0distill-shards.json"
INDEX_FORMAT = "lc0distill-shards"
INDEX_VERSION = 1
MAX_INDEX_BYTES = 1 << 30  # about 60 bytes per chunk name: 15M chunks


def is_shard_folder(path: str | os.PathLike) -> bool:
    try:
        return (Path(path) / INDEX_NAME).is_file()
    except OSError:  # a folder we may not look into: the chunk reader says so, naming it
        return False


@dataclass(frozen=True)
class ShardBlock:
    """One block of a shard file, read by a loader worker on its own (picklable, small). Positions come out with
    `chunk` = origin_offset + the folder's chunk number: the loader adds the number of its sources (see
    BatchLoader.source_name), so chunk sources and shard folders can share one stream."""

    path: str
    block: int
    offset: int
    size: int
    positions: int
    origin_offset: int = 0  # where this folder's chunk table starts among the run's shard folders

    @property
    def name(self) -> str:
        return f"{self.path}: block {self.block}"

    def read_packed(self) -> np.ndarray:
        """(positions,) POSITION_DTYPE, `chunk` relative to the run's shard-folder chunk tables."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read(self.size)
        except OSError as error:
            raise ShardError(self.name, f"cannot read: {error.strerror or error}") from None
        if len(data) != self.size:
            raise ShardError(self.name, f"the shard ends inside the block ({len(data)} of {self.size} bytes): "
                                        "it was cut short")
        positions = decode_block(data, self.name, self.positions)
        if self.origin_offset:
            positions["chunk"] += np.uint32(self.origin_offset)
        return positions


    def probe_header(self) -> tuple[int, int] | None:
        """(version, input format) of the block's first position, as the data probe reads a chunk's first record;
        None when the block cannot be read (the loader reports it)."""
        try:
            first = self.read_packed()[:1]
        except ChunkError:
            return None
        return (int(first["version"][0]), int(first["input_format"][0])) if len(first) else None


class ShardError(ChunkError):
    """A shard block that cannot be read: the loader skips it like a bad chunk (or stops, in strict mode)."""


def read_index(folder: str | os.PathLike) -> dict:
    path = Path(folder) / INDEX_NAME
    if not path.is_file():
        raise Lc0DistillError(f"{folder}: not a shard folder (no {INDEX_NAME}; make one with lc0distill data repack)")
    index = read_manifest_json(path, what="shard index", max_bytes=MAX_INDEX_BYTES, form=INDEX_FORMAT,
                               version=INDEX_VERSION, remedy="repack the data")
    missing = [key for key in _INDEX_KEYS if key not in index]
    shards = index.get("shards") if isinstance(index.get("shards"), dict) else {}
    missing += [f"shards.{side}" for side in ("train", "test") if side not in shards]
    if missing:
        raise Lc0DistillError(f"{path}: the shard index has no {', '.join(missing)}: it is damaged; repack the data")
    return index


_INDEX_KEYS = ("sampling", "shards", "chunks", "positions", "bytes")


def folder_blocks(folder: str | os.PathLike, index: dict, side: str, origin_offset: int = 0) -> list[ShardBlock]:
    """The blocks of one side ("train" or "test") of a shard folder, in shard and block order; each shard file's
    size is checked against the index first (a file cut short or replaced is an error naming it)."""
    blocks = []
    for shard in index["shards"][side]:
        path = Path(folder) / side / str(shard["file"])
        if not path.is_file():
            raise Lc0DistillError(f"{path}: missing (the shard index names it): repack the data")
        if path.stat().st_size != shard["bytes"]:
            raise Lc0DistillError(f"{path}: {path.stat().st_size:,} bytes, the shard index says {shard['bytes']:,}: "
                                  "the shard was cut short or replaced; repack the data")
        for number, (offset, size, positions) in enumerate(shard["blocks"]):
            blocks.append(ShardBlock(str(path), number, int(offset), int(size), int(positions), origin_offset))
    return blocks


@lru_cache(maxsize=16)
def chunk_names(folder: str) -> tuple[str, ...]:
    """The source chunk names of a shard folder, by the number its positions carry (main process only)."""
    return tuple(entry[0] for entry in read_index(folder)["chunks"])


def side_summary(index: dict, side: str) -> dict:
    """Positions, shards, blocks, bytes, versions and input formats of one side of a shard folder."""
    shards = index["shards"][side]
    versions, formats = Counter(), Counter()
    for shard in shards:
        versions.update({int(k): v for k, v in shard["versions"].items()})
        formats.update({int(k): v for k, v in shard["input_formats"].items()})
    return {"shards": len(shards), "blocks": sum(len(s["blocks"]) for s in shards),
            "positions": sum(s["positions"] for s in shards), "bytes": sum(s["bytes"] for s in shards),
            "versions": dict(sorted(versions.items())), "input_formats": dict(sorted(formats.items()))}
