"""`lc0distill pbt`: population-based training of a recipe's student on Ray Tune (lc0distill.pbt)."""

from __future__ import annotations

import argparse
import json
import sys

from lc0distill.cli.arguments import positive_int
from lc0distill.errors import Lc0DistillError


def register(groups: argparse._SubParsersAction) -> None:
    pbt = groups.add_parser(
        "pbt", help="population-based training on Ray Tune (teacher weights, lr, temperature)",
        description="Train a population of students from a recipe (configs/pbt-*.yaml: a training recipe plus a "
                    "pbt section) under Ray Tune's PopulationBasedTraining: every --perturb-every steps each "
                    "member reports its held-out policy loss; the worse members take a better one's checkpoint "
                    "and hyperparameters and perturb them (each teacher's weight, lr, temperature). Ends with the "
                    "best member's net (best.pb.gz), pbt.md and pbt.png (each member's lambda_k and lr over "
                    "steps) and Ray's results in train.run_dir. Started again, a killed run resumes. Needs the "
                    "extra: pip install 'lc0distill[pbt]'.")
    pbt.add_argument("--config", metavar="RECIPE.yaml", required=True, help="the PBT recipe")
    pbt.add_argument("--population", type=positive_int, help="members (default: pbt.population)")
    pbt.add_argument("--perturb-every", type=positive_int, metavar="STEPS",
                     help="steps between reports and perturbations (default: pbt.perturb_every)")
    pbt.add_argument("--ray-address", metavar="ADDR", help="a running Ray cluster (ray start --head ...); "
                     "train.run_dir must then be on storage every node shares. Default: Ray starts here")
    pbt.add_argument("--fresh", action="store_true", help="discard a previous run in train.run_dir")
    pbt.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    pbt.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides of the recipe")
    pbt.set_defaults(run=run_pbt_command)


def run_pbt_command(args: argparse.Namespace) -> int:
    try:
        import ray.tune  # noqa: F401
    except ImportError:
        raise Lc0DistillError("lc0distill pbt needs Ray Tune: pip install 'lc0distill[pbt]'") from None
    from lc0distill.config import load_config
    from lc0distill.pbt.config import PbtRunConfig
    from lc0distill.pbt.driver import run_pbt

    overrides = list(args.overrides)
    if args.population:
        overrides.append(f"pbt.population={args.population}")
    if args.perturb_every:
        overrides.append(f"pbt.perturb_every={args.perturb_every}")
    config = load_config(args.config, overrides, validate=PbtRunConfig)
    summary = run_pbt(config, ray_address=args.ray_address, fresh=args.fresh,
                      log=lambda message: print(message, file=sys.stderr))
    if args.json:
        print(json.dumps(summary))
        return 0
    best = summary["best"]
    print(f"best: {best['member']} ({summary['metric']} {best[summary['metric']]:.4f} at step {best['step']}), "
          f"net {best['nets'].get('pb.gz', best['nets'].get('pt', 'not exported'))}")
    print(f"table {summary['table']}, figure {summary['png']}, Ray results {summary['ray_results']}")
    return 0
