"""lc0 training record layouts V3..V7 as numpy structured dtypes (FORMATS.md §1.4).

All little-endian and packed. The in-memory layout every reader returns is `RECORD_DTYPE`: the V7 fields
(a superset of V6) where `version` keeps the version the record was read from.
"""

from __future__ import annotations

import numpy as np

POLICY_SIZE = 1858
HISTORY_PLANES = 104

_HEAD = [("probabilities", "<f4", (POLICY_SIZE,)), ("planes", "<u8", (HISTORY_PLANES,))]
_CASTLING = [("castling_us_ooo", "u1"), ("castling_us_oo", "u1"),
             ("castling_them_ooo", "u1"), ("castling_them_oo", "u1")]
_ROOT_BEST_QD = [("root_q", "<f4"), ("best_q", "<f4"), ("root_d", "<f4"), ("best_d", "<f4")]

V3_DTYPE = np.dtype(
    [("version", "<u4"), *_HEAD, *_CASTLING, ("side_to_move", "u1"), ("rule50_count", "u1"),
     ("move_count", "u1"), ("result", "i1")]
)
V4_DTYPE = np.dtype(V3_DTYPE.descr + _ROOT_BEST_QD)
V5_DTYPE = np.dtype(
    [("version", "<u4"), ("input_format", "<u4"), *_HEAD, *_CASTLING, ("side_to_move_or_enpassant", "u1"),
     ("rule50_count", "u1"), ("invariance_info", "u1"), ("result", "i1"), *_ROOT_BEST_QD,
     ("root_m", "<f4"), ("best_m", "<f4"), ("plies_left", "<f4")]
)
V6_DTYPE = np.dtype(
    [("version", "<u4"), ("input_format", "<u4"), *_HEAD, *_CASTLING, ("side_to_move_or_enpassant", "u1"),
     ("rule50_count", "u1"), ("invariance_info", "u1"), ("dummy", "u1"), *_ROOT_BEST_QD,
     ("root_m", "<f4"), ("best_m", "<f4"), ("plies_left", "<f4"), ("result_q", "<f4"), ("result_d", "<f4"),
     ("played_q", "<f4"), ("played_d", "<f4"), ("played_m", "<f4"), ("orig_q", "<f4"), ("orig_d", "<f4"),
     ("orig_m", "<f4"), ("visits", "<u4"), ("played_idx", "<u2"), ("best_idx", "<u2"),
     ("policy_kld", "<f4"), ("q_st", "<f4")]
)
V7_DTYPE = np.dtype(
    V6_DTYPE.descr + [("d_st", "<f4"), ("opp_played_idx", "<u2"), ("next_played_idx", "<u2"), ("reserved", "<f4", (8,))]
)

LAYOUTS: dict[int, np.dtype] = {3: V3_DTYPE, 4: V4_DTYPE, 5: V5_DTYPE, 6: V6_DTYPE, 7: V7_DTYPE}
RECORD_SIZES: dict[int, int] = {version: dtype.itemsize for version, dtype in LAYOUTS.items()}
assert RECORD_SIZES == {3: 8276, 4: 8292, 5: 8308, 6: 8356, 7: 8396}

RECORD_DTYPE = V7_DTYPE  # the one in-memory layout
NO_MOVE = 0xFFFF  # opp_played_idx / next_played_idx when there is no such move

# Bits of invariance_info (V5+).
INVARIANCE_TRANSFORM_MASK = 0x07
INVARIANCE_BEST_Q_PROVEN = 0x08
INVARIANCE_MAX_LENGTH_EXCEEDED = 0x10
INVARIANCE_ADJUDICATED = 0x20
INVARIANCE_MARKED_FOR_DELETION = 0x40
INVARIANCE_BLACK_TO_MOVE = 0x80
