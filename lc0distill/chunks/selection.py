"""Which chunks a run reads: the newest N (lczero's num_chunks) and a deterministic train/test split."""

from __future__ import annotations

import hashlib
import os
import re
from enum import Enum
from typing import Sequence

from lc0distill.chunks.sources import ChunkSource


class ChunkOrder(str, Enum):
    """How "newest" is decided, as lczero-training's sort_type."""

    MTIME = "mtime"  # file modification time (a tar's members share their archive's)
    NAME = "name"  # file name, then member name
    NUMBER = "number"  # the last number in the name: game_000123.gz, training.123.gz


def _last_number(name: str) -> int:
    numbers = re.findall(r"\d+", name)
    return int(numbers[-1]) if numbers else -1


def _sort_key(source: ChunkSource, order: ChunkOrder):
    if order == ChunkOrder.MTIME:
        return os.stat(source.path).st_mtime_ns, source.name
    if order == ChunkOrder.NUMBER:
        return _last_number(source.member or os.path.basename(source.path)), source.name
    return source.name


def newest_chunks(sources: Sequence[ChunkSource], count: int | None,
                  order: ChunkOrder = ChunkOrder.MTIME) -> list[ChunkSource]:
    """The newest `count` chunks (all if None), oldest first."""
    ordered = sorted(sources, key=lambda s: _sort_key(s, ChunkOrder(order)))
    return ordered if count is None else ordered[-count:] if count > 0 else []


def _position(source: ChunkSource) -> float:
    """A chunk's place in [0, 1), from its name alone."""
    digest = hashlib.blake2b(source.name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


def is_test_chunk(source: ChunkSource, test_ratio: float) -> bool:
    """A chunk's side of the split depends only on its name, so it never moves as data is added."""
    return _position(source) < test_ratio


def split_train_test(sources: Sequence[ChunkSource], test_ratio: float) -> tuple[list[ChunkSource], list[ChunkSource]]:
    """(train, test) by chunk: about test_ratio of the chunks go to test, whole games never straddle."""
    if not 0.0 <= test_ratio < 1.0:
        raise ValueError(f"test_ratio must be in [0, 1), got {test_ratio}")
    train = [s for s in sources if not is_test_chunk(s, test_ratio)]
    test = [s for s in sources if is_test_chunk(s, test_ratio)]
    if test_ratio > 0 and not test and len(train) >= 2:  # small datasets: hold out at least one chunk
        first = min(train, key=_position)
        train.remove(first)
        test = [first]
    return train, test
