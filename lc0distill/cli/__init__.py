"""The `lc0distill` command. Each command group lives in its own module and registers its parsers here."""

from __future__ import annotations

import argparse
import re
import sys
from typing import Sequence

from lc0distill import __version__
from lc0distill.cli import (data_commands, engine_commands, export_commands, ladder_commands, match_commands,
                            net_commands, nets_commands, pbt_commands, plot_commands, quickstart, teacher_commands,
                            train_commands)
from lc0distill.errors import Lc0DistillError

EXIT_USER_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lc0distill",
        description="Train and distil chess networks in the Leela Chess Zero style, on lc0's own data and weights.",
    )
    parser.add_argument("--version", action="version", version=f"lc0distill {__version__}")
    groups = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)
    quickstart.register(groups)
    data_commands.register(groups)
    net_commands.register(groups)
    nets_commands.register(groups)
    train_commands.register(groups)
    export_commands.register(groups)
    engine_commands.register(groups)
    plot_commands.register(groups)
    match_commands.register(groups)
    ladder_commands.register(groups)
    teacher_commands.register(groups)
    pbt_commands.register(groups)
    return parser


def parse_arguments(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """The command's arguments. A command with KEY=VALUE overrides (train, pbt) takes them anywhere among its
    flags (argparse alone gives a positional list one place: `train --config R a=1 --fresh b=2` would refuse
    b=2); any other word it does not know is refused as argparse refuses it."""
    args, unknown = parser.parse_known_args(_negative_values_attached(sys.argv[1:] if argv is None else argv))
    if unknown and isinstance(getattr(args, "overrides", None), list) and all(map(_is_override, unknown)):
        args.overrides = [*args.overrides, *unknown]
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


# Options whose value may start with a minus (--sprt -10,10, --resign -600,4): argparse takes "-10,10" for an
# option of its own unless it is attached (--sprt=-10,10), so it is attached here.
NEGATIVE_VALUE_OPTIONS = ("--sprt", "--resign")


def _negative_values_attached(argv: Sequence[str]) -> list[str]:
    words, i = [], 0
    while i < len(argv):
        word = str(argv[i])
        following = str(argv[i + 1]) if i + 1 < len(argv) else ""
        if word in NEGATIVE_VALUE_OPTIONS and re.match(r"-\.?\d", following):
            words.append(f"{word}={following}")
            i += 2
        else:
            words.append(word)
            i += 1
    return words


def _is_override(word: str) -> bool:
    return not word.startswith("-") and "=" in word


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parse_arguments(parser, argv)
    try:
        return int(args.run(args) or 0)
    except Lc0DistillError as error:
        print(f"lc0distill: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("lc0distill: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def entry_point() -> None:
    sys.exit(main())
