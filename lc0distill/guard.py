"""The non-finite guard: a step whose loss or gradients are not finite is skipped, never applied.

One NaN that reaches an optimizer step turns every weight NaN, and a run that goes on from there trains
nothing while it reports success. So every step checks its loss (one scalar) and its gradient norm (one
reduction over the gradients, which clipping computes anyway); a failing step is skipped and named with the
chunks and records of the positions whose values were not finite. A few such steps are survivable (one
odd teacher output); more than `limit` in `window` steps means the run cannot be right, and it stops. After
each applied step the weights are checked too: weights that became non-finite (a learning rate that blew
them up) cannot be repaired, so the run stops, before anything is saved.

The checks never stop the device to ask the host: each is a flag on the device (StepFlags), the skip is the
optimizer's own (a fused optimizer's `found_inf` leaves weights and momenta untouched), the batch-norm
statistics are put back with a `where`, and the host reads a window of flags at once (train.sync_every steps,
and before every log, evaluation and checkpoint), naming the bad batches then.
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


def finite_flag(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    """() bool on the tensors' device: every floating-point value of every tensor is finite (one fused
    reduction per dtype; read on the device, no host round-trip)."""
    floats = [t.detach() for t in tensors if t.is_floating_point()]
    if not floats:
        return torch.ones((), dtype=torch.bool)
    return torch.isfinite(torch.nn.utils.get_total_norm(floats, norm_type=1.0))


def all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """finite_flag, read on the host (for checks before saving, not for every step)."""
    return bool(finite_flag(tensors))


def non_finite_row_mask(tensors: Iterable[torch.Tensor | None]) -> torch.Tensor | None:
    """(B,) bool on the tensors' device: the rows where any (B, ...) tensor holds a non-finite value (None when
    none is floating point). Each row's sum is non-finite exactly when one of its values is, barring sums of
    finite values past float32's range (1e38), which no input or output here comes near."""
    bad = None
    for tensor in tensors:
        if tensor is None or not tensor.is_floating_point():
            continue
        rows = ~torch.isfinite(tensor.detach().float().reshape(tensor.shape[0], -1).sum(dim=1))
        bad = rows if bad is None else bad | rows
    return bad


def loss_finite_flag(loss: torch.Tensor, world: int) -> torch.Tensor:
    """() bool on the device: is the loss finite, on every rank? Under DDP all ranks skip together (the
    all-reduce is queued on the device like the gradients' own)."""
    finite = torch.isfinite(loss.detach()).to(torch.int32).reshape(1)
    if world > 1:
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    return finite.reshape(()).bool()


def batch_norm_state(model: torch.nn.Module) -> list[torch.Tensor]:
    """Copies of the batch-norm running statistics (a train-mode forward updates them before the loss is known
    to be finite; a skipped step puts them back). A few floats per channel: cheap."""
    return [buffer.detach().clone() for buffer in model.buffers()]


def restore_batch_norm(model: torch.nn.Module, saved: list[torch.Tensor], keep: torch.Tensor) -> None:
    """Put the saved statistics back where the step was not applied (`keep`, a () bool on the device: the new
    ones stay), without asking the host which."""
    with torch.no_grad():
        for buffer, value in zip(model.buffers(), saved):
            buffer.copy_(torch.where(keep, buffer, value))


def gradients_finite(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                     clip: float) -> torch.Tensor:
    """Clip the gradients (clip > 0) and say, as a () bool on the device, whether their norm is finite (the
    same reduction clipping needs). Under fp16 AMP the scaler itself skips steps whose scaled gradients
    overflow, and lowers its scale: left to it (True)."""
    parameters = [p for p in model.parameters() if p.grad is not None]
    if clip > 0:
        if scaler.is_enabled():
            scaler.unscale_(optimizer)
        norm = torch.nn.utils.clip_grad_norm_(parameters, clip)
    else:
        norm = torch.nn.utils.get_total_norm([p.grad for p in parameters])
    finite = torch.isfinite(norm)
    return torch.ones_like(finite) if scaler.is_enabled() else finite


def poison_gradients(model: torch.nn.Module, applied: torch.Tensor) -> None:
    """Make every gradient NaN where `applied` is False (a () bool on the device): under fp16 the scaler
    decides the skip from the gradients alone, and a non-finite loss can leave them finite (a NaN part weighed
    0)."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if grads:
        torch._foreach_add_(grads, torch.where(applied, 0.0, float("nan")).to(grads[0].dtype))


def guarded_update(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                   applied: torch.Tensor, step: int, run_dir: Path) -> torch.Tensor:
    """The optimizer step, applied only where `applied` (a () bool on the device) holds: the fused optimizer
    skips on its `found_inf` (under fp16, the scaler's), weights and momenta untouched. Returns a () bool on
    the device: the weights are finite after it."""
    lr = optimizer.param_groups[0]["lr"]
    if not abs(lr) <= torch.finfo(torch.float32).max:  # the weights are float32: such a step overflows them
        raise NonFiniteRunError(f"step {step}: the learning rate {lr:g} does not fit in float32: the run stops; "
                                f"the last checkpoint in {run_dir} is kept as it was")
    if scaler.is_enabled():
        scaler.step(optimizer)
    else:
        optimizer.found_inf = (~applied).float()  # read by fused optimizers (make_optimizer's)
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf
    scaler.update()
    return finite_flag(model.parameters())


def position_names(rows: torch.Tensor, chunk_index: torch.Tensor, record_index: torch.Tensor,
                   name_of: Callable[[int], str]) -> list[str]:
    """"chunk: record N" of the first MAX_NAMED_POSITIONS rows."""
    return [f"{name_of(int(chunk_index[r]))}: record {int(record_index[r])}"
            for r in rows[:MAX_NAMED_POSITIONS].tolist()]


@dataclass
class StepFlags:
    """What one step left on the device for the guard, read by the host later (StepTrainer.sync)."""

    step: int  # the step the update was made as (the run's step count before it)
    clock: int  # batches read when it was made
    lr: float
    loss_finite: torch.Tensor  # () bool
    applied: torch.Tensor  # () bool: loss and gradients finite, the update applied
    weights_finite: torch.Tensor  # () bool: after the update
    part_names: tuple[str, ...]
    parts_finite: torch.Tensor  # (P,) bool, one per loss part
    data_rows: torch.Tensor | None  # (B,) bool: rows whose inputs or targets are not finite
    teacher_rows: dict[str, torch.Tensor]  # teacher name -> (B,) bool: rows where its outputs are not finite
    chunk_index: torch.Tensor  # (B,) on the host
    record_index: torch.Tensor  # (B,) on the host

    @staticmethod
    def read(pending: list["StepFlags"]) -> torch.Tensor:
        """(N, 3) bool on the host: loss finite, applied, weights finite, for each pending step: one read."""
        if not pending:
            return torch.zeros(0, 3, dtype=torch.bool)
        return torch.stack([torch.stack([f.loss_finite, f.applied, f.weights_finite]) for f in pending]).cpu()


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
