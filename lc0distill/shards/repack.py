"""`data repack`: chunks -> pre-shuffled position shards, paid once for every epoch and every run after.

Plan (deterministic, from the chunk names, the settings and a probe of a few chunks): chunks are split into
train and held-out by name exactly as training splits them (selection.split_train_test), each side is put in
a seeded random order and cut into groups of about `shard_positions` sampled positions' worth of chunks. One
group becomes one shard: its chunks are read, sampled (each record kept with probability 1/sample_rate, from a
generator seeded by the seed and the chunk's name, so the same records whatever --jobs is; the held-out side
keeps every record, as evaluation reads held-out chunks whole), checked (bad records dropped, counted), packed,
shuffled together and written in blocks (format.py). Groups run in a process pool (--jobs).

Resuming: a finished group leaves its shard and a small sidecar (shard-NNNNNN.json), both written atomically;
run again with the same data and settings, the repack does only the groups without one. The index is written
last, from the sidecars. Another plan in the same folder (other data or settings) is an error, never a mix.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from lc0distill.chunks.packed import legal_entries, pack_records
from lc0distill.chunks.reader import MAX_CHUNK_RECORDS, read_chunk
from lc0distill.chunks.selection import split_train_test
from lc0distill.chunks.sources import ChunkSource
from lc0distill.chunks.validate import find_bad_records
from lc0distill.errors import ChunkError, Lc0DistillError
from lc0distill.fileio import write_atomic
from lc0distill.shards.format import encode_block
from lc0distill.shards.index import INDEX_FORMAT, INDEX_NAME, INDEX_VERSION

PLAN_NAME = ".repack-plan.json"
BLOCK_POSITIONS = 4096  # most positions per block: zstd gains little beyond, and a block is what a worker reads
MIN_BLOCK_POSITIONS = 256
BLOCKS_PER_SHARD = 64  # small shards are cut finer, so that several loader workers and ranks can share them
PROBE_CHUNKS = 16  # chunks read to estimate how many positions a chunk gives
MAX_EXAMPLES = 3
SIDES = ("train", "test")


@dataclass(frozen=True)
class RepackSettings:
    sample_rate: int = 32  # the training side keeps about 1 record in sample_rate (lczero's default 32)
    shard_positions: int = 65536  # about this many positions per shard
    test_ratio: float = 0.05  # share of chunks held out by name, as data.test_ratio
    seed: int = 0
    strict: bool = False  # stop at the first bad chunk or record instead of skipping it
    max_chunk_records: int = MAX_CHUNK_RECORDS


@dataclass(frozen=True)
class Group:
    """The chunks (numbers in the folder's chunk table) one shard is made of."""

    side: str
    number: int
    chunks: tuple[int, ...]

    @property
    def file(self) -> str:
        return f"shard-{self.number:06d}.zst"


@dataclass
class RepackResult:
    out: Path
    index: dict
    groups_done_before: int  # finished by an earlier, interrupted run
    seconds: float
    bad_chunks: list[str] = field(default_factory=list)


def chunk_seed(seed: int, name: str) -> list[int]:
    """The sampling generator's seed of one chunk: its name, not its place in the list or the job reading it."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return [seed, int.from_bytes(digest, "little")]


def block_positions(positions: int) -> int:
    return min(BLOCK_POSITIONS, max(MIN_BLOCK_POSITIONS, math.ceil(positions / BLOCKS_PER_SHARD)))


# ----------------------------------------------------------------------------------------------- plan

def plan_groups(sources: list[ChunkSource], settings: RepackSettings,
                test: set[int]) -> tuple[list[Group], dict[str, float]]:
    """Groups of both sides, and the positions per chunk each side's probe found."""
    groups, estimates = [], {}
    for side in SIDES:
        members = np.array([i for i in range(len(sources)) if (i in test) == (side == "test")], dtype=np.int64)
        if not len(members):
            continue
        order = members[np.random.default_rng([settings.seed, SIDES.index(side)]).permutation(len(members))]
        keep = 1.0 if side == "test" else 1.0 / settings.sample_rate
        estimate = _probe(sources, order[:PROBE_CHUNKS], settings.max_chunk_records) * keep
        estimates[side] = estimate
        per_group = max(1, round(settings.shard_positions / max(estimate, 1e-9)))
        for number, start in enumerate(range(0, len(order), per_group)):
            groups.append(Group(side, number, tuple(int(i) for i in order[start : start + per_group])))
    return groups, estimates


def _probe(sources: list[ChunkSource], numbers: Iterable[int], max_records: int) -> float:
    """Records per chunk over a few chunks (unreadable ones count as none)."""
    counts = []
    for number in numbers:
        try:
            counts.append(len(read_chunk(sources[number], max_records).records))
        except ChunkError:
            counts.append(0)
    return float(np.mean(counts)) if counts else 0.0


def _plan_document(names: list[str], settings: RepackSettings, groups: list[Group]) -> dict:
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()
    return {"settings": asdict(settings), "chunks": len(names), "chunk_names_sha256": digest,
            "groups": [[g.side, g.number, list(g.chunks)] for g in groups]}


def _check_or_write_plan(out: Path, plan: dict) -> None:
    path = out / PLAN_NAME
    if path.is_file():
        try:
            earlier = json.loads(path.read_text())
        except ValueError:
            earlier = None
        if earlier != plan:
            what = "other settings" if earlier and earlier.get("settings") != plan["settings"] else "other data"
            raise Lc0DistillError(f"{out}: holds a repack of {what} (see {PLAN_NAME}): give another --out, or "
                                  "delete the folder to start again")
        return
    if any(out.glob("*/shard-*.zst")) or (out / INDEX_NAME).exists():
        raise Lc0DistillError(f"{out}: holds shards without a repack plan: give another --out")
    write_atomic(path, json.dumps(plan).encode())


# ----------------------------------------------------------------------------------------------- one group

def repack_group(group: Group, sources: list[ChunkSource], settings: RepackSettings, out: Path) -> dict:
    """Read, sample, check, pack and shuffle one group's chunks; write its shard and sidecar; the sidecar."""
    parts, chunk_rows, bad_chunks = [], [], []
    bad_records, bad_examples, source_bytes = 0, [], 0
    sample = group.side == "train" and settings.sample_rate > 1
    for number in group.chunks:
        source = sources[number]
        try:
            records = read_chunk(source, settings.max_chunk_records).records
        except ChunkError as error:
            if settings.strict:
                raise
            bad_chunks.append(str(error))
            chunk_rows.append([number, 0, 0])
            continue
        source_bytes += _stored_bytes(source)
        read = len(records)
        numbers = np.arange(read, dtype=np.uint32)
        if sample:
            kept = np.random.default_rng(chunk_seed(settings.seed, source.name)).random(len(records)) \
                < 1.0 / settings.sample_rate
            records, numbers = records[kept], numbers[kept]
        entries = legal_entries(records["probabilities"])
        bad = find_bad_records(records, None, entries)
        packed = pack_records(records, entries, chunk=number, record_numbers=numbers)
        if len(bad):
            first = int(bad.indices[0])
            if settings.strict:
                raise ChunkError(source.name, bad.reasons[0], record=int(numbers[first]), field=bad.fields[0])
            bad_records += len(bad)
            for i, name, reason in list(zip(bad.indices, bad.fields, bad.reasons))[:MAX_EXAMPLES - len(bad_examples)]:
                bad_examples.append(str(ChunkError(source.name, reason, record=int(numbers[i]), field=name)))
            packed = np.delete(packed, bad.indices)
        chunk_rows.append([number, read, len(packed)])
        parts.append(packed)
    positions = np.concatenate(parts) if parts else np.empty(0)
    sidecar = {"file": None, "positions": int(len(positions)), "bytes": 0, "blocks": [], "versions": {},
               "input_formats": {}, "chunks": chunk_rows, "bad_chunks": bad_chunks, "bad_records": bad_records,
               "bad_record_examples": bad_examples, "source_bytes": source_bytes}
    if len(positions):
        positions = positions[np.random.default_rng([settings.seed, SIDES.index(group.side), group.number, 7])
                              .permutation(len(positions))]
        blocks, offset, step = [], 0, block_positions(len(positions))
        for start in range(0, len(positions), step):
            data = encode_block(positions[start : start + step])
            sidecar["blocks"].append([offset, len(data), int(min(step, len(positions) - start))])
            blocks.append(data)
            offset += len(data)
        write_atomic(out / group.side / group.file, b"".join(blocks))
        sidecar.update(file=group.file, bytes=offset,
                       versions=_counts(positions["version"]), input_formats=_counts(positions["input_format"]))
    write_atomic(_sidecar_path(out, group), json.dumps(sidecar).encode())
    return sidecar


def _counts(values: np.ndarray) -> dict[str, int]:
    return {str(k): int(v) for k, v in sorted(Counter(values.tolist()).items())}


def _stored_bytes(source: ChunkSource) -> int:
    if source.size is not None:
        return int(source.size)
    try:
        return os.stat(source.path).st_size if source.member is None else 0
    except OSError:
        return 0


def _sidecar_path(out: Path, group: Group) -> Path:
    return out / group.side / group.file.replace(".zst", ".json")


def _finished(out: Path, group: Group) -> dict | None:
    """The sidecar of a group an earlier run finished (its shard there, at its size), else None."""
    path = _sidecar_path(out, group)
    try:
        sidecar = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if sidecar.get("file") and (not (out / group.side / sidecar["file"]).is_file()
                                or (out / group.side / sidecar["file"]).stat().st_size != sidecar.get("bytes")):
        return None
    return sidecar


# ----------------------------------------------------------------------------------------------- the whole job

def repack(sources: list[ChunkSource], out: Path, settings: RepackSettings, jobs: int = 1,
           on_progress: Callable[[int, int, int], None] | None = None,
           listing_errors: Iterable[str] = ()) -> RepackResult:
    """Repack `sources` into `out`. on_progress(chunks done, chunks in all, positions written by this call)."""
    started = time.perf_counter()
    sources = _unique(sources)
    if not sources:
        raise Lc0DistillError("data repack: no chunks to repack")
    names = [s.name for s in sources]
    _, test = split_train_test(sources, settings.test_ratio)
    test_numbers = _numbers(names, test)
    out.mkdir(parents=True, exist_ok=True)
    for side in SIDES:
        (out / side).mkdir(exist_ok=True)
    groups, estimates = plan_groups(sources, settings, test_numbers)
    _check_or_write_plan(out, _plan_document(names, settings, groups))
    sidecars: dict[tuple[str, int], dict] = {}
    for group in groups:
        done = _finished(out, group)
        if done is not None:
            sidecars[group.side, group.number] = done
    done_before = len(sidecars)
    total_chunks = len(sources)

    earlier = sum(s["positions"] for s in sidecars.values())

    def progress() -> None:
        if on_progress:
            chunks = sum(len(s["chunks"]) for s in sidecars.values())
            on_progress(chunks, total_chunks, sum(s["positions"] for s in sidecars.values()) - earlier)

    progress()
    todo = [g for g in groups if (g.side, g.number) not in sidecars]
    if jobs <= 1 or len(todo) <= 1:
        for group in todo:
            sidecars[group.side, group.number] = repack_group(group, sources, settings, out)
            progress()
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            running = {pool.submit(repack_group, g, sources, settings, out): g for g in todo}
            while running:
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    group = running.pop(future)
                    sidecars[group.side, group.number] = future.result()
                    progress()
    index = _index(names, test_numbers, settings, groups, sidecars, estimates, list(listing_errors))
    write_atomic(out / INDEX_NAME, json.dumps(index, indent=1).encode())
    bad = [e for s in sidecars.values() for e in s["bad_chunks"]]
    return RepackResult(out, index, done_before, time.perf_counter() - started, bad)


def _unique(sources: list[ChunkSource]) -> list[ChunkSource]:
    """Sorted by name, each chunk once (a path given twice, or a folder and a file in it)."""
    seen: dict[str, ChunkSource] = {}
    for source in sources:
        seen.setdefault(source.name, source)
    return [seen[name] for name in sorted(seen)]


def _numbers(names: list[str], chosen: list[ChunkSource]) -> set[int]:
    position = {name: i for i, name in enumerate(names)}
    return {position[s.name] for s in chosen}


def _index(names: list[str], test: set[int], settings: RepackSettings, groups: list[Group],
           sidecars: dict[tuple[str, int], dict], estimates: dict[str, float], listing_errors: list[str]) -> dict:
    chunks = [[name, 0, 0, "test" if i in test else "train"] for i, name in enumerate(names)]
    shards: dict[str, list[dict]] = {side: [] for side in SIDES}
    for group in groups:
        sidecar = sidecars[group.side, group.number]
        for number, read, kept in sidecar["chunks"]:
            chunks[number][1:3] = [read, kept]
        if sidecar["file"]:
            shards[group.side].append({key: sidecar[key] for key in
                                       ("file", "positions", "bytes", "versions", "input_formats", "blocks")})
    all_sidecars = list(sidecars.values())
    return {
        "format": INDEX_FORMAT, "version": INDEX_VERSION,
        "sampling": {"sample_rate": settings.sample_rate, "test_sample_rate": 1, "seed": settings.seed,
                     "test_ratio": settings.test_ratio, "split": "by chunk name (as data.test_ratio splits)"},
        "shard_positions": settings.shard_positions,
        "positions": {side: sum(s["positions"] for s in shards[side]) for side in SIDES},
        "bytes": {side: sum(s["bytes"] for s in shards[side]) for side in SIDES},
        "source_bytes": sum(s["source_bytes"] for s in all_sidecars),
        "records_read": sum(c[1] for c in chunks),
        "bad_chunks": sum(len(s["bad_chunks"]) for s in all_sidecars),
        "bad_chunk_examples": [e for s in all_sidecars for e in s["bad_chunks"]][:MAX_EXAMPLES] + listing_errors[:MAX_EXAMPLES],
        "bad_records": sum(s["bad_records"] for s in all_sidecars),
        "bad_record_examples": [e for s in all_sidecars for e in s["bad_record_examples"]][:MAX_EXAMPLES],
        "probe_positions_per_chunk": estimates,
        "chunks": chunks, "shards": shards,
    }
