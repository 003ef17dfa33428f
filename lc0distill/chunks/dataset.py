"""Stream chunks into shuffled batches: sampling, a shuffle buffer, worker processes and DDP-rank shards.

Each pass orders the chunks by a seeded permutation; chunk k of that order belongs to shard
k mod (ranks x workers), so no two workers or ranks read the same chunk. A shard reads its chunks whole,
keeps each record with probability 1/sample_rate, pushes the packed positions through its share of the
shuffle buffer (capacity / workers slots, each displaced position is emitted: lczero's scheme), and emits
fixed-size batches of packed positions. Results are the same for the same seed, worker count and rank
count. Memory: POSITION_DTYPE.itemsize (2,232) bytes per buffered position, plus one chunk being read.

Bad chunks are skipped, logged and reported back with the next batch, or raised with strict=True; so are bad
records (not chess, non-finite or out of range, chunks/validate.py), each chunk's counted and the first named.
Every position carries its source number and record index, so whoever finds a bad batch can say where it
came from. A shard that reads a whole pass without one usable position stops with an error instead of
looping forever (all its chunks bad, or everything sampled away).
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from lc0distill.chess.expand import Rule50Scale
from lc0distill.chunks.batch import Batch, make_batch
from lc0distill.chunks.packed import POSITION_DTYPE, legal_entries, pack_records
from lc0distill.chunks.reader import MAX_CHUNK_RECORDS, read_chunk
from lc0distill.chunks.sources import ChunkSource
from lc0distill.chunks.targets import QSource
from lc0distill.chunks.validate import BadRecords, find_bad_records, required_q_version
from lc0distill.errors import ChunkError, Lc0DistillError

log = logging.getLogger("lc0distill.data")


class _CommandLineWarnings(logging.Handler):
    """Where no one has configured logging (the lc0distill command), warnings go to stderr as the command writes
    its own, `lc0distill: warning: ...`, instead of as logging's bare last-resort line; otherwise they only
    propagate to the handlers configured."""

    def emit(self, record: logging.LogRecord) -> None:
        if not logging.getLogger().handlers and record.levelno >= logging.WARNING:
            print(f"lc0distill: warning: {record.getMessage()}", file=sys.stderr)


log.addHandler(_CommandLineWarnings())

EMPTY_PASSES_ALLOWED = 3  # passes over the data without one usable position before an endless stream gives up


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
    q_source: QSource | None = None  # the q/d pair the value target reads (records without it are bad)
    max_chunk_records: int = MAX_CHUNK_RECORDS
    # source number -> the record numbers to read (ascending), instead of sampling: the records a teacher
    # cache made with sampling holds; a source not named gives nothing
    keep: dict[int, np.ndarray] | None = None
    # shard blocks were sampled when they were repacked, so training reads them whole; True samples them too
    # at sample_rate (`lc0distill evaluate --sample-rate` on a shard folder's held-out side)
    sample_shards: bool = False


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


def shard_order(spec: StreamSpec, pass_index: int, shard: int, shards: int) -> list[int]:
    """The chunks (indices into spec.sources) one shard reads in one pass."""
    order = np.random.default_rng([spec.seed, pass_index]).permutation(len(spec.sources))
    return [int(i) for i in order[shard::shards]]


@dataclass
class Problems:
    """What a shard did and found wrong since its last item: chunks read (and how many of them could be),
    positions packed, bad chunks (their errors), bad records (how many, and the first few named). The main
    process sums the reads over all its shards to tell a data set that gives nothing from a slow one."""

    chunks_read: int = 0
    readable: int = 0
    positions: int = 0
    bad_chunks: list[str] = field(default_factory=list)
    bad_records: int = 0
    bad_record_examples: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"chunks_read": self.chunks_read, "readable": self.readable, "positions": self.positions,
                "bad_chunks": self.bad_chunks, "bad_records": self.bad_records,
                "bad_record_examples": self.bad_record_examples}

    def __bool__(self) -> bool:
        return bool(self.chunks_read or self.bad_chunks or self.bad_records)


MAX_EXAMPLES = 3  # bad records named per report; all are counted


@dataclass
class _Emitter:
    """Cuts a stream of packed positions into batches, carrying the problems found along."""

    batch_size: int
    pending: list[np.ndarray] = field(default_factory=list)
    pending_count: int = 0
    problems: Problems = field(default_factory=Problems)

    def add(self, items: np.ndarray) -> Iterator[tuple[torch.Tensor, dict]]:
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

    def finish(self, drop_last: bool) -> Iterator[tuple[torch.Tensor, dict]]:
        rest = np.concatenate(self.pending) if self.pending else np.empty(0, POSITION_DTYPE)
        self.pending, self.pending_count = [], 0
        if len(rest) and not drop_last:
            yield self._payload(rest)
        if self.problems:
            yield self._payload(np.empty(0, POSITION_DTYPE))

    def report(self) -> Iterator[tuple[torch.Tensor, dict]]:
        """What was read and found since the last item, without positions (once per pass: a shard whose
        chunks give nothing still tells the main process so)."""
        if self.problems:
            yield self._payload(np.empty(0, POSITION_DTYPE))

    def _payload(self, positions: np.ndarray) -> tuple[torch.Tensor, dict]:
        problems, self.problems = self.problems, Problems()
        return torch.from_numpy(np.ascontiguousarray(positions).view(np.uint8)), problems.as_dict()


def _read_positions(index: int, spec: StreamSpec, rng: np.random.Generator, emitter: _Emitter) -> np.ndarray | None:
    """The sampled, valid records of source `index`, packed; None when the chunk cannot be read."""
    source = spec.sources[index]
    emitter.problems.chunks_read += 1
    if hasattr(source, "read_packed"):
        return _read_packed_source(index, spec, rng, emitter)
    chunk = _read_or_skip(lambda: read_chunk(source, spec.max_chunk_records), "chunk", spec, emitter)
    if chunk is None:
        return None
    records = chunk.records
    numbers = np.arange(len(records), dtype=np.uint32)
    if spec.keep is not None:
        kept = np.isin(numbers, spec.keep.get(index, numbers[:0]), assume_unique=True)
        records, numbers = records[kept], numbers[kept]
    elif spec.sample_rate > 1:
        kept = rng.random(len(records)) < 1.0 / spec.sample_rate
        records, numbers = records[kept], numbers[kept]
    entries = legal_entries(records["probabilities"])
    bad = find_bad_records(records, spec.q_source, entries)
    packed = pack_records(records, entries, chunk=index, record_numbers=numbers)
    if len(bad):
        first = int(bad.indices[0])
        if spec.strict:
            raise ChunkError(source.name, bad.reasons[0], record=int(numbers[first]), field=bad.fields[0])
        _report_bad_records(source, bad, numbers, emitter.problems)
        packed = np.delete(packed, bad.indices)
    emitter.problems.readable += 1
    emitter.problems.positions += len(packed)
    return packed


def _read_or_skip(read, what: str, spec: StreamSpec, emitter: _Emitter):
    """read(), or None for a source that cannot be read (counted and logged); strict runs stop on it."""
    try:
        return read()
    except ChunkError as error:
        if spec.strict:
            raise
        log.warning("skipping bad %s: %s", what, error)
        emitter.problems.bad_chunks.append(str(error))
        return None


def _read_packed_source(index: int, spec: StreamSpec, rng: np.random.Generator,
                        emitter: _Emitter) -> np.ndarray | None:
    """A source that gives packed positions, sampled and checked when they were written (a shard block,
    lc0distill/shards): read whole (unless spec.sample_shards); only the value target's q/d pair is checked
    here. Its positions' `chunk` numbers count from len(spec.sources) (BatchLoader.source_name names them)."""
    source = spec.sources[index]
    packed = _read_or_skip(source.read_packed, "shard block", spec, emitter)
    if packed is None:
        return None
    packed["chunk"] += np.uint32(len(spec.sources))
    if spec.sample_shards and spec.sample_rate > 1:
        packed = packed[rng.random(len(packed)) < 1.0 / spec.sample_rate]
    if spec.q_source is not None:
        pair = QSource(spec.q_source).value
        bad = np.flatnonzero((packed["version"] < required_q_version(spec.q_source)) | np.isnan(packed[f"{pair}_q"]))
        if len(bad):
            reason = f"the value target reads {pair}_q, which this record does not store"
            if spec.strict:
                raise ChunkError(source.name, reason, record=int(bad[0]), field=f"{pair}_q")
            emitter.problems.bad_records += len(bad)
            room = MAX_EXAMPLES - len(emitter.problems.bad_record_examples)
            emitter.problems.bad_record_examples += [str(ChunkError(source.name, reason, record=int(i), field=f"{pair}_q"))
                                                     for i in bad[:max(room, 0)]]
            log.warning("skipping %d positions of %s without %s_q", len(bad), source.name, pair)
            packed = np.delete(packed, bad)
    emitter.problems.readable += 1
    emitter.problems.positions += len(packed)
    return packed


