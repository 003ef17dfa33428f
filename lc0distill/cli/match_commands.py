"""`lc0distill match`: nets play game pairs in the lc0 engine (or by their raw policy), with Elo and error bars.
Logic in lc0distill/match/."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from lc0distill.cli.arguments import positive_int
from lc0distill.errors import Lc0DistillError
from lc0distill.match.game import Adjudication
from lc0distill.match.match import MatchOptions, Sprt, net_names, run_match
from lc0distill.match.openings import builtin_openings, read_openings
from lc0distill.match.players import DEFAULT_ENGINE_OPTIONS, UciLimits, clock_limits
from lc0distill.match.report import live_status, summary, text_report
from lc0distill.progress import track

_ADJUDICATION = Adjudication()
POLICY_CONCURRENCY = 16


def register(groups: argparse._SubParsersAction) -> None:
    parser = groups.add_parser(
        "match", help="play nets against each other (lc0 engine or raw policy); Elo with a 95%% interval",
        description="Play game pairs between nets: every opening twice, colours swapped. Each net runs in its own "
                    "lc0 process over UCI (nets may be .pb.gz, .pt or checkpoints), or, with --engine policy, "
                    "plays the argmax of its raw policy in-process (what lc0 plays at --nodes 1; no lc0 "
                    "needed). Prints W/D/L per net and colour, the game pairs in pentanomial form, the Elo "
                    "difference with a 95%% interval from the pentanomial variance, LOS and the draw ratio; "
                    "for 3+ nets a maximum-likelihood round robin anchored on the first net.",
        epilog=f"Adjudication: {_ADJUDICATION.describe()}; the rules' draws (threefold repetition, 50 moves) are "
               "claimed at once.")
    parser.add_argument("nets", nargs="+", metavar="NET", help="two or more nets")
    limit = parser.add_mutually_exclusive_group()
    limit.add_argument("--nodes", type=positive_int, help="nodes per move (default 1)")
    limit.add_argument("--movetime", type=positive_int, metavar="MS", help="milliseconds per move")
    limit.add_argument("--tc", metavar="BASE+INC", help="a clock: seconds, plus an increment per move, e.g. 10+0.1")
    parser.add_argument("--games", type=positive_int, default=100,
                        help="games per pair of nets, even (default %(default)s: 50 openings x 2 colours)")
    parser.add_argument("--openings", metavar="FILE", help="PGN or EPD of starting positions (default: the "
                                                           "built-in balanced suite)")
    parser.add_argument("--concurrency", type=positive_int, default=None,
                        help=f"games played at once (default 1 with lc0: every move gets the cores to itself; "
                             f"{POLICY_CONCURRENCY} with --engine policy, whose moves are batched across games)")
    parser.add_argument("--engine", default="lc0", metavar="PATH|policy",
                        help="the lc0 binary (default: $LC0_BINARY, lc0 on PATH, the install cache), or 'policy' "
                             "for the raw policy in-process")
    parser.add_argument("--engine-option", action="append", default=[], metavar="KEY=VALUE",
                        help=f"a UCI option for every lc0 (repeatable; default {DEFAULT_ENGINE_OPTIONS}, "
                             "e.g. Backend=blas, MinibatchSize=16)")
    parser.add_argument("--pgn", metavar="OUT", help="write every game here (appended as each game ends)")
    parser.add_argument("--resume", action="store_true", help="continue the match the --pgn file holds")
    parser.add_argument("--sprt", metavar="ELO0,ELO1[,ALPHA,BETA]",
                        help="stop as soon as the SPRT accepts H0 (elo <= ELO0) or H1 (elo >= ELO1); logistic "
                             "Elo of the first net over the second; alpha = beta = 0.05 by default")
    parser.add_argument("--resign", metavar="CP,MOVES", default=f"{_ADJUDICATION.resign_cp},{_ADJUDICATION.resign_moves}",
                        help="resign adjudication (default %(default)s; 0,0: off)")
    parser.add_argument("--draw", metavar="CP,MOVES,FROM", help=f"draw adjudication (default {_ADJUDICATION.draw_cp},"
                        f"{_ADJUDICATION.draw_moves},{_ADJUDICATION.draw_from_move}; 0,0,0: off)")
    parser.add_argument("--max-plies", type=positive_int, default=_ADJUDICATION.max_plies,
                        help="a game still going after this many plies is a draw (default %(default)s)")
    parser.add_argument("--move-timeout", type=float, default=60.0, metavar="S",
                        help="an lc0 that has not answered this long after its move's time is a failure "
                             "(default %(default)s)")
    parser.add_argument("--threads", type=int, default=0, help="PyTorch/onnxruntime threads for --engine policy "
                                                                "(default %(default)s: the library's default)")
    parser.add_argument("--runtime", choices=("onnxruntime", "pytorch"), default="onnxruntime",
                        help="what runs the nets for --engine policy (default %(default)s: 2-2.5x faster than "
                             "PyTorch on a CPU at the small batches of a match)")
    parser.add_argument("--json", action="store_true", help="print one JSON object (its shape in docs/commands.md)")
    parser.set_defaults(run=run)


def _numbers(text: str, count: int, option: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        values = []
    if len(values) != count or not all(math.isfinite(v) for v in values):
        raise Lc0DistillError(f"{option} {text}: {count} comma-separated finite numbers are needed")
    return values


def _counts(text: str, count: int, option: str) -> list[int]:
    """Whole numbers >= 0 (centipawns, moves): a fraction or a negative would change what the rule means."""
    values = _numbers(text, count, option)
    if any(v < 0 or v != int(v) for v in values):
        raise Lc0DistillError(f"{option} {text}: whole numbers >= 0 are needed")
    return [int(v) for v in values]


def _limits(args: argparse.Namespace) -> UciLimits:
    if args.engine == "policy":
        given = [name for name in ("nodes", "movetime", "tc") if getattr(args, name) is not None]
        if given:
            raise Lc0DistillError(f"--{given[0]}: --engine policy plays the raw policy (one net evaluation per "
                                  "move); search limits need the lc0 engine")
        return UciLimits(nodes=1)
    if args.movetime is not None:
        return UciLimits(movetime=args.movetime / 1000)
    if args.tc is not None:
        return clock_limits(args.tc)
    return UciLimits(nodes=args.nodes or 1)


def _adjudication(args: argparse.Namespace) -> Adjudication:
    resign_cp, resign_moves = _counts(args.resign, 2, "--resign")
    draw = _counts(args.draw, 3, "--draw") if args.draw else [_ADJUDICATION.draw_cp, _ADJUDICATION.draw_moves,
                                                                  _ADJUDICATION.draw_from_move]
    if args.move_timeout <= 0 or not math.isfinite(args.move_timeout):
        raise Lc0DistillError(f"--move-timeout {args.move_timeout:g}: seconds > 0 are needed")
    if args.threads < 0:
        raise Lc0DistillError(f"--threads {args.threads}: 0 (the library's default) or more")
    big = 10**9  # "off": a condition that never holds
    return Adjudication(resign_cp=int(resign_cp) or big, resign_moves=int(resign_moves) or big,
                        draw_cp=int(draw[0]) if draw[1] else -1, draw_moves=int(draw[1]) or big,
                        draw_from_move=int(draw[2]), max_plies=args.max_plies)


def parse_sprt(text: str | None) -> Sprt | None:
    if text is None:
        return None
    parts = text.split(",")
    values = _numbers(text, len(parts), "--sprt") if len(parts) in (2, 4) else _numbers(text, 2, "--sprt")
    sprt = Sprt(*values)
    if not sprt.elo1 > sprt.elo0 or not (0 < sprt.alpha < 0.5 and 0 < sprt.beta < 0.5):
        raise Lc0DistillError(f"--sprt {text}: ELO1 must be above ELO0 and ALPHA, BETA in (0, 0.5)")
    return sprt


def parse_engine_options(items: list[str]) -> dict[str, str]:
    options = dict(DEFAULT_ENGINE_OPTIONS)
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise Lc0DistillError(f"--engine-option {item!r}: KEY=VALUE is needed, e.g. Backend=blas")
        if key.strip() == "WeightsFile":
            raise Lc0DistillError("--engine-option WeightsFile: each net is its own WeightsFile")
        options[key.strip()] = value.strip()
    return options


def optional_engine_options(items: list[str]) -> frozenset[str]:
    """Our default options the user did not set: left out for an lc0 that lacks them."""
    return frozenset(DEFAULT_ENGINE_OPTIONS) - {item.partition("=")[0].strip() for item in items}


def match_options(args: argparse.Namespace) -> MatchOptions:
    if args.resume and not args.pgn:
        raise Lc0DistillError("--resume continues the match in a --pgn file: name it")
    openings = read_openings(args.openings) if args.openings else builtin_openings()
    engine = "policy" if args.engine == "policy" else "lc0"
    return MatchOptions(
        engine=engine, limits=_limits(args), games=args.games, openings=tuple(openings),
        openings_source=Path(args.openings).name if args.openings else "built-in",
        concurrency=args.concurrency or (POLICY_CONCURRENCY if engine == "policy" else 1), adjudication=_adjudication(args), sprt=parse_sprt(args.sprt),
        pgn=Path(args.pgn) if args.pgn else None, resume=args.resume,
        engine_path=None if args.engine in ("lc0", "policy") else args.engine,
        engine_options=parse_engine_options(args.engine_option),
        optional_engine_options=optional_engine_options(args.engine_option),
        move_timeout=args.move_timeout, threads=args.threads,
        runtime=args.runtime)


def run(args: argparse.Namespace) -> int:
    options = match_options(args)
    names = net_names(args.nets)
    total = options.games * len(args.nets) * (len(args.nets) - 1) // 2
    with track("match", total=total, unit="games") as bar:
        outcome = run_match(args.nets, options, lambda result, results: bar.update(
            len(results), info=live_status(names, results)))
    report = summary(outcome, options)
    if args.json:
        json.dump(report, sys.stdout, indent=1, allow_nan=False)
        print()
    else:
        print(text_report(report))
    if outcome.failure is not None:
        raise outcome.failure  # the games before it are in the report and the PGN; one line names the net and game
    return 0
