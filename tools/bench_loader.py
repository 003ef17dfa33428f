#!/usr/bin/env python3
"""Benchmark the streaming loader: model-ready batches per second against the plain gzip inflate rate.

For one set of `.gz` chunk files, measured in one run:

  inflate   zlib only (`zlib.decompressobj(wbits=31)` over every gzip member), file bytes read into memory
            first, one process; best of --repeat runs. This is the yardstick (records/s).
  loader    `BatchLoader(StreamSpec(...), workers=W)` iterated to the end: `Batch` objects on the CPU
            (planes expanded to float (B,112,8,8), dense policy, ...), sample_rate=1 (every record), one
            pass, shuffle buffer --shuffle-buffer; for W = 0 (in-process, reference), 1 and 2. The files
            are read from disk by the loader: a warm-up pass (W=0, every file once) runs first so they
            are in the page cache. Because the default data is small, the file list is repeated k times
            inside the one StreamSpec (sources * k) so that each run takes >= --min-seconds and holds
            several shuffle buffers' worth of positions; the positions measured are printed. Each run is
            capped at --seconds (a capped run is marked). `packed` rows: the same runs with
            `packed_batches()` (no expansion in the main process), to separate worker throughput from
            the main process's make_batch.
  memory    in a fresh subprocess (so the runs above do not confound it): peak RSS (ru_maxrss) before and
            after streaming with shuffle_buffer=--memory-buffer (default 1M), workers=0, sample_rate=1,
            passes=None, stopped after the buffer has filled and --memory-batches batches came out; printed
            next to the expected --memory-buffer x POSITION_DTYPE.itemsize bytes.

Aims: one worker >= 0.75 x inflate rate; two workers >= 1.7 x one worker (model-ready batches).

--profile adds an in-process per-stage breakdown (us/position) of what one shard and the main process do:
read (page cache), inflate, parse, pack_records, shuffle-buffer push, cutting batches, the shared-memory
hand-off a DataLoader worker does for every batch (ForkingPickler dumps; loads + first read are the main
process's side), and make_batch (with a sub-breakdown), plus make_batch while another process keeps one
core busy (as a worker does), with torch's default thread count and with 1 thread.

Usage: python tools/bench_loader.py [PATH ...] [--repeat N] [--batch-size B] [--seconds S] [--profile]
PATH is a chunk file or a directory searched recursively for *.gz (default: ../shared/lc0-selfplay-maia1900
relative to the project root).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import math
import multiprocessing
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from lc0distill.chunks.batch import make_batch
from lc0distill.chunks.dataset import BatchLoader, ShuffleBuffer, StreamSpec, shard_order
from lc0distill.chunks.packed import POSITION_DTYPE, legal_entries, pack_records
from lc0distill.chunks.reader import inflate, parse_chunk
from lc0distill.chunks.sources import ChunkSource
from lc0distill.chunks.validate import find_bad_records

from benchlib import (VERDICT, add_paths_argument, best_time, check_repeat_and_batch_size, data_paths,
                      describe_files, find_chunk_files, format_table, load_blobs, run_inflate)

PROG = "bench_loader"
ONE_WORKER_AIM = 0.75  # 1-worker model-ready rate / inflate rate
TWO_WORKER_AIM = 1.7  # 2-worker rate / 1-worker rate
BUFFERS_PER_RUN = 4  # each loader run streams at least this many shuffle buffers' worth of positions
SHARD_TENSOR_AIM = 60_000  # positions per CPU-second from shards, expansion left to the GPU
SHARD_BATCH_AIM = 30_000  # ... with the expansion on the CPU


# --- loader runs ---

@dataclass
class LoaderRun:
    positions: int
    batches: int
    seconds: float  # whole run: from creating the loader to the last batch
    first_seconds: float  # until the first batch (worker start + filling the shuffle buffer)
    first_positions: int
    capped: bool
    bad_chunks: int

    @property
    def rate(self) -> float:
        return self.positions / self.seconds

    @property
    def steady_rate(self) -> float:
        """Positions/s after the first batch (excludes worker start and the buffer fill; includes the drain)."""
        span = self.seconds - self.first_seconds
        return (self.positions - self.first_positions) / span if span > 0 else float("nan")


def make_spec(sources: tuple[ChunkSource, ...], copies: int, batch_size: int, shuffle_buffer: int,
              seed: int = 0) -> StreamSpec:
    return StreamSpec(sources * copies, batch_size=batch_size, sample_rate=1, shuffle_buffer=shuffle_buffer,
                      seed=seed, passes=1)


def run_loader(spec: StreamSpec, workers: int, expand: bool, cap_seconds: float | None) -> LoaderRun:
    """Iterate BatchLoader(spec) to the end (or the cap): Batch objects if `expand`, else packed arrays."""
    gc.collect()
    start = time.perf_counter()
    loader = BatchLoader(spec, workers=workers)
    stream = iter(loader) if expand else loader.packed_batches()
    positions = batches = first_positions = 0
    first_seconds = None
    capped = False
    now = start
    try:
        for item in stream:
            positions += len(item)
            batches += 1
            now = time.perf_counter()
            if first_seconds is None:
                first_seconds, first_positions = now - start, positions
            if cap_seconds is not None and now - start > cap_seconds:
                capped = True
                break
    finally:
        stream.close()  # stops the DataLoader's workers (after `now` was taken)
    return LoaderRun(positions, batches, now - start, first_seconds or 0.0, first_positions, capped,
                     len(loader.bad_chunks))


def best_loader_run(spec: StreamSpec, workers: int, expand: bool, repeat: int, cap: float | None,
                    expected: int) -> LoaderRun:
    best: LoaderRun | None = None
    for _ in range(repeat):
        run = run_loader(spec, workers, expand, cap)
        if not run.capped and run.positions != expected:
            raise SystemExit(f"bench_loader: workers={workers} streamed {run.positions} positions, "
                             f"expected {expected}")
        if best is None or run.rate > best.rate:
            best = run
    assert best is not None
    return best


# --- peak memory of a big shuffle buffer (run in a fresh subprocess) ---

def _status_kb(field: str) -> int:
    """A memory figure of this process from /proc/self/status (VmRSS: now, VmHWM: peak), in KB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def memory_child(files: list[str], batch_size: int, capacity: int, batches_after_fill: int,
                 shards: str | None = None) -> dict:
    """Stream with a `capacity` shuffle buffer until it has filled and some batches came out; RSS in KB.
    `shards`: a shard folder's blocks instead of the chunk files."""
    sources = tuple(ChunkSource(f) for f in files)
    if shards:
        from lc0distill.shards.index import folder_blocks, read_index

        sources = tuple(folder_blocks(shards, read_index(shards), "train"))
    spec = StreamSpec(sources, batch_size=batch_size, sample_rate=1, shuffle_buffer=capacity, passes=None)
    gc.collect()
    # ru_maxrss survives exec (a fresh subprocess starts with its parent's peak); VmHWM does not.
    before_maxrss, before_hwm, before_now = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                                             _status_kb("VmHWM"), _status_kb("VmRSS"))
    start = time.perf_counter()
    loader = BatchLoader(spec, workers=0)
    batches = positions = 0
    fill_seconds = None
    for batch in loader:  # the buffer emits nothing until it is full: the first batch means "filled"
        if fill_seconds is None:
            fill_seconds = time.perf_counter() - start
        batches += 1
        positions += len(batch)
        if batches >= batches_after_fill:
            break
    seconds = time.perf_counter() - start
    after_maxrss, after_hwm, after_now = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                                          _status_kb("VmHWM"), _status_kb("VmRSS"))
    return dict(before_maxrss_kb=before_maxrss, before_hwm_kb=before_hwm, before_now_kb=before_now,
                after_maxrss_kb=after_maxrss, after_hwm_kb=after_hwm, after_now_kb=after_now, fill_seconds=fill_seconds, seconds=seconds, batches=batches,
                positions=positions, pushed=capacity + positions, itemsize=POSITION_DTYPE.itemsize)


