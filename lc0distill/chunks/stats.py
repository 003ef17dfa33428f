"""Dataset statistics over many chunks: what a trainer checks before spending GPU hours on the data.

Work is chunk by chunk with vectorised numpy on each chunk's records, accumulating sums only, so memory
stays bounded by the largest chunk whatever the size of the dataset. Unreadable chunks are skipped,
counted and named (`bad_files`), never fatal.

Games are counted cheaply (rebuilding them move by move costs ~20 ms a game): each readable chunk starts
a game at record 0, and another game starts at every later record holding the standard starting position
(its pieces, white to move, full castling rights, rule50 0) - a position no game can return to, since a
rule50 count of 0 needs a pawn move or a capture. Games concatenated after a non-standard start (opening
books, Chess960) are not detected.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterable

import chess
import numpy as np

from lc0distill.chess.encoding import encode_board
from lc0distill.chess.input_formats import InputFormat
from lc0distill.chunks.layouts import INVARIANCE_BLACK_TO_MOVE, INVARIANCE_TRANSFORM_MASK
from lc0distill.chunks.reader import read_chunk
from lc0distill.chunks.sources import ChunkSource, find_chunks
from lc0distill.chunks.validate import find_bad_records
from lc0distill.errors import ChunkError

# Step 0's 12 piece planes of the standard start, white to move, as records store them. Castling rights
# stop no transform here (lc0 only transforms positions without castling rights), so every input format
# stores the same planes.
START_PLANES = encode_board(chess.Board(), InputFormat.CLASSICAL).stored_planes[:12].copy()

_CASTLING_FIELDS = ("castling_us_ooo", "castling_us_oo", "castling_them_ooo", "castling_them_oo")
MAX_EXAMPLES = 5  # bad records named in the report; all are counted
_BLOCK = 1024  # records per vectorised block: bounds the (block, 1858) float64 temporaries to ~15 MB


def black_to_move(records: np.ndarray) -> np.ndarray:
    """(N,) bool: black is to move (canonical formats: bit 7 of invariance_info; others: the side byte)."""
    canonical = records["input_format"] >= InputFormat.CANONICAL
    return np.where(canonical, (records["invariance_info"] & INVARIANCE_BLACK_TO_MOVE) != 0,
                    records["side_to_move_or_enpassant"] != 0)


def standard_start_mask(records: np.ndarray) -> np.ndarray:
    """(N,) bool: the record is the standard starting position (white to move, full castling, rule50 0)."""
    mask = (records["planes"][:, :12] == START_PLANES).all(axis=1)
    mask &= ~black_to_move(records)
    mask &= records["rule50_count"] == 0
    for name in _CASTLING_FIELDS:  # flags (format 1) or rook-file masks (formats 2+): nonzero either way
        mask &= records[name] != 0
    canonical = records["input_format"] >= InputFormat.CANONICAL
    mask &= ~canonical | ((records["invariance_info"] & INVARIANCE_TRANSFORM_MASK) == 0)
    return mask


def game_starts(records: np.ndarray) -> np.ndarray:
    """Indices of the records that start a game: 0, and every later standard starting position."""
    if len(records) == 0:
        return np.zeros(0, dtype=np.int64)
    later = np.flatnonzero(standard_start_mask(records[1:])) + 1
    return np.concatenate([[0], later]).astype(np.int64)


def white_scores(records: np.ndarray) -> np.ndarray:
    """(N,) white's score 1 / 0.5 / 0 from each record's result_q / result_d (side to move's view)."""
    q = records["result_q"].astype(np.float64)
    d = records["result_d"].astype(np.float64)
    mover = np.where(d >= 1.0, 0.5, 0.5 + 0.5 * q)
    return np.where(black_to_move(records), 1.0 - mover, mover)


def policy_entropy(probabilities: np.ndarray) -> np.ndarray:
    """(N,) entropy in nats of each visit distribution over its legal entries (>= 0; NaN and -1 excluded)."""
    p = probabilities.astype(np.float64)
    positive = p > 0  # False for NaN and the -1 marker; 0 contributes 0
    p = np.where(positive, p, 1.0)  # log(1) = 0 for every excluded entry
    return -(p * np.log(p)).sum(axis=1)


def _count_into(counter: dict[int, int], values: np.ndarray) -> None:
    keys, counts = np.unique(values, return_counts=True)
    for key, count in zip(keys.tolist(), counts.tolist()):
        counter[int(key)] = counter.get(int(key), 0) + int(count)


def _mean(total: float, count: int) -> float | None:
    return total / count if count else None


@dataclass
class DatasetStats:
    """Running sums over chunks; `to_dict` gives the report."""

    chunks: int = 0
    positions: int = 0
    games: int = 0
    results: dict[str, int] = field(default_factory=lambda: {"white": 0, "black": 0, "draw": 0})
    input_formats: dict[int, int] = field(default_factory=dict)
    versions: dict[int, int] = field(default_factory=dict)
    bad_files: list[dict[str, str]] = field(default_factory=list)
    abs_q_minus_z_sum: float = 0.0
    q_positions: int = 0  # positions carrying best_q (V4+, not NaN)
    entropy_sum: float = 0.0
    entropy_positions: int = 0
    orig_q_positions: int = 0
    visits_sum: int = 0
    visits_positions: int = 0  # V6+ records (older versions store no visit count)
    bad_records: int = 0  # records with not chess, non-finite or out of range: counted, left out of the sums
    bad_record_examples: list[str] = field(default_factory=list)

    def add_records(self, records: np.ndarray, name: str = "chunk") -> None:
        """Add one chunk's records (RECORD_DTYPE). Bad records (chunks/validate.py) count as positions of
        their games, but stay out of every sum and mean, so one NaN cannot make the report NaN."""
        self.chunks += 1
        self.positions += len(records)
        _count_into(self.versions, records["version"])
        _count_into(self.input_formats, records["input_format"])

        starts = game_starts(records)
        self.games += len(starts)
        scores = white_scores(records[starts])
        self.results["white"] += int((scores > 0.5).sum())
        self.results["black"] += int((scores < 0.5).sum())
        self.results["draw"] += int((scores == 0.5).sum())

        bad = find_bad_records(records)
        if len(bad):
            self.bad_records += len(bad)
            self.bad_record_examples.extend(bad.describe(name, MAX_EXAMPLES - len(self.bad_record_examples)))
            records = np.delete(records, bad.indices)

        # V3 records store no best_q (it reads as 0), so they would only bias |q - z|.
        best_q = records["best_q"].astype(np.float64)
        has_q = (records["version"] >= 4) & ~np.isnan(best_q)
        self.abs_q_minus_z_sum += float(np.abs(best_q - records["result_q"])[has_q].sum())
        self.q_positions += int(has_q.sum())

        self.orig_q_positions += int((~np.isnan(records["orig_q"])).sum())
        with_visits = records["version"] >= 6
        self.visits_sum += int(records["visits"][with_visits].astype(np.int64).sum())
        self.visits_positions += int(with_visits.sum())

        self.entropy_positions += len(records)
        for begin in range(0, len(records), _BLOCK):
            self.entropy_sum += float(policy_entropy(records["probabilities"][begin : begin + _BLOCK]).sum())

    def add_source(self, source: ChunkSource) -> None:
        """Read one chunk and add it, or record it in bad_files when it cannot be read."""
        try:
            chunk = read_chunk(source)
        except ChunkError as error:
            self.add_bad(error)
        else:
            self.add_records(chunk.records, chunk.name)

    def add_bad(self, error: ChunkError) -> None:
        message = str(error)
        prefix = f"{error.path}: "
        self.bad_files.append({"path": error.path,
                               "error": message[len(prefix):] if message.startswith(prefix) else message})

    def to_dict(self) -> dict:
        return {
            "positions": self.positions,
            "games": self.games,
            "results": dict(self.results),
            "mean_abs_q_minus_z": _mean(self.abs_q_minus_z_sum, self.q_positions),
            "policy_entropy": _mean(self.entropy_sum, self.entropy_positions),
            "input_formats": {str(k): v for k, v in sorted(self.input_formats.items())},
            "versions": {str(k): v for k, v in sorted(self.versions.items())},
            "bad_files": list(self.bad_files),
            "chunks": self.chunks,
            "mean_plies_per_game": _mean(float(self.positions), self.games),
            "share_with_orig_q": _mean(float(self.orig_q_positions), self.positions - self.bad_records),
            "mean_visits": _mean(float(self.visits_sum), self.visits_positions),
            "positions_with_best_q": self.q_positions,
            "bad_records": self.bad_records,
            "bad_record_examples": list(self.bad_record_examples),
        }


def collect_stats(paths: Iterable[str | os.PathLike]) -> DatasetStats:
    """Statistics of every chunk under `paths`; unreadable paths and chunks are recorded in bad_files."""
    stats = DatasetStats()
    for source in list(find_chunks(paths, on_error=stats.add_bad)):
        stats.add_source(source)
    return stats
