"""The `Batch` contract between data and training, built from packed positions on the training device.

Packed positions travel from the loader's workers (2,232 bytes each); planes and the policy are expanded
here in one vectorised step: with numpy on the CPU, with torch bit operations on a GPU so that only the
packed bytes cross the bus.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from lc0distill.chess.expand import INPUT_PLANES, PackedPlanes, Rule50Scale, expand_planes
from lc0distill.chunks.packed import FLAG_ALL_LEGAL, MAX_LEGAL_MOVES, POSITION_DTYPE, position_fingerprints
from lc0distill.chunks.targets import QSource

POLICY_SIZE = 1858


@dataclass
class Batch:
    """One training batch; B positions, every tensor on the same device."""

    planes: torch.Tensor  # (B, 112, 8, 8) float32 input planes
    policy: torch.Tensor  # (B, 1858) float32 search policy; 0 at illegal moves
    legal: torch.Tensor  # (B, 1858) bool: legal moves (all True for V3 data, which does not mark them)
    z: torch.Tensor  # (B, 3) float32 game result as W, D, L from the side to move
    q: torch.Tensor  # (B, 3) float32 search evaluation as W, D, L, from the chosen q/d fields
    moves_left: torch.Tensor  # (B,) float32 plies left in the game
    moves_left_known: torch.Tensor  # (B,) bool: False for V3/V4 data, which has no moves-left
    orig_q: torch.Tensor  # (B,) float32 raw net value before search; NaN where unknown
    policy_kld: torch.Tensor  # (B,) float32 KL of search policy from the raw net policy; 0 if unknown
    played_idx: torch.Tensor  # (B,) int64 policy index of the move played
    best_idx: torch.Tensor  # (B,) int64 policy index of the best move
    chunk_index: torch.Tensor  # (B,) int64 the loader's number of the chunk each position came from
    record_index: torch.Tensor  # (B,) int64 the record's index in its chunk
    fingerprint: torch.Tensor | None = None  # (B,) int64 hash of the planes (chunks.packed.position_fingerprints)

    def __len__(self) -> int:
        return self.planes.shape[0]

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(**{f.name: None if getattr(self, f.name) is None else
                        getattr(self, f.name).to(device, non_blocking=True) for f in fields(self)})


def _wdl(q: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    return torch.stack([(1 - d + q) / 2, d, (1 - d - q) / 2], dim=1)


_SQUARE_SHIFTS = torch.tensor([square ^ 7 for square in range(64)], dtype=torch.int64)  # stored bit of square


def expand_planes_torch(packed: dict[str, torch.Tensor], rule50: Rule50Scale) -> torch.Tensor:
    """(B, 112, 8, 8) float32 planes from packed tensors on any device (same values as expand_planes)."""
    planes = packed["planes"]  # (B, 104) int64 holding the stored uint64 bits
    batch, device = planes.shape[0], planes.device
    bits = (planes.unsqueeze(-1) >> _SQUARE_SHIFTS.to(device)) & 1  # (B, 104, 64)
    out = torch.zeros(batch, INPUT_PLANES, 64, device=device)
    out[:, :104] = bits.float()
    fmt = packed["input_format"]
    classical, canonical = fmt == 1, fmt >= 3
    files = torch.arange(8, device=device)
    castling = packed["castling"]  # (B, 4) int64
    file_bits = ((castling.unsqueeze(-1) >> files) & 1).float()  # (B, 4, 8)
    aux = out[:, 104:].view(batch, 8, 8, 8)
    aux[:, 0:4] = torch.where(classical.view(-1, 1, 1, 1), (castling != 0).float().view(-1, 4, 1, 1), aux[:, 0:4])
    rook = (~classical).view(-1, 1).float()
    aux[:, 0, 0] += rook * file_bits[:, 0]
    aux[:, 0, 7] += rook * file_bits[:, 2]
    aux[:, 1, 0] += rook * file_bits[:, 1]
    aux[:, 1, 7] += rook * file_bits[:, 3]
    side = packed["side_to_move_or_enpassant"]
    aux[:, 4] = torch.where(canonical, 0.0, (side != 0).float()).view(-1, 1, 1)
    aux[:, 4, 7] += canonical.view(-1, 1).float() * ((side.unsqueeze(-1) >> files) & 1).float()
    count = packed["rule50_count"].float()
    divisor = 1.0 if rule50 == Rule50Scale.ENGINE else 99.0
    aux[:, 5] = torch.where(fmt >= 4, count / 100.0, count / divisor).view(-1, 1, 1)
    armageddon = ((fmt == 132) | (fmt == 133)) & (packed["invariance_info"] >= 128)
    aux[:, 6] = armageddon.float().view(-1, 1, 1)
    aux[:, 7] = 1.0
    return out.view(batch, INPUT_PLANES, 8, 8)


def _to_tensors(packed: np.ndarray, device: torch.device) -> dict[str, torch.Tensor]:
    """The packed fields as torch tensors on `device` (unsigned types widened to int64)."""
    out = {}
    for name in POSITION_DTYPE.names:
        array = np.ascontiguousarray(packed[name])
        if array.dtype.kind == "u":
            array = array.view(np.int64) if array.dtype.itemsize == 8 else array.astype(np.int64)
        out[name] = torch.from_numpy(array).to(device, non_blocking=True)
    return out


def _dense_policy(t: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 1858) policy and legal mask from the sparse lists; unused slots land in a spare column 1858."""
    batch, device = t["policy_count"].shape[0], t["policy_count"].device
    valid = torch.arange(MAX_LEGAL_MOVES, device=device).unsqueeze(0) < t["policy_count"].unsqueeze(1)
    index = torch.where(valid, t["policy_index"], POLICY_SIZE)  # a row's valid indices are distinct
    policy = torch.zeros(batch, POLICY_SIZE + 1, device=device).scatter_(1, index, t["policy_value"])
    legal = torch.zeros(batch, POLICY_SIZE + 1, dtype=torch.bool, device=device).scatter_(1, index, True)
    legal[:, :POLICY_SIZE] |= ((t["flags"] & FLAG_ALL_LEGAL) != 0).unsqueeze(1)
    return policy[:, :POLICY_SIZE], legal[:, :POLICY_SIZE]


