"""Games per minute of `lc0distill match` on this machine: the raw-policy engine (batched over concurrent
games) and lc0 at --nodes 1 and --nodes 100, maia-1900 against maia-1100 (../shared/nets).

    python tools/bench_match.py [--games 40] [--concurrency 1,2,8,16] [--skip-lc0]

Each figure is one match of --games games on the built-in openings; printed with the machine's core count.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lc0distill.match.match import MatchOptions, run_match  # noqa: E402
from lc0distill.match.openings import builtin_openings  # noqa: E402
from lc0distill.match.players import DEFAULT_ENGINE_OPTIONS, UciLimits  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "nets"


def games_per_minute(nets: list[str], options: MatchOptions) -> tuple[float, int, float]:
    start = time.perf_counter()
    outcome = run_match(nets, options, lambda result, results: None)
    seconds = time.perf_counter() - start
    if outcome.failure:
        raise SystemExit(f"bench_match: {outcome.failure}")
    plies = sum(len(r.moves) for r in outcome.results)
    return len(outcome.results) / seconds * 60, plies, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", type=int, default=40)
    parser.add_argument("--concurrency", default="1,2,8,16", help="policy engine concurrencies (default 1,2,8,16)")
    parser.add_argument("--lc0-concurrency", type=int, default=2, help="lc0 games at once (default 2 = cores)")
    parser.add_argument("--skip-lc0", action="store_true")
    args = parser.parse_args()
    nets = [str(SHARED / "maia-1900.pb.gz"), str(SHARED / "maia-1100.pb.gz")]
    if not all(Path(n).exists() for n in nets):
        raise SystemExit(f"bench_match: the maia nets are not in {SHARED}")
    openings = tuple(builtin_openings())
    print(f"{os.cpu_count()} cores; {args.games} games of maia-1900 vs maia-1100 per row, built-in openings")
    print(f"{'engine':<22} {'concurrency':>11} {'games/min':>10} {'plies':>7} {'seconds':>8}")
    for runtime in ("onnxruntime", "pytorch"):
        for concurrency in map(int, args.concurrency.split(",")):
            options = MatchOptions(engine="policy", games=args.games, openings=openings, concurrency=concurrency,
                                   runtime=runtime)
            rate, plies, seconds = games_per_minute(nets, options)
            print(f"{f'policy, {runtime}':<22} {concurrency:>11} {rate:>10.1f} {plies:>7} {seconds:>8.1f}")
    if not args.skip_lc0:
        for nodes in (1, 100):
            options = MatchOptions(engine="lc0", limits=UciLimits(nodes=nodes), games=args.games, openings=openings,
                                   concurrency=args.lc0_concurrency, engine_options=DEFAULT_ENGINE_OPTIONS)
            rate, plies, seconds = games_per_minute(nets, options)
            print(f"{f'lc0 --nodes {nodes}':<22} {args.lc0_concurrency:>11} {rate:>10.1f} {plies:>7} {seconds:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