def _report_bad_records(source: ChunkSource, bad: BadRecords, numbers: np.ndarray, problems: Problems) -> None:
    problems.bad_records += len(bad)
    room = MAX_EXAMPLES - len(problems.bad_record_examples)
    for i, fieldname, reason in list(zip(bad.indices, bad.fields, bad.reasons))[:max(room, 0)]:
        problems.bad_record_examples.append(str(ChunkError(source.name, reason, record=int(numbers[i]), field=fieldname)))
    log.warning("skipping %d bad records of %s", len(bad), source.name)


def stream_shard(spec: StreamSpec, worker: int = 0, workers: int = 1) -> Iterator[tuple[torch.Tensor, dict]]:
    """(packed positions as a uint8 tensor, what was read and found since the last item) of one shard."""
    shard, shards = spec.rank * workers + worker, spec.world_size * workers
    rng = np.random.default_rng([spec.seed, shard, shards, 1])
    buffer = ShuffleBuffer(spec.shuffle_buffer // workers, rng)
    emitter = _Emitter(spec.batch_size)
    pass_index = 0
    while spec.passes is None or pass_index < spec.passes:
        for index in shard_order(spec, pass_index, shard, shards):
            packed = _read_positions(index, spec, rng, emitter)
            if packed is not None:
                yield from emitter.add(buffer.push(packed))
        if spec.passes is None:
            yield from emitter.report()
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
        if info is None:  # in the main process: its errors are raised as they are
            return stream_shard(self.spec)
        return _errors_as_items(stream_shard(self.spec, info.id, info.num_workers))


WORKER_ERROR = "error"  # the key of an item that carries a worker's lc0distill error (strict-mode chunk errors)


def _errors_as_items(items: Iterator[tuple[torch.Tensor, dict]]) -> Iterator[tuple[torch.Tensor, dict]]:
    """A worker's items, and its lc0distill error as a last item: DataLoader would re-raise it in the main
    process as a RuntimeError holding the traceback's text (ChunkError cannot be made from one string)."""
    try:
        yield from items
    except Lc0DistillError as error:
        yield torch.empty(0, dtype=torch.uint8), {WORKER_ERROR: str(error)}


def _one_torch_thread(_worker: int) -> None:
    """Workers read and pack with numpy; torch's intra-op threads there would only fight the trainer's."""
    torch.set_num_threads(1)


class BatchLoader:
    """Batches for training or evaluation, built on `device` from worker-packed positions.

    `bad_chunks` collects the errors of the chunks skipped so far (each named once), `bad_records` counts
    the records skipped and `bad_record_examples` names the first few (chunk, record, field).
    """

    def __init__(self, spec: StreamSpec, workers: int = 2, device: torch.device | str = "cpu",
                 q_source: QSource = QSource.BEST, rule50: Rule50Scale = Rule50Scale.ENGINE,
                 origin_name: Callable[[int], str] | None = None):
        self.spec = spec
        self.origin_name = origin_name  # names the chunks of shard folders (lc0distill/shards/select.py)
        self.workers = workers
        self.device = torch.device(device)
        self.q_source = q_source
        self.rule50 = rule50
        self.bad_chunks: list[str] = []
        self.bad_records = 0
        self.bad_record_examples: list[str] = []
        self.positions = 0
        self._reads_without_positions = 0  # chunks read (all shards) since the last usable position
        self._readable_without_positions = 0

    def _check_shards(self) -> None:
        shards = self.spec.world_size * max(self.workers, 1)
        if self.spec.passes is None and len(self.spec.sources) < shards:
            most = len(self.spec.sources) // self.spec.world_size
            fix = f"set data.workers to at most {most} or give more chunks" if most else \
                f"give at least {self.spec.world_size} chunks (one per rank)"
            raise Lc0DistillError(f"{len(self.spec.sources)} chunks cannot feed {shards} loader shards (ranks x "
                                  f"data.workers) forever: {fix}")

    def packed_batches(self) -> Iterator[np.ndarray]:
        """(B,) POSITION_DTYPE arrays, before expansion."""
        self._check_shards()
        loader = DataLoader(ChunkStream(self.spec), batch_size=None, num_workers=self.workers,
                            pin_memory=self.device.type == "cuda", prefetch_factor=4 if self.workers else None,
                            worker_init_fn=_one_torch_thread if self.workers else None)
        stream = iter(loader)
        while True:
            try:
                payload, problems = next(stream)
            except StopIteration:
                return
            if WORKER_ERROR in problems:  # a worker's lc0distill error, said in one line as in the main process
                raise Lc0DistillError(problems[WORKER_ERROR])
            self._note(problems)
            if payload.numel():
                positions = payload.numpy().view(POSITION_DTYPE)
                self.positions += len(positions)
                yield positions

    def _note(self, problems: dict) -> None:
        self.bad_chunks.extend(problems["bad_chunks"])
        self.bad_records += problems["bad_records"]
        room = MAX_EXAMPLES - len(self.bad_record_examples)
        self.bad_record_examples.extend(problems["bad_record_examples"][:max(room, 0)])
        if problems["positions"]:
            self._reads_without_positions = self._readable_without_positions = 0
        else:
            self._reads_without_positions += problems["chunks_read"]
            self._readable_without_positions += problems["readable"]
        self._check_progress()

    def _check_progress(self) -> None:
        """An endless stream whose chunks gave no usable position in EMPTY_PASSES_ALLOWED passes' worth of
        reads (over all of this rank's shards) can never give a batch: stop instead of reading forever."""
        per_pass = -(-len(self.spec.sources) // self.spec.world_size)
        if self.spec.passes is not None or self._reads_without_positions < EMPTY_PASSES_ALLOWED * per_pass:
            return
        reads = self._reads_without_positions
        if not self._readable_without_positions:
            first = self.bad_chunks[-1] if self.bad_chunks else "?"
            raise Lc0DistillError(f"training data: none of the {per_pass} chunks can be read ({reads} reads in "
                                  f"{EMPTY_PASSES_ALLOWED} passes; last: {first})")
        raise Lc0DistillError(f"training data: {reads} chunk reads ({EMPTY_PASSES_ALLOWED} passes over {per_pass} "
                              f"chunks) gave no usable position (sample_rate {self.spec.sample_rate}; "
                              f"{self.bad_records} bad records skipped)")

    def source_name(self, index: int) -> str:
        """The chunk a position's `chunk` number names: one of the sources, or (numbers from len(sources) on)
        a chunk of a shard folder's table, the record number being the record in that chunk."""
        if index < len(self.spec.sources):
            return self.spec.sources[index].name
        number = index - len(self.spec.sources)
        return self.origin_name(number) if self.origin_name is not None else f"chunk {number} of a shard folder"

    def __iter__(self) -> Iterator[Batch]:
        for packed in self.packed_batches():
            yield make_batch(packed, self.device, self.q_source, self.rule50)
