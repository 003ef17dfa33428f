"""How far an exported net's outputs are from the PyTorch net's, on the same planes.

Policy: max |difference| of the 1858 logits. WDL: of the probabilities. Value: of the tanh value. Moves-left:
of the plies, relative to max(1, |plies|) (a 200-ply estimate is not expected to agree to 1e-4 plies).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from lc0distill.models.net import NetOutput

FP32_TOLERANCE = 1e-4
FP16_TOLERANCE = 0.05  # float16 weights and activations: maia-1900 measures 0.03 (logits), 0.004 (WDL)


@dataclass(frozen=True)
class OutputDiff:
    positions: int
    policy: float
    wdl: float | None
    value: float | None
    mlh: float | None

    @property
    def worst(self) -> float:
        """The largest difference; NaN when any difference is NaN (Python's max() would drop it)."""
        found = [d for d in (self.policy, self.wdl, self.value, self.mlh) if d is not None]
        return math.nan if any(math.isnan(d) for d in found) else max(found)

    def to_json(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        parts = [f"policy logits {self.policy:.2e}"]
        parts += [f"{name} {value:.2e}" for name, value in (("WDL", self.wdl), ("value", self.value),
                                                             ("moves-left (relative)", self.mlh)) if value is not None]
        return f"max |difference| over {self.positions} positions: " + ", ".join(parts)


def non_finite_outputs(out: NetOutput) -> list[str]:
    """The outputs of a net that hold NaN or infinite values (a net that cannot be right)."""
    named = {"policy": out.policy_logits, "WDL": out.wdl_logits, "value": out.value, "moves-left": out.moves_left}
    return [name for name, tensor in named.items() if tensor is not None and not bool(torch.isfinite(tensor).all())]


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0


def output_diff(reference: NetOutput, candidate: NetOutput) -> OutputDiff:
    """Differences of every output both nets have (a head only one of them has is an error)."""
    for name in ("wdl_logits", "value", "moves_left"):
        if (getattr(reference, name) is None) != (getattr(candidate, name) is None):
            raise ValueError(f"the nets do not have the same outputs ({name} on one side only)")
    wdl = value = mlh = None
    if reference.wdl_logits is not None:
        wdl = _max_abs(reference.wdl_logits.float().softmax(1), candidate.wdl_logits.float().softmax(1))
    if reference.value is not None:
        value = _max_abs(reference.value, candidate.value)
    if reference.moves_left is not None:
        scale = reference.moves_left.double().abs().clamp_min(1.0)
        mlh = float(((reference.moves_left.double() - candidate.moves_left.double()).abs() / scale).max())
    return OutputDiff(positions=len(reference.policy_logits), policy=_max_abs(reference.policy_logits,
                      candidate.policy_logits), wdl=wdl, value=value, mlh=mlh)
