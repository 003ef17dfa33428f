"""`lc0distill data from-pgn`: lc0 training chunks (one per game) from PGN games. Logic in chunks/pgn.py."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn, TimeRemainingColumn

from lc0distill.chunks.pgn import (
    ConvertedGame,
    PgnError,
    SkippedGame,
    check_input_format,
    check_pgn_paths,
    convert_games,
    next_chunk_index,
    open_pgn,
)
from lc0distill.chunks.writer import GameChunkWriter
from lc0distill.errors import Lc0DistillError

MAX_LISTED_SKIPS = 20  # skipped games described one per line on stderr; beyond that only counted


def register(commands: argparse._SubParsersAction) -> None:
    """Add `from-pgn` to the `data` group's subparsers."""
    parser = commands.add_parser(
        "from-pgn", help="supervised training chunks from PGN games (one lc0 V6 chunk per game)",
        description="Convert PGN games (e.g. CCRL engine games) into lc0 training chunks, one "
                    "game_NNNNNN.gz per game as lc0 names them: one V6 record per position, policy one-hot "
                    "on the played move, z from the result, q/d from evaluation comments where present "
                    "([%eval] from white's view, cutechess/CCRL {+0.18/20 12s} from the mover's; from z "
                    "elsewhere), moves-left from the game's length. Games with illegal or null moves, moves "
                    "past the 75-move draw, an unknown result (*), a non-standard start (FEN header, "
                    "variant) or no moves are skipped. One summary line per file, then the total.")
    parser.add_argument("pgns", nargs="+", metavar="GAMES.pgn",
                        help="PGN files: .pgn, .pgn.gz or .pgn.zst (told apart by their contents)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="folder for the chunks; numbering continues after any game_*.gz already there")
    # A string, checked in run(): a wrong value is then one line (exit code 2), not argparse's usage text.
    parser.add_argument("--input-format", default="1", metavar="N",
                        help="lc0 input format of the planes: 1, 2, 3, 4, 5, 132 or 133 (default: 1)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, metavar="N",
                        help="processes encoding and compressing games (default: all %(default)s cores)")
    parser.set_defaults(run=run)


def _progress(console: Console) -> Progress:
    return Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
        TextColumn("{task.fields[games]} games, {task.fields[positions]} positions, {task.fields[rate]} positions/s"),
        TimeRemainingColumn(),
        console=console, transient=True, disable=not console.is_terminal)


@dataclass
class _FileTally:
    """What one input file gave, for its summary line."""

    games: int = 0
    positions: int = 0
    evaluated: int = 0  # positions whose q came from an evaluation comment; the rest took z
    skipped: int = 0

    def add(self, item: ConvertedGame | SkippedGame) -> None:
        if isinstance(item, SkippedGame):
            self.skipped += 1
        else:
            self.games += 1
            self.positions += item.positions
            self.evaluated += item.evaluated

    def line(self, path: Path) -> str:
        return (f"{path}: {self.games} games, {self.positions} positions (q from evals: {self.evaluated}, "
                f"from z: {self.positions - self.evaluated}); skipped: {self.skipped}")


def _summary(written: int, positions: int, out: Path, first: int, skipped: Counter) -> str:
    files = f" (game_{first:06d}.gz to game_{first + written - 1:06d}.gz)" if written else ""
    reasons = ", ".join(f"{reason}: {count}" for reason, count in sorted(skipped.items(), key=lambda kv: -kv[1]))
    skips = f"skipped: {sum(skipped.values())}" + (f" ({reasons})" if reasons else "")
    return f"wrote {written} games, {positions} positions to {out}{files}; {skips}"


def run(args: argparse.Namespace) -> int:
    input_format = check_input_format(args.input_format)
    paths = check_pgn_paths(args.pgns)
    out = Path(args.out)
    first = next_chunk_index(out)
    writer = GameChunkWriter(out, first_index=first)
    console = Console(stderr=True)
    skipped: Counter[str] = Counter()
    errors: list[str] = []
    positions = 0
    start = time.perf_counter()
    file_lines: list[str] = []  # printed after the progress display: while it runs, rich sends stdout to stderr
    sizes = [path.stat().st_size for path in paths]  # once: a file removed meanwhile must not stop the run
    done_bytes = 0

    def note(message: str) -> None:
        console.print(message, markup=False, highlight=False, soft_wrap=True)

    if args.jobs < 1:
        raise Lc0DistillError(f"--jobs must be at least 1, got {args.jobs}")
    with _progress(console) as progress, (Pool(args.jobs) if args.jobs > 1 else nullcontext()) as pool:
        task = progress.add_task("PGN -> chunks", total=sum(sizes) or None, games=0, positions=0, rate=0)
        for path, size in zip(paths, sizes):
            tally = _FileTally()
            try:
                with open_pgn(path) as pgn:
                    for item in convert_games(pgn, input_format, pool):
                        tally.add(item)
                        if isinstance(item, SkippedGame):
                            skipped[str(item.reason)] += 1
                            if sum(skipped.values()) <= MAX_LISTED_SKIPS:
                                note(f"lc0distill: warning: skipped {item.describe()}")
                        elif isinstance(item, ConvertedGame):
                            writer.write_compressed(item.chunk)
                            positions += item.positions
                        rate = positions / max(time.perf_counter() - start, 1e-9)
                        progress.update(task, completed=done_bytes + pgn.bytes_read,
                                        games=writer.next_index - first, positions=positions, rate=f"{rate:,.0f}")
            except PgnError as error:
                errors.append(str(error))  # the other files are still converted; exit code 2 at the end
            file_lines.append(tally.line(path))  # also after an error: the games read before it were written
            done_bytes += size
            progress.update(task, completed=done_bytes)
    listed = sum(skipped.values()) - MAX_LISTED_SKIPS
    if listed > 0:
        note(f"lc0distill: warning: {listed} more skipped games not listed")
    for message in errors:
        note(f"lc0distill: error: {message}")
    for line in file_lines:
        print(line)
    print(_summary(writer.next_index - first, positions, out, first, skipped))
    sys.stdout.flush()
    return 2 if errors else 0
