"""The training loop: a student against data targets, optionally distilled from a teacher.

One step: next batch -> student (and teacher, frozen) -> loss parts (lc0distill.distill.losses) weighted by
the schedules -> backward, clip, optimizer step, SWA. Every `checkpoint_every` steps the whole state is
written atomically; a run started again in the same run_dir resumes where its last checkpoint left it: the
data stream is replayed deterministically up to the batch it had reached (exact), or, when that would mean
reading too much (train.resume_data), a new stream starts there (nothing lost, another order). Rank 0 writes the logs
(metrics.jsonl, TensorBoard) and checkpoints; under torchrun the student is wrapped in DDP.

The run's parts live in lc0distill.training (state and checkpoint, data, teaching, one step, logs,
distributed); this module wires them (`Run`) and runs the loop (`train`, `train_until`).
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from lc0distill.checkpoint import LATEST, load_checkpoint, remove_stale_temporaries
from lc0distill.checks import check_input_format, check_resumable, check_value_target
from lc0distill.chunks.batch import Batch
from lc0distill.chunks.probe import probe_chunks
from lc0distill.config import RunConfig
from lc0distill.distill import losses as L
from lc0distill.distill.objective import loss_parts
from lc0distill.distill.teachers import SnapshotTeacher
from lc0distill.errors import Lc0DistillError
from lc0distill.evaluate import evaluate_net
from lc0distill.guard import NonFiniteGuard
from lc0distill.init_from import initialise_from, with_init_architecture
from lc0distill.lc0.weights import write_net
from lc0distill.models.build import build_net
from lc0distill.models.net import SEResNet
from lc0distill.models.store import save_model
from lc0distill.progress import track
from lc0distill.training.data import RunData
from lc0distill.training.distributed import check_ranks_agree, init_distributed, leave_distributed, wrap_student
from lc0distill.training.logs import RunLogs, step_line
from lc0distill.training.setup import (
    make_optimizer,
    pick_device,
    rank_batch_size,
    seed_everything,
    set_batch_norm_momentum,
    use_deterministic_kernels,
)
from lc0distill.training.state import NO_DATA_DIGEST, SWA, DataStream, RunState, chain_digest
from lc0distill.training.step import StepTrainer
from lc0distill.training.teaching import Teaching, build_teacher

# what other modules (pbt, tools, tests) import from here
__all__ = ["NO_DATA_DIGEST", "SWA", "DataStream", "Run", "RunResult", "Throughput", "build_teacher",
           "chain_digest", "loss_parts", "make_optimizer", "open_run", "pick_device", "rank_batch_size", "train",
           "train_until"]

Log = Callable[[str], None]


@dataclass
class RunResult:
    run_dir: Path
    steps: int
    final_metrics: dict
    positions_per_second: float


def _part(part: str, name: str) -> property:
    """run.<name> reads and sets run.<part>.<name>, the part that owns it."""
    return property(lambda run: getattr(getattr(run, part), name),
                    lambda run, value: setattr(getattr(run, part), name, value))


# ----------------------------------------------------------------------------------------------- the run

class Run:
    """One training run (or one rank of it): its parts wired together. `state` is what a checkpoint holds,
    `data` the streams, `teaching` the teacher side, `stepper` one optimizer step, `logs` what is written."""

    student, optimizer, scaler, swa, guard = (_part("state", name) for name in
                                              ("student", "optimizer", "scaler", "swa", "guard"))
    step, batches_consumed, best, data_digest, stream = (_part("state", name) for name in
                                                         ("step", "batches_consumed", "best", "data_digest", "stream"))
    teacher, eval_teacher = _part("teaching", "teacher"), _part("teaching", "eval_teacher")
    train_loader, test_loader = _part("data", "train_loader"), _part("data", "test_loader")
    tracker = _part("logs", "tracker")

    def __init__(self, config: RunConfig, log: Log = print, start_from_init: bool = True):
        """`start_from_init`: take net.init_from's weights (a run that resumes takes its checkpoint's instead)."""
        self.config, self.log = config, log
        self.rank, self.world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        # under torchrun, DDP even for one rank (what a one-GPU machine can check of a multi-GPU run)
        self.distributed = self.world > 1 or "TORCHELASTIC_RUN_ID" in os.environ
        self.rank_batch_size = rank_batch_size(config.data.batch_size, self.world)
        use_deterministic_kernels(config.train.deterministic)
        self.device = pick_device(config.train.device)
        self.owns_process_group = False  # made here under torchrun: ended by train() when the run ends
        if self.distributed:
            self.device, self.owns_process_group = init_distributed(self.device)
        self.run_dir = Path(config.train.run_dir)
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise Lc0DistillError(f"{self.run_dir}: train.run_dir names a file, not a folder")
        if config.train.threads:  # several processes on few cores stall each other's thread pools
            torch.set_num_threads(config.train.threads)
        self.logs = RunLogs(config, self.rank, self.run_dir, log)
        student = self._build_student(start_from_init)
        self.teaching = Teaching(config, student, self.device)
        swa = SWA(student, config.train.swa_max_models) if config.train.swa_every else None
        scaler = torch.amp.GradScaler(enabled=config.train.amp == "fp16" and self.device.type == "cuda")
        guard = NonFiniteGuard(config.train.max_skipped_steps, config.train.skip_window, log=self.say)
        self.state = RunState(student, make_optimizer(config.train, student), scaler, swa, guard)
        if isinstance(self.teaching.teacher, SnapshotTeacher):
            self.state.snapshot = self.teaching.teacher
        self.data = RunData(config, self.rank, self.world, self.rank_batch_size, self.device, log)
        _check_data(config, self.data)
        if config.teacher.cache:
            self.data.keep_records = self.teaching.open_cache(self.data.train_sources, self.data.test_sources,
                                                              self.say)
        forward = wrap_student(student, self.distributed, self.device, config.train.compile)
        self.stepper = StepTrainer(config, self.state, self.teaching, self.data, forward, self.device, self.world,
                                   self.run_dir, self.logs.record)

    def _build_student(self, start_from_init: bool) -> SEResNet:
        """The student, seeded (train.seed), from net.init_from if asked, on the run's device."""
        config = self.config
        seed_everything(config.train.seed)
        student = build_net(config.net)
        if start_from_init and config.net_init.init_from:
            self.say(initialise_from(student, config.net_init.init_from, config.net_init.init_from_partial).summary())
        set_batch_norm_momentum(student, config.train.batch_norm_momentum)
        student = student.to(self.device)
        if config.train.channels_last:
            student = student.to(memory_format=torch.channels_last)
        return student

    # -- the parts' work, as the loop and the layers above call it -------------------------------------
    def say(self, message: str) -> None:
        self.logs.say(message)

    def record(self, kind: str, values: dict) -> None:
        self.logs.record(kind, values, self.state.step)

    def recorded(self, kind: str, step: int) -> dict:
        return self.logs.recorded(kind, step)

    def open_logs(self) -> None:
        self.logs.open()

    def close_logs(self) -> None:
        self.logs.close()

    def batches(self):
        return self.data.batches(self.state)

    def test_batches(self):
        return self.data.test_batches()

    def train_step(self, batch: Batch) -> L.LossReport | None:
        return self.stepper.train_step(batch)

    def sync(self) -> int:
        """Read the guard's pending flags now (lc0distill.training.step): the number of steps found skipped."""
        return self.stepper.sync()

    def schedules_at(self, step: int) -> tuple[float, float]:
        return self.teaching.schedules_at(step)

    def teacher_weights_at(self, step: int) -> dict[str, float]:
        return self.teaching.weights_at(step)

    def restore(self, state: dict, path: Path | None = None) -> None:
        self.state.restore(state, path)

    def save(self) -> None:
        """Write the checkpoint (rank 0); never one with a non-finite weight (the previous checkpoint stays).
        The guard's pending flags are read first, so that what is saved counts only the steps applied."""
        self.sync()
        if self.rank == 0:
            self.state.save(self.config, self.run_dir)

    def evaluate(self) -> dict:
        net = self.state.final_net()
        metrics = evaluate_net(net, self.data.test_batches(), self.config.train.eval_positions,
                               self.teaching.eval_teacher)
        self.record("test", metrics)
        if self.config.train.keep_best:
            self.state.keep_if_best(net, metrics, self.run_dir)
        return metrics

    def check_ranks_agree(self) -> None:
        check_ranks_agree(self.state.student, self.world, self.rank_batch_size, self.record)

    def final_outputs(self) -> None:
        if self.rank != 0:
            return
        self.state.check_weights_finite("final net", self.run_dir)
        net = self.state.final_net()
        save_model(net, self.run_dir / "final.pt")
        if self.config.export.lc0:
            write_net(net.cpu() if self.device.type != "cpu" else net, self.run_dir / "final.pb.gz",
                      self.config.export.encoding, training_steps=self.state.step)
            net.to(self.device)


