"""Build V6 records from a played game (supervised data: engine games, PGN) the way lc0 lays them out.

The policy is one-hot on the played move with illegal moves marked -1, z comes from the result, the q/d
fields from z unless evaluations are given, and plies_left counts the plies to the game's end.
"""

from __future__ import annotations

from typing import Sequence

import chess
import numpy as np

from lc0distill.chess.encoding import GameHistory, HistoryFill
from lc0distill.chess.policy_index import move_to_index
from lc0distill.chunks.layouts import NO_MOVE, RECORD_DTYPE

RESULT_SCORES = {"1-0": 1.0, "0-1": -1.0, "1/2-1/2": 0.0}  # white's q


def records_from_game(
    moves: Sequence[chess.Move],
    result: str,
    input_format: int = 1,
    start: chess.Board | None = None,
    white_q: Sequence[float | None] | None = None,
    fill: HistoryFill = HistoryFill.FEN_ONLY,
) -> np.ndarray:
    """(N,) RECORD_DTYPE: one record per position before each move.

    `white_q`, when given, holds an evaluation per position (white's view, in [-1, 1]; None where
    unknown) used for the root/best/played q fields instead of the result.
    """
    if result not in RESULT_SCORES:
        raise ValueError(f"unknown result {result!r} (expected 1-0, 0-1 or 1/2-1/2)")
    records = np.zeros(len(moves), dtype=RECORD_DTYPE)
    records["version"] = 6
    records["input_format"] = input_format
    records["probabilities"] = -1.0
    records["orig_q"] = records["orig_d"] = records["orig_m"] = np.nan
    records["opp_played_idx"] = records["next_played_idx"] = NO_MOVE
    white_result = RESULT_SCORES[result]
    draw = np.float32(1.0 if white_result == 0.0 else 0.0)
    history = GameHistory(start)
    for i, move in enumerate(moves):
        board = history.board
        encoded = history.encode(input_format, fill)
        record = records[i : i + 1]
        for field in ("castling_us_ooo", "castling_us_oo", "castling_them_ooo", "castling_them_oo",
                      "side_to_move_or_enpassant", "rule50_count", "invariance_info"):
            record[field] = getattr(encoded, field)
        record["planes"] = encoded.stored_planes
        for legal in board.legal_moves:
            record["probabilities"][0, move_to_index(board, legal, encoded.transform)] = 0.0
        played = move_to_index(board, move, encoded.transform)
        record["probabilities"][0, played] = 1.0
        record["played_idx"] = record["best_idx"] = played
        sign = 1.0 if board.turn == chess.WHITE else -1.0
        record["result_q"] = sign * white_result
        record["result_d"] = draw
        known = white_q is not None and white_q[i] is not None
        q = sign * float(white_q[i]) if known else sign * white_result
        d = max(0.0, 1.0 - abs(q)) if known else draw  # a draw share consistent with q: w, l >= 0
        for prefix in ("root", "best", "played"):
            record[f"{prefix}_q"] = q
            record[f"{prefix}_d"] = d
        record["plies_left"] = len(moves) - i
        history.push(move)
    return records
