"""The data section of a run's config, and the train/test loaders it describes."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lc0distill.chess.expand import Rule50Scale
from lc0distill.chunks.dataset import BatchLoader, StreamSpec
from lc0distill.chunks.packed import POSITION_DTYPE
from lc0distill.chunks.reader import MAX_CHUNK_RECORDS
from lc0distill.chunks.selection import ChunkOrder, newest_chunks, split_train_test
from lc0distill.chunks.sources import ChunkSource, MissingDataError, find_chunks
from lc0distill.chunks.targets import QSource
from lc0distill.errors import ChunkError, Lc0DistillError

# A position in a batch, expanded: 112x64 float32 planes (28,672 bytes), the policy target and the legal-move
# mask (1,858 each) and the scalar targets; held about twice (the loader's batch and the trainer's).
BATCH_BYTES_PER_POSITION = 2 * 40_000


def machine_memory() -> int | None:
    """Bytes of physical memory (None where the system does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


class DataConfig(BaseModel):
    """Where training data comes from and how it is sampled, shuffled and batched."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    paths: list[str] = Field(min_length=1, description="chunk files, folders or .tar archives, or shard folders "
                             "(lc0distill data repack: read as they were sampled)")
    test_paths: list[str] = Field(default_factory=list, description="held-out data; if empty, split paths (a "
                                  "shard folder gives its held-out shards)")
    test_ratio: float = Field(0.05, ge=0.0, lt=1.0, description="share of chunks held out when splitting")
    num_chunks: int | None = Field(None, gt=0, description="keep only the newest N chunks (lczero's num_chunks)")
    chunk_order: ChunkOrder = ChunkOrder.MTIME
    batch_size: int = Field(1024, gt=0)
    sample_rate: int = Field(32, ge=1, description="keep about 1 record in N (lczero's default 32)")
    shuffle_buffer: int = Field(131072, ge=0, description="positions held for shuffling, 2,232 bytes each")
    workers: int = Field(2, ge=0, description="loader processes (0: read in the training process)")
    seed: int = 0
    q_source: QSource = QSource.BEST
    rule50: Rule50Scale = Field(Rule50Scale.ENGINE, description="engine: the planes lc0 feeds its nets (the only "
                                "choice: lc0distill's nets scale the rule-50 plane themselves)")
    strict: bool = Field(False, description="raise on a bad chunk or record instead of skipping it")
    max_chunk_records: int = Field(MAX_CHUNK_RECORDS, gt=0, description="a chunk holding more records is bad "
                                   "(one game per chunk; bounds what one file may make the reader allocate)")

    @model_validator(mode="after")
    def _fits_in_memory(self) -> "DataConfig":
        """A shuffle buffer or a batch larger than the machine is an error before any work, not a MemoryError
        (or the kernel's kill) minutes in."""
        memory = machine_memory()
        need = self.shuffle_buffer * POSITION_DTYPE.itemsize + self.batch_size * BATCH_BYTES_PER_POSITION
        if memory is not None and need > memory:
            raise ValueError(f"shuffle_buffer {self.shuffle_buffer:,} positions ({POSITION_DTYPE.itemsize:,} bytes "
                             f"each) and batch_size {self.batch_size:,} (about {BATCH_BYTES_PER_POSITION // 1000} "
                             f"kB a position in memory) need {need / 1e9:,.1f} GB; this machine has "
                             f"{memory / 1e9:,.1f} GB")
        return self

    @field_validator("rule50")
    @classmethod
    def _engine_planes_only(cls, rule50: Rule50Scale) -> Rule50Scale:
        if rule50 == Rule50Scale.TRAINER:
            raise ValueError("trainer feeds count/99, as lczero-training's loader feeds its TensorFlow nets; "
                             "lc0distill's nets read the engine's planes (the raw count for formats 1-3) and scale "
                             "plane 109 themselves, so a net trained on trainer planes would meet 99 times its "
                             "training input in lc0: leave data.rule50 at engine")
        return rule50


@dataclass
class SelectedSources:
    """(train, test) chunk sources, and the files found unreadable while listing them (skipped)."""

    train: list[ChunkSource]
    test: list[ChunkSource]
    unreadable: list[str] = field(default_factory=list)
    origin_name: Callable[[int], str] | None = None  # names the chunks of shard folders (shards/select.py)

    def __iter__(self):  # (train, test) = select_sources(config)
        return iter((self.train, self.test))


def select_sources(config: DataConfig) -> SelectedSources:
    """(train, test) chunk sources as the config describes them. A path that names nothing is an error (a
    typo); an archive that cannot be listed whole costs only what it cannot give (reported in `unreadable`)."""
    unreadable: list[str] = []

    def skip(error: ChunkError) -> None:
        if isinstance(error, MissingDataError):
            raise error
        unreadable.append(str(error))

    found = newest_chunks(list(find_chunks(config.paths, on_error=skip)), config.num_chunks, config.chunk_order)
    if config.test_paths:
        train, test = found, list(find_chunks(config.test_paths, on_error=skip))
    else:
        train, test = split_train_test(found, config.test_ratio)
    if not train:
        reason = f" ({len(unreadable)} unreadable: {unreadable[0]})" if unreadable else ""
        raise Lc0DistillError(f"no training chunks found in {', '.join(config.paths)}{reason}")
    return SelectedSources(train, test, unreadable)


def make_loader(config: DataConfig, sources: list[ChunkSource], *, passes: int | None, rank: int = 0,
                world_size: int = 1, device: str = "cpu", sample_rate: int | None = None,
                seed_offset: int = 0, needs_q: bool = False, keep: dict | None = None,
                origin_name: Callable[[int], str] | None = None, sample_shards: bool = False) -> BatchLoader:
    """A loader over `sources`; `passes=None` streams forever (training), 1 reads each record once (tests).
    `needs_q`: the value target reads data.q_source, so records without it are bad records. `keep`: per
    source number, exactly the records to read (a sampled teacher cache's), instead of sampling. `origin_name`:
    names the chunks of shard folders among `sources` (shards/select.py gives it). `sample_shards`: shard blocks
    are sampled at the sample rate too (training reads them whole: they were sampled when repacked)."""
    spec = StreamSpec(
        sources=tuple(sources), batch_size=config.batch_size,
        sample_rate=config.sample_rate if sample_rate is None else sample_rate,
        shuffle_buffer=config.shuffle_buffer, seed=config.seed + seed_offset, passes=passes,
        rank=rank, world_size=world_size, strict=config.strict, drop_last=False,
        q_source=config.q_source if needs_q else None, max_chunk_records=config.max_chunk_records, keep=keep,
        sample_shards=sample_shards,
    )
    return BatchLoader(spec, workers=config.workers, device=device, q_source=config.q_source, rule50=config.rule50,
                       origin_name=origin_name)