def _check_data(config: RunConfig, data: RunData) -> None:
    """Stop before the first step if the student cannot read the data or the data lacks the targets."""
    for sources, role in ((data.train_sources, "training"), (data.test_sources, "held-out")):
        probe = probe_chunks(sources)
        check_input_format(config.net.input_format, probe, f"the student (net.input_format, for the {role} data)")
        if role == "training":  # evaluation scores against z: the held-out data needs no q
            check_value_target(config.data, config.loss.q_ratio, probe)


def open_run(config: RunConfig, log: Log = print, resume: bool = True) -> Run:
    """A run ready for its next step: built, resumed from its run_dir's checkpoint if there is one (and
    `resume`), its logs open. train() runs it to the end; lc0distill.pbt runs it a segment at a time."""
    config = with_init_architecture(config)
    checkpoint = Path(config.train.run_dir) / LATEST
    resuming = resume and checkpoint.is_file()
    run = Run(config, log, start_from_init=not resuming)
    if run.rank == 0:
        remove_stale_temporaries(run.run_dir)
    if resuming:
        state = load_checkpoint(checkpoint)
        check_resumable(state, config.model_dump(mode="json"), checkpoint)
        run.restore(state, checkpoint)
        log(f"resuming {run.run_dir} at step {run.step} (data position: batch {run.batches_consumed})")
    run.open_logs()
    return run


