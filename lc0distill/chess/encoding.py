"""Encode python-chess positions with history into lc0's 104 history planes and auxiliary bytes.

The result is exactly what lc0 stores in a training record (FORMATS.md §1.6): 8 history steps x 13
bitboards seen from the side to move, the castling and side/en-passant bytes, rule50 and the
invariance bits, for every input format lc0 writes (1, 2, 3, 4, 5, 132, 133).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from enum import Enum
from typing import Iterable, Sequence

import chess
import numpy as np

from lc0distill.chess.input_formats import (
    SUPPORTED_INPUT_FORMATS,
    is_960_castling,
    is_canonical,
    keeps_only_repeats,
)
from lc0distill.chess.transforms import (
    FLIP,
    MIRROR,
    NO_TRANSFORM,
    TRANSPOSE,
    reverse_bits_in_bytes,
    reverse_bits_in_bytes_array,
    transform_mask,
)

HISTORY_STEPS = 8
PLANES_PER_STEP = 13
HISTORY_PLANES = HISTORY_STEPS * PLANES_PER_STEP  # 104
BLACK_TO_MOVE_BIT = 0x80
_ALL = (1 << 64) - 1
_PIECE_ORDER = (chess.PAWN, chess.KNIGHT, chess.BISHOP, chess.ROOK, chess.QUEEN, chess.KING)


class HistoryFill(str, Enum):
    """How history before the first known position is filled (lc0's HistoryFill option)."""

    NO = "no"
    FEN_ONLY = "fen_only"  # repeat the first position unless it is the standard start (lc0's default)
    ALWAYS = "always"


@dataclass(frozen=True)
class Snapshot:
    """One position of a game, as the encoder needs it (absolute colours, python-chess squares)."""

    pieces: tuple[tuple[int, ...], tuple[int, ...]]  # [colour][piece type 1..6 - 1] bitboards; colour 0 = black
    turn: bool
    castling_rights: int
    ep_square: int | None  # set only when a pawn of the side to move could capture (lc0's rule)
    rule50: int
    repetitions: int
    is_standard_start: bool

    @property
    def key(self) -> tuple:
        return self.pieces, self.turn, self.castling_rights, self.ep_square

    @cached_property
    def white_view(self) -> tuple[int, ...]:
        """The 12 piece bitboards, white's pieces first (as seen with white to move)."""
        return self.pieces[1] + self.pieces[0]

    @cached_property
    def black_view(self) -> tuple[int, ...]:
        """The 12 piece bitboards, black's first, ranks mirrored (as seen with black to move)."""
        return tuple(chess.flip_vertical(m) for m in self.pieces[0] + self.pieces[1])


def _pieces(board: chess.Board) -> tuple[tuple[int, ...], tuple[int, ...]]:
    return tuple(tuple(board.pieces_mask(p, colour) for p in _PIECE_ORDER) for colour in (chess.BLACK, chess.WHITE))


def _snapshot(board: chess.Board, repetitions: int) -> Snapshot:
    pieces = _pieces(board)
    ep = board.ep_square if board.has_pseudo_legal_en_passant() else None
    return Snapshot(pieces, board.turn, board.castling_rights, ep, board.halfmove_clock, repetitions,
                    pieces == _STANDARD_START_PIECES and board.turn == chess.WHITE
                    and board.castling_rights == chess.BB_CORNERS and ep is None)


def _repetitions(history: Sequence[Snapshot], current: Snapshot) -> int:
    """lc0's repetition count of `current` given the earlier positions (same side, no irreversible move)."""
    if current.rule50 < 4:
        return 0
    for earlier in _same_side(history):
        if earlier.key == current.key:
            return 1 + earlier.repetitions
        if earlier.rule50 < 2:
            return 0
    return 0


def _same_side(history: Sequence[Snapshot]) -> Iterable[Snapshot]:
    """history[-2], history[-4], ...: the earlier positions with the same side to move as the next one."""
    return (history[i] for i in range(len(history) - 2, -1, -2))


_STANDARD_START_PIECES = _pieces(chess.Board())


class GameHistory:
    """The positions of one game, extended move by move, with lc0's repetition counts."""

    def __init__(self, start: chess.Board | None = None):
        self.board = (start or chess.Board()).copy(stack=False)
        self.snapshots: list[Snapshot] = [_snapshot(self.board, 0)]

    @classmethod
    def from_board(cls, board: chess.Board) -> "GameHistory":
        """The history of `board`: its root position replayed through its move stack."""
        history = cls(board.root())
        for move in board.move_stack:
            history.push(move)
        return history

    def push(self, move: chess.Move) -> None:
        self.board.push(move)
        snap = _snapshot(self.board, 0)
        self.snapshots.append(replace(snap, repetitions=_repetitions(self.snapshots, snap)))

    def encode(self, input_format: int = 1, fill: HistoryFill = HistoryFill.FEN_ONLY) -> "EncodedPosition":
        return encode_snapshots(self.snapshots, input_format, fill)


@dataclass(frozen=True)
class EncodedPosition:
    """lc0's encoding of a position: what a training record stores about it."""

    planes: np.ndarray  # (104,) uint64: lc0 bitboards (bit s = square s) in the mover's transformed frame
    castling_us_ooo: int
    castling_us_oo: int
    castling_them_ooo: int
    castling_them_oo: int
    side_to_move_or_enpassant: int
    rule50_count: int
    invariance_info: int  # transform bits 0-2 and black-to-move bit 7 (canonical formats only)
    transform: int
    input_format: int

    @property
    def stored_planes(self) -> np.ndarray:
        """The planes as a record stores them: bits reversed inside every byte."""
        return reverse_bits_in_bytes_array(self.planes)


def _perspective_planes(snap: Snapshot, us: bool) -> tuple[int, ...]:
    """12 piece bitboards (ours then theirs) of `snap`, seen from colour `us` (mirrored if black)."""
    return snap.white_view if us == chess.WHITE else snap.black_view


def _undo_double_push(masks: list[int], snap: Snapshot, us: bool) -> list[int]:
    """For the filled history before the start: put back the pawn that just made a double step."""
    ep = snap.ep_square
    assert ep is not None
    pushed_colour = not snap.turn
    step = 8 if pushed_colour == chess.WHITE else -8
    now, before = ep + step, ep - step
    if us == chess.BLACK:
        now, before = chess.square_mirror(now), chess.square_mirror(before)
    slot = 0 if pushed_colour == us else 6
    masks = list(masks)
    masks[slot] = (masks[slot] & ~chess.BB_SQUARES[now]) | chess.BB_SQUARES[before]
    return masks


def _castling_masks(snap: Snapshot, us: bool) -> tuple[int, int, int, int]:
    """(us O-O-O, us O-O, them O-O-O, them O-O) as 0/1 flags, from the side to move's view."""
    rights = snap.castling_rights

    def has(colour: bool, corner_file: int) -> int:
        rank = 0 if colour == chess.WHITE else 7
        return int(bool(rights & chess.BB_SQUARES[chess.square(corner_file, rank)]))

    return has(us, 0), has(us, 7), has(not us, 0), has(not us, 7)


def _history_planes(snapshots: Sequence[Snapshot], input_format: int, fill: HistoryFill) -> np.ndarray:
    """Planes 0..103 before any transform (lc0's EncodePositionNoTransform history loop)."""
    planes = np.zeros(HISTORY_PLANES, dtype=np.uint64)
    current = snapshots[-1]
    us = current.turn
    stop_early = is_canonical(input_format)
    only_repeats = keeps_only_repeats(input_format)
    index = len(snapshots) - 1
    step = 0
    while step < HISTORY_STEPS:
        snap = snapshots[max(index, 0)]
        if stop_early and snap.castling_rights != current.castling_rights:
            break
        if stop_early and index != len(snapshots) - 1 and snap.ep_square is not None:
            break
        if index < 0 and (fill == HistoryFill.NO or (fill == HistoryFill.FEN_ONLY and snap.is_standard_start)):
            break
        if only_repeats and snap.repetitions == 0 and step > 0:
            # Before the first known position only copies of it follow: no repeat can come. (lc0's loop has no
            # such stop and would not end for a FEN start with a non-zero rule50 count in formats 5 and 133.)
            if snap.rule50 == 0 or index < 0:
                break
            index -= 1
            continue
        masks = _perspective_planes(snap, us)
        if index < 0 and snap.ep_square is not None:
            masks = _undo_double_push(masks, snap, us)
        base = step * PLANES_PER_STEP
        planes[base : base + 12] = masks
        if snap.repetitions >= 1:
            planes[base + 12] = _ALL
        if stop_early and snap.rule50 == 0:
            break
        index -= 1
        step += 1
    return planes


def _choose_transform(planes: np.ndarray, castling_any: bool) -> int:
    """lc0's ChooseTransform on the current step's planes (canonical formats only)."""
    if castling_any:
        return NO_TRANSFORM
    p = [int(x) for x in planes[:12]]
    our_king = p[5]
    transform = NO_TRANSFORM
    if our_king & 0x0F0F0F0F0F0F0F0F:
        transform |= FLIP
        our_king = reverse_bits_in_bytes(our_king)
    if p[0] | p[6]:
        return transform
    if our_king & 0xFFFFFFFF00000000:
        transform |= MIRROR
        our_king = int.from_bytes(our_king.to_bytes(8, "little"), "big")
    if our_king & 0xE0C08000:
        return transform | TRANSPOSE
    if our_king & 0x10204080:
        ours, theirs = p[0] | p[1] | p[2] | p[3] | p[4] | p[5], p[6] | p[7] | p[8] | p[9] | p[10] | p[11]
        for mask in (ours | theirs, ours, p[5] | p[11], p[4] | p[10], p[3] | p[9], p[1] | p[7], p[2] | p[8]):
            value = transform_mask(mask, transform)
            transposed = transform_mask(value, TRANSPOSE)
            if value != transposed:
                return transform | (TRANSPOSE if value > transposed else 0)
    return transform


def encode_snapshots(
    snapshots: Sequence[Snapshot], input_format: int = 1, fill: HistoryFill = HistoryFill.FEN_ONLY
) -> EncodedPosition:
    """Encode the last of `snapshots` (a game's positions in order) as lc0 does for training data."""
    if input_format not in SUPPORTED_INPUT_FORMATS:
        raise ValueError(f"unsupported input format {input_format}")
    current = snapshots[-1]
    us = current.turn
    planes = _history_planes(snapshots, input_format, fill)
    castling = _castling_masks(current, us)
    transform = _choose_transform(planes, any(castling)) if is_canonical(input_format) else NO_TRANSFORM
    if transform != NO_TRANSFORM:
        planes = np.array([transform_mask(int(m), transform) for m in planes], dtype=np.uint64)
    if is_960_castling(input_format):
        # One-hot file mask of the rook holding the right (standard chess: a-file 0x01, h-file 0x80).
        castling = tuple(flag << (0 if i % 2 == 0 else 7) for i, flag in enumerate(castling))
    if is_canonical(input_format):
        ep_byte = 0 if current.ep_square is None else 1 << chess.square_file(current.ep_square)
        side_byte = reverse_bits_in_bytes(ep_byte) & 0xFF if transform & FLIP else ep_byte
        invariance = transform | (BLACK_TO_MOVE_BIT if us == chess.BLACK else 0)
    else:
        side_byte = int(us == chess.BLACK)
        invariance = 0
    return EncodedPosition(planes, *castling, side_byte, current.rule50, invariance, transform, input_format)


def encode_board(board: chess.Board, input_format: int = 1, fill: HistoryFill = HistoryFill.FEN_ONLY) -> EncodedPosition:
    """Encode `board` with the history in its move stack (from its root position)."""
    return GameHistory.from_board(board).encode(input_format, fill)


def encode_game(
    moves: Iterable[chess.Move], input_format: int = 1, start: chess.Board | None = None,
    fill: HistoryFill = HistoryFill.FEN_ONLY,
) -> list[EncodedPosition]:
    """Encode every position before each move of a game (what lc0 writes one record for)."""
    history = GameHistory(start)
    encoded = []
    for move in moves:
        encoded.append(history.encode(input_format, fill))
        history.push(move)
    return encoded

