"""`lc0distill net init`: a randomly initialised net of any architecture a config describes, written as an lc0
.pb.gz or an lc0distill .pt: a starting point for users, a fixture for tests, a net for lc0 to check."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lc0distill.config import load_config
from lc0distill.errors import Lc0DistillError
from lc0distill.lc0.weights import Encoding, write_net
from lc0distill.models.init import random_net
from lc0distill.models.net import count_parameters, flops_per_position
from lc0distill.models.store import save_model

PLACEHOLDER_DATA = "data.paths=[(net init reads no data)]"  # a recipe's data section is not needed here


def register(commands: argparse._SubParsersAction) -> None:
    init = commands.add_parser(
        "init", help="a randomly initialised net of the architecture a config describes",
        description="Write a randomly initialised net (PyTorch's initialisation; batch-norm statistics, layer-norm "
                    "and gate affines randomised, not 0 and 1) of the architecture in --config's net section and "
                    "the net.KEY=VALUE overrides: an SE-ResNet, or an attention body with net.body=attention.",
        epilog="example: lc0distill net init net.body=attention net.size=64x4 net.heads=4 net.policy=attention "
               "--out bt-64x4.pb.gz")
    init.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. net.size=64x4")
    init.add_argument("--config", help="a recipe (YAML); its net section is used")
    init.add_argument("--out", required=True, help="NET.pb.gz (lc0 weights) or NET.pt (lc0distill)")
    init.add_argument("--seed", type=int, default=0, help="the random seed (default 0)")
    init.add_argument("--encoding", choices=[e.value for e in Encoding], default=Encoding.LINEAR16.value,
                      help="the .pb.gz layers' encoding (default linear16, what lc0 v0.31 reads)")
    init.add_argument("--json", action="store_true", help="print one JSON object")
    init.set_defaults(run=run_init)


def run_init(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if not (out.name.endswith(".pb.gz") or out.suffix == ".pt"):
        raise Lc0DistillError(f"--out {out}: name it NET.pb.gz (lc0 weights) or NET.pt (lc0distill)")
    config = load_config(args.config, [PLACEHOLDER_DATA, *args.overrides]).net
    net = random_net(config, args.seed)
    if out.suffix == ".pt":
        save_model(net, out)
    else:
        write_net(net, out, Encoding(args.encoding))
    summary = {"path": str(out), "body": config.body.value, "size": config.name,
               "parameters": count_parameters(net), "flops_per_position": flops_per_position(net), "seed": args.seed}
    if args.json:
        json.dump(summary, sys.stdout)
        print()
    else:
        print(f"wrote {out}: {config.body.value} {config.name}, {summary['parameters']:,} parameters, "
              f"{summary['flops_per_position'] / 1e6:,.1f} MFLOP per position, seed {args.seed}")
    return 0