def train(config: RunConfig, log: Log = print, resume: bool = True) -> RunResult:
    run = open_run(config, log, resume)
    progress = track("train", total=run.config.train.steps, unit="steps", plain_lines=False, log=log) \
        if run.rank == 0 else nullcontext()
    try:
        with progress as tracker:
            run.tracker = tracker
            try:
                result = _loop(run)
            finally:
                run.tracker = None
                run.close_logs()
    finally:
        if run.owns_process_group:  # every collective is done (the ranks' final agreement ends in a barrier)
            leave_distributed()
    if run.rank == 0:
        run.logs.plot()
    return result


# ----------------------------------------------------------------------------------------------- the loop

@dataclass
class Throughput:
    """Positions trained since the start, and in the window since the last logged step (for positions/s)."""

    started: float
    positions: int = 0
    window_start: float = 0.0
    window_positions: int = 0

    @classmethod
    def now(cls) -> "Throughput":
        clock = time.perf_counter()
        return cls(started=clock, window_start=clock)

    def rate(self) -> float:
        return self.positions / max(time.perf_counter() - self.started, 1e-9)


def _loop(run: Run) -> RunResult:
    train_config = run.config.train
    throughput = Throughput.now()
    started_at = run.step
    metrics = train_until(run, run.batches(), train_config.steps, throughput)
    if run.step > started_at or not run.recorded("data", run.step):  # once per run's end, killed or not
        run.record("data", {"digest": run.data_digest, "batches": run.batches_consumed})
    if run.rank == 0 and run.step == started_at:  # a finished run started again: what it said at its end
        metrics = run.recorded("test", run.step) or run.evaluate()
    elif run.rank == 0 and (not train_config.eval_every or run.step % train_config.eval_every):
        metrics = run.evaluate()
    run.final_outputs()
    if run.distributed:
        run.check_ranks_agree()
    return RunResult(run.run_dir, run.step, metrics, throughput.rate())


