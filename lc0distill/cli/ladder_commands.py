"""`lc0distill ladder`: students of several sizes distilled from one teacher, timed in lc0 and played against
it at node counts and at a clock. Logic in lc0distill/ladder/."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lc0distill.cli.arguments import bounded_float, positive_int
from lc0distill.cli.match_commands import optional_engine_options, parse_engine_options, parse_sprt
from lc0distill.errors import Lc0DistillError
from lc0distill.ladder.plan import LadderPlan, parse_limits, parse_sizes
from lc0distill.match.players import DEFAULT_ENGINE_OPTIONS


def register(groups: argparse._SubParsersAction) -> None:
    parser = groups.add_parser(
        "ladder", help="students of several sizes distilled from one teacher, played against it in lc0",
        description="For each size: distil a student from --teacher with the equal-terms winning recipe "
                    "(docs/distillation.md; or --config), pick its best net on the validation games, export it "
                    "for lc0, score it on the held-out games, measure its nps in lc0 (the same binary, backend "
                    "and threads for every net), and play it against the teacher at each --nodes count and at "
                    "the clock (--movetime or --tc), game pairs on the built-in openings. Writes OUT/ladder.md, "
                    "ladder.json and ladder.png (Elo against size at each limit). A killed ladder continues "
                    "where it stopped: a finished rung is not trained again, a match resumes from its PGN.")
    parser.add_argument("--teacher", required=True, metavar="NET", help="the teacher: lc0 .pb.gz or .pt")
    parser.add_argument("--sizes", default="16x2,32x4,48x5,64x6",
                        help="student sizes, FILTERSxBLOCKS, comma-separated (default %(default)s)")
    parser.add_argument("--data", nargs="+", required=True, metavar="PATH",
                        help="training data: chunks, folders, .tar, shard folders, @lists")
    parser.add_argument("--validation", nargs="+", default=[], metavar="PATH",
                        help="games that pick each student's best net (default: the data's own held-out share)")
    parser.add_argument("--held-out", nargs="+", required=True, metavar="PATH",
                        help="games the table's policy loss and top-1 are scored on (never trained or tuned on)")
    parser.add_argument("--teacher-cache", metavar="DIR",
                        help="the teacher's outputs on the training data (lc0distill teacher cache; default: "
                             "the teacher runs live)")
    parser.add_argument("--config", metavar="RECIPE", help="a training recipe for every rung instead of the "
                                                            "winning one (its data, net size and run_dir are set "
                                                            "by the ladder)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a recipe override for every rung, e.g. train.steps=2000 (repeatable)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="the ladder's folder")
    parser.add_argument("--nodes", default="1,100", metavar="N,...",
                        help="node counts to play at (default %(default)s; '' for none)")
    clock = parser.add_mutually_exclusive_group()
    clock.add_argument("--movetime", type=positive_int, metavar="MS", help="an equal-time limit: ms per move")
    clock.add_argument("--tc", metavar="BASE+INC", help="an equal-time limit: a clock, seconds plus increment")
    parser.add_argument("--games", type=positive_int, default=100,
                        help="games of each student against the teacher at each limit (default %(default)s)")
    parser.add_argument("--decisive-games", type=positive_int, default=200,
                        help="games at nodes 1, and of the best student at the clock (default %(default)s)")
    parser.add_argument("--sprt", metavar="ELO0,ELO1[,ALPHA,BETA]",
                        help="stop the other pairings early when the SPRT decides (default: play them out)")
    parser.add_argument("--engine", default="lc0", metavar="PATH",
                        help="the lc0 binary (default: $LC0_BINARY, lc0 on PATH, the install cache)")
    parser.add_argument("--engine-option", action="append", default=[], metavar="KEY=VALUE",
                        help=f"a UCI option for every lc0, in matches and nps alike (repeatable; default "
                             f"{DEFAULT_ENGINE_OPTIONS})")
    parser.add_argument("--concurrency", type=positive_int, default=1,
                        help="games played at once (default %(default)s: every move gets the cores to itself)")
    parser.add_argument("--nps-positions", type=positive_int, default=8,
                        help="positions each net's nps is measured on (default %(default)s)")
    parser.add_argument("--nps-seconds", type=bounded_float(0.05, 600.0), default=1.0,
                        help="seconds of search on each (default %(default)s)")
    parser.add_argument("--selfplay-games", type=int, default=4,
                        help="lc0 self-play games of each net, for its positions/s (default %(default)s; 0: none)")
    parser.add_argument("--selfplay-visits", type=positive_int, default=16,
                        help="visits per move of those games (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="print ladder.json's object at the end")
    parser.set_defaults(run=run)


def plan_of(args: argparse.Namespace) -> LadderPlan:
    for item in args.set:
        if "=" not in item:
            raise Lc0DistillError(f"--set {item}: KEY=VALUE is needed, e.g. train.steps=2000")
    if args.selfplay_games < 0:
        raise Lc0DistillError(f"--selfplay-games {args.selfplay_games}: 0 (none) or more")
    for games, flag in ((args.games, "--games"), (args.decisive_games, "--decisive-games")):
        if games % 2:
            raise Lc0DistillError(f"{flag} {games}: an even number (every opening is played twice, colours swapped)")
    return LadderPlan(
        teacher=Path(args.teacher).resolve(), sizes=parse_sizes(args.sizes), data=tuple(args.data),
        held_out=tuple(args.held_out), out=args.out.resolve(),
        limits=parse_limits(args.nodes, args.movetime, args.tc), validation=tuple(args.validation),
        teacher_cache=args.teacher_cache, recipe=Path(args.config) if args.config else None,
        overrides=tuple(args.set), games=args.games, decisive_games=args.decisive_games,
        sprt=parse_sprt(args.sprt), engine_path=None if args.engine == "lc0" else args.engine,
        engine_options=parse_engine_options(args.engine_option),
        optional_engine_options=optional_engine_options(args.engine_option),
        concurrency=args.concurrency, nps_positions=args.nps_positions, nps_seconds=args.nps_seconds,
        selfplay_games=args.selfplay_games, selfplay_visits=args.selfplay_visits)


def run(args: argparse.Namespace) -> int:
    from lc0distill.ladder.run import run_ladder

    plan = plan_of(args)
    if not plan.teacher.is_file():
        raise Lc0DistillError(f"--teacher {args.teacher}: no such file")
    result = run_ladder(plan, log=lambda line: print(line, file=sys.stderr, flush=True))
    if args.json:
        json.dump(result, sys.stdout, indent=1, allow_nan=False)
        print()
    return 0
