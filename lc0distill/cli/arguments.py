"""Argument types shared by the commands: a bad value is argparse's one-line usage error, not a traceback."""

from __future__ import annotations

import argparse
import math

from lc0distill.chess.input_formats import SUPPORTED_INPUT_FORMATS

PATHS_HELP = ("chunk files (.gz or uncompressed), directories (searched recursively), .tar archives, or shard "
              "folders (data repack: read back as the chunks they were made from)")


def input_format(text: str) -> int:
    value = int(text) if text.strip().lstrip("-").isdigit() else None
    if value not in SUPPORTED_INPUT_FORMATS:
        raise argparse.ArgumentTypeError(f"{text!r} is not an input format lc0 writes "
                                         f"({', '.join(map(str, sorted(SUPPORTED_INPUT_FORMATS)))})")
    return value


def positive_int(text: str) -> int:
    value = int(text) if text.strip().lstrip("-").isdigit() else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number of at least 1 is needed")
    return value


def bounded_float(low: float, high: float = float("inf"), *, low_included: bool = True):
    """An argparse type: a finite number in [low, high) (or (low, high) when low is excluded): a tolerance of
    -1 or nan would otherwise fail much later with a misleading message."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        above = value >= low if low_included else value > low
        if not (math.isfinite(value) and above and value < high):
            bounds = f"{'[' if low_included else '('}{low:g}, {high:g})"
            raise argparse.ArgumentTypeError(f"{text!r}: a finite number in {bounds} is needed")
        return value
    return parse


non_negative_float = bounded_float(0.0)


def refuse_shard_folders(paths, command: str) -> None:
    """Commands that read chunks record by record say so when given a shard folder (data repack), instead of
    finding no chunk in it."""
    from lc0distill.errors import Lc0DistillError
    from lc0distill.shards.index import is_shard_folder

    for path in paths:
        if is_shard_folder(path):
            raise Lc0DistillError(f"{path}: a shard folder (data repack): {command} reads chunks; give it the chunks "
                                  "the shards were repacked from (train, evaluate, data stats and data inspect read "
                                  "shard folders)")
