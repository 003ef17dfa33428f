"""Which records are unfit for training: records that are not a chess position (chess_checks), non-finite or
out-of-range fields (FORMATS.md §1.5).

lc0 checks its own records this way before it rescores them (the rescorer's validation): every policy entry
in [0, 1], exactly -1 or NaN, the legal ones summing to 1 +- 0.01; q in [-1, 1], d in [0, 1] with W and L
not negative (lc0 drift-corrects before it writes). One NaN that gets into a batch turns every weight of the
net to NaN, so the loader drops such records (counted and reported) and `data inspect` / `data stats` name
them. Vectorised over a chunk's records; the first failing field of each bad record is reported. (Negative
entries other than -1 are read as illegal moves everywhere, so they are left alone.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lc0distill.chunks.packed import MAX_LEGAL_MOVES, LegalEntries, legal_entries
from lc0distill.chunks.targets import QSource

POLICY_SUM_TOLERANCE = 0.01  # lc0's own
WDL_TOLERANCE = 1e-4  # float rounding of W = (1 - d + q) / 2 around 0
MAX_PLIES_LEFT = 20000.0  # longer than any chess game

MAX_RULE50 = 150  # the 75-move rule ends any game at 150 plies without a capture or a pawn move
RANKS_1_AND_8 = np.uint64(0xFF000000000000FF)  # a plane's first and last bytes (§1.2: byte k is rank k + 1)
PIECE_PLANES = 12  # of the 13 planes of each history slot (the 13th: repetitions)
PAWNS, KINGS = [0, 6], [5, 11]  # our and their pawns, our and their king, in a slot's planes
CANONICAL_FORMATS = 3  # input formats >= 3: the side to move in invariance_info, the e.p. file in the byte
NON_CANONICAL_INVARIANCE_BITS = 0x87  # transforms and black-to-move: zero outside canonical formats (§1.4.1)
_CASTLING = ("castling_us_ooo", "castling_us_oo", "castling_them_ooo", "castling_them_oo")
# the fields chess_checks names: a record failing one is not a chess position (its game cannot be rebuilt)
CHESS_FIELDS = frozenset({"input_format", "planes", "castling", "side_to_move_or_enpassant", "invariance_info",
                          "rule50_count"})

# The search q/d pairs each version stores (V3 has none; played and orig arrived with V6).
_QD_SINCE = {"root": 4, "best": 4, "played": 6, "orig": 6}


@dataclass(frozen=True)
class BadRecords:
    """The unfit records of one chunk: indices (ascending) and, for each, its field and what is wrong."""

    indices: np.ndarray  # (K,) int64
    fields: list[str]
    reasons: list[str]

    def __len__(self) -> int:
        return len(self.indices)

    def describe(self, name: str, limit: int = 3) -> list[str]:
        """One line per bad record (the first `limit`), as errors name them: chunk, record, field."""
        return [f"{name}: record {int(i)}: field {f}: {r}"
                for i, f, r in zip(self.indices[:limit], self.fields[:limit], self.reasons[:limit])]


def required_q_version(source: QSource) -> int:
    """The first record version that stores the q/d pair `source` names."""
    return _QD_SINCE[QSource(source).value]


class _Findings:
    """Collects (mask, field, reason) checks; a record keeps the first one it fails."""

    def __init__(self, count: int):
        self.first = np.full(count, -1, dtype=np.int64)
        self.labels: list[tuple[str, str]] = []

    def add(self, mask: np.ndarray, field: str, reason: str) -> None:
        new = mask & (self.first < 0)
        if new.any():
            self.first[new] = len(self.labels)
            self.labels.append((field, reason))

    def result(self) -> BadRecords:
        indices = np.flatnonzero(self.first >= 0)
        labels = [self.labels[self.first[i]] for i in indices]
        return BadRecords(indices, [f for f, _ in labels], [r for _, r in labels])


def _check_policy(records: np.ndarray, entries: LegalEntries, found: _Findings) -> None:
    """On the legal entries only (a few dozen per record, found once for packing too): cheap."""
    total = np.bincount(entries.rows, weights=entries.values, minlength=len(records))
    with np.errstate(invalid="ignore"):
        found.add(~(np.abs(total - 1.0) <= POLICY_SUM_TOLERANCE), "probabilities",
                  "the legal moves' probabilities are not finite or do not sum to 1 +- 0.01")
    above_one = np.zeros(len(records), bool)
    above_one[entries.rows[entries.values > 1.0]] = True
    found.add(above_one, "probabilities", "an entry above 1")
    # V3 marks illegal moves 0.0, like unvisited legal ones (see packed.py): only its visited moves count.
    found.add((entries.counts > MAX_LEGAL_MOVES) & (records["version"] > 3), "probabilities",
              f"more than {MAX_LEGAL_MOVES} legal moves (no chess position has that many)")
    found.add((_visited_counts(entries, len(records)) > MAX_LEGAL_MOVES) & (records["version"] == 3),
              "probabilities", f"more than {MAX_LEGAL_MOVES} visited moves (no chess position has that many)")


def _visited_counts(entries: LegalEntries, count: int) -> np.ndarray:
    return np.bincount(entries.rows[entries.values > 0], minlength=count)


def _wdl_valid(q: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Every check of _check_wdl at once (False for NaN): q in [-1, 1], d in [0, 1], W and L >= 0."""
    with np.errstate(invalid="ignore"):
        return (np.abs(q) <= 1) & (d >= 0) & (d <= 1) & ((1 - d - np.abs(q)) >= -2 * WDL_TOLERANCE)


