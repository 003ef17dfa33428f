"""The positions lc0 and PyTorch are compared on: the export check's built-in games, every special move kept.

The built-in games (lc0distill/export/check_positions.txt) are played from the start, so every position
has real history. A spread of them is taken as the export check takes it, after first keeping every
position where castling, en passant or a promotion is legal or has just been played, the single FEN
positions (lc0 fills their history) and the game ends (no legal move: lc0 still evaluates them).
"""

from __future__ import annotations

import chess

from lc0distill.export.check_positions import builtin_boards

DEFAULT_POSITIONS = 256


def _last_move(board: chess.Board) -> tuple[chess.Board, chess.Move] | None:
    if not board.move_stack:
        return None
    before = board.copy()
    return before, before.pop()


def features(board: chess.Board) -> set[str]:
    """What a position exercises: castling, en-passant, promotion (legal now or just played), fen, game-end."""
    found = set()
    if not board.move_stack:
        found.add("fen")
    legal = list(board.legal_moves)
    if not legal:
        found.add("game-end")
    if any(board.is_castling(m) for m in legal):
        found.add("castling")
    if any(board.is_en_passant(m) for m in legal):
        found.add("en-passant")
    if any(m.promotion for m in legal):
        found.add("promotion")
    last = _last_move(board)
    if last is not None:
        before, move = last
        if before.is_castling(move):
            found.add("castling")
        if before.is_en_passant(move):
            found.add("en-passant")
        if move.promotion:
            found.add("promotion")
    return found


def _spread(items: list, count: int) -> list:
    if count <= 0:
        return []
    if len(items) <= count:
        return list(items)
    step = (len(items) - 1) / max(1, count - 1)
    return [items[round(i * step)] for i in range(count)]


def engine_check_boards(count: int = DEFAULT_POSITIONS) -> list[chess.Board]:
    """`count` positions with history: every special one first (FEN positions, castling, en passant,
    promotions, game ends, spread over them if there are more than `count`), then ordinary ones spread
    over the games."""
    boards = builtin_boards()
    special = [b for b in boards if features(b)]
    ordinary = [b for b in boards if not features(b)]
    chosen = _spread(special, count)
    return chosen + _spread(ordinary, count - len(chosen))
