"""One optimizer step: the teacher's targets, the student's forward under autocast, the objective's loss
parts, then backward, clip and step, each behind the non-finite guard (a skipped step leaves the net, batch
norm included, as it was, and names the positions or the teacher to blame), then SWA.

The guard's checks are flags on the device (lc0distill.guard): a step never waits for the host. They are read
every train.sync_every steps and whenever the loop is about to log, evaluate or save (`sync`); the steps found
skipped then are named and taken back from the step count (a skipped step does not count). Until that read the
schedules run one step ahead per skipped step: the price of not stopping the device every step
(train.sync_every=1 reads every step, as the guard did before).
"""

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
    NonFiniteRunError,
    SkippedStep,
    StepFlags,
    batch_norm_state,
    gradients_finite,
    guarded_update,
    loss_finite_flag,
    non_finite_row_mask,
    poison_gradients,
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
                 record: Callable[[str, dict, int], None]):
        """`record(kind, values, step)` writes a metrics record (RunLogs.record)."""
        self.config, self.state, self.teaching, self.data = config, state, teaching, data
        self.forward, self.device, self.world, self.run_dir, self.record = forward, device, world, run_dir, record
        self.pending: list[StepFlags] = []  # steps whose flags the host has not read yet

    def train_step(self, batch: Batch) -> L.LossReport | None:
        """One optimizer step. None when a read of the guard's flags due now (train.sync_every; every step
        when 1) found a skipped step and took the step count back; otherwise a later `sync` may still find this
        step skipped."""
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
        loss_finite = loss_finite_flag(report.total, self.world)
        state.optimizer.zero_grad(set_to_none=True)
        state.scaler.scale(report.total).backward()
        if state.scaler.is_enabled():
            poison_gradients(student, loss_finite)
        applied = loss_finite & gradients_finite(student, state.optimizer, state.scaler, config.train.grad_clip)
        weights_finite = guarded_update(student, state.optimizer, state.scaler, applied, state.step + 1,
                                        self.run_dir)
        restore_batch_norm(student, statistics, keep=applied)
        self.pending.append(self._flags(batch, taught, report, loss_finite, applied, weights_finite))
        state.step += 1
        made_as = state.step
        if len(self.pending) >= config.train.sync_every:
            self.sync()
        if state.swa is not None and state.step % config.train.swa_every == 0 and not self.sync():
            state.swa.update(student)
        return report if state.step == made_as else None

    def _flags(self, batch: Batch, taught, report: L.LossReport, loss_finite: torch.Tensor, applied: torch.Tensor,
               weights_finite: torch.Tensor) -> StepFlags:
        """The step's flags, and the rows to blame should its loss prove non-finite: the inputs' and targets'
        rows, and each teacher's (train-mode batch norm mixes the student's rows, so one bad position makes all
        of its outputs non-finite: they say nothing)."""
        named = taught if isinstance(taught, list) else [(self.teaching.label(), 1.0, taught)]
        # NaN or +inf in a teacher's policy (-inf is a cache's illegal move), non-finite values in its WDL
        teacher_rows = {name: non_finite_row_mask([out.policy_logits.masked_fill(torch.isneginf(out.policy_logits),
                                                                                  0.0), out.wdl])
                        for name, _, out in named if out is not None}
        names = tuple(report.parts)
        parts = torch.stack([torch.isfinite(report.parts[n].detach()) for n in names]) if names else applied[None]
        return StepFlags(
            step=self.state.step, clock=self.state.batches_consumed, lr=self.state.optimizer.param_groups[0]["lr"],
            loss_finite=loss_finite, applied=applied, weights_finite=weights_finite, part_names=names,
            parts_finite=parts,
            data_rows=non_finite_row_mask([batch.planes, batch.policy, batch.z, batch.q, batch.moves_left]),
            teacher_rows=teacher_rows, chunk_index=batch.chunk_index.cpu(), record_index=batch.record_index.cpu())

    def sync(self) -> int:
        """Read the pending steps' flags (one host round-trip): name and count each skipped step, take it back
        from the step count, and stop the run on weights made non-finite or past the guard's limit. Returns the
        number of steps found skipped."""
        pending, self.pending = self.pending, []
        read = StepFlags.read(pending)
        skipped = 0
        for flags, (loss_finite, applied, weights_finite) in zip(pending, read.tolist()):
            step = flags.step - skipped  # the step count as it stood, counting only applied steps
            if not weights_finite:
                raise NonFiniteRunError(f"step {step + 1}: the update made the weights non-finite (lr {flags.lr:g}): "
                                        f"the run stops; the last checkpoint in {self.run_dir} is kept as it was")
            if applied:
                continue
            skipped += 1
            self.state.step -= 1
            if loss_finite:
                self._skip(flags, step, "gradients", None)
            else:
                self._skip_loss(flags, step)
        return skipped

    def _skip_loss(self, flags: StepFlags, step: int) -> None:
        """A step whose loss is not finite, blaming what was: rows of the inputs and targets, or, where those
        are finite, of the teachers' outputs, naming the teacher."""
        parts = flags.parts_finite.cpu().tolist()
        what = f"loss ({', '.join(n for n, finite in zip(flags.part_names, parts) if not finite)})"
        if flags.data_rows is not None and bool(flags.data_rows.any()):
            self._skip(flags, step, what, flags.data_rows)
            return
        broken = {name: rows for name, rows in flags.teacher_rows.items() if rows is not None and bool(rows.any())}
        rows = None
        if broken:
            what += f" from the outputs of teacher {', '.join(broken)} on finite positions"
            for mask in broken.values():
                rows = mask if rows is None else rows | mask
        self._skip(flags, step, what, rows)

    def _skip(self, flags: StepFlags, step: int, what: str, rows: torch.Tensor | None) -> None:
        """Count a skipped step with the positions whose values were not finite (chunk and record)."""
        bad = torch.zeros(0, dtype=torch.long) if rows is None else torch.nonzero(rows.cpu()).flatten()
        names = position_names(bad, flags.chunk_index, flags.record_index, self.data.train_loader.source_name)
        self.record("skipped", {"what": what, "positions": names, "batch": flags.clock}, step)
        self.state.guard.skip(SkippedStep(step, what, names), clock=flags.clock)