def _check_wdl(q: np.ndarray, d: np.ndarray, prefix: str, found: _Findings, allow_nan: bool = False) -> None:
    known = ~(np.isnan(q) & np.isnan(d)) if allow_nan else np.ones(len(q), bool)
    with np.errstate(invalid="ignore"):
        found.add(known & ~np.isfinite(q), f"{prefix}_q", "not a finite number")
        found.add(known & ~np.isfinite(d), f"{prefix}_d", "not a finite number")
        found.add(known & ((q < -1) | (q > 1)), f"{prefix}_q", "outside [-1, 1]")
        found.add(known & ((d < 0) | (d > 1)), f"{prefix}_d", "outside [0, 1]")
        found.add(known & ((1 - d - np.abs(q)) < -2 * WDL_TOLERANCE), f"{prefix}_q",
                  "with its d, gives a negative win or loss probability")


def _at_most_one_bit(values: np.ndarray) -> np.ndarray:
    return np.bitwise_count(values) <= 1


def chess_checks(records: np.ndarray) -> list[tuple[np.ndarray, str, str]]:
    """(bad mask, field, reason) for records that are not a chess position, whatever their targets say: pieces
    on one square, a side without its one king, pawns on the first or last rank (in any history slot), the
    scalar bytes out of what their input format allows, a rule-50 count past the 75-move rule, and an input
    format other than the chunk's first record's (one format per chunk, as its header says). A dozen
    whole-array operations on the bitboards, plane-major (13, N, 8) so that each plane is contiguous."""
    count = len(records)
    planes = np.ascontiguousarray(records["planes"].reshape(count, 8, 13).transpose(2, 0, 1))  # (plane, N, slot)
    pieces = planes[:PIECE_PLANES]
    counts = np.bitwise_count(pieces)  # (12, N, 8) squares per piece plane
    # pieces on distinct squares: the union holds as many squares as the planes together
    overlap = (np.bitwise_count(np.bitwise_or.reduce(pieces, axis=0)) != counts.sum(axis=0, dtype=np.uint8))
    ours, theirs = counts[KINGS[0]], counts[KINGS[1]]  # (N, 8)
    # the current position has both kings; an older slot has both or, before the game's start, nothing
    kings_bad = ((ours > 1) | (ours != theirs)).any(axis=1) | (ours[:, 0] == 0)
    pawns_bad = (((planes[PAWNS[0]] | planes[PAWNS[1]]) & RANKS_1_AND_8) != 0).any(axis=1)
    fmt = records["input_format"]
    canonical = fmt >= CANONICAL_FORMATS
    castling = np.stack([records[name] for name in _CASTLING], axis=1)  # (N, 4) uint8
    castling_ok = np.where(fmt == 1, (castling <= 1).all(axis=1), _at_most_one_bit(castling).all(axis=1))
    side = records["side_to_move_or_enpassant"]
    invariance = records["invariance_info"]
    return [
        (fmt != fmt[0], "input_format", f"not the chunk's input format ({int(fmt[0])}, its first record's)"),
        (overlap.any(axis=1), "planes", "two pieces on one square"),
        (kings_bad, "planes", "not one king a side"),
        (pawns_bad, "planes", "a pawn on the first or last rank"),
        (~castling_ok, "castling", "not a castling right in its input format (0/1 in format 1, one rook "
                                   "file bit in formats >= 2)"),
        (~np.where(canonical, _at_most_one_bit(side), side <= 1), "side_to_move_or_enpassant",
         "not a side to move (0/1) or, in canonical formats, one en-passant file bit"),
        ((records["version"] >= 5) & ~canonical & ((invariance & NON_CANONICAL_INVARIANCE_BITS) != 0),
         "invariance_info", "transform or black-to-move bits set in a non-canonical input format"),
        (records["rule50_count"] > MAX_RULE50, "rule50_count", f"above {MAX_RULE50} plies (the 75-move rule)"),
    ]


