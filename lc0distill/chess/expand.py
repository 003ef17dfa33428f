"""Expand stored planes (104 bitboards + auxiliary bytes) into the float input tensor (B, 112, 8, 8).

Vectorised over the whole batch, with records of different input formats mixed freely (FORMATS.md §1.6.2).
Element [b, p, rank, file] is seen from the side to move (rank 0 = its home rank).

Rule50 plane (109): `Rule50Scale.ENGINE` feeds what the lc0 engine feeds its nets (the raw ply count for
formats 1-3, count / 100 for formats >= 4), so nets loaded from lc0 `.pb.gz` files compute exactly what
lc0 computes; `Rule50Scale.TRAINER` feeds count / 99 for formats 1-3 as lczero-training does.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from lc0distill.chess.encoding import BLACK_TO_MOVE_BIT, HISTORY_PLANES

INPUT_PLANES = 112

_UNPACK_SLICE = 128  # records unpacked at a time: the uint8 bits of a slice (850 KB) stay in cache
# FILE_MASK_TO_ROW[b] = one board row with file j set where bit j of b is set (castling and e.p. bytes).
_FILE_MASK_TO_ROW = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1, bitorder="little").astype(np.float32)


class Rule50Scale(str, Enum):
    ENGINE = "engine"
    TRAINER = "trainer"


@dataclass(frozen=True)
class PackedPlanes:
    """The per-position fields that determine the input tensor; arrays share the batch length B."""

    planes: np.ndarray  # (B, 104) uint64, as stored in records (bits reversed in bytes)
    castling: np.ndarray  # (B, 4) uint8: us_ooo, us_oo, them_ooo, them_oo
    side_to_move_or_enpassant: np.ndarray  # (B,) uint8
    rule50_count: np.ndarray  # (B,) uint8
    invariance_info: np.ndarray  # (B,) uint8
    input_format: np.ndarray  # (B,) uint32

    @classmethod
    def from_records(cls, records: np.ndarray) -> "PackedPlanes":
        castling = np.stack([records[f] for f in ("castling_us_ooo", "castling_us_oo",
                                                   "castling_them_ooo", "castling_them_oo")], axis=1)
        return cls(records["planes"], castling, records["side_to_move_or_enpassant"], records["rule50_count"],
                   records["invariance_info"], records["input_format"])


def _rule50_values(packed: PackedPlanes, scale: Rule50Scale) -> np.ndarray:
    count = packed.rule50_count.astype(np.float32)
    hectoplies = packed.input_format >= 4
    small_divisor = np.float32(1.0 if scale == Rule50Scale.ENGINE else 99.0)
    return np.where(hectoplies, count / np.float32(100.0), count / small_divisor)


def expand_planes(packed: PackedPlanes, rule50: Rule50Scale = Rule50Scale.ENGINE,
                  out: np.ndarray | None = None) -> np.ndarray:
    """(B, 112, 8, 8) float32 input tensor of a batch of packed positions."""
    batch = len(packed.planes)
    if out is None:
        out = np.empty((batch, INPUT_PLANES, 8, 8), dtype=np.float32)
    plane_bytes = np.ascontiguousarray(packed.planes, dtype="<u8").view(np.uint8)  # (B, 832)
    flat = out.reshape(batch, INPUT_PLANES * 64)
    for start in range(0, batch, _UNPACK_SLICE):
        # unpackbits on the stored (bit-reversed) bytes yields squares a1..h8; slices keep it in cache.
        stop = start + _UNPACK_SLICE
        np.copyto(flat[start:stop, : HISTORY_PLANES * 64], np.unpackbits(plane_bytes[start:stop], axis=1))
    aux = out[:, HISTORY_PLANES:].reshape(batch, 8, 8, 8)  # [b, plane - 104, rank, file]
    aux[:] = 0.0
    fmt = packed.input_format
    classical = fmt == 1  # (B,)
    canonical = fmt >= 3
    castling = packed.castling  # (B, 4)
    # Format 1: whole planes of 0/1 flags. Formats >= 2: rook-file bits on rank 1 (us) and rank 8 (them).
    aux[:, 0:4] = np.where(classical[:, None, None, None], (castling != 0)[:, :, None, None], np.float32(0.0))
    rook_rows = ~classical[:, None]  # (B, 1), broadcast over a row's 8 files
    aux[:, 0, 0] += np.where(rook_rows, _FILE_MASK_TO_ROW[castling[:, 0]], np.float32(0.0))
    aux[:, 0, 7] += np.where(rook_rows, _FILE_MASK_TO_ROW[castling[:, 2]], np.float32(0.0))
    aux[:, 1, 0] += np.where(rook_rows, _FILE_MASK_TO_ROW[castling[:, 1]], np.float32(0.0))
    aux[:, 1, 7] += np.where(rook_rows, _FILE_MASK_TO_ROW[castling[:, 3]], np.float32(0.0))
    side = packed.side_to_move_or_enpassant
    aux[:, 4] = np.where(canonical, 0.0, (side != 0).astype(np.float32))[:, None, None]
    aux[:, 4, 7] += np.where(canonical[:, None], _FILE_MASK_TO_ROW[side], 0.0)
    aux[:, 5] = _rule50_values(packed, rule50)[:, None, None]
    armageddon_black = ((fmt == 132) | (fmt == 133)) & (packed.invariance_info >= BLACK_TO_MOVE_BIT)
    aux[:, 6] = armageddon_black.astype(np.float32)[:, None, None]
    aux[:, 7] = 1.0
    return out


def expand_records(records: np.ndarray, rule50: Rule50Scale = Rule50Scale.ENGINE) -> np.ndarray:
    """(B, 112, 8, 8) float32 input tensor of records in the in-memory layout."""
    return expand_planes(PackedPlanes.from_records(records), rule50)
