"""The kickstarting PBT demo against a fixed schedule (issue 16): runs configs/pbt-kickstart-maia.yaml with
`lc0distill pbt`, then the same recipe as one plain run (member 0's hyperparameters, kept fixed) of as many
steps as the whole population trained (population x train.steps), and prints the table of PBT's choices and
the held-out policy losses: PBT's best member, the fixed run at a member's step count and at its end.

    python tools/pbt_demo.py [--recipe configs/pbt-kickstart-maia.yaml] [--fixed-steps N] [--fresh] [KEY=VALUE ...]

Both runs resume if killed (run the same command again; a finished fixed run is only evaluated again).
--fresh starts the PBT run again. Prints one JSON line at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default=str(ROOT / "configs" / "pbt-kickstart-maia.yaml"))
    parser.add_argument("--fixed-steps", type=int,
                        help="steps of the fixed run (default: population x train.steps, the PBT run's total)")
    parser.add_argument("--fresh", action="store_true", help="start the PBT run again (lc0distill pbt --fresh)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args()

    from lc0distill.config import dump_config, load_config
    from lc0distill.pbt.config import PbtRunConfig

    config = load_config(args.recipe, args.overrides, validate=PbtRunConfig)
    started = time.perf_counter()
    command = [sys.executable, "-m", "lc0distill", "pbt", "--config", args.recipe, "--json",
               *(["--fresh"] if args.fresh else []), *args.overrides]
    pbt = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    summary = json.loads(pbt.stdout.strip().splitlines()[-1])
    pbt_seconds = time.perf_counter() - started

    fixed_dir = Path(config.train.run_dir + "-fixed")
    fixed_recipe = fixed_dir.parent / f"{fixed_dir.name}.yaml"
    steps = args.fixed_steps or config.pbt.population * config.train.steps
    # Alone on the machine, the fixed run takes every core (the members shared them): fewer minutes, same steps.
    training = config.training().model_copy(update={"train": config.train.model_copy(update={
        "run_dir": str(fixed_dir), "steps": steps, "eval_every": config.pbt.perturb_every,
        "checkpoint_every": config.pbt.perturb_every, "threads": os.cpu_count() or 1})})
    fixed_dir.parent.mkdir(parents=True, exist_ok=True)
    fixed_recipe.write_text(dump_config(training))
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lc0distill", "train", "--config", str(fixed_recipe)],
                   stdout=subprocess.PIPE, text=True, check=True)
    fixed_seconds = time.perf_counter() - started
    metric = summary["metric"]
    fixed_at = _test_metric_by_step(fixed_dir / "metrics.jsonl", metric)

    print(Path(summary["table"]).read_text())
    result = {"pbt_best_member": summary["best"]["member"], f"pbt_best_{metric}": summary["best"][metric],
              "pbt_best_hyperparameters": summary["best"]["hyperparameters"],
              "pbt_members": {m["member"]: m[metric] for m in summary["members"]},
              "pbt_exploits": len(summary["exploits"]), "pbt_seconds": round(pbt_seconds),
              "fixed_steps": steps, f"fixed_{metric}": fixed_at.get(steps),
              f"fixed_{metric}_at_step_{config.train.steps}": fixed_at.get(config.train.steps),
              "fixed_seconds": round(fixed_seconds), "png": summary["png"], "fixed_run": str(fixed_dir)}
    print(json.dumps(result))
    return 0


def _test_metric_by_step(metrics: Path, metric: str) -> dict[int, float | None]:
    """{step: the fixed run's held-out metric} from its "test" records (every perturb_every steps; the first
    record of a step, as a finished run evaluated again adds another)."""
    by_step: dict[int, float | None] = {}
    for line in metrics.read_text().splitlines():
        record = json.loads(line)
        if record["kind"] == "test":
            by_step.setdefault(record["step"], record.get(metric))
    return by_step


if __name__ == "__main__":
    sys.exit(main())
