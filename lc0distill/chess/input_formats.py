"""lc0's input formats (NetworkFormat.InputFormat) and the predicates lc0 derives from their values."""

from __future__ import annotations

from enum import IntEnum


class InputFormat(IntEnum):
    CLASSICAL = 1
    CASTLING_PLANE = 2
    CANONICAL = 3
    CANONICAL_HECTOPLIES = 4
    CANONICAL_V2 = 5
    CANONICAL_HECTOPLIES_ARMAGEDDON = 132
    CANONICAL_V2_ARMAGEDDON = 133


SUPPORTED_INPUT_FORMATS = frozenset(int(f) for f in InputFormat)


def is_960_castling(input_format: int) -> bool:
    """Castling rights are stored as rook-file masks instead of 0/1 flags."""
    return input_format >= InputFormat.CASTLING_PLANE


def is_canonical(input_format: int) -> bool:
    """Board symmetries are applied, plane 108 holds en passant, and history stops early."""
    return input_format >= InputFormat.CANONICAL


def is_hectoplies(input_format: int) -> bool:
    """The rule50 plane is count / 100 (raw count otherwise)."""
    return input_format >= InputFormat.CANONICAL_HECTOPLIES


def is_armageddon(input_format: int) -> bool:
    """Plane 110 is all ones when black is to move."""
    return input_format in (InputFormat.CANONICAL_HECTOPLIES_ARMAGEDDON, InputFormat.CANONICAL_V2_ARMAGEDDON)


def keeps_only_repeats(input_format: int) -> bool:
    """Canonical V2: history after the current position keeps only positions that are repetitions."""
    return input_format in (InputFormat.CANONICAL_V2, InputFormat.CANONICAL_V2_ARMAGEDDON)
