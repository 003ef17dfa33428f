"""One optimizer step: the teacher's targets, the student's forward under autocast, the objective's loss
parts, then backward, clip and step, each behind the non-finite guard (a skipped step leaves the net, batch
norm included, as it was, and names the positions or the teacher to blame), then SWA."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from lc0distill.chunks.batch import Batch
from lc0distill.config import RunConfig
from lc0distill.distill import losses as L
from lc0distill.distill.objective import kickstart_loss_parts, loss_parts
from lc0distill.distill.schedules import learning_rate, set_learning_rate
from lc0distill.distill.teachers import SnapshotTeacher
from lc0distill.guard import (
    SkippedStep,
    batch_norm_state,
    checked_step,
    finite_on_every_rank,
    gradients_finite,
    non_finite_parts,
    non_finite_rows,
    position_names,
    restore_batch_norm,
)
from lc0distill.training.data import RunData
from lc0distill.training.setup import set_train_mode
from lc0distill.training.state import RunState
from lc0distill.training.teaching import Teaching


def autocast(config: RunConfig, device: torch.device):
    amp = config.train.amp
    enabled = amp != "off" and device.type == "cuda"
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype, enabled=enabled)


class StepTrainer:
    """Trains the run's state one batch at a time. `forward` is the student as called (DDP, compiled)."""

    def __init__(self, config: RunConfig, state: RunState, teaching: Teaching, data: RunData,
                 forward: torch.nn.Module, device: torch.device, world: int, run_dir: Path,
                 record: Callable[[str, dict], None]):
        self.config, self.state, self.teaching, self.data = config, state, teaching, data
        self.forward, self.device, self.world, self.run_dir, self.record = forward, device, world, run_dir, record

    def train_step(self, batch: Batch) -> L.LossReport | None:
        """One optimizer step, or None when the non-finite guard skipped the batch."""
        config, state = self.config, self.state
        student = state.student
        alpha, temp = self.teaching.schedules_at(state.step)
        set_learning_rate(state.optimizer, learning_rate(config.train.lr, state.step))
        if isinstance(self.teaching.teacher, SnapshotTeacher):
            self.teaching.teacher.refresh(student, state.step)
        planes = batch.planes
        if config.train.channels_last:
            planes = planes.contiguous(memory_format=torch.channels_last)
        set_train_mode(student, config.train.freeze_batch_norm)
        statistics = batch_norm_state(student)
        with autocast(config, self.device):
            taught = self.teaching.teach(batch, planes, alpha, state.step)
            out = self.forward(planes)
            if isinstance(taught, list):
                report = kickstart_loss_parts(out, batch, taught, config.loss, temp)
            else:
                report = loss_parts(out, batch, taught, config.loss, alpha, temp)
        if not finite_on_every_rank(report.total, self.world):
            restore_batch_norm(student, statistics)
            self._skip_loss(batch, taught, report)
            return None
        state.optimizer.zero_grad(set_to_none=True)
        state.scaler.scale(report.total).backward()
        if not gradients_finite(student, state.optimizer, state.scaler, config.train.grad_clip):
            state.optimizer.zero_grad(set_to_none=True)
            restore_batch_norm(student, statistics)
            self._skip(batch, "gradients", [])
            return None
        checked_step(student, state.optimizer, state.scaler, state.step + 1, self.run_dir)
        state.step += 1
        if state.swa is not None and state.step % config.train.swa_every == 0:
            state.swa.update(student)
        return report

    def _skip_loss(self, batch: Batch, taught, report: L.LossReport) -> None:
        """Skip a step whose loss is not finite, blaming what was: rows are named from the inputs and targets,
        or, where those are finite, from the teachers' outputs, naming the teacher (train-mode batch norm mixes
        the student's rows, so one bad position makes all of its outputs non-finite: they say nothing)."""
        what = f"loss ({', '.join(non_finite_parts(report.parts))})"
        data = [batch.planes, batch.policy, batch.z, batch.q, batch.moves_left]
        if non_finite_rows(data).numel():
            self._skip(batch, what, data)
            return
        named = taught if isinstance(taught, list) else [(self.teaching.label(), 1.0, taught)]
        # NaN or +inf in a teacher's policy (-inf is a cache's illegal move), non-finite values in its WDL
        outputs = [(name, [out.policy_logits.masked_fill(torch.isneginf(out.policy_logits), 0.0), out.wdl])
                   for name, _, out in named if out is not None]
        broken = [(name, tensors) for name, tensors in outputs if non_finite_rows(tensors).numel()]
        if broken:
            what += f" from the outputs of teacher {', '.join(name for name, _ in broken)} on finite positions"
        self._skip(batch, what, [t for _, tensors in broken for t in tensors])

    def _skip(self, batch: Batch, what: str, suspects: list) -> None:
        """Count a skipped step with the positions whose values were not finite (chunk and record)."""
        state = self.state
        names = position_names(non_finite_rows(suspects), batch.chunk_index, batch.record_index,
                               self.data.train_loader.source_name)
        self.record("skipped", {"what": what, "positions": names, "batch": state.batches_consumed})
        state.guard.skip(SkippedStep(state.step, what, names), clock=state.batches_consumed)
