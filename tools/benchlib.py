"""Helpers shared by the benchmark scripts in tools/ (bench_chunks.py, bench_loader.py).

The scripts run as `python tools/bench_X.py`, which puts tools/ on sys.path, so they import this module as
`benchlib`. Error messages are prefixed with the calling script's name (`prog`), as before the move.
"""

from __future__ import annotations

import argparse
import gc
import time
import zlib
from pathlib import Path
from typing import Callable

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = PROJECT_ROOT.parent / "shared" / "lc0-selfplay-maia1900"
GZIP_MAGIC = b"\x1f\x8b"
VERDICT = {True: "MET", False: "NOT MET"}

Blob = tuple[str, bytes]  # (file name, file bytes)


def add_paths_argument(parser: argparse.ArgumentParser) -> None:
    """The positional PATH arguments: chunk files or directories (default: DEFAULT_DATA)."""
    parser.add_argument("paths", nargs="*", type=Path,
                        help=f"chunk files or directories searched recursively for *.gz (default: {DEFAULT_DATA})")


def check_repeat_and_batch_size(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject --repeat or --batch-size below 1 (parser.error exits)."""
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")


def data_paths(paths: list[Path]) -> list[Path]:
    """The paths given on the command line, or DEFAULT_DATA when there are none."""
    return paths or [DEFAULT_DATA]


def describe_files(files: list[Path], paths: list[Path]) -> str:
    """The `files: N from ...` header line."""
    return f"files: {len(files)} from {', '.join(str(p) for p in data_paths(paths))}"


def find_chunk_files(paths: list[Path], prog: str) -> list[Path]:
    """Every .gz file named or found (recursively) under a named directory, sorted, no duplicates."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*.gz") if p.is_file()))
        elif path.is_file():
            found.append(path)
        else:
            raise SystemExit(f"{prog}: no such file or directory: {path}")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise SystemExit(f"{prog}: no .gz chunk files under {', '.join(map(str, paths))}")
    return unique


def load_blobs(files: list[Path]) -> list[Blob]:
    """Each file's name and bytes, read into memory (so later timings exclude disk I/O)."""
    return [(str(path), path.read_bytes()) for path in files]


def zlib_inflate(data: bytes) -> bytes:
    """Plain zlib: decompress every gzip member of `data` (no validation beyond what zlib does)."""
    inflater = zlib.decompressobj(wbits=31)
    out = inflater.decompress(data)
    rest = inflater.unused_data
    if not rest.startswith(GZIP_MAGIC):
        return out
    parts = [out]
    while rest.startswith(GZIP_MAGIC):
        inflater = zlib.decompressobj(wbits=31)
        parts.append(inflater.decompress(rest))
        rest = inflater.unused_data
    return b"".join(parts)


def run_inflate(blobs: list[Blob], keep: list | None = None) -> int:
    """Plain-zlib inflate of every blob; total inflated bytes. Outputs are dropped unless `keep` collects them."""
    total = 0
    for _, data in blobs:
        raw = zlib_inflate(data)
        total += len(raw)
        if keep is not None:
            keep.append(raw)
    return total


def best_time(work: Callable[[], int], repeat: int, expected: int, what: str, prog: str,
              keep: list | None = None) -> float:
    """Best wall time of `repeat` runs of work(); garbage collection is off while timing.

    Exits (prefixed with `prog`) if work() does not return `expected`; `keep` is cleared before each run
    and after the last.
    """
    best = float("inf")
    for _ in range(repeat):
        if keep is not None:
            keep.clear()
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            result = work()
            elapsed = time.perf_counter() - start
        finally:
            gc.enable()
        if result != expected:
            raise SystemExit(f"{prog}: {what} produced {result}, expected {expected}")
        best = min(best, elapsed)
    if keep is not None:
        keep.clear()
    return best


def format_table(rows: list[tuple[str, ...]]) -> str:
    """Rows as aligned text: first column left-aligned, the rest right-aligned, a rule under the header row."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
