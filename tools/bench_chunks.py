#!/usr/bin/env python3
"""Benchmark reading lc0 training chunks: plain gzip inflate vs. inflate+parse vs. plane expansion.

For one set of `.gz` chunk files, measured in one run (file bytes are read into memory first, so disk
I/O is excluded from every figure; each figure is the best of --repeat runs):

  inflate   zlib only: `zlib.decompressobj(wbits=31)` over every gzip member of each file
  parse     `lc0distill.chunks.reader.inflate` + `parse_chunk` -> records in the in-memory layout
  expand    `expand_planes(PackedPlanes.from_records(batch))` -> float32 (B, 112, 8, 8), over batches
            of --batch-size records cut from all parsed records concatenated; once into a preallocated
            `out=` array (allocation not measured) and once without `out=`

Aims: parse rate >= 0.85 x inflate rate; expand rate (with out=) > 1.0 x inflate rate.

By default each chunk's output is dropped before the next chunk is processed, as a streaming loader
would (memory is reused). `--keep` holds every chunk's output until the end of a run instead, which
adds the cost of touching fresh memory to the inflate and parse figures.

Usage: python tools/bench_chunks.py [PATH ...] [--repeat N] [--batch-size B] [--keep] [--profile]
PATH is a chunk file or a directory searched recursively for *.gz (default: ../shared/lc0-selfplay-maia1900
relative to the project root).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import platform
import pstats
import sys
from collections import Counter
from typing import Callable

import numpy as np

from lc0distill.chess.expand import INPUT_PLANES, PackedPlanes, expand_planes
from lc0distill.chunks import reader
from lc0distill.chunks.reader import inflate, parse_chunk

from benchlib import (VERDICT, Blob, add_paths_argument, best_time, check_repeat_and_batch_size, data_paths,
                      describe_files, find_chunk_files, format_table, load_blobs, run_inflate)

PROG = "bench_chunks"
PARSE_AIM = 0.85  # parse rate / inflate rate
EXPAND_AIM = 1.0  # expand rate (with out=) / inflate rate, must be exceeded


# --- the three workloads; each returns a number that is checked against the preparation pass ---

def run_reader_inflate(blobs: list[Blob], keep: list | None) -> int:
    """lc0distill's own inflate (zlib-ng when installed) without parsing: the parse step's true baseline."""
    total = 0
    for name, data in blobs:
        raw = inflate(data, name)
        total += len(raw)
        if keep is not None:
            keep.append(raw)
    return total


def run_parse(blobs: list[Blob], keep: list | None) -> int:
    count = 0
    for name, data in blobs:
        records, _ = parse_chunk(inflate(data, name), name)
        count += len(records)
        if keep is not None:
            keep.append(records)
    return count


def run_expand(records: np.ndarray, batch_size: int, out: np.ndarray | None) -> int:
    count = 0
    for start in range(0, len(records), batch_size):
        batch = records[start : start + batch_size]
        target = None if out is None else out[: len(batch)]
        tensor = expand_planes(PackedPlanes.from_records(batch), out=target)
        count += len(tensor)
    return count


def profile(label: str, work: Callable[[], object], top: int) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    work()
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).strip_dirs().sort_stats("tottime").print_stats(top)
    print(f"\n--- cProfile: {label} (top {top} by own time) ---")
    lines = text.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    print("\n".join(line for line in lines[start:] if line.strip()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark lc0 chunk reading: plain gzip inflate, inflate+parse_chunk, and "
                    "expand_planes into the (B,112,8,8) float tensor, on the same files in one run.")
    add_paths_argument(parser)
    parser.add_argument("--repeat", type=int, default=3, metavar="N", help="runs per figure, best taken (default 3)")
    parser.add_argument("--batch-size", type=int, default=1024, metavar="B",
                        help="records per expand_planes call (default 1024)")
    parser.add_argument("--keep", action="store_true",
                        help="keep every chunk's inflate/parse output until the end of a run "
                             "(default: drop it before the next chunk, as a streaming loader would)")
    parser.add_argument("--profile", action="store_true", help="also print a short cProfile of parse and expand")
    parser.add_argument("--profile-top", type=int, default=12, metavar="K", help="profile lines shown (default 12)")
    args = parser.parse_args(argv)
    check_repeat_and_batch_size(parser, args)

    files = find_chunk_files(data_paths(args.paths), PROG)
    blobs = load_blobs(files)
    compressed = sum(len(data) for _, data in blobs)

    # Preparation (untimed, also a warm-up): expected sizes and the parsed records for the expansion.
    raw_bytes = run_inflate(blobs, None)
    parsed: list[np.ndarray] = []
    versions: Counter[int] = Counter()
    for name, data in blobs:
        records, version = parse_chunk(inflate(data, name), name)
        parsed.append(records)
        versions[version] += len(records)
    records = np.concatenate(parsed)
    del parsed
    n_records = len(records)
    if n_records == 0:
        raise SystemExit(f"{PROG}: the files hold no records")
    batch = min(args.batch_size, n_records)
    n_batches = -(-n_records // batch)
    formats = Counter(int(f) for f in records["input_format"])

    keep: list | None = [] if args.keep else None
    t_inflate = best_time(lambda: run_inflate(blobs, keep), args.repeat, raw_bytes, "inflate", PROG, keep)
    t_reader_inflate = best_time(lambda: run_reader_inflate(blobs, keep), args.repeat, raw_bytes, "reader inflate",
                                 PROG, keep)
    t_parse = best_time(lambda: run_parse(blobs, keep), args.repeat, n_records, "parse", PROG, keep)
    out = np.empty((batch, INPUT_PLANES, 8, 8), dtype=np.float32)
    out.fill(0.0)  # touch the pages now so first-touch faults are not measured either
    t_expand = best_time(lambda: run_expand(records, batch, out), args.repeat, n_records, "expand (out=)", PROG)
    t_expand_alloc = best_time(lambda: run_expand(records, batch, None), args.repeat, n_records, "expand", PROG)

    rate_inflate = n_records / t_inflate
    mb = 1e6
    tensor_bytes = n_records * INPUT_PLANES * 64 * 4
    rows = [("stage", "time (s)", "records/s", "us/record", "MB/s", "(MB of)", "x inflate")]

    def row(label: str, seconds: float, out_bytes: int, detail: str) -> None:
        rate = n_records / seconds
        rows.append((label, f"{seconds:.4f}", f"{rate:,.0f}", f"{1e6 / rate:.2f}",
                     f"{out_bytes / seconds / mb:,.0f}", detail, f"{rate / rate_inflate:.2f}"))

    row("inflate (zlib only)", t_inflate, raw_bytes, "inflated")
    row(f"inflate ({reader.inflater.__name__.split('.')[0]}, the reader's)", t_reader_inflate, raw_bytes, "inflated")
    row("(a) inflate + parse_chunk", t_parse, raw_bytes, "inflated")
    row("(b) expand_planes, out=", t_expand, tensor_bytes, "float32")
    row("(b) expand_planes, no out=", t_expand_alloc, tensor_bytes, "float32")

    print(describe_files(files, args.paths))
    print(f"records: {n_records:,}  versions: {dict(sorted(versions.items()))}  "
          f"input formats: {dict(sorted(formats.items()))}")
    print(f"bytes: {compressed / mb:.1f} MB gzip -> {raw_bytes / mb:.1f} MB inflated "
          f"(x{raw_bytes / compressed:.0f}); tensor {tensor_bytes / mb:.1f} MB")
    print(f"best of {args.repeat}; expand over {n_batches} batches of {batch}; "
          f"{'outputs kept per run (--keep)' if args.keep else 'streaming: each chunk output dropped before the next'}")
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}; "
          f"lc0distill's reader inflates with {reader.inflater.__name__} (the baseline row is plain zlib)")
    print()
    print(format_table(rows))
    print()

    parse_ratio = t_inflate / t_parse
    expand_ratio = t_inflate / t_expand
    print(f"aim (a) parse >= {PARSE_AIM:.2f} x inflate:  {parse_ratio:.2f}  -> {VERDICT[parse_ratio >= PARSE_AIM]}")
    print(f"       parse vs the reader's own inflate (same inflater): {t_reader_inflate / t_parse:.2f}")
    print(f"aim (b) expand (out=) > {EXPAND_AIM:.2f} x inflate:  {expand_ratio:.2f}  -> "
          f"{VERDICT[expand_ratio > EXPAND_AIM]}")

    if args.profile:
        profile("inflate + parse_chunk, all files", lambda: run_parse(blobs, None), args.profile_top)
        profile(f"expand_planes out=, {n_batches} batches", lambda: run_expand(records, batch, out), args.profile_top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