def _all_good(records: np.ndarray, q_source: QSource | None, entries: LegalEntries) -> bool:
    """True when no record fails any check of find_bad_records (which then names the failures)."""
    version = int(records["version"].min())
    if version != int(records["version"].max()):
        return False  # mixed versions in one chunk: rare, take the detailed path
    pairs = ["result"] + [pair for pair, since in _QD_SINCE.items() if version >= since and pair != "orig"]
    q = np.stack([records[f"{pair}_q"] for pair in pairs])  # (pairs, N)
    d = np.stack([records[f"{pair}_d"] for pair in pairs])
    plies = records["plies_left"]
    with np.errstate(invalid="ignore"):
        good = bool(_wdl_valid(q, d).all() and (plies >= 0).all() and (plies <= MAX_PLIES_LEFT).all())
        total = np.bincount(entries.rows, weights=entries.values, minlength=len(records))
        good = good and bool((np.abs(total - 1.0) <= POLICY_SUM_TOLERANCE).all()) and not (entries.values > 1).any()
    if version > 3:
        good = good and int(entries.counts.max()) <= MAX_LEGAL_MOVES
    else:
        good = good and int(_visited_counts(entries, len(records)).max()) <= MAX_LEGAL_MOVES
    if version >= 6:
        good = good and int(records["played_idx"].max()) < 1858 and int(records["best_idx"].max()) < 1858
        orig_q, orig_d = records["orig_q"], records["orig_d"]
        known = ~np.isnan(orig_q)
        good = good and bool((np.isnan(orig_d) == ~known).all() and _wdl_valid(orig_q, orig_d)[known].all())
    if q_source is not None:
        source = QSource(q_source).value
        good = good and version >= _QD_SINCE[source] and not np.isnan(records[f"{source}_q"]).any()
    return good and not any(mask.any() for mask, _, _ in chess_checks(records))


def find_bad_records(records: np.ndarray, q_source: QSource | None = None,
                     entries: LegalEntries | None = None) -> BadRecords:
    """Records (RECORD_DTYPE) unfit for training. `q_source`: the q/d pair the value target reads; records
    whose version does not store it, or (orig) where lc0 left it NaN, are unfit too. `entries`: the records'
    legal_entries when the caller has them already."""
    found = _Findings(len(records))
    if not len(records):
        return found.result()
    entries = entries if entries is not None else legal_entries(records["probabilities"])
    if _all_good(records, q_source, entries):  # the usual case, in a few whole-chunk operations
        return found.result()
    version = records["version"]
    for mask, field, reason in chess_checks(records):
        found.add(mask, field, reason)
    _check_policy(records, entries, found)
    _check_wdl(records["result_q"], records["result_d"], "result", found)
    for pair, since in _QD_SINCE.items():
        has = version >= since
        if has.any():
            _check_wdl(np.where(has, records[f"{pair}_q"], 0), np.where(has, records[f"{pair}_d"], 0), pair, found,
                       allow_nan=pair == "orig")
    plies = records["plies_left"]
    with np.errstate(invalid="ignore"):
        found.add(~np.isfinite(plies) | (plies < 0) | (plies > MAX_PLIES_LEFT), "plies_left",
                  f"not a number of plies in [0, {MAX_PLIES_LEFT:.0f}]")
    found.add(((records["played_idx"] >= 1858) | (records["best_idx"] >= 1858)) & (version >= 6),
              "played_idx", "not a move index (0..1857)")
    if q_source is not None:
        source = QSource(q_source).value
        found.add(version < _QD_SINCE[source], f"{source}_q",
                  f"the value target reads {source}_q, which only V{_QD_SINCE[source]}+ records store")
        found.add(np.isnan(records[f"{source}_q"]), f"{source}_q", "unknown (NaN: lc0 did not store it)")
    return found.result()
