"""The `Batch` contract between data and training, built from packed positions on the training device.

Packed positions travel from the loader's workers (2,232 bytes each); planes and the policy are expanded
here in one vectorised step: with numpy on the CPU; for a GPU the batch's packed bytes go over in one copy from
pinned memory (non-blocking: the host goes on to the next batch) and are expanded there with torch bit
operations, every field a view of those bytes. Where each position came from, its fingerprint and its legal
moves' indices stay on the host too (HOST_FIELDS), for the teacher cache's join and the guard's messages, so
that neither has to read the device.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from lc0distill.chess.expand import INPUT_PLANES, PackedPlanes, Rule50Scale, expand_planes
from lc0distill.chunks.packed import FLAG_ALL_LEGAL, MAX_LEGAL_MOVES, POSITION_DTYPE, position_fingerprints
from lc0distill.chunks.targets import QSource

POLICY_SIZE = 1858
HOST_FIELDS = frozenset({"chunk_index", "record_index", "fingerprint", "legal_count", "legal_flat"})


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
    chunk_index: torch.Tensor  # (B,) int64 on the host: the loader's number of the chunk each position came from
    record_index: torch.Tensor  # (B,) int64 on the host: the record's index in its chunk
    fingerprint: torch.Tensor | None = None  # (B,) int64 on the host: hash of the planes (position_fingerprints)
    legal_count: torch.Tensor | None = None  # (B,) int64 on the host: legal moves per position (legal's row sums)
    legal_flat: torch.Tensor | None = None  # (K,) int64 on the host: row * 1858 + index of each legal move, in
    #                                         legal's row-major order (where legal.view(-1) is True)

    def __len__(self) -> int:
        return self.planes.shape[0]

    def to(self, device: torch.device | str) -> "Batch":
        """The batch with its tensors on `device` (the HOST_FIELDS stay on the host)."""
        return Batch(**{f.name: None if getattr(self, f.name) is None else getattr(self, f.name)
                        if f.name in HOST_FIELDS else getattr(self, f.name).to(device, non_blocking=True)
                        for f in fields(self)})


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
    """The packed fields as torch tensors on `device` (unsigned types widened to int64), a copy per field:
    the CPU path."""
    out = {}
    for name in POSITION_DTYPE.names:
        array = np.ascontiguousarray(packed[name])
        if array.dtype.kind == "u":
            array = array.view(np.int64) if array.dtype.itemsize == 8 else array.astype(np.int64)
        out[name] = torch.from_numpy(array).to(device, non_blocking=True)
    return out


def packed_bytes(packed: np.ndarray, device: torch.device) -> torch.Tensor:
    """(B, 2232) uint8 on `device`: the packed positions in one copy, from pinned memory to a GPU (the copy
    runs while the host goes on; torch's pinned-memory cache does not reuse the buffer before it is done)."""
    raw = torch.from_numpy(np.ascontiguousarray(packed).view(np.uint8).reshape(len(packed), POSITION_DTYPE.itemsize))
    return to_device(raw, device)


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`tensor` (on the host) on `device`: to a GPU through pinned memory, non-blocking (a copy from pageable
    memory would hold the host until it is staged)."""
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


_SIGNED = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def fields_of_bytes(raw: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every packed field of (B, 2232) uint8 bytes as a tensor on their device: views of the bytes (POSITION_DTYPE
    keeps each field at a multiple of its size, and 2,232 is a multiple of 8), unsigned types widened to int64
    (uint64 planes kept as their bits in int64), as _to_tensors gives them."""
    out = {}
    for name in POSITION_DTYPE.names:
        dtype, offset = POSITION_DTYPE.fields[name][:2]
        base = dtype.base
        column = raw[:, offset:offset + dtype.itemsize]
        if base.kind == "f":
            value = column.view(torch.float32)
        elif base.itemsize == 8:
            value = column.view(torch.int64)
        else:  # unsigned 1, 2 or 4 bytes: the signed view, masked back to the unsigned value
            value = column.view(_SIGNED[base.itemsize]).to(torch.int64) & ((1 << (8 * base.itemsize)) - 1)
        out[name] = value.reshape(raw.shape[0], *dtype.shape)
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


def _sparse_entries(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """((B, 218) bool: the slots in use, (K,) row * 1858 + policy index of each slot in use, row-major)."""
    valid = np.arange(MAX_LEGAL_MOVES) < packed["policy_count"][:, None]
    return valid, (np.arange(len(packed), dtype=np.int64)[:, None] * POLICY_SIZE + packed["policy_index"])[valid]


def _legal_flat(packed: np.ndarray, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """((B,) legal moves per position, (K,) row * 1858 + index of each legal move, row-major ascending) from the
    sparse lists (packing stores each row's indices ascending); V3 rows marked all-legal count every index."""
    count = len(packed)
    counts = packed["policy_count"].astype(np.int64)
    all_legal = (packed["flags"] & FLAG_ALL_LEGAL) != 0
    if all_legal.any():
        legal = np.zeros((count, POLICY_SIZE), bool)
        legal.reshape(-1)[flat] = True
        legal[all_legal] = True
        flat, counts = np.flatnonzero(legal), legal.sum(axis=1, dtype=np.int64)
    return counts, flat


def _dense_policy_numpy(packed: np.ndarray, valid: np.ndarray, flat: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The CPU path of _dense_policy: one flat scatter in numpy (faster than torch's on the CPU)."""
    count = len(packed)
    policy = np.zeros(count * POLICY_SIZE, np.float32)
    policy[flat] = packed["policy_value"][valid]
    legal = np.zeros(count * POLICY_SIZE, bool)
    legal[flat] = True
    legal = legal.reshape(count, POLICY_SIZE)
    legal[(packed["flags"] & FLAG_ALL_LEGAL) != 0] = True
    return torch.from_numpy(policy.reshape(count, POLICY_SIZE)), torch.from_numpy(legal)


def make_batch(packed: np.ndarray, device: torch.device | str = "cpu", q_source: QSource = QSource.BEST,
               rule50: Rule50Scale = Rule50Scale.ENGINE, expand_on_device: bool | None = None) -> Batch:
    """A Batch from (B,) POSITION_DTYPE positions, expanded on `device`: by numpy on the CPU, from the packed
    bytes in one copy elsewhere (`expand_on_device` forces either path, for tests and benchmarks)."""
    device = torch.device(device)
    on_device = device.type != "cpu" if expand_on_device is None else expand_on_device
    valid, flat = _sparse_entries(packed)
    if on_device:  # one copy of the packed bytes; every field a view of them, planes and policy expanded there
        t = fields_of_bytes(packed_bytes(packed, device))
        planes = expand_planes_torch(t, rule50)
        policy, legal = _dense_policy(t)
    else:  # numpy's unpackbits and flat scatter are the fastest CPU paths
        t = _to_tensors(packed, device)
        planes = torch.from_numpy(expand_planes(PackedPlanes(
            packed["planes"], packed["castling"], packed["side_to_move_or_enpassant"], packed["rule50_count"],
            packed["invariance_info"], packed["input_format"].astype(np.uint32)), rule50)).to(device)
        policy, legal = (tensor.to(device) for tensor in _dense_policy_numpy(packed, valid, flat))
    source = QSource(q_source).value
    legal_count, legal_flat = _legal_flat(packed, flat)
    return Batch(
        planes=planes, policy=policy, legal=legal,
        z=_wdl(t["result_q"], t["result_d"]), q=_wdl(t[f"{source}_q"], t[f"{source}_d"]),
        moves_left=t["plies_left"], moves_left_known=t["version"] >= 5,
        orig_q=t["orig_q"], policy_kld=t["policy_kld"], played_idx=t["played_idx"], best_idx=t["best_idx"],
        chunk_index=torch.from_numpy(packed["chunk"].astype(np.int64)),  # the host fields: joins and messages
        record_index=torch.from_numpy(packed["record"].astype(np.int64)),
        fingerprint=torch.from_numpy(position_fingerprints(packed).view(np.int64)),
        legal_count=torch.from_numpy(legal_count), legal_flat=torch.from_numpy(legal_flat),
    )
