"""Training targets from records (FORMATS.md §2): policy, z, search WDL, their q_ratio blend, moves-left.

All WDL vectors are ordered (win, draw, loss) from the side to move's view, shape (B, 3) float32.
"""

from __future__ import annotations

from enum import Enum

import numpy as np


class QSource(str, Enum):
    """Which search evaluation stands for q in the value target."""

    ROOT = "root"  # the search's root value
    BEST = "best"  # the value of the best move (lczero-training's q target)
    PLAYED = "played"  # the value of the move actually played
    ORIG = "orig"  # the raw network value before search (NaN where lc0 did not store it)


def legal_mask(probabilities: np.ndarray) -> np.ndarray:
    """(B, 1858) bool: moves the record marks legal. lc0 marks illegal moves -1 (NaN in lc0 0.21's V4).

    V3 data marked illegal moves 0.0, the same as unvisited legal moves, so for V3 every entry is legal.
    """
    return probabilities >= 0  # False for NaN too


def policy_target(records: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """((B, 1858) float32 visit distribution with illegal entries 0, (B, 1858) legal mask)."""
    probabilities = records["probabilities"]
    legal = legal_mask(probabilities)
    return np.where(legal, probabilities, np.float32(0.0)), legal


def wdl_from_qd(q: np.ndarray, d: np.ndarray) -> np.ndarray:
    """(W, D, L) = ((1 - d + q) / 2, d, (1 - d - q) / 2) for q = W - L and draw probability d."""
    q = np.asarray(q, dtype=np.float32)
    d = np.asarray(d, dtype=np.float32)
    return np.stack([(1 - d + q) / 2, d, (1 - d - q) / 2], axis=-1)


def z_wdl(records: np.ndarray) -> np.ndarray:
    """The game result as WDL (one-hot for decided and drawn games)."""
    return wdl_from_qd(records["result_q"], records["result_d"])


def search_wdl(records: np.ndarray, source: QSource = QSource.BEST) -> np.ndarray:
    """The search's evaluation as WDL, from the chosen q/d fields."""
    source = QSource(source)
    return wdl_from_qd(records[f"{source.value}_q"], records[f"{source.value}_d"])


def value_target(records: np.ndarray, q_ratio: float, source: QSource = QSource.BEST) -> np.ndarray:
    """q_ratio * q + (1 - q_ratio) * z on WDL vectors, as lczero-training blends them."""
    if not 0.0 <= q_ratio <= 1.0:
        raise ValueError(f"q_ratio must be in [0, 1], got {q_ratio}")
    z = z_wdl(records)
    if q_ratio == 0.0:
        return z
    return np.float32(q_ratio) * search_wdl(records, source) + np.float32(1.0 - q_ratio) * z


def moves_left(records: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """((B,) float32 plies left in the game, (B,) bool known). V3/V4 records carry no moves-left data."""
    known = records["version"] >= 5
    return records["plies_left"].astype(np.float32), known
