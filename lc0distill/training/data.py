"""A run's data: the training stream from where the run stands, and the held-out batches.

A resumed run replays its stream up to the batch it had reached (exact), or, when that would mean reading too
much (train.resume_data), starts a new stream there (nothing lost, another order)."""

from __future__ import annotations

from typing import Callable, Iterator

import torch

from lc0distill.checks import check_batch_formats
from lc0distill.chunks.batch import Batch, make_batch
from lc0distill.chunks.config import make_loader
from lc0distill.config import RunConfig
from lc0distill.shards.select import select_sources
from lc0distill.training.state import DataStream, RunState, chain_digest

AUTO_REPLAY_RECORDS = 20_000_000  # about a minute of reading: beyond it, resume_data=auto starts a new stream


class RunData:
    """The run's sources (train and held-out) and the loaders reading them for this rank."""

    def __init__(self, config: RunConfig, rank: int, world: int, rank_batch_size: int, device: torch.device,
                 log: Callable[[str], None]):
        self.config, self.rank, self.world, self.device, self.log = config, rank, world, device, log
        self.rank_batch_size = rank_batch_size
        selected = select_sources(config.data)
        self.train_sources, self.test_sources = selected.train, selected.test
        self.origin_name = selected.origin_name  # names the chunks behind shard positions
        for problem in selected.unreadable:
            log(f"warning: skipped: {problem}")
        self.unreadable_files = len(selected.unreadable)
        self.keep_records = None  # a teacher cache of sampled records: only those are read
        self.train_loader = self.test_loader = None

    def batches(self, state: RunState) -> Iterator[Batch]:
        """Training batches from where the run stands: the current stream is replayed to the batch reached
        (skipped batches are not expanded), or a new stream starts there (train.resume_data). Advances the
        state's data position and digest as batches are taken."""
        skip = state.batches_consumed - state.stream.start
        if skip and self._reseed(skip):
            state.stream = DataStream(start=state.batches_consumed, seed_offset=2 + state.batches_consumed)
            self.log(f"data: a new stream from batch {state.batches_consumed} (seed offset "
                     f"{state.stream.seed_offset}) instead of re-reading {skip:,} batches")
            skip = 0
        config = self.config
        data = config.data.model_copy(update={"batch_size": self.rank_batch_size})
        loader = make_loader(data, self.train_sources, passes=None, rank=self.rank,
                             world_size=self.world, device=str(self.device), seed_offset=state.stream.seed_offset,
                             needs_q=config.loss.q_ratio > 0, keep=self.keep_records, origin_name=self.origin_name)
        self.train_loader = loader
        net_format = config.net.input_format
        for packed in loader.packed_batches():
            if skip:
                skip -= 1
                continue
            state.batches_consumed += 1
            state.data_digest = chain_digest(state.data_digest, packed)
            check_batch_formats(net_format, packed["input_format"], packed["chunk"], loader.source_name,
                                "the student (net.input_format)")
            yield make_batch(packed, self.device, config.data.q_source, config.data.rule50)

    def _reseed(self, skip: int) -> bool:
        mode = self.config.train.resume_data
        if mode != "auto":
            return mode == "reseed"
        return skip * self.rank_batch_size * self.config.data.sample_rate > AUTO_REPLAY_RECORDS

    def test_batches(self) -> Iterator[Batch]:
        loader = make_loader(self.config.data, self.test_sources, passes=1, device=str(self.device), sample_rate=1,
                             seed_offset=1, origin_name=self.origin_name)
        self.test_loader = loader
        return iter(loader)
