"""Packed positions: what the loader buffers, shuffles and sends between processes.

A record is 8,396 bytes, most of it the dense 1858-float policy. A packed position keeps the 104 stored
bitboards and the auxiliary bytes as they are, the policy as a sparse list of (index, probability) over
the legal moves (chess has at most 218), and the scalar fields losses use: POSITION_DTYPE.itemsize bytes
(2,224) per position, so a shuffle buffer of 1M positions holds about 2.2 GB (a test pins the size).
"""

from __future__ import annotations

import numpy as np

MAX_LEGAL_MOVES = 218  # the most legal moves any chess position has
FLAG_ALL_LEGAL = 1  # V3 data: illegal moves are not marked; every index counts as legal

SCALAR_FIELDS = ("result_q", "result_d", "root_q", "root_d", "best_q", "best_d", "played_q", "played_d",
                 "orig_q", "orig_d", "orig_m", "root_m", "best_m", "played_m", "plies_left", "policy_kld")

POSITION_DTYPE = np.dtype(
    [("planes", "<u8", (104,)), ("castling", "u1", (4,)), ("side_to_move_or_enpassant", "u1"),
     ("rule50_count", "u1"), ("invariance_info", "u1"), ("input_format", "u1"), ("version", "u1"),
     ("flags", "u1"), ("policy_count", "<u2"), ("policy_index", "<u2", (MAX_LEGAL_MOVES,)),
     ("policy_value", "<f4", (MAX_LEGAL_MOVES,)), ("played_idx", "<u2"), ("best_idx", "<u2"),
     ("visits", "<u4")] + [(name, "<f4") for name in SCALAR_FIELDS]
)


def _sparse_policy(probabilities: np.ndarray, out: np.ndarray) -> None:
    """Fill policy_count / policy_index / policy_value / flags from dense (N, 1858) probabilities."""
    legal = probabilities >= 0  # -1 and NaN mark illegal moves
    rows, cols = np.divmod(np.flatnonzero(legal), probabilities.shape[1])  # 3x faster than 2-D nonzero
    counts = np.bincount(rows, minlength=len(probabilities))
    too_many = counts > MAX_LEGAL_MOVES  # V3: illegal entries are 0.0, indistinguishable from legal
    if too_many.any():
        legal[too_many] = probabilities[too_many] > 0  # keep the visited moves; every move counts as legal
        out["flags"][too_many] |= FLAG_ALL_LEGAL
        rows, cols = np.divmod(np.flatnonzero(legal), probabilities.shape[1])
        counts = np.bincount(rows, minlength=len(probabilities))
    starts = np.cumsum(counts) - counts
    slots = np.arange(len(rows)) - starts[rows]  # rows are ascending, each row's columns too
    out["policy_count"] = counts
    out["policy_index"][rows, slots] = cols
    out["policy_value"][rows, slots] = probabilities[rows, cols]


def pack_records(records: np.ndarray) -> np.ndarray:
    """(N,) RECORD_DTYPE -> (N,) POSITION_DTYPE."""
    out = np.zeros(len(records), dtype=POSITION_DTYPE)
    out["planes"] = records["planes"]
    for i, field in enumerate(("castling_us_ooo", "castling_us_oo", "castling_them_ooo", "castling_them_oo")):
        out["castling"][:, i] = records[field]
    for field in ("side_to_move_or_enpassant", "rule50_count", "invariance_info", "input_format", "version",
                  "played_idx", "best_idx", "visits", *SCALAR_FIELDS):
        out[field] = records[field]
    _sparse_policy(records["probabilities"], out)
    return out


def dense_policy(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """((N, 1858) float32 policy with illegal entries 0, (N, 1858) bool legal mask) of packed positions."""
    count = len(packed)
    policy = np.zeros((count, 1858), dtype=np.float32)
    valid = np.arange(MAX_LEGAL_MOVES)[None, :] < packed["policy_count"][:, None]
    rows = np.nonzero(valid)[0]
    cols = packed["policy_index"][valid].astype(np.int64)
    policy[rows, cols] = packed["policy_value"][valid]
    legal = np.zeros((count, 1858), dtype=bool)
    legal[rows, cols] = True
    legal[(packed["flags"] & FLAG_ALL_LEGAL) != 0] = True
    return policy, legal
