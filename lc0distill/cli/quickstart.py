"""`lc0distill quickstart`: the built-in end-to-end run on data the project makes itself.

Stage today (issues 2-3 of the plan): it writes a small set of lc0 V6 chunks from seeded games, reads them
back through the same reader used for lc0's own files, rebuilds the games and checks they are the games
written, then prints a summary. Training a teacher and distilling students joins this run with issue 5.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import chess
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from lc0distill.chunks.build import records_from_game
from lc0distill.chunks.games import reconstruct_games
from lc0distill.chunks.reader import read_chunk
from lc0distill.chunks.sources import find_chunks
from lc0distill.chunks.targets import z_wdl
from lc0distill.chunks.writer import GameChunkWriter
from lc0distill.errors import Lc0DistillError

MAX_PLIES = 160


def register(groups: argparse._SubParsersAction) -> None:
    parser = groups.add_parser(
        "quickstart", help="run the built-in end-to-end example on data the project makes itself",
        description="Write a small sample of lc0 V6 chunks from seeded games, read them back, rebuild the "
                    "games and check them. Needs no data of yours.")
    parser.add_argument("--out", default="data/quickstart", help="folder for the sample chunks (default: %(default)s)")
    parser.add_argument("--games", type=int, default=24, help="number of games (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--input-format", type=int, default=1, help="lc0 input format to encode (default: 1)")
    parser.set_defaults(run=run_quickstart)


def seeded_game(rng: random.Random) -> tuple[list[chess.Move], str]:
    """A legal game that prefers captures and checks, so it often ends decisively; drawn at MAX_PLIES."""
    board = chess.Board()
    while not board.is_game_over(claim_draw=True) and board.ply() < MAX_PLIES:
        moves = list(board.legal_moves)
        forcing = [m for m in moves if board.is_capture(m) or board.gives_check(m)]
        board.push(rng.choice(forcing if forcing and rng.random() < 0.7 else moves))
    outcome = board.outcome(claim_draw=True)
    return list(board.move_stack), outcome.result() if outcome else "1/2-1/2"


def run_quickstart(args: argparse.Namespace) -> int:
    console = Console()
    out = Path(args.out)
    if out.exists() and any(out.glob("game_*.gz")):
        for old in out.glob("game_*.gz"):
            old.unlink()
    rng = random.Random(args.seed)
    writer = GameChunkWriter(out)
    written: list[tuple[list[str], str]] = []
    start = time.perf_counter()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("writing games as lc0 chunks", total=args.games)
        for _ in range(args.games):
            moves, result = seeded_game(rng)
            writer.write_game(records_from_game(moves, result, args.input_format))
            written.append(([m.uci() for m in moves], result))
            progress.advance(task)
    write_seconds = time.perf_counter() - start
    start = time.perf_counter()
    chunks = [read_chunk(source) for source in find_chunks([out])]
    read_seconds = time.perf_counter() - start
    rebuilt = [(g.uci_moves, g.result) for chunk in chunks for g in reconstruct_games(chunk.records)]
    if rebuilt != written:
        raise Lc0DistillError(f"{out}: the games read back differ from the games written")
    positions = sum(len(c.records) for c in chunks)
    _print_summary(console, out, chunks, positions, write_seconds, read_seconds)
    return 0


def _print_summary(console: Console, out: Path, chunks, positions: int, write_s: float, read_s: float) -> None:
    results = {"1-0": 0, "0-1": 0, "1/2-1/2": 0}
    for chunk in chunks:
        results[reconstruct_games(chunk.records)[0].result] += 1
    z = sum(float(z_wdl(c.records)[:, 1].sum()) for c in chunks) / positions
    table = Table(title=f"quickstart sample in {out}")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("chunks (one game each)", str(len(chunks)))
    table.add_row("positions", str(positions))
    table.add_row("results 1-0 / 0-1 / draw", f"{results['1-0']} / {results['0-1']} / {results['1/2-1/2']}")
    table.add_row("share of drawn positions (z)", f"{z:.2f}")
    table.add_row("encode + write positions/s", f"{positions / write_s:,.0f}")
    table.add_row("read + parse positions/s", f"{positions / read_s:,.0f}")
    table.add_row("games read back == games written", "yes")
    console.print(table)
    console.print("Training a teacher and distilling students joins this run with issue 5 (see README).")