def _dense_policy_numpy(packed: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The CPU path of _dense_policy: one flat scatter in numpy (faster than torch's on the CPU)."""
    count = len(packed)
    valid = np.arange(MAX_LEGAL_MOVES) < packed["policy_count"][:, None]
    flat = (np.arange(count, dtype=np.intp)[:, None] * POLICY_SIZE + packed["policy_index"])[valid]
    policy = np.zeros(count * POLICY_SIZE, np.float32)
    policy[flat] = packed["policy_value"][valid]
    legal = np.zeros(count * POLICY_SIZE, bool)
    legal[flat] = True
    legal = legal.reshape(count, POLICY_SIZE)
    legal[(packed["flags"] & FLAG_ALL_LEGAL) != 0] = True
    return torch.from_numpy(policy.reshape(count, POLICY_SIZE)), torch.from_numpy(legal)


def make_batch(packed: np.ndarray, device: torch.device | str = "cpu", q_source: QSource = QSource.BEST,
               rule50: Rule50Scale = Rule50Scale.ENGINE) -> Batch:
    """A Batch from (B,) POSITION_DTYPE positions, expanded on `device`."""
    device = torch.device(device)
    t = _to_tensors(packed, device)
    if device.type == "cpu":  # numpy's unpackbits and flat scatter are the fastest CPU paths
        planes = torch.from_numpy(expand_planes(PackedPlanes(
            packed["planes"], packed["castling"], packed["side_to_move_or_enpassant"], packed["rule50_count"],
            packed["invariance_info"], packed["input_format"].astype(np.uint32)), rule50))
        policy, legal = _dense_policy_numpy(packed)
    else:
        planes = expand_planes_torch(t, rule50)
        policy, legal = _dense_policy(t)
    source = QSource(q_source).value
    return Batch(
        planes=planes, policy=policy, legal=legal,
        z=_wdl(t["result_q"], t["result_d"]), q=_wdl(t[f"{source}_q"], t[f"{source}_d"]),
        moves_left=t["plies_left"], moves_left_known=t["version"] >= 5,
        orig_q=t["orig_q"], policy_kld=t["policy_kld"], played_idx=t["played_idx"], best_idx=t["best_idx"],
        chunk_index=t["chunk"], record_index=t["record"],
        fingerprint=torch.from_numpy(position_fingerprints(packed).view(np.int64)),  # stays on the CPU: joins
    )