def train_until(run: Run, batches, stop_at: int, throughput: Throughput) -> dict:
    """Train from run.step up to step `stop_at` on `batches` (run.batches()), logging, evaluating and
    checkpointing on the config's cadence; the held-out metrics of the last evaluation made ({} if none)."""
    train_config = run.config.train
    metrics: dict = {}
    while run.step < stop_at:
        batch = next(batches)
        positions = len(batch) * run.world  # every rank reads its share of the global batch
        throughput.positions += positions
        throughput.window_positions += positions
        report = run.train_step(batch)
        if report is None:  # the guard skipped a step and took the count back: nothing logged, evaluated or saved
            continue
        if _due(train_config, run.step, stop_at) and run.sync():  # the guard's flags are read before any of them
            continue
        if run.tracker is not None:
            run.tracker.update(run.step, positions=throughput.positions)
        if run.step % train_config.log_every == 0 or run.step == train_config.steps:
            elapsed = time.perf_counter() - throughput.window_start
            rate = throughput.window_positions / max(elapsed, 1e-9)
            _log_step(run, report, rate, elapsed)
            throughput.window_start, throughput.window_positions = time.perf_counter(), 0
        if train_config.eval_every and run.step % train_config.eval_every == 0 and run.rank == 0:
            metrics = run.evaluate()
        if run.step % train_config.checkpoint_every == 0 or run.step == train_config.steps:
            run.save()
    return metrics


def _due(train_config, step: int, stop_at: int) -> bool:
    """Will the loop log, evaluate or save after `step`, or stop?"""
    return (step % train_config.log_every == 0 or step % train_config.checkpoint_every == 0 or step >= stop_at
            or step == train_config.steps or bool(train_config.eval_every and step % train_config.eval_every == 0))


def _log_step(run: Run, report: L.LossReport, rate: float, elapsed: float) -> None:
    """metrics.jsonl / TensorBoard, and a line for the person watching (the latest losses on the bar)."""
    config, loader = run.config, run.train_loader
    alpha, temp = run.schedules_at(run.step - 1)  # those of the update just made, beside its losses
    losses = report.scalars()
    per_teacher = {f"teacher_weight/{name}": weight for name, weight in run.teacher_weights_at(run.step - 1).items()} \
        if config.teacher.per_teacher else {}
    problems = {"skipped steps": run.guard.skipped, "bad chunks": len(loader.bad_chunks) + run.data.unreadable_files,
                "bad records": loader.bad_records}
    run.record("train", {**losses, "positions_per_second": rate, "lr": run.optimizer.param_groups[0]["lr"],
                         "teacher_weight": alpha, "temperature": temp, **per_teacher,
                         "skipped_steps": problems["skipped steps"], "bad_chunks": problems["bad chunks"],
                         "bad_records": problems["bad records"]})
    if run.rank != 0:
        return
    run.logs.warn_bad_records(loader)
    eta = (config.train.steps - run.step) * elapsed / max(config.train.log_every, 1)
    line, info = step_line(run.step, config.train.steps, rate, eta, losses, alpha, temp, run.teacher is not None,
                           per_teacher, problems)
    if run.tracker is not None:
        run.tracker.update(run.step, info=info)
    run.say(line)
