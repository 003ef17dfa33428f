"""Packed positions: what the loader buffers, shuffles and sends between processes.

A record is 8,396 bytes, most of it the dense 1858-float policy. A packed position keeps the 104 stored
bitboards and the auxiliary bytes as they are, the policy as a sparse list of (index, probability) over
the legal moves (chess has at most 218), the scalar fields losses use, and where the position came from (the
loader's source number and the record's index, so a bad batch can name its chunk and record):
POSITION_DTYPE.itemsize bytes (2,232) per position; a shuffle buffer of 1M positions holds about 2.2 GB (a test
pins the size).
"""

from __future__ import annotations

from dataclasses import dataclass

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
    + [("chunk", "<u4"), ("record", "<u4")]  # where it came from: the loader's source number, the record's index
)


@dataclass(frozen=True)
class LegalEntries:
    """The entries a record marks legal (>= 0; lc0 marks illegal moves -1, or NaN in lc0 0.21's V4), row by
    row: what packing stores and what record validation (validate.py) sums, found in one pass."""

    rows: np.ndarray  # (K,) intp, ascending
    cols: np.ndarray  # (K,) intp, ascending within a row
    values: np.ndarray  # (K,) float32
    counts: np.ndarray  # (N,) int64 entries per row


def legal_entries(probabilities: np.ndarray) -> LegalEntries:
    rows, cols = np.divmod(np.flatnonzero(probabilities >= 0), probabilities.shape[1])  # 3x faster than nonzero
    counts = np.bincount(rows, minlength=len(probabilities))
    return LegalEntries(rows, cols, probabilities[rows, cols], counts)


def _sparse_policy(probabilities: np.ndarray, out: np.ndarray, entries: LegalEntries | None = None) -> None:
    """Fill policy_count / policy_index / policy_value / flags from dense (N, 1858) probabilities."""
    entries = entries if entries is not None else legal_entries(probabilities)
    too_many = entries.counts > MAX_LEGAL_MOVES  # V3: illegal entries are 0.0, indistinguishable from legal
    if too_many.any():
        legal = probabilities >= 0
        legal[too_many] = probabilities[too_many] > 0  # keep the visited moves; every move counts as legal
        out["flags"][too_many] |= FLAG_ALL_LEGAL
        legal[np.count_nonzero(legal, axis=1) > MAX_LEGAL_MOVES] = False  # corrupt: validation drops it
        entries = legal_entries(np.where(legal, probabilities, np.float32(-1.0)))
    rows, cols, counts = entries.rows, entries.cols, entries.counts
    starts = np.cumsum(counts) - counts
    slots = np.arange(len(rows)) - starts[rows]  # rows are ascending, each row's columns too
    out["policy_count"] = counts
    out["policy_index"][rows, slots] = cols
    out["policy_value"][rows, slots] = entries.values


def pack_records(records: np.ndarray, entries: LegalEntries | None = None, chunk: int = 0,
                 record_numbers: np.ndarray | None = None) -> np.ndarray:
    """(N,) RECORD_DTYPE -> (N,) POSITION_DTYPE. `entries`: legal_entries of the records, if already known;
    `chunk` and `record_numbers` (default 0..N-1): the provenance stored with each position."""
    out = np.zeros(len(records), dtype=POSITION_DTYPE)
    out["chunk"] = chunk
    out["record"] = np.arange(len(records)) if record_numbers is None else record_numbers
    out["planes"] = records["planes"]
    for i, field in enumerate(("castling_us_ooo", "castling_us_oo", "castling_them_ooo", "castling_them_oo")):
        out["castling"][:, i] = records[field]
    for field in ("side_to_move_or_enpassant", "rule50_count", "invariance_info", "input_format", "version",
                  "played_idx", "best_idx", "visits", *SCALAR_FIELDS):
        out[field] = records[field]
    _sparse_policy(records["probabilities"], out, entries)
    return out


def unpack_positions(packed: np.ndarray) -> np.ndarray:
    """(N,) POSITION_DTYPE -> (N,) RECORD_DTYPE: the records pack_records was given, as far as positions keep
    them (every field training, statistics and inspection read; V7's extra fields stay zero). Illegal moves
    read -1 as lc0 marks them, or 0 where the record marked none (V3, FLAG_ALL_LEGAL)."""
    from lc0distill.chunks.layouts import NO_MOVE, RECORD_DTYPE

    records = np.zeros(len(packed), dtype=RECORD_DTYPE)
    records["opp_played_idx"] = records["next_played_idx"] = NO_MOVE
    records["planes"] = packed["planes"]
    for i, field in enumerate(("castling_us_ooo", "castling_us_oo", "castling_them_ooo", "castling_them_oo")):
        records[field] = packed["castling"][:, i]
    for field in ("side_to_move_or_enpassant", "rule50_count", "invariance_info", "input_format", "version",
                  "played_idx", "best_idx", "visits", *SCALAR_FIELDS):
        records[field] = packed[field]
    policy, legal = dense_policy(packed)
    all_legal = (packed["flags"] & FLAG_ALL_LEGAL) != 0
    records["probabilities"] = np.where(legal & ~all_legal[:, None], policy, np.float32(-1.0))
    records["probabilities"][all_legal] = policy[all_legal]
    return records


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


_FINGERPRINT_MULTIPLIERS = np.random.default_rng(0x1C0D).integers(1, 2**63, size=112, dtype=np.uint64) | np.uint64(1)


def position_fingerprints(packed: np.ndarray) -> np.ndarray:
    """(N,) uint64: a hash of what a net sees of each position (the 104 bitboards and the auxiliary bytes), so
    outputs computed once for a record (a teacher cache) are joined to that record and no other."""
    planes = packed["planes"].astype(np.uint64, copy=False)  # (N, 104)
    aux = np.concatenate([packed["castling"], packed["side_to_move_or_enpassant"][:, None],
                          packed["rule50_count"][:, None], packed["invariance_info"][:, None],
                          packed["input_format"][:, None]], axis=1).astype(np.uint64)  # (N, 8)
    words = np.concatenate([planes, aux], axis=1)  # (N, 112)
    with np.errstate(over="ignore"):  # arithmetic modulo 2^64 is the point
        mixed = words * _FINGERPRINT_MULTIPLIERS
        mixed ^= mixed >> np.uint64(29)
        return np.bitwise_xor.reduce(mixed * _FINGERPRINT_MULTIPLIERS[::-1], axis=1) + mixed.sum(axis=1)
