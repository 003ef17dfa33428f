"""The positions every export is checked on: built-in games (check_positions.txt) or the user's own chunks.

Planes come out as the lc0 engine feeds them (raw rule50 count for formats 1-3), which is what exported
graphs take. The built-in set is encoded in the net's own input format; chunks are used as stored.
"""

from __future__ import annotations

from importlib import resources

import chess
import numpy as np
import torch

from lc0distill.chunks.config import DataConfig, make_loader
from lc0distill.chunks.sources import find_chunks
from lc0distill.errors import Lc0DistillError
from lc0distill.models.inference import board_planes

DEFAULT_POSITIONS = 256


def builtin_boards() -> list[chess.Board]:
    """Every position of the built-in games (with their move history) and the single FEN positions."""
    boards: list[chess.Board] = []
    text = resources.files("lc0distill.export").joinpath("check_positions.txt").read_text()
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "moves":
            board = chess.Board()
            for uci in rest.split():
                board.push_uci(uci)
                boards.append(board.copy())
        elif kind == "fen":
            boards.append(chess.Board(rest))
    return boards


def _spread(items: list, count: int) -> list:
    """`count` items spread evenly over the list (all of them if it is shorter)."""
    if len(items) <= count:
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, count).round().astype(int)]


def builtin_planes(input_format: int, positions: int = DEFAULT_POSITIONS) -> torch.Tensor:
    """(N, 112, 8, 8): the FEN positions plus game positions spread over the games, in `input_format`."""
    boards = builtin_boards()
    single = [b for b in boards if not b.move_stack]
    played = [b for b in boards if b.move_stack]
    chosen = single + _spread(played, max(0, positions - len(single)))
    planes, _ = board_planes(chosen[:positions], input_format)
    return planes


def chunk_planes(paths: list[str], positions: int = DEFAULT_POSITIONS) -> torch.Tensor:
    """(N, 112, 8, 8): the first `positions` records the loader gives (its seeded chunk order, every record)."""
    sources = list(find_chunks(paths))
    if not sources:
        raise Lc0DistillError(f"no chunks found in {', '.join(paths)}")
    config = DataConfig(paths=paths, batch_size=positions, sample_rate=1, shuffle_buffer=0, workers=0)
    for batch in make_loader(config, sources, passes=1):
        return batch.planes[:positions]
    raise Lc0DistillError(f"no readable records in {', '.join(paths)}")


def check_planes(input_format: int, data: list[str] | None = None, positions: int = DEFAULT_POSITIONS) -> torch.Tensor:
    return chunk_planes(data, positions) if data else builtin_planes(input_format, positions)
