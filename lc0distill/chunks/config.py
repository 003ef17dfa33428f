"""The data section of a run's config, and the train/test loaders it describes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from lc0distill.chess.expand import Rule50Scale
from lc0distill.chunks.dataset import BatchLoader, StreamSpec
from lc0distill.chunks.selection import ChunkOrder, newest_chunks, split_train_test
from lc0distill.chunks.sources import ChunkSource, find_chunks
from lc0distill.chunks.targets import QSource
from lc0distill.errors import Lc0DistillError


class DataConfig(BaseModel):
    """Where training data comes from and how it is sampled, shuffled and batched."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    paths: list[str] = Field(min_length=1, description="chunk files, folders or .tar archives")
    test_paths: list[str] = Field(default_factory=list, description="held-out data; if empty, split paths")
    test_ratio: float = Field(0.05, ge=0.0, lt=1.0, description="share of chunks held out when splitting")
    num_chunks: int | None = Field(None, gt=0, description="keep only the newest N chunks (lczero's num_chunks)")
    chunk_order: ChunkOrder = ChunkOrder.MTIME
    batch_size: int = Field(1024, gt=0)
    sample_rate: int = Field(32, ge=1, description="keep about 1 record in N (lczero's default 32)")
    shuffle_buffer: int = Field(131072, ge=0, description="positions held for shuffling, 2,224 bytes each")
    workers: int = Field(2, ge=0, description="loader processes (0: read in the training process)")
    seed: int = 0
    q_source: QSource = QSource.BEST
    rule50: Rule50Scale = Rule50Scale.ENGINE
    strict: bool = Field(False, description="raise on a bad chunk instead of skipping it")


def select_sources(config: DataConfig) -> tuple[list[ChunkSource], list[ChunkSource]]:
    """(train, test) chunk sources as the config describes them."""
    found = newest_chunks(list(find_chunks(config.paths)), config.num_chunks, config.chunk_order)
    if config.test_paths:
        train, test = found, list(find_chunks(config.test_paths))
    else:
        train, test = split_train_test(found, config.test_ratio)
    if not train:
        raise Lc0DistillError(f"no training chunks found in {', '.join(config.paths)}")
    return train, test


def make_loader(config: DataConfig, sources: list[ChunkSource], *, passes: int | None, rank: int = 0,
                world_size: int = 1, device: str = "cpu", sample_rate: int | None = None,
                seed_offset: int = 0) -> BatchLoader:
    """A loader over `sources`; `passes=None` streams forever (training), 1 reads each record once (tests)."""
    spec = StreamSpec(
        sources=tuple(sources), batch_size=config.batch_size,
        sample_rate=config.sample_rate if sample_rate is None else sample_rate,
        shuffle_buffer=config.shuffle_buffer, seed=config.seed + seed_offset, passes=passes,
        rank=rank, world_size=world_size, strict=config.strict, drop_last=False,
    )
    return BatchLoader(spec, workers=config.workers, device=device, q_source=config.q_source, rule50=config.rule50)
