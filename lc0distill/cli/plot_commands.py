"""`lc0distill plot`: the loss and held-out metric curves of training runs, side by side, as one PNG."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(groups: argparse._SubParsersAction) -> None:
    plot = groups.add_parser(
        "plot", help="draw the loss and held-out metric curves of training runs as a PNG",
        description="Draw the curves a training run records in RUN_DIR/metrics.jsonl - training losses, held-out "
                    "policy loss, top-1 accuracy and value MSE, and the learning-rate and teacher-weight "
                    "schedules when present - with one line per run, labelled with its folder name, against "
                    "the step. Malformed lines are skipped with a warning.")
    plot.add_argument("runs", nargs="+", metavar="RUN_DIR",
                      help="train.run_dir folders (or their metrics.jsonl files)")
    plot.add_argument("--out", required=True, metavar="FILE.png", help="the image to write (atomically)")
    plot.add_argument("--title", metavar="TEXT", help="a title above the panels")
    plot.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from lc0distill.report.plot import plot_runs

    out = plot_runs([Path(p) for p in args.runs], Path(args.out), args.title)
    print(f"wrote {out}")
    return 0