def measure_memory(files: list[Path], batch_size: int, capacity: int, batches_after_fill: int,
                   shards: Path | None = None) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--memory-child", "--batch-size", str(batch_size),
               "--memory-buffer", str(capacity), "--memory-batches", str(batches_after_fill), *map(str, files)]
    if shards is not None:
        command += ["--shard-dir", str(shards)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bench_loader: memory subprocess failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- --profile: per-stage costs of one shard and of the main process ---

def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _make_batch_parts() -> dict[str, Callable[[np.ndarray], object]]:
    """make_batch's main steps, timed one by one (private helpers of batch.py; skipped if renamed)."""
    parts: dict[str, Callable[[np.ndarray], object]] = {}
    try:
        from lc0distill.chess.expand import PackedPlanes, expand_planes
        from lc0distill.chunks.batch import _dense_policy, _to_tensors
    except ImportError:
        return parts
    cpu = torch.device("cpu")
    parts["  _to_tensors (fields -> torch)"] = lambda p: _to_tensors(p, cpu)
    parts["  expand_planes (numpy)"] = lambda p: expand_planes(PackedPlanes(
        p["planes"], p["castling"], p["side_to_move_or_enpassant"], p["rule50_count"], p["invariance_info"],
        p["input_format"].astype(np.uint32)))
    parts["  _dense_policy (torch scatter)"] = lambda p: _dense_policy(_to_tensors(p, cpu))
    return parts


def profile_stages(sources: tuple[ChunkSource, ...], copies: int, batch_size: int, shuffle_buffer: int,
                   inflate_us: float) -> None:
    """Run one shard's pipeline in-process, timing each stage; print us/position per stage."""
    from multiprocessing.reduction import ForkingPickler

    import torch.multiprocessing  # noqa: F401  (registers the tensor reductions DataLoader workers use)
    from lc0distill.chunks.dataset import _Emitter

    spec = make_spec(sources, copies, batch_size, shuffle_buffer)
    rng = np.random.default_rng([spec.seed, 0, 1, 1])
    buffer = ShuffleBuffer(spec.shuffle_buffer, rng)
    emitter = _Emitter(spec.batch_size)
    parts = _make_batch_parts()
    seconds: Counter[str] = Counter()
    clock = time.perf_counter
    stream_cut, drain_cut = "cut batches (_Emitter)", "cut batches, end of pass *"

    def timed(stage: str, work: Callable[[], object]) -> object:
        start = clock()
        result = work()
        seconds[stage] += clock() - start
        return result

    def consume(payload: torch.Tensor) -> None:
        if not payload.numel():
            return
        message = timed("shm hand-off: dumps (worker)", lambda: ForkingPickler.dumps(payload))
        received = timed("shm hand-off: loads (main)", lambda: ForkingPickler.loads(message))
        packed = received.numpy().view(POSITION_DTYPE)
        timed("make_batch", lambda: make_batch(packed))
        for label, part in parts.items():
            timed(label, lambda: part(packed))

    def cut(stage: str, batches: Iterator[tuple[torch.Tensor, list[str]]]) -> None:
        """Time the emitter's generator step by step; each payload is consumed before the next is cut."""
        while True:
            start = clock()
            item = next(batches, None)
            seconds[stage] += clock() - start
            if item is None:
                return
            consume(item[0])

    total = 0
    for index in shard_order(spec, 0, 0, 1):
        source = spec.sources[index]
        data = timed("read (page cache)", source.read_bytes)
        raw = timed("inflate (reader.inflate)", lambda: inflate(data, source.name))
        records, _ = timed("parse (parse_chunk)", lambda: parse_chunk(raw, source.name))
        total += len(records)
        entries = timed("legal entries (legal_entries)", lambda: legal_entries(records["probabilities"]))
        timed("validate (find_bad_records)", lambda: find_bad_records(records, None, entries))
        packed = timed("pack_records", lambda: pack_records(records, entries, chunk=index))
        emitted = timed("shuffle push", lambda: buffer.push(packed))
        cut(stream_cut, emitter.add(emitted))
    drained = timed("shuffle drain, end of pass *", buffer.drain)
    cut(drain_cut, itertools.chain(emitter.add(drained), emitter.finish(False)))

    def us(stage: str) -> float:  # every position passes every stage once
        return 1e6 * seconds[stage] / max(total, 1)

    worker_stages = ["read (page cache)", "inflate (reader.inflate)", "parse (parse_chunk)",
                     "legal entries (legal_entries)", "validate (find_bad_records)", "pack_records",
                     "shuffle push", stream_cut, "shm hand-off: dumps (worker)", "shuffle drain, end of pass *",
                     drain_cut]
    main_stages = ["shm hand-off: loads (main)", "make_batch"]
    rows = [("stage (in-process, one shard)", "side", "seconds", "us/position", "x inflate us")]
    for stage in worker_stages + main_stages + list(parts):
        side = "worker" if stage in worker_stages else ("main" if stage in main_stages else "(part)")
        rows.append((stage, side, f"{seconds[stage]:.3f}", f"{us(stage):.2f}", f"{us(stage) / inflate_us:.2f}"))
    worker_us = sum(us(s) for s in worker_stages)
    main_us = sum(us(s) for s in main_stages)
    rows.append(("worker side total", "worker", "", f"{worker_us:.2f}", f"{worker_us / inflate_us:.2f}"))
    rows.append(("main side total", "main", "", f"{main_us:.2f}", f"{main_us / inflate_us:.2f}"))
    print(f"\n--- profile: per-stage cost, {total:,} positions through one shard in-process "
          f"(shuffle buffer {shuffle_buffer:,}, batch {batch_size}); plain zlib inflate = {inflate_us:.2f} us/record ---")
    print(format_table(rows))
    budget = inflate_us / ONE_WORKER_AIM
    print(f"budget for aim 1 (one worker >= {ONE_WORKER_AIM:.2f} x inflate): <= {budget:.2f} us/position on each side "
          f"(worker and main run on different cores)")
    print(f"simple model (2 cores, no other load): workers=1 <= {1e6 / max(worker_us, main_us):,.0f}/s, "
          f"workers=2 <= {1e6 / max(worker_us / 2, main_us, (worker_us + main_us) / 2):,.0f}/s, "
          f"in-process {1e6 / (worker_us + main_us):,.0f}/s")
    print(f"* once per pass, when the shuffle buffer ({shuffle_buffer:,}) is emitted: amortised here over "
          f"{copies} copies of the file list; an endless stream (passes=None) never drains")
    print("(shm hand-off = ForkingPickler.dumps/loads of each batch tensor, as a DataLoader worker and the main "
          "process do; the parts of make_batch are timed separately and overlap it)")

    # make_batch while another process keeps a core busy, as a DataLoader worker does.
    batches = [pack_records(parse_chunk(inflate(s.read_bytes(), s.name), s.name)[0]) for s in sources]
    packed = np.concatenate(batches)[: 8 * batch_size]
    cut = [packed[i : i + batch_size] for i in range(0, len(packed), batch_size)]
    threads = torch.get_num_threads()
    rows = [("make_batch", "torch threads", "other core", "us/position")]
    for busy in (False, True):
        for n_threads in sorted({threads, 1}, reverse=True):
            torch.set_num_threads(n_threads)
            spinner = None
            if busy:
                spinner = multiprocessing.get_context("fork").Process(target=_busy, args=(60.0,), daemon=True)
                spinner.start()
                time.sleep(0.2)
            try:
                make_batch(cut[0])
                best = float("inf")
                for _ in range(3):
                    start = clock()
                    for batch in cut:
                        make_batch(batch)
                    best = min(best, clock() - start)
            finally:
                if spinner is not None:
                    spinner.terminate()
                    spinner.join()
            rows.append(("make_batch", str(n_threads), "busy" if busy else "idle", f"{1e6 * best / len(packed):.2f}"))
    torch.set_num_threads(threads)
    print(f"\n--- profile: make_batch on {len(cut)} batches of {batch_size}, best of 3, with the other core "
          "idle or kept busy by a spinning process ---")
    print(format_table(rows))


# --- positions per CPU-second: shards against gzip chunks ---

@dataclass
class CpuRun:
    positions: int
    wall: float
    cpu: float  # this process's CPU seconds (all its threads) plus those of the loader workers it waited for

    @property
    def per_cpu_second(self) -> float:
        return self.positions / self.cpu if self.cpu > 0 else float("nan")


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def cpu_run(spec: StreamSpec, workers: int, expand: bool) -> CpuRun:
    """Stream `spec` to its end: Batch objects expanded on the CPU (`expand`), or, as a GPU machine would get
    them before its device expands them, the packed fields as torch tensors (batch._to_tensors)."""
    from lc0distill.chunks.batch import _to_tensors

    cpu = torch.device("cpu")
    gc.collect()
    loader = BatchLoader(spec, workers=workers)
    start_cpu, start = _cpu_seconds(), time.perf_counter()
    positions = 0
    if expand:
        for batch in loader:
            positions += len(batch)
    else:
        for packed in loader.packed_batches():
            _to_tensors(packed, cpu)
            positions += len(packed)
    # the DataLoader's workers have exited and been waited for once the stream ended: their CPU time is counted
    return CpuRun(positions, time.perf_counter() - start, _cpu_seconds() - start_cpu)


def inflate_cpu_rate(blobs: list, n_records: int, repeat: int) -> tuple[float, str]:
    """Records per CPU-second of plain inflate, zlib-ng when installed (as the loader uses it), else zlib."""
    try:
        from zlib_ng import zlib_ng as module
        label = "zlib-ng"
    except ImportError:
        import zlib as module
        label = "zlib"
    best = float("inf")
    for _ in range(max(3, repeat)):
        start = time.process_time()
        for _, data in blobs:
            inflater = module.decompressobj(wbits=31)
            inflater.decompress(data)
            rest = inflater.unused_data
            while rest[:2] == b"\x1f\x8b":  # further gzip members
                inflater = module.decompressobj(wbits=31)
                inflater.decompress(rest)
                rest = inflater.unused_data
        best = min(best, time.process_time() - start)
    return n_records / best, label


def repack_for_bench(files: list[Path], out: Path, sample_rate: int) -> tuple[Path, float, dict]:
    """The bench data repacked (lc0distill data repack, no held-out split), and how long it took."""
    from lc0distill.shards.repack import RepackSettings, repack

    start = time.perf_counter()
    result = repack([ChunkSource(str(f)) for f in files], out, RepackSettings(sample_rate=sample_rate, test_ratio=0.0),
                    jobs=1)
    return out, time.perf_counter() - start, result.index


def cpu_table(folder: Path, repack_seconds: float | None, sources: tuple[ChunkSource, ...], blobs: list,
              n_records: int, args) -> None:
    """One table: positions per CPU-second to model-ready batches from shards (`folder`, the same data
    repacked), from gzip chunks at sampling 1 and 32, and plain inflate; with and without the CPU expansion;
    and the bytes per position on disk."""
    from lc0distill.shards.index import folder_blocks, read_index

    inflate_rate, inflate_label = inflate_cpu_rate(blobs, n_records, args.repeat)
    if True:  # (one block: the table's runs)
        index = read_index(folder)
        blocks = tuple(folder_blocks(folder, index, "train"))
        shard_positions = index["positions"]["train"]
        shard_bytes = index["bytes"]["train"]
        paths = [("gzip chunks, sampling 1", sources, 1, n_records),
                 ("gzip chunks, sampling 32", sources, 32, n_records / 32),
                 (f"shards (repacked at sampling {index['sampling']['sample_rate']})", blocks, 1, shard_positions)]
        workers_list = [int(w) for w in args.cpu_workers.split(",") if w.strip()]
        rows = [("source", "batches", "workers", "k", "buffer", "positions", "wall s", "CPU s", "positions/CPU-s")]
        rows.append((f"plain {inflate_label} inflate of the chunks (records)", "-", "-", "-", "-", f"{n_records:,}", "-",
                     f"{n_records / inflate_rate:.3f}", f"{inflate_rate:,.0f}"))
        results = {}
        for label, spec_sources, rate, per_pass in paths:
            for expand in (False, True):
                for workers in workers_list:
                    # sampling 1 in 32 gives 1/32 of the positions for the same reading: its runs stream 1/32 of
                    # the positions through a 1/32 buffer (still filled several times), not 32x the reading
                    buffer = args.shuffle_buffer // rate
                    copies = max(1, math.ceil(max(BUFFERS_PER_RUN * buffer, args.cpu_positions / rate)
                                              / max(per_pass, 1)))
                    spec = StreamSpec(tuple(spec_sources) * copies, batch_size=args.batch_size, sample_rate=rate,
                                      shuffle_buffer=buffer, seed=0, passes=1)
                    run = cpu_run(spec, workers, expand)
                    results[label, expand, workers] = run
                    kind = "model-ready Batch (CPU expansion)" if expand else "packed -> tensors (GPU-style)"
                    rows.append((label, kind, str(workers), str(copies), f"{buffer:,}", f"{run.positions:,}", f"{run.wall:.2f}",
                                 f"{run.cpu:.2f}", f"{run.per_cpu_second:,.0f}"))
    print()
    print(f"--- positions per CPU-second (this process and its loader workers; shuffle buffer {args.shuffle_buffer:,}, "
          f"batch {args.batch_size}, one pass over the sources repeated k times) ---")
    print(format_table(rows))
    gzip_bytes = sum(len(data) for _, data in blobs)
    print(f"on disk: shards {shard_bytes / max(shard_positions, 1):.1f} bytes per position "
          f"({shard_bytes / 1e6:.1f} MB for {shard_positions:,}); gzip chunks {gzip_bytes / n_records:.1f} bytes per "
          f"record ({gzip_bytes / 1e6:.1f} MB for {n_records:,})"
          + (f"; repacking took {repack_seconds:.1f} s ({n_records / repack_seconds:,.0f} records/s, one job)"
             if repack_seconds else ""))
    shard_label = paths[2][0]
    for expand, aim in ((False, SHARD_TENSOR_AIM), (True, SHARD_BATCH_AIM)):
        best = max((r.per_cpu_second for (l, e, _), r in results.items() if l == shard_label and e == expand),
                   default=float("nan"))
        what = "CPU expansion" if expand else "GPU-style expansion left out"
        print(f"aim: shards >= {aim:,} positions per CPU-second, {what}: {best:,.0f} -> {VERDICT[best >= aim]}")


RECORD_CHECK_AIM = 0.90  # the loader with the chess checks keeps >= 90% of its positions per CPU-second


def record_check_table(sources: tuple[ChunkSource, ...], n_records: int, args) -> None:
    """The loader's positions per CPU-second (in-process, model-ready batches, sampling 1) with the records'
    chess checks (validate.chess_checks) and without them (replaced by an empty list), alternated in one run,
    best of max(3, --repeat) each: what the check that keeps non-chess records out costs."""
    from lc0distill.chunks import validate

    copies = max(1, math.ceil(max(BUFFERS_PER_RUN * args.shuffle_buffer, args.cpu_positions) / n_records))
    spec = StreamSpec(sources * copies, batch_size=args.batch_size, sample_rate=1,
                      shuffle_buffer=args.shuffle_buffer, seed=0, passes=1)
    checks = validate.chess_checks
    best = {"without the chess checks": 0.0, "with the chess checks": 0.0}
    try:
        for _ in range(max(3, args.repeat)):
            for label in best:
                validate.chess_checks = checks if label.startswith("with ") else (lambda records: [])
                best[label] = max(best[label], cpu_run(spec, 0, True).per_cpu_second)
    finally:
        validate.chess_checks = checks
    rows = [("loader (in-process, model-ready batches)", "positions", "positions/CPU-s (best)")]
    rows += [(label, f"{copies * n_records:,}", f"{rate:,.0f}") for label, rate in best.items()]
    ratio = best["with the chess checks"] / best["without the chess checks"]
    print()
    print("--- the records' chess checks (pieces on one square, one king a side, pawns off ranks 1 and 8, scalar "
          "bytes in range, one input format per chunk), before and after, alternated in this run ---")
    print(format_table(rows))
    print(f"aim: with the checks >= {RECORD_CHECK_AIM:.0%} of without: {ratio:.1%} -> {VERDICT[ratio >= RECORD_CHECK_AIM]}")


# --- main ---

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark the streaming loader (BatchLoader -> model-ready Batch objects on the CPU) "
                    "against plain gzip inflate, on the same files in one run; plus peak memory of a 1M buffer.")
    add_paths_argument(parser)
    parser.add_argument("--repeat", type=int, default=2, metavar="N",
                        help="runs per figure, best taken (default 2; the inflate figure uses at least 3)")
    parser.add_argument("--batch-size", type=int, default=1024, metavar="B", help="positions per batch (default 1024)")
    parser.add_argument("--shuffle-buffer", type=int, default=65536, metavar="P",
                        help="shuffle buffer of the loader runs, in positions, shared by the workers (default 65536)")
    parser.add_argument("--workers", type=str, default="0,1,2", metavar="LIST",
                        help="comma-separated worker counts to run (default 0,1,2; 0 = in-process)")
    parser.add_argument("--min-seconds", type=float, default=3.0, metavar="S",
                        help="repeat the file list inside the StreamSpec so a run takes about >= S seconds (default 3)")
    parser.add_argument("--copies", type=int, default=None, metavar="K",
                        help="repeat the file list exactly K times in every loader run (default: chosen per run)")
    parser.add_argument("--seconds", type=float, default=60.0, metavar="S",
                        help="cap on one loader run; a capped run stops early and is marked (default 60; 0 = none)")
    parser.add_argument("--no-packed", action="store_true",
                        help="skip the packed_batches() reference runs (workers without expansion in the main process)")
    parser.add_argument("--torch-threads", type=int, default=None, metavar="T",
                        help="torch.set_num_threads(T) in the main process before the loader runs "
                             "(default: leave torch's default; DataLoader workers use 1)")
    parser.add_argument("--memory-buffer", type=int, default=1_000_000, metavar="P",
                        help="shuffle buffer of the memory measurement, in positions (default 1,000,000; 0 = skip)")
    parser.add_argument("--memory-batches", type=int, default=20, metavar="N",
                        help="batches taken after the big buffer has filled (default 20)")
    parser.add_argument("--profile", action="store_true", help="also print the per-stage breakdown (us/position)")
    parser.add_argument("--cpu-workers", default="0,2", metavar="LIST",
                        help="worker counts of the positions-per-CPU-second table (default 0,2; empty: no table)")
    parser.add_argument("--cpu-positions", type=int, default=200_000, metavar="P",
                        help="positions each run of that table streams at least (default 200,000)")
    parser.add_argument("--shard-dir", metavar="DIR",
                        help="a shard folder (lc0distill data repack) of the same data; default: repack it now")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    check_repeat_and_batch_size(parser, args)
    if args.copies is not None and args.copies < 1:
        parser.error("--copies must be at least 1")
    try:
        worker_counts = [int(w) for w in args.workers.split(",") if w.strip()]
    except ValueError:
        parser.error("--workers takes comma-separated integers, e.g. 0,1,2")
    if not worker_counts or min(worker_counts) < 0:
        parser.error("--workers takes counts >= 0")

    files = find_chunk_files(data_paths(args.paths), PROG)
    if args.memory_child:
        print(json.dumps(memory_child([str(f) for f in files], args.batch_size, args.memory_buffer,
                                      args.memory_batches, args.shard_dir)))
        return 0
    if args.torch_threads is not None:
        torch.set_num_threads(args.torch_threads)
    cap = args.seconds if args.seconds and args.seconds > 0 else None
    sources = tuple(ChunkSource(str(f)) for f in files)

    # 1. Plain inflate from memory (the yardstick). Preparation also counts the records (untimed).
    blobs = load_blobs(files)
    compressed = sum(len(data) for _, data in blobs)
    raw_bytes = run_inflate(blobs)
    versions: Counter[int] = Counter()
    for name, data in blobs:
        records, version = parse_chunk(inflate(data, name), name)
        versions[version] += len(records)
    n_records = sum(versions.values())
    if n_records == 0:
        raise SystemExit(f"{PROG}: the files hold no records")
    t_inflate = best_time(lambda: run_inflate(blobs), max(3, args.repeat), raw_bytes, "inflate", PROG)
    rate_inflate = n_records / t_inflate

    # Warm-up: one in-process pass over every file through the loader (page cache, code paths, an estimate).
    warm = run_loader(make_spec(sources, 1, args.batch_size, args.shuffle_buffer), 0, True, cap)
    estimate = warm.rate

    def copies_for(workers: int, expand: bool) -> int:
        if args.copies is not None:
            return args.copies
        guess = estimate * (1 + workers) * (1 if expand else 2)  # rough: only sets the run length
        by_time = math.ceil(args.min_seconds * guess / n_records)
        # every row, in-process too, streams several buffers' worth: a buffer that never fills would measure
        # its fill and drain, not the steady state
        by_buffer = math.ceil(BUFFERS_PER_RUN * args.shuffle_buffer / n_records)
        return max(1, by_time, by_buffer)

    # 2. Loader runs.
    results: dict[tuple[int, bool], tuple[int, LoaderRun]] = {}
    plans = [(w, True) for w in worker_counts] + ([] if args.no_packed else [(w, False) for w in worker_counts if w])
    for workers, expand in plans:
        copies = copies_for(workers, expand)
        spec = make_spec(sources, copies, args.batch_size, args.shuffle_buffer)
        results[workers, expand] = copies, best_loader_run(spec, workers, expand, args.repeat, cap, copies * n_records)

    # 3. The same data repacked into shards (the positions-per-CPU-second table and a memory row read them).
    scratch = tempfile.TemporaryDirectory(prefix="bench-shards-")
    shard_folder, repack_seconds = (Path(args.shard_dir), None) if args.shard_dir else \
        repack_for_bench(files, Path(scratch.name) / "shards", 1)[:2]

    # 4. Peak memory of a big buffer, in a fresh process: chunks, then shards.
    memory = shard_memory = None
    if args.memory_buffer > 0:
        memory = measure_memory(files, args.batch_size, args.memory_buffer, args.memory_batches)
        shard_memory = measure_memory(files, args.batch_size, args.memory_buffer, args.memory_batches, shard_folder)

    mb = 1e6
    print(describe_files(files, args.paths))
    print(f"records: {n_records:,}  versions: {dict(sorted(versions.items()))}  "
          f"bytes: {compressed / mb:.1f} MB gzip -> {raw_bytes / mb:.1f} MB inflated")
    print(f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}, "
          f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads in the main process: {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"warm-up: one in-process loader pass over every file ({warm.positions:,} positions, {warm.seconds:.2f} s) "
          "so the files are in the page cache")
    print(f"loader runs: sample_rate=1, one pass over the file list repeated k times, shuffle buffer "
          f"{args.shuffle_buffer:,} (shared by the workers), batch {args.batch_size}, CPU; best of {args.repeat}"
          + (f", each capped at {cap:g} s" if cap else ""))
    print()

    rows = [("stage", "workers", "k", "positions", "seconds", "positions/s", "us/position", "x inflate",
             "1st batch s", "pos/s after 1st")]
    rows.append(("inflate (zlib only, from memory)", "-", "-", f"{n_records:,}", f"{t_inflate:.3f}",
                 f"{rate_inflate:,.0f}", f"{1e6 / rate_inflate:.2f}", "1.00", "", ""))
    for (workers, expand), (copies, run) in results.items():
        label = "model-ready Batch (BatchLoader)" if expand else "packed only (packed_batches)"
        rows.append((label + (" CAPPED" if run.capped else ""), str(workers) + (" (in-process)" if not workers else ""),
                     str(copies), f"{run.positions:,}", f"{run.seconds:.2f}", f"{run.rate:,.0f}",
                     f"{1e6 / run.rate:.2f}", f"{run.rate / rate_inflate:.2f}", f"{run.first_seconds:.2f}",
                     f"{run.steady_rate:,.0f}"))
    print(format_table(rows))
    bad = sum(run.bad_chunks for _, run in results.values())
    if bad:
        print(f"warning: {bad} bad chunks were skipped in the loader runs")

    one, two = results.get((1, True)), results.get((2, True))
    print()
    if any(run.capped for _, run in results.values()):
        print(f"warning: CAPPED runs stopped at --seconds {cap:g} before their pass ended (still filling or "
              "streaming): their figures are not comparable; raise --seconds or lower --min-seconds/--copies")
    if one:
        ratio = one[1].rate / rate_inflate
        print(f"aim 1: one worker >= {ONE_WORKER_AIM:.2f} x inflate rate:  {ratio:.2f} "
              f"({one[1].rate:,.0f} vs {rate_inflate:,.0f} positions/s)  -> {VERDICT[ratio >= ONE_WORKER_AIM]}")
    if one and two:
        speedup = two[1].rate / one[1].rate
        print(f"aim 2: two workers >= {TWO_WORKER_AIM:.1f} x one worker:  {speedup:.2f}  -> "
              f"{VERDICT[speedup >= TWO_WORKER_AIM]}")
        p1, p2 = results.get((1, False)), results.get((2, False))
        if p1 and p2:
            print(f"       (packed only, no expansion in the main process: two / one = {p2[1].rate / p1[1].rate:.2f})")
        print(f"       note: {os.cpu_count()} CPUs here; with two workers the main process (which expands the "
              "batches) competes with them for the cores")

    for label, memory in (("gzip chunks", memory), ("shards", shard_memory)):
        if memory:
            print_memory(label, memory, args)

    record_check_table(sources, n_records, args)
    if args.cpu_workers.strip():
        cpu_table(shard_folder, repack_seconds, sources, blobs, n_records, args)
    scratch.cleanup()

    if args.profile:
        profile_copies = max(2, math.ceil(3 * args.shuffle_buffer / n_records))
        profile_stages(sources, profile_copies, args.batch_size, args.shuffle_buffer, 1e6 / rate_inflate)
    return 0


