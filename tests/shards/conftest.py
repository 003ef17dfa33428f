"""Shared fixtures of the shard tests: 40 of the shared self-play chunks and two repacks of them,
made once per session (tests that damage a shard folder work on a copy)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lc0distill.chunks.sources import find_chunks
from lc0distill.shards.repack import repack
from tests.shards.helpers import CHUNKS, RATE1, RATE4


@pytest.fixture(scope="session")
def chunk_files(selfplay_dir) -> list[Path]:
    """The first 40 chunks of the shared maia-1900 self-play games, read where they are: the train/held-out
    split is by chunk name (the full path), so names that do not change keep the split the same every run."""
    files = sorted(selfplay_dir.glob("game_*.gz"))[:CHUNKS]
    assert len(files) == CHUNKS
    return files


@pytest.fixture(scope="session")
def other_chunk_files(selfplay_dir) -> list[Path]:
    """Ten other chunks (not repacked), for runs that mix chunks and shard folders."""
    return sorted(selfplay_dir.glob("game_*.gz"))[CHUNKS : CHUNKS + 10]


@pytest.fixture(scope="session")
def sources(chunk_files):
    found = list(find_chunks([str(p) for p in chunk_files]))
    assert len(found) == CHUNKS
    return found


@pytest.fixture(scope="session")
def rate1(sources, tmp_path_factory):
    """Every record kept (RepackResult)."""
    return repack(sources, tmp_path_factory.mktemp("rate1") / "shards", RATE1, jobs=1)


@pytest.fixture(scope="session")
def rate4(sources, tmp_path_factory):
    """About 1 training record in 4 kept, small shards (RepackResult)."""
    return repack(sources, tmp_path_factory.mktemp("rate4") / "shards", RATE4, jobs=1)
