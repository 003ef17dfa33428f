"""Positions from anywhere, labelled by a teacher: records whose policy and q/d are the teacher's, z kept.

Each record keeps its planes, result (z), played move and plies left; the teacher (a net or an ensemble's
mixture) gives the policy (its softmax over the record's legal moves, illegal moves -1), best_idx (its
most probable move), orig/root/best/played q and d (its raw WDL; a scalar-value teacher gives q and d 0)
and the m fields (its moves-left, where it has the head). Visits and policy_kld are 0: no search was made.
The records are written as V6, whatever version they were read in; V4/V5 records, which do not name the
played move, get it from the game rebuilt from the records (chunks.games), so the V6 played_idx is right.
"""

from __future__ import annotations

import numpy as np
import torch

from lc0distill.chess.policy_index import move_to_index
from lc0distill.chunks.batch import make_batch
from lc0distill.chunks.decode import record_transform
from lc0distill.chunks.games import reconstruct_games
from lc0distill.chunks.packed import FLAG_ALL_LEGAL, pack_records
from lc0distill.distill.teachers import TeacherOutput
from lc0distill.errors import Lc0DistillError


def label_records(teacher, records: np.ndarray, name: str, device: str = "cpu", batch_size: int = 1024) -> np.ndarray:
    """(N,) RECORD_DTYPE -> a relabelled V6 copy. `name` (the chunk or game) names a record refused: V3 records
    do not mark the legal moves, so the teacher's policy could not be restricted to them."""
    out = records.copy()
    if (records["version"] < 6).any():
        out["played_idx"] = _played_indices(records)
    out["version"] = 6
    for start in range(0, len(records), batch_size):
        part = records[start : start + batch_size]
        packed = pack_records(part)
        if (packed["flags"] & FLAG_ALL_LEGAL).any():
            row = int(np.flatnonzero(packed["flags"] & FLAG_ALL_LEGAL)[0]) + start
            raise Lc0DistillError(f"{name}: record {row} is V3, which does not mark the legal moves: relabel "
                                  "V4 or newer data, or the games as PGN")
        batch = make_batch(packed, device)
        with torch.no_grad():
            output: TeacherOutput = teacher(batch.planes)
        _write_labels(out[start : start + batch_size], output, batch.legal)
    return out


def _played_indices(records: np.ndarray) -> np.ndarray:
    """The played move of each record as a V6 played_idx (in the record's transformed frame)."""
    played = records["played_idx"].copy()
    for game in reconstruct_games(records):
        board = game.start.copy()
        for offset, move in enumerate(game.moves):
            record = records[game.first_record + offset]
            played[game.first_record + offset] = move_to_index(board, move, record_transform(record))
            board.push(move)
    return played


def _write_labels(records: np.ndarray, output: TeacherOutput, legal: torch.Tensor) -> None:
    logits = output.policy_logits.float().masked_fill(~legal, float("-inf"))  # (B, 1858)
    probabilities = torch.where(legal, logits.softmax(dim=1), torch.tensor(-1.0)).cpu().numpy()
    records["probabilities"] = probabilities.astype(np.float32)
    records["best_idx"] = logits.argmax(dim=1).cpu().numpy().astype(np.uint16)
    if output.wdl is not None:
        wdl = output.wdl.float().cpu().numpy()
        q, d = wdl[:, 0] - wdl[:, 2], wdl[:, 1]
    else:
        raise Lc0DistillError("the teacher has a scalar value head: labels need its WDL")
    for prefix in ("orig", "root", "best", "played"):
        records[f"{prefix}_q"] = q
        records[f"{prefix}_d"] = d
        if output.moves_left is not None:
            records[f"{prefix}_m"] = output.moves_left.float().cpu().numpy()
    records["visits"] = 0
    records["policy_kld"] = 0.0
