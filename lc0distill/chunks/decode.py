"""Turn one record back into a position (python-chess board, FEN) and a readable dict of all its fields."""

from __future__ import annotations

import math

import chess
import numpy as np

from lc0distill.chess.input_formats import is_960_castling, is_canonical
from lc0distill.chess.policy_index import MOVES
from lc0distill.chess.transforms import FLIP, reverse_bits_in_bytes, reverse_bits_in_bytes_array, untransform_mask
from lc0distill.chunks.layouts import INVARIANCE_BLACK_TO_MOVE, INVARIANCE_TRANSFORM_MASK

_PIECES = (chess.PAWN, chess.KNIGHT, chess.BISHOP, chess.ROOK, chess.QUEEN, chess.KING)


def record_transform(record: np.void) -> int:
    """The canonical transform applied to this record (0 for non-canonical formats)."""
    return int(record["invariance_info"]) & INVARIANCE_TRANSFORM_MASK if is_canonical(int(record["input_format"])) else 0


def record_black_to_move(record: np.void) -> bool:
    if is_canonical(int(record["input_format"])):
        return bool(int(record["invariance_info"]) & INVARIANCE_BLACK_TO_MOVE)
    return int(record["side_to_move_or_enpassant"]) != 0


def _frame_masks(record: np.void, step: int) -> list[int]:
    """The 12 piece bitboards of history step `step` in lc0's bit order, transform undone (mover's view)."""
    stored = record["planes"][13 * step : 13 * step + 12]
    transform = record_transform(record)
    return [untransform_mask(int(m), transform) for m in reverse_bits_in_bytes_array(np.asarray(stored))]


def _ep_square(record: np.void, ours_black: bool) -> int | None:
    """En-passant square: the canonical byte, or for other formats the double step seen in history."""
    if is_canonical(int(record["input_format"])):
        byte = int(record["side_to_move_or_enpassant"])
        if record_transform(record) & FLIP:
            byte = reverse_bits_in_bytes(byte) & 0xFF
        if byte == 0:
            return None
        frame_square = 40 + (byte.bit_length() - 1)
    else:
        now, before = _frame_masks(record, 0)[6], _frame_masks(record, 1)[6]
        appeared, vanished = now & ~before, before & ~now
        if appeared & chess.BB_RANK_5 and vanished & chess.BB_RANK_7 and (appeared << 16) == vanished:
            frame_square = chess.lsb(appeared) + 8
        else:
            return None
    return chess.square_mirror(frame_square) if ours_black else frame_square


def record_to_board(record: np.void) -> chess.Board:
    """The current position of a record. The move number is unknown to a record and is given as 1."""
    black = record_black_to_move(record)
    us, them = (chess.BLACK, chess.WHITE) if black else (chess.WHITE, chess.BLACK)
    board = chess.Board(None)
    for slot, mask in enumerate(_frame_masks(record, 0)):
        colour = us if slot < 6 else them
        if black:
            mask = chess.flip_vertical(mask)
        for square in chess.scan_forward(mask):
            board.set_piece_at(square, chess.Piece(_PIECES[slot % 6], colour))
    board.turn = us
    flags = [int(record[f]) != 0 for f in ("castling_us_ooo", "castling_us_oo", "castling_them_ooo", "castling_them_oo")]
    rights = ""
    for has, (colour, letter) in zip(flags, [(us, "q"), (us, "k"), (them, "q"), (them, "k")]):
        if has:
            rights += letter.upper() if colour == chess.WHITE else letter
    board.set_castling_fen("".join(sorted(rights, key="KQkq".index)) or "-")
    board.ep_square = _ep_square(record, black)
    board.halfmove_clock = int(record["rule50_count"])
    return board


def _json_float(value: float) -> float | None:
    """JSON has no NaN or infinity: those are null (find_bad_records says what was wrong)."""
    return float(value) if math.isfinite(value) else None


def decode_record(record: np.void, fen: str | None = None) -> dict:
    """Every field of a record as JSON-ready values, plus the position's FEN and readable moves."""
    out: dict = {}
    for field in record.dtype.names:
        value = record[field]
        if field == "planes":
            out[field] = [f"{int(m):016x}" for m in value]
        elif field == "probabilities":
            probs = np.asarray(value)
            legal = np.flatnonzero(probs >= 0)
            out["policy"] = {MOVES[i]: _json_float(float(probs[i])) for i in legal[np.argsort(-probs[legal], kind="stable")]}
            out["illegal_marker"] = _illegal_marker(probs)
        elif field == "reserved":
            out[field] = [_json_float(v) for v in value]
        elif np.issubdtype(np.asarray(value).dtype, np.floating):
            out[field] = _json_float(float(value))
        else:
            out[field] = int(value)
    for field in ("played_idx", "best_idx"):
        if int(record["version"]) >= 6:
            out[field.replace("idx", "move")] = MOVES[int(record[field])] if int(record[field]) < len(MOVES) else None
    out["fen"] = fen if fen is not None else record_to_board(record).fen()
    out["castling_planes"] = "rook files" if is_960_castling(int(record["input_format"])) else "flags"
    return out


def _illegal_marker(probs: np.ndarray) -> str:
    if np.isnan(probs).any():
        return "nan"
    if (probs < 0).any():
        return "-1"
    return "0 (V3: illegal and unvisited moves look alike)"
