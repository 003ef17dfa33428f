"""A shard folder read back as the chunks it was made from: its positions (shuffled across shards) put back in
their chunks, in record order, as records again (chunks.packed.unpack_positions), so `data stats` and `data
inspect` check a repack with the code that checks chunks. At sampling 1 every record is there and the figures
are the chunks'; at sampling N each chunk holds the records the repack kept.

Memory stays bounded: the chunks are taken in groups of at most REGROUP_POSITIONS kept positions (the index
says how many each chunk kept), each group one pass over the folder's blocks.
"""

from __future__ import annotations

import os
from typing import Iterator

import numpy as np

from lc0distill.chunks.packed import unpack_positions
from lc0distill.chunks.reader import Chunk
from lc0distill.chunks.sources import ChunkSource
from lc0distill.shards.index import folder_blocks, read_index

REGROUP_POSITIONS = 200_000  # positions held at once (2,232 bytes each packed, 8 kB as records): about 2 GB


def shard_folder_chunks(folder: str | os.PathLike, budget: int = REGROUP_POSITIONS) -> Iterator[Chunk]:
    """The chunks of a shard folder, in the order of its chunk table, each holding the records it kept."""
    index = read_index(folder)
    table = index["chunks"]  # [name, records read, positions kept, side]
    blocks = [block for side in ("train", "test") for block in folder_blocks(folder, index, side)]
    for first, last in _groups([int(entry[2]) for entry in table], budget):
        parts = [packed[(packed["chunk"] >= first) & (packed["chunk"] < last)]
                 for packed in (block.read_packed() for block in blocks)]
        positions = np.concatenate(parts) if parts else np.zeros(0)
        positions = positions[np.lexsort((positions["record"], positions["chunk"]))] if len(positions) else positions
        bounds = np.searchsorted(positions["chunk"], np.arange(first, last + 1)) if len(positions) else None
        for number in range(first, last):
            if bounds is None or bounds[number - first] == bounds[number - first + 1]:
                continue  # nothing kept of it (sampled out, or a bad chunk the repack skipped)
            records = unpack_positions(positions[bounds[number - first]:bounds[number - first + 1]])
            yield Chunk(ChunkSource(str(table[number][0])), records, int(records["version"][0]))


def _groups(kept: list[int], budget: int) -> Iterator[tuple[int, int]]:
    """[first, last) ranges of chunk numbers holding at most `budget` kept positions (a bigger chunk alone)."""
    first, total = 0, 0
    for number, count in enumerate(kept):
        if total and total + count > budget:
            yield first, number
            first, total = number, 0
        total += count
    if first < len(kept):
        yield first, len(kept)
