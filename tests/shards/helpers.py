"""Constants and helpers of the shard tests (fixtures: conftest.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lc0distill.shards.index import folder_blocks, read_index
from lc0distill.shards.repack import RepackSettings

CHUNKS = 40
TEST_RATIO = 0.2  # 10 of the 40 chunks held out: both sides get several shards
RATE1 = RepackSettings(sample_rate=1, shard_positions=1000, test_ratio=TEST_RATIO, seed=0)
RATE4 = RepackSettings(sample_rate=4, shard_positions=300, test_ratio=TEST_RATIO, seed=0)


def decode_side(folder: Path, side: str) -> np.ndarray:
    """Every position of one side of a shard folder, in shard and block order."""
    blocks = folder_blocks(folder, read_index(folder), side)
    parts = [block.read_packed() for block in blocks]
    return np.concatenate(parts) if parts else np.empty(0)


def shard_files(folder: Path) -> dict[str, bytes]:
    """side/shard-NNNNNN.zst -> bytes, of every shard file of a folder."""
    return {f"{p.parent.name}/{p.name}": p.read_bytes() for p in sorted(folder.glob("*/shard-*.zst"))}
