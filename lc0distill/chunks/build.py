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


def records_from_net_game(
    moves: Sequence[chess.Move],
    result: str,
    evaluations: Sequence,
    input_format: int = 1,
    start: chess.Board | None = None,
    fill: HistoryFill = HistoryFill.FEN_ONLY,
) -> np.ndarray:
    """(N,) RECORD_DTYPE of a game a net played against itself, the targets being the net's own outputs.

    `evaluations[i]` is the net's raw evaluation of the position before move i (models.inference.Evaluation:
    policy over the legal moves, WDL or q, moves-left): the policy field holds that softmax (illegal moves -1),
    best_idx its most probable move, played_idx the move played; orig_q/orig_d and root/best/played q/d its
    raw value (no search was made, so they are the same), the m fields its moves-left (0 without the head);
    z comes from the result and plies_left from the game's length.
    """
    records = records_from_game(moves, result, input_format, start, fill=fill)
    history = GameHistory(start)
    for i, (move, evaluation) in enumerate(zip(moves, evaluations)):
        board = history.board
        transform = history.encode(input_format, fill).transform
        record = records[i : i + 1]
        record["probabilities"] = -1.0
        best, best_p = None, -1.0
        for uci, p in evaluation.policy.items():
            index = move_to_index(board, chess.Move.from_uci(uci), transform)
            record["probabilities"][0, index] = p
            if p > best_p:
                best, best_p = index, p
        record["best_idx"] = best
        if evaluation.wdl is not None:
            q, d = evaluation.wdl[0] - evaluation.wdl[2], evaluation.wdl[1]
        else:
            q, d = evaluation.q, 0.0
        for prefix in ("orig", "root", "best", "played"):
            record[f"{prefix}_q"] = q
            record[f"{prefix}_d"] = d
            record[f"{prefix}_m"] = evaluation.moves_left if evaluation.moves_left is not None else 0.0
        history.push(move)
    return records
