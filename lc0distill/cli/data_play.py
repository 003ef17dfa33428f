"""`lc0distill data play`: games of a net against itself as lc0 V6 chunks (logic in lc0distill/selfplay/)."""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

from lc0distill.chunks.build import records_from_game, records_from_net_game
from lc0distill.chunks.pgn import next_chunk_index
from lc0distill.chunks.writer import GameChunkWriter
from lc0distill.cli.arguments import non_negative_float, positive_int
from lc0distill.errors import Lc0DistillError
from lc0distill.fileio import make_folder
from lc0distill.nets import lc0_weights_file, load_fast_inference_net
from lc0distill.progress import track
from lc0distill.selfplay.play import PlaySettings, play_games


def register(commands: argparse._SubParsersAction) -> None:
    """Add `play` to the `data` group's subparsers."""
    parser = commands.add_parser(
        "play", help="games of a net against itself as training chunks (its outputs as targets, or lc0's search)",
        description="Play NET against itself and write one V6 chunk per game (game_NNNNNN.gz, numbered after "
                    "those in --out). In-process (default): the moves are sampled from the net's raw policy "
                    "over the legal moves (p^(1/T); the first --random-plies plies uniformly), batched across "
                    "games, and every record's targets are the net's own outputs: policy its softmax over the "
                    "legal moves, orig/root/best/played q and d its raw WDL, z the game's result. With --engine "
                    "lc0, lc0's own selfplay --training=true plays at --visits per move and writes the chunks, "
                    "real search policy and q, as lc0 writes them.")
    parser.add_argument("--net", required=True, help="the net: lc0 .pb.gz, lc0distill .pt/checkpoint or .onnx")
    parser.add_argument("--games", type=positive_int, required=True, help="how many games")
    parser.add_argument("--out", required=True, metavar="DIR", help="the chunk folder (added to)")
    parser.add_argument("--temperature", type=non_negative_float, default=1.0,
                        help="sampling temperature (default %(default)s; 0: the most probable move)")
    parser.add_argument("--openings", metavar="FILE", help="PGN or EPD openings, used in turn (default: the "
                                                           "standard start)")
    parser.add_argument("--random-plies", type=int, default=0, metavar="K",
                        help="the first K plies after the opening uniformly at random (default %(default)s)")
    parser.add_argument("--max-plies", type=positive_int, default=450,
                        help="a game still going after this many plies is a draw (default %(default)s)")
    parser.add_argument("--concurrency", type=positive_int, default=64,
                        help="games in progress at once, one batch per move (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="the games' seed (default %(default)s)")
    parser.add_argument("--runtime", choices=("onnxruntime", "pytorch"), default="onnxruntime",
                        help="what runs an lc0 or .pt net in-process (default %(default)s)")
    parser.add_argument("--targets", choices=("net", "played"), default="net",
                        help="in-process games' targets: net: the net's own outputs (default); played: the played "
                             "move one-hot and z, as a game record gives them (hard labels: a teacher cache or a "
                             "live teacher adds the net's own at training)")
    parser.add_argument("--engine", choices=("policy", "lc0"), default="policy",
                        help="policy: in-process (default); lc0: the lc0 engine's selfplay")
    parser.add_argument("--visits", type=positive_int, default=800, help="--engine lc0: visits per move "
                                                                          "(default %(default)s)")
    parser.add_argument("--selfplay-option", metavar="KEY=VALUE", action="append", default=[],
                        help="--engine lc0: an lc0 selfplay option, repeatable (e.g. noise-epsilon=0 for search "
                             "policies without lc0's default root noise of 0.25, parallelism=4)")
    parser.add_argument("--engine-path", metavar="PATH", help="--engine lc0: the lc0 binary (default: found as "
                                                              "`lc0distill engine where` finds it)")
    parser.add_argument("--resume", action="store_true",
                        help="count the games already in --out towards --games and play only the rest (a killed "
                             "run goes on where it stopped; in-process games then use another seed)")
    parser.add_argument("--json", action="store_true", help="print a summary as one JSON object")
    parser.set_defaults(run=run)


def _check(args: argparse.Namespace) -> None:
    if args.temperature < 0 or args.temperature != args.temperature:
        raise Lc0DistillError(f"--temperature {args.temperature}: 0 or more is needed")
    if args.random_plies < 0:
        raise Lc0DistillError(f"--random-plies {args.random_plies}: 0 or more is needed")
    if args.engine == "lc0" and args.targets != "net":
        raise Lc0DistillError("--targets played is for in-process games: lc0's selfplay writes its search's targets")
    next_chunk_index(args.out)  # --out must be a folder, or not exist yet
    if not Path(args.net).exists():
        raise Lc0DistillError(f"{args.net}: no such net file")
    if args.selfplay_option and args.engine != "lc0":
        raise Lc0DistillError("--selfplay-option is for --engine lc0")
    for option in args.selfplay_option:
        if not re.fullmatch(r"[a-z][a-z0-9-]*=\S+", option):
            raise Lc0DistillError(f"--selfplay-option {option}: KEY=VALUE with an lc0 option name (e.g. "
                                  "noise-epsilon=0)")


def _play_in_process(args: argparse.Namespace, games: int, seed: int) -> dict:
    from lc0distill.match.openings import read_openings

    openings = [o.board() for o in read_openings(args.openings)] if args.openings else []
    net = load_fast_inference_net(args.net, args.runtime)
    settings = PlaySettings(temperature=args.temperature, random_plies=args.random_plies, max_plies=args.max_plies,
                            concurrency=args.concurrency, seed=seed)
    writer = GameChunkWriter(args.out, first_index=next_chunk_index(args.out))
    make_folder(args.out, "output folder")
    results = {"1-0": 0, "0-1": 0, "1/2-1/2": 0}
    positions = 0
    with track("data play", total=games, unit="games") as bar:
        for game in play_games(net, games, settings, openings,
                               on_position=lambda n: bar.update(bar.completed, positions=bar.positions + n)):
            if args.targets == "played":
                records = records_from_game(game.moves, game.result, net.config.input_format, start=game.start)
            else:
                records = records_from_net_game(game.moves, game.result, game.evaluations, net.config.input_format,
                                                start=game.start)
            writer.write_game(records)
            results[game.result] += 1
            positions += len(records)
            bar.update(bar.completed + 1)
    return {"games": games, "positions": positions, "results": results}


def _play_lc0(args: argparse.Namespace, games: int) -> dict:
    from lc0distill.chunks.reader import read_chunk
    from lc0distill.chunks.sources import ChunkSource
    from lc0distill.engine.locate import find_engine
    from lc0distill.selfplay.lc0_selfplay import lc0_selfplay

    binary = find_engine(args.engine_path)
    results = {"1-0": 0, "0-1": 0, "1/2-1/2": 0}
    positions = 0
    with tempfile.TemporaryDirectory(prefix="lc0distill-play-") as folder:
        weights = lc0_weights_file(args.net, Path(folder) / "net.pb.gz")
        with track("lc0 selfplay", total=games, unit="games") as bar:
            def on_game(chunk: Path, result: str | None) -> None:
                nonlocal positions
                positions += len(read_chunk(ChunkSource(str(chunk))).records)
                if result in results:
                    results[result] += 1
                bar.update(bar.completed + 1, positions=positions)

            written = lc0_selfplay(binary, weights.resolve(), games, args.visits, Path(args.out),
                                   temperature=args.temperature, on_game=on_game,
                                   openings=Path(args.openings).resolve() if args.openings else None,
                                   extra=[f"--{option}" for option in args.selfplay_option])
    return {"games": len(written), "positions": positions, "results": results}


def _games_to_play(args: argparse.Namespace) -> tuple[int, int]:
    """(games already in --out that count towards --games, games to play): --resume counts the finished games
    a killed run left; without it --out is added to."""
    if not args.resume:
        return 0, args.games
    folder = Path(args.out)
    done = len(list(folder.glob("game_*.gz"))) if folder.is_dir() else 0
    return min(done, args.games), max(0, args.games - done)


def run(args: argparse.Namespace) -> int:
    _check(args)
    started = time.perf_counter()
    done, games = _games_to_play(args)
    if games == 0:
        summary = {"games": 0, "positions": 0, "results": None}
    elif args.engine == "lc0":
        summary = _play_lc0(args, games)
    else:
        summary = _play_in_process(args, games, seed=args.seed + done)  # a resumed run plays other games
    seconds = time.perf_counter() - started
    summary = {"out": args.out, "engine": args.engine, **summary, "already_there": done,
               "seconds": round(seconds, 2),
               "positions_per_second": round(summary["positions"] / max(seconds, 1e-9), 1)}
    if args.json:
        json.dump(summary, sys.stdout, indent=1)
        print()
    else:
        results = summary["results"]
        told = (f" (+{results['1-0']} ={results['1/2-1/2']} -{results['0-1']} for White)" if results else "")
        kept = f" ({done} were there already)" if args.resume else ""
        print(f"{summary['games']} games, {summary['positions']:,} positions{told} written to {args.out}{kept} in "
              f"{seconds:.1f} s ({summary['positions_per_second']:,.0f} positions/s)")
    return 0
