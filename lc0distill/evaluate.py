"""Held-out metrics of nets on lc0 data: policy loss, top-1 accuracy, value MSE and cross-entropy against the
game result, moves-left error, and agreement with a teacher. Used during training and by `lc0distill evaluate`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch

from lc0distill.chunks.batch import Batch
from lc0distill.distill.losses import policy_cross_entropy, scalar_value_mse, wdl_cross_entropy, wdl_mse
from lc0distill.distill.teachers import teach
from lc0distill.errors import Lc0DistillError
from lc0distill.models.net import NetOutput, SEResNet

METRICS = ("policy_loss", "top1_accuracy", "value_mse", "value_ce", "moves_left_mae", "teacher_agreement")


@dataclass
class _Sums:
    positions: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, mean: torch.Tensor | float, count: int) -> None:
        self.sums[name] = self.sums.get(name, 0.0) + float(mean) * count
        self.counts[name] = self.counts.get(name, 0) + count

    def means(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {n: (self.sums[n] / self.counts[n] if self.counts.get(n) else None) for n in METRICS}
        out["positions"] = self.positions
        return out


def _masked_argmax(logits: torch.Tensor, legal: torch.Tensor) -> torch.Tensor:
    return logits.float().masked_fill(~legal, float("-inf")).argmax(dim=1)


def _check_finite(out: NetOutput, name: str) -> None:
    for tensor in (out.policy_logits, out.wdl_logits, out.value, out.moves_left):
        if tensor is not None and not bool(torch.isfinite(tensor).all()):
            raise Lc0DistillError(f"{name}: the net's outputs are non-finite (NaN or infinity) on held-out "
                                  "positions: its metrics would mean nothing")


def _add_batch(sums: _Sums, out: NetOutput, batch: Batch, teacher_out: NetOutput | None) -> None:
    size = len(batch)
    sums.positions += size
    sums.add("policy_loss", policy_cross_entropy(out.policy_logits, batch.policy, batch.legal), size)
    predicted = _masked_argmax(out.policy_logits, batch.legal)
    target_best = _masked_argmax(batch.policy, batch.legal)
    sums.add("top1_accuracy", (predicted == target_best).float().mean(), size)
    if out.wdl_logits is not None:
        sums.add("value_mse", wdl_mse(out.wdl_logits, batch.z), size)
        sums.add("value_ce", wdl_cross_entropy(out.wdl_logits, batch.z), size)
    else:
        sums.add("value_mse", scalar_value_mse(out.value, batch.z), size)
    known = batch.moves_left_known
    if out.moves_left is not None and bool(known.any()):
        error = (out.moves_left.float() - batch.moves_left)[known].abs().mean()
        sums.add("moves_left_mae", error, int(known.sum()))
    if teacher_out is not None:
        best = getattr(teacher_out, "best", None)
        best = _masked_argmax(teacher_out.policy_logits, batch.legal) if best is None else best
        agreement = (predicted == best).float().mean()
        sums.add("teacher_agreement", agreement, size)


@torch.no_grad()
def evaluate_net(net: SEResNet | Callable[[torch.Tensor], NetOutput], batches: Iterable[Batch],
                 max_positions: int | None = None, teacher: Callable[[torch.Tensor], NetOutput] | None = None,
                 on_batch: Callable[[int], None] | None = None, name: str = "the net") -> dict[str, float | None]:
    """Mean metrics over the batches (at most max_positions positions); None where a metric does not apply.
    `on_batch(positions so far)` is called after each batch (progress); non-finite outputs are an error
    naming `name`."""
    was_training = getattr(net, "training", False)
    if hasattr(net, "eval"):
        net.eval()
    sums = _Sums()
    for batch in batches:
        out = net(batch.planes)
        _check_finite(out, name)
        _add_batch(sums, out, batch, teach(teacher, batch) if teacher is not None else None)
        if on_batch is not None:
            on_batch(sums.positions)
        if max_positions is not None and sums.positions >= max_positions:
            break
    if was_training:
        net.train()
    return sums.means()
