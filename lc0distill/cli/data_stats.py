"""`lc0distill data stats PATH... [--json]`: dataset statistics a trainer checks before training on it."""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from lc0distill.chunks.sources import find_chunks, no_chunks_message
from lc0distill.chunks.stats import DatasetStats
from lc0distill.cli.arguments import PATHS_HELP
from lc0distill.errors import ChunkError, Lc0DistillError
from lc0distill.shards.index import is_shard_folder
from lc0distill.shards.regroup import shard_folder_chunks

PROGRESS_MIN_CHUNKS = 50  # fewer chunks take well under a second: no progress bar


def register(commands: argparse._SubParsersAction) -> None:
    """Add `stats` to the subparsers of the `data` group."""
    stats = commands.add_parser(
        "stats", help="dataset statistics: positions, games, results, formats, value and policy targets",
        description="Statistics over all the chunks given: positions, games, results, record versions and "
                    "input formats, mean |best_q - z|, mean policy entropy. Unreadable chunks are skipped "
                    "and listed, bad records (not chess, non-finite or out of range) counted, named and left out "
                    "of the sums (exit code 2 for either).")
    stats.add_argument("paths", nargs="+", metavar="PATH", help=PATHS_HELP)
    stats.add_argument("--json", action="store_true", help="print one JSON object")
    stats.set_defaults(run=run_stats)


def _collect(paths: list[str]) -> DatasetStats:
    """Statistics over chunks, and over shard folders read back as the chunks they were made from."""
    stats = DatasetStats()
    folders = [path for path in paths if is_shard_folder(path)]
    for folder in folders:
        try:
            for chunk in shard_folder_chunks(folder):
                stats.add_records(chunk.records, chunk.name)
        except ChunkError as error:  # a shard block that cannot be read
            stats.add_bad(error)
    paths = [path for path in paths if path not in folders]
    sources = list(find_chunks(paths, on_error=stats.add_bad)) if paths else []
    if not sources and not folders and not stats.bad_files:
        raise Lc0DistillError(no_chunks_message(paths))
    console = Console(stderr=True)
    if len(sources) < PROGRESS_MIN_CHUNKS or not console.is_terminal:
        for source in sources:
            stats.add_source(source)
        return stats
    columns = (TextColumn("reading chunks"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("chunks", total=len(sources))
        for source in sources:
            stats.add_source(source)
            progress.advance(task)
    return stats


def _number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _share(count: int, total: int) -> str:
    return f"{count} ({100 * count / total:.1f}%)" if total else str(count)


def _print_table(report: dict) -> None:
    results, games = report["results"], report["games"]
    table = Table(title="lc0 dataset", show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("chunks", str(report["chunks"])),
        ("positions", str(report["positions"])),
        ("games", f"{games} ({_number(report['mean_plies_per_game'], 1)} plies/game)"),
        ("results", f"white {_share(results['white'], games)}, black {_share(results['black'], games)}, "
                    f"draw {_share(results['draw'], games)}"),
        ("versions", ", ".join(f"V{k}: {v}" for k, v in report["versions"].items()) or "-"),
        ("input formats", ", ".join(f"{k}: {v}" for k, v in report["input_formats"].items()) or "-"),
        ("mean |best_q - z|", _number(report["mean_abs_q_minus_z"])),
        ("policy entropy", f"{_number(report['policy_entropy'])} nats"),
        ("mean visits", _number(report["mean_visits"], 1)),
        ("with orig_q", "-" if report["share_with_orig_q"] is None else f"{100 * report['share_with_orig_q']:.1f}%"),
        ("bad files", str(len(report["bad_files"]))),
        ("bad records", str(report["bad_records"])),
    ]
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)


def run_stats(args: argparse.Namespace) -> int:
    stats = _collect(args.paths)
    report = stats.to_dict()
    if args.json:
        json.dump(report, sys.stdout, indent=1, allow_nan=False)  # strict JSON: no NaN or Infinity, ever
        print()
    else:
        _print_table(report)
    for bad in report["bad_files"]:
        print(f"lc0distill: error: {bad['path']}: {bad['error']}", file=sys.stderr)
    if report["bad_records"]:
        print(f"lc0distill: error: {report['bad_records']} bad records (not chess, non-finite or out of range), left "
              f"out of the statistics: {'; '.join(report['bad_record_examples'])}", file=sys.stderr)
    return 2 if report["bad_files"] or report["bad_records"] else 0