def print_memory(label: str, memory: dict, args) -> None:
    mb = 1e6
    if memory:
        expected = args.memory_buffer * memory["itemsize"]
        grew = (memory["after_hwm_kb"] - memory["before_now_kb"]) * 1024
        print()
        print(f"memory, {label} (fresh process, workers=0, sample_rate=1, passes=None, shuffle buffer {args.memory_buffer:,}): "
              f"buffer filled after {memory['fill_seconds']:.1f} s, then {memory['batches']} batches "
              f"({memory['pushed']:,} positions pushed, {memory['seconds']:.1f} s)")

        def mb_of(kb: int) -> str:
            return f"{kb * 1024 / mb:,.0f}"

        rows = [("process memory", "before", "after"),
                ("peak RSS, VmHWM (MB)", mb_of(memory["before_hwm_kb"]), mb_of(memory["after_hwm_kb"])),
                ("peak RSS, ru_maxrss (MB; starts at the parent's peak)", mb_of(memory["before_maxrss_kb"]),
                 mb_of(memory["after_maxrss_kb"])),
                ("current RSS, VmRSS (MB)", mb_of(memory["before_now_kb"]), mb_of(memory["after_now_kb"]))]
        print(format_table(rows))
        print(f"peak increase (VmHWM after - VmRSS before): {grew / mb:,.0f} MB;  expected buffer "
              f"{args.memory_buffer:,} x {memory['itemsize']:,} B (POSITION_DTYPE) = {expected / mb:,.0f} MB;  "
              f"ratio {grew / expected:.3f}")


if __name__ == "__main__":
    sys.exit(main())
