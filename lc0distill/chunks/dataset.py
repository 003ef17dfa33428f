"""Stream chunks into shuffled batches: sampling, a shuffle buffer, worker processes and DDP-rank shards.

Each pass orders the chunks by a seeded permutation; chunk k of that order belongs to shard
k mod (ranks x workers), so no two workers or ranks read the same chunk. A shard reads its chunks whole,
keeps each record with probability 1/sample_rate, pushes the packed positions through its share of the
shuffle buffer (capacity / workers slots, each displaced position is emitted: lczero's scheme), and emits
fixed-size batches of packed positions. Results are the same for the same seed, worker count and rank
count. Memory: POSITION_DTYPE.itemsize (2,224) bytes per buffered position, plus one chunk being read.

Bad chunks are skipped, logged and reported back with the next batch, or raised with strict=True.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from lc0distill.chess.expand import Rule50Scale
from lc0distill.chunks.batch import Batch, make_batch
from lc0distill.chunks.packed import POSITION_DTYPE, pack_records
from lc0distill.chunks.reader import read_chunk
from lc0distill.chunks.sources import ChunkSource
from lc0distill.chunks.targets import QSource
from lc0distill.errors import ChunkError

log = logging.getLogger("lc0distill.data")


@dataclass(frozen=True)
class StreamSpec:
    """Everything a worker needs to produce its shard of the stream (picklable)."""

    sources: tuple[ChunkSource, ...]
    batch_size: int
    sample_rate: int = 32  # keep about 1 record in sample_rate; 1 keeps every record
    shuffle_buffer: int = 131072  # positions, shared out among the workers
    seed: int = 0
    passes: int | None = None  # None: stream forever, reshuffling the chunk order every pass
    rank: int = 0
    world_size: int = 1
    strict: bool = False
    drop_last: bool = False  # False: the end of the last pass gives one short batch


class ShuffleBuffer:
    """Fixed slots; a new position replaces a random resident, which is emitted (after the buffer fills).

    Slots are moved as raw byte rows (`take` and row assignment), several times faster than fancy
    indexing on the structured dtype.
    """

    def __init__(self, capacity: int, rng: np.random.Generator):
        self.data = np.empty(capacity, dtype=POSITION_DTYPE)
        self.rows = self.data.view(np.uint8).reshape(capacity, POSITION_DTYPE.itemsize)
        self.size = 0
        self.rng = rng

    def push(self, items: np.ndarray) -> np.ndarray:
        capacity = len(self.data)
        if capacity == 0:
            return items
        take = min(capacity - self.size, len(items))
        self.data[self.size : self.size + take] = items[:take]
        self.size += take
        items = items[take:]
        emitted = []
        while len(items):
            count = min(len(items), capacity)
            slots = self.rng.choice(capacity, size=count, replace=False)
            emitted.append(_positions(self.rows.take(slots, axis=0)))
            self.rows[slots] = _rows(items[:count])
            items = items[count:]
        return np.concatenate(emitted) if len(emitted) > 1 else (emitted[0] if emitted else items)

    def drain(self) -> np.ndarray:
        out = _positions(self.rows.take(self.rng.permutation(self.size), axis=0))
        self.size = 0
        return out


def _rows(positions: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(positions).view(np.uint8).reshape(len(positions), POSITION_DTYPE.itemsize)


def _positions(rows: np.ndarray) -> np.ndarray:
    return rows.view(POSITION_DTYPE).reshape(len(rows))


def shard_order(spec: StreamSpec, pass_index: int, shard: int, shards: int) -> list[ChunkSource]:
    """The chunks one shard reads in one pass."""
    order = np.random.default_rng([spec.seed, pass_index]).permutation(len(spec.sources))
    return [spec.sources[i] for i in order[shard::shards]]


@dataclass
class _Emitter:
    """Cuts a stream of packed positions into batches, carrying bad-chunk names along."""

    batch_size: int
    pending: list[np.ndarray] = field(default_factory=list)
    pending_count: int = 0
    bad: list[str] = field(default_factory=list)

    def add(self, items: np.ndarray) -> Iterator[tuple[torch.Tensor, list[str]]]:
        if len(items):
            self.pending.append(items)
            self.pending_count += len(items)
        while self.pending_count >= self.batch_size:
            yield self._payload(self._take(self.batch_size))

    def _take(self, count: int) -> np.ndarray:
        """The first `count` pending positions; only the pieces used are copied, never the rest."""
        parts = []
        while count:
            head = self.pending[0]
            if len(head) <= count:
                parts.append(self.pending.pop(0))
                count -= len(head)
            else:
                parts.append(head[:count])
                self.pending[0] = head[count:]
                count = 0
        batch = np.concatenate(parts)
        self.pending_count -= len(batch)
        return batch

    def finish(self, drop_last: bool) -> Iterator[tuple[torch.Tensor, list[str]]]:
        rest = np.concatenate(self.pending) if self.pending else np.empty(0, POSITION_DTYPE)
        self.pending, self.pending_count = [], 0
        if len(rest) and not drop_last:
            yield self._payload(rest)
        if self.bad:
            yield self._payload(np.empty(0, POSITION_DTYPE))

    def _payload(self, positions: np.ndarray) -> tuple[torch.Tensor, list[str]]:
        bad, self.bad = self.bad, []
        return torch.from_numpy(np.ascontiguousarray(positions).view(np.uint8)), bad


def _read_positions(source: ChunkSource, spec: StreamSpec, rng: np.random.Generator, emitter: _Emitter) -> np.ndarray:
    try:
        records = read_chunk(source).records
    except ChunkError as error:
        if spec.strict:
            raise
        log.warning("skipping bad chunk: %s", error)
        emitter.bad.append(str(error))
        return np.empty(0, POSITION_DTYPE)
    if spec.sample_rate > 1:
        records = records[rng.random(len(records)) < 1.0 / spec.sample_rate]
    return pack_records(records)


def stream_shard(spec: StreamSpec, worker: int = 0, workers: int = 1) -> Iterator[tuple[torch.Tensor, list[str]]]:
    """(packed positions as a uint8 tensor, names of chunks found bad since the last item) of one shard."""
    shard, shards = spec.rank * workers + worker, spec.world_size * workers
    rng = np.random.default_rng([spec.seed, shard, shards, 1])
    buffer = ShuffleBuffer(spec.shuffle_buffer // workers, rng)
    emitter = _Emitter(spec.batch_size)
    if spec.passes is None and len(spec.sources) < shards:
        raise ValueError(f"{len(spec.sources)} chunks cannot feed {shards} shards (ranks x workers) forever: "
                         "use fewer workers or more chunks")
    pass_index = 0
    while spec.passes is None or pass_index < spec.passes:
        order = shard_order(spec, pass_index, shard, shards)
        for source in order:
            yield from emitter.add(buffer.push(_read_positions(source, spec, rng, emitter)))
        pass_index += 1
    yield from emitter.add(buffer.drain())
    yield from emitter.finish(spec.drop_last)


class ChunkStream(IterableDataset):
    """torch IterableDataset over packed batches; each DataLoader worker streams its own shard."""

    def __init__(self, spec: StreamSpec):
        super().__init__()
        self.spec = spec

    def __iter__(self) -> Iterator[tuple[torch.Tensor, list[str]]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return stream_shard(self.spec, worker, workers)


def _one_torch_thread(_worker: int) -> None:
    """Workers read and pack with numpy; torch's intra-op threads there would only fight the trainer's."""
    torch.set_num_threads(1)


class BatchLoader:
    """Batches for training or evaluation, built on `device` from worker-packed positions.

    `bad_chunks` collects the errors of the chunks skipped so far (each named once).
    """

    def __init__(self, spec: StreamSpec, workers: int = 2, device: torch.device | str = "cpu",
                 q_source: QSource = QSource.BEST, rule50: Rule50Scale = Rule50Scale.ENGINE):
        self.spec = spec
        self.workers = workers
        self.device = torch.device(device)
        self.q_source = q_source
        self.rule50 = rule50
        self.bad_chunks: list[str] = []
        self.positions = 0

    def packed_batches(self) -> Iterator[np.ndarray]:
        """(B,) POSITION_DTYPE arrays, before expansion."""
        loader = DataLoader(ChunkStream(self.spec), batch_size=None, num_workers=self.workers,
                            pin_memory=self.device.type == "cuda", prefetch_factor=4 if self.workers else None,
                            worker_init_fn=_one_torch_thread if self.workers else None)
        for payload, bad in loader:
            self.bad_chunks.extend(bad)
            if payload.numel():
                positions = payload.numpy().view(POSITION_DTYPE)
                self.positions += len(positions)
                yield positions

    def __iter__(self) -> Iterator[Batch]:
        for packed in self.packed_batches():
            yield make_batch(packed, self.device, self.q_source, self.rule50)

