"""The non-finite guard: a step whose loss or gradients are not finite is skipped, never applied.

One NaN that reaches an optimizer step turns every weight NaN, and a run that goes on from there trains
nothing while it reports success. So every step checks its loss (one scalar) and its gradient norm (one
reduction over the gradients, which clipping computes anyway); a failing step is skipped and named with the
chunks and records of the positions whose values were not finite. A few such steps are survivable (one
odd teacher output); more than `limit` in `window` steps means the run cannot be right, and it stops. After
each applied step the weights are checked too: weights that became non-finite (a learning rate that blew
them up) cannot be repaired, so the run stops at once, before anything is saved.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import torch
import torch.distributed as dist

from lc0distill.errors import Lc0DistillError

MAX_NAMED_POSITIONS = 3


class NonFiniteRunError(Lc0DistillError):
    """The run stopped because its numbers stopped being finite."""


def all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """True when every floating-point value of every tensor is finite (one fused reduction per dtype)."""
    floats = [t.detach() for t in tensors if t.is_floating_point()]
    if not floats:
        return True
    return bool(torch.isfinite(torch.nn.utils.get_total_norm(floats, norm_type=1.0)))


def non_finite_rows(tensors: Iterable[torch.Tensor | None]) -> torch.Tensor:
    """(K,) indices of the batch rows where any of the (B, ...) tensors holds a non-finite value."""
    bad = None
    for tensor in tensors:
        if tensor is None or not tensor.is_floating_point():
            continue
        rows = ~torch.isfinite(tensor.detach().float().reshape(tensor.shape[0], -1)).all(dim=1)
        bad = rows if bad is None else bad | rows
    return torch.zeros(0, dtype=torch.long) if bad is None else torch.nonzero(bad.cpu()).flatten()


def finite_on_every_rank(loss: torch.Tensor, world: int) -> bool:
    """Is the loss finite, on every rank? Under DDP all ranks skip together (a rank that skipped its backward
    alone would leave the others waiting in the gradient all-reduce)."""
    finite = torch.isfinite(loss.detach()).to(torch.int32).reshape(1)
    if world > 1:
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    return bool(finite.item())


def batch_norm_state(model: torch.nn.Module) -> list[torch.Tensor]:
    """Copies of the batch-norm running statistics (a train-mode forward updates them before the loss is known
    to be finite; a skipped step puts them back). A few floats per channel: cheap."""
    return [buffer.detach().clone() for buffer in model.buffers()]


def restore_batch_norm(model: torch.nn.Module, saved: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for buffer, value in zip(model.buffers(), saved):
            buffer.copy_(value)


def non_finite_parts(parts: dict[str, torch.Tensor]) -> list[str]:
    return [name for name, part in parts.items() if not bool(torch.isfinite(part.detach()))]


def gradients_finite(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                     clip: float) -> bool:
    """Clip the gradients (clip > 0) and say whether their norm is finite (the same reduction clipping needs).
    Under fp16 AMP the scaler itself skips steps whose scaled gradients overflow, and lowers its scale: left
    to it (True)."""
    parameters = [p for p in model.parameters() if p.grad is not None]
    if clip > 0:
        if scaler.is_enabled():
            scaler.unscale_(optimizer)
        norm = torch.nn.utils.clip_grad_norm_(parameters, clip)
    else:
        norm = torch.nn.utils.get_total_norm([p.grad for p in parameters])
    return scaler.is_enabled() or bool(torch.isfinite(norm))


def checked_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                 step: int, run_dir: Path) -> None:
    """The optimizer step, then a check of the weights: non-finite ones stop the run (NonFiniteRunError)."""
    lr = optimizer.param_groups[0]["lr"]
    kept = f"the run stops; the last checkpoint in {run_dir} is kept as it was"
    try:
        scaler.step(optimizer)
    except RuntimeError as error:  # torch refuses an lr whose product with the gradients overflows
        if "overflow" not in str(error):
            raise
        raise NonFiniteRunError(f"step {step}: the learning rate {lr:g} does not fit in float32: {kept}") from None
    scaler.update()
    if not all_finite(model.parameters()):
        raise NonFiniteRunError(f"step {step}: the update made the weights non-finite (lr {lr:g}): {kept}")


def position_names(rows: torch.Tensor, chunk_index: torch.Tensor, record_index: torch.Tensor,
                   name_of: Callable[[int], str]) -> list[str]:
    """"chunk: record N" of the first MAX_NAMED_POSITIONS rows."""
    return [f"{name_of(int(chunk_index[r]))}: record {int(record_index[r])}"
            for r in rows[:MAX_NAMED_POSITIONS].tolist()]


@dataclass
class SkippedStep:
    step: int
    what: str  # "loss (policy_distill)", "gradients", ...
    positions: list[str]  # chunk: record N, of positions with non-finite values (the first few)

    def describe(self) -> str:
        where = f"; non-finite values at {', '.join(self.positions)}" if self.positions else ""
        return f"step {self.step}: non-finite {self.what}: batch skipped{where}"


@dataclass
class NonFiniteGuard:
    """Counts skipped steps; more than `limit` within the last `window` batches stops the run (a skipped step
    does not advance the step count, so the window is measured in batches read)."""

    limit: int = 10
    window: int = 1000
    skipped: int = 0
    recent: deque = field(default_factory=deque)
    log: Callable[[str], None] = print

    def skip(self, event: SkippedStep, clock: int) -> None:
        """Count one skipped step; `clock` is the number of batches read so far."""
        self.skipped += 1
        self.recent.append(clock)
        while self.recent and self.recent[0] <= clock - self.window:
            self.recent.popleft()
        self.log(f"warning: {event.describe()}")
        if len(self.recent) > self.limit:
            raise NonFiniteRunError(
                f"{len(self.recent)} of the last {self.window} batches had non-finite values (limit "
                f"train.max_skipped_steps={self.limit}); last: {event.describe()}. The run stops; its last "
                "checkpoint is kept as it was")

    def state(self) -> dict:
        return {"skipped": self.skipped, "recent": list(self.recent)}

    def restore(self, state: dict | None) -> None:
        if state:
            self.skipped, self.recent = int(state["skipped"]), deque(int(s) for s in state["recent"])
