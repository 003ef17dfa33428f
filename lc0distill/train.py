"""The training loop: a student against data targets, optionally distilled from a teacher.

One step: next batch -> student (and teacher, frozen) -> loss parts (lc0distill.distill.losses) weighted by
the schedules -> backward, clip, optimizer step, SWA. Every `checkpoint_every` steps the whole state is
written atomically; a run started again in the same run_dir resumes where its last checkpoint left it: the
data stream is replayed deterministically up to the batch it had reached (exact), or, when that would mean
reading too much (train.resume_data), a new stream starts there (nothing lost, another order). Rank 0 writes the logs
(metrics.jsonl, TensorBoard) and checkpoints; under torchrun the student is wrapped in DDP.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from lc0distill.checkpoint import (
    LATEST,
    load_checkpoint,
    remove_stale_temporaries,
    restore_rng,
    rng_state,
    save_checkpoint,
)
from lc0distill.chunks.batch import Batch, make_batch
from lc0distill.checks import (
    check_batch_formats,
    check_finite_net,
    check_input_format,
    check_resumable,
    check_value_target,
)
from lc0distill.chunks.config import make_loader
from lc0distill.shards.select import is_shard_block, select_sources
from lc0distill.chunks.probe import probe_chunks
from lc0distill.config import RunConfig, TrainConfig, dump_config
from lc0distill.distill import losses as L
from lc0distill.distill.schedules import learning_rate, set_learning_rate, teacher_weight, temperature
from lc0distill.distill.cache import open_for_run
from lc0distill.distill.objective import kickstart_loss_parts, loss_parts
from lc0distill.distill.teachers import NetTeacher, SnapshotTeacher, TeacherOutput, check_compatible, teach
from lc0distill.errors import Lc0DistillError
from lc0distill.fileio import make_folder, read_records, write_atomic
from lc0distill.evaluate import evaluate_net
from lc0distill.init_from import initialise_from, with_init_architecture
from lc0distill.guard import (
    NonFiniteGuard,
    NonFiniteRunError,
    SkippedStep,
    all_finite,
    batch_norm_state,
    checked_step,
    finite_on_every_rank,
    gradients_finite,
    non_finite_parts,
    non_finite_rows,
    position_names,
    restore_batch_norm,
)
from lc0distill.lc0.weights import write_net
from lc0distill.models.net import NetOutput, SEResNet
from lc0distill.models.store import net_state, save_model
from lc0distill.nets import load_inference_net
from lc0distill.progress import track

Log = Callable[[str], None]


@dataclass
class RunResult:
    run_dir: Path
    steps: int
    final_metrics: dict
    positions_per_second: float


# ----------------------------------------------------------------------------------------------- set-up

def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise Lc0DistillError(f"train.device={name}: not a device (auto, cpu, cuda or cuda:N)") from None
    if device.type not in ("cpu", "cuda"):
        raise Lc0DistillError(f"train.device={name}: lc0distill trains on cpu or cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise Lc0DistillError(f"train.device={name}, but no CUDA device is available")
    return device


def rank_batch_size(batch_size: int, world: int) -> int:
    """Each rank's share of data.batch_size, the global batch (as lczero-training splits it over replicas):
    DDP averages the ranks' gradients, so a step sees and weighs batch_size positions whatever the ranks."""
    if batch_size % world:
        raise Lc0DistillError(f"data.batch_size={batch_size} is the global batch, split over {world} ranks: give a "
                              f"multiple of {world}")
    return batch_size // world


NO_DATA_DIGEST = "00" * 16


def chain_digest(previous: str, packed: np.ndarray) -> str:
    """The digest of the positions consumed so far, extended by one batch: (chunk, record) of each position in
    order, chained, so a run's data stream is one short string (saved in checkpoints, resumed exactly)."""
    digest = hashlib.blake2b(bytes.fromhex(previous), digest_size=16)
    digest.update(np.ascontiguousarray(packed["chunk"], dtype="<u4").tobytes())
    digest.update(np.ascontiguousarray(packed["record"], dtype="<u4").tobytes())
    return digest.hexdigest()


AUTO_REPLAY_RECORDS = 20_000_000  # about a minute of reading: beyond it, resume_data=auto starts a new stream


@dataclass(frozen=True)
class DataStream:
    """The training data stream in use: the batch it started at and its seed offset (the test stream uses 1)."""

    start: int = 0
    seed_offset: int = 0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(config: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """Weight decay on conv and dense weights only (lczero's L2 on kernels), not on BN or biases."""
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    other = [p for n, p in model.named_parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": other, "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr.lr, momentum=config.momentum, nesterov=config.momentum > 0)
    return torch.optim.AdamW(groups, lr=config.lr.lr)


def build_teacher(config: RunConfig, student: SEResNet, device: torch.device):
    teacher_config = config.teacher
    if teacher_config.snapshot_every:
        return SnapshotTeacher(student, teacher_config.snapshot_every, teacher_config.precision)
    if not teacher_config.nets:
        return None
    nets = []
    for path in teacher_config.paths:
        net = load_inference_net(path, need_input_format=False,  # a trainable net, or ONNX in onnxruntime
                                 threads=config.train.threads, device=str(device))
        check_compatible(student, net, path, distil_value=config.loss.value_distill > 0)
        if isinstance(net, torch.nn.Module):  # ONNX teachers are watched by the non-finite guard instead
            check_finite_net(net, f"teacher {path}")
        nets.append(net)
    return NetTeacher(nets, teacher_config.weights or None, teacher_config.precision).to(device)


class SWA:
    """Running average of the student's weights and buffers, the newest weighted at least 1 / max_models."""

    def __init__(self, model: SEResNet, max_models: int):
        self.model = copy.deepcopy(model).eval()
        self.count = 0
        self.max_models = max_models

    @torch.no_grad()
    def update(self, model: SEResNet) -> None:
        self.count += 1
        weight = 1.0 / min(self.count, self.max_models)
        for mine, theirs in zip(self.model.state_dict().values(), model.state_dict().values()):
            if mine.dtype.is_floating_point:
                mine.lerp_(theirs, weight)
            else:
                mine.copy_(theirs)


# ----------------------------------------------------------------------------------------------- the run

class Run:
    """One training run (or one rank of it). Small methods, one per stage of a step."""

    def __init__(self, config: RunConfig, log: Log = print, start_from_init: bool = True):
        """`start_from_init`: take net.init_from's weights (a run that resumes takes its checkpoint's instead)."""
        self.config = config
        self.log = log
        self.rank, self.world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        self.rank_batch_size = rank_batch_size(config.data.batch_size, self.world)
        self.device = pick_device(config.train.device)
        if self.world > 1:
            self._init_distributed()
        self.run_dir = Path(config.train.run_dir)
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise Lc0DistillError(f"{self.run_dir}: train.run_dir names a file, not a folder")
        if config.train.threads:  # several processes on few cores stall each other's thread pools
            torch.set_num_threads(config.train.threads)
        seed_everything(config.train.seed)
        self.student = SEResNet(config.net)
        self.tracker = None
        if start_from_init and config.net_init.init_from:
            self.say(initialise_from(self.student, config.net_init.init_from,
                                     config.net_init.init_from_partial).summary())
        for module in self.student.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.momentum = config.train.batch_norm_momentum
        self.student = self.student.to(self.device)
        if config.train.channels_last:
            self.student = self.student.to(memory_format=torch.channels_last)
        self.teacher = build_teacher(config, self.student, self.device) if not config.teacher.cache else None
        self.optimizer = make_optimizer(config.train, self.student)
        self.swa = SWA(self.student, config.train.swa_max_models) if config.train.swa_every else None
        self.step = 0
        self.batches_consumed = 0
        self.best: dict | None = None  # train.keep_best: {"step", "policy_loss"} of best.pt
        self.data_digest = NO_DATA_DIGEST  # the positions consumed, in order (two runs saw the same data: equal)
        self.stream = DataStream()
        self.scaler = torch.amp.GradScaler(enabled=config.train.amp == "fp16" and self.device.type == "cuda")
        selected = select_sources(config.data)
        self.train_sources, self.test_sources = selected.train, selected.test
        self.origin_name = selected.origin_name  # names the chunks behind shard positions
        for problem in selected.unreadable:
            self.log(f"warning: skipped: {problem}")
        self.unreadable_files = len(selected.unreadable)
        self._check_data()
        self.tracker = None
        self.eval_teacher, self.keep_records = self.teacher, None
        if config.teacher.cache:
            self._open_teacher_cache()
        self.guard = NonFiniteGuard(config.train.max_skipped_steps, config.train.skip_window, log=self.say)
        self.forward = self._wrapped_student()
        self.metrics_file = None
        self.writer = None
        self.tracker = None
        self.reported_bad_records = 0

    def _open_teacher_cache(self) -> None:
        """Teacher outputs read from `teacher.cache` (checked against teacher.nets and the data); the held-out
        data, when the cache lacks it, is judged by the live teacher."""
        config = self.config
        if any(is_shard_block(s) for s in (*self.train_sources, *self.test_sources)):
            raise Lc0DistillError("teacher.cache is keyed by chunk and record, and data.paths names a shard folder: "
                                  "give the teacher cache the chunks the shards were repacked from, or leave "
                                  "teacher.cache out (the teacher then runs live)")
        opened = open_for_run(config.teacher.cache, config.teacher.paths, config.teacher.weights or None,
                              config.data.sample_rate, config.net.input_format, self.train_sources, self.test_sources)
        self.teacher, self.keep_records = opened.train, opened.keep
        if opened.test is not None:
            self.eval_teacher = opened.test
        else:
            live = config.model_copy(update={"teacher": config.teacher.model_copy(update={"cache": None})})
            self.eval_teacher = build_teacher(live, self.student, self.device)
        self.say(f"teacher outputs from the cache {config.teacher.cache} ({opened.train.cache.positions:,} positions"
                 f"{', the sampled records only' if opened.keep is not None else ''})")

    def say(self, message: str) -> None:
        """A line for the person watching (rank 0's): above the progress bar when there is one."""
        if self.rank != 0:
            return
        if self.tracker is not None:
            self.tracker.print(message)
        else:
            self.log(message)

    def _check_data(self) -> None:
        """Stop before the first step if the student cannot read the data or the data lacks the targets."""
        config = self.config
        for sources, role in ((self.train_sources, "training"), (self.test_sources, "held-out")):
            probe = probe_chunks(sources)
            check_input_format(config.net.input_format, probe, f"the student (net.input_format, for the {role} data)")
            if role == "training":  # evaluation scores against z: the held-out data needs no q
                check_value_target(config.data, config.loss.q_ratio, probe)

    def _init_distributed(self) -> None:
        if not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        if self.device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(self.device)

    def _wrapped_student(self):
        module = self.student
        if self.world > 1:
            module = DistributedDataParallel(module, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if self.config.train.compile:
            module = torch.compile(module)
        return module

    # -- checkpoints ------------------------------------------------------------------------------------
    def state(self) -> dict:
        return {**net_state(self.student), "config": self.config.model_dump(mode="json"),
                "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                "swa": None if self.swa is None else {"model": self.swa.model.state_dict(), "count": self.swa.count},
                "snapshot": None if not isinstance(self.teacher, SnapshotTeacher) else
                {"model": self.teacher.net.state_dict(), "taken_at": self.teacher.taken_at},
                "step": self.step, "batches_consumed": self.batches_consumed, "guard": self.guard.state(),
                "best": self.best, "data_digest": self.data_digest,
                "data_stream": {"start": self.stream.start, "seed_offset": self.stream.seed_offset},
                "rng": rng_state()}

    def restore(self, state: dict, path: Path | None = None) -> None:
        self.student.load_state_dict(state["model"])
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scaler.load_state_dict(state["scaler"])
        except (ValueError, KeyError, TypeError, RuntimeError) as error:  # torch's own checks of the saved state
            raise Lc0DistillError(f"{path or 'checkpoint'}: optimizer: does not fit this run's optimizer "
                                  f"({' '.join(str(error).split())[:200]})") from None
        if self.swa is not None and state.get("swa"):
            self.swa.model.load_state_dict(state["swa"]["model"])
            self.swa.count = state["swa"]["count"]
        if isinstance(self.teacher, SnapshotTeacher) and state.get("snapshot"):
            self.teacher.net.load_state_dict(state["snapshot"]["model"])
            self.teacher.taken_at = state["snapshot"]["taken_at"]
        self.step, self.batches_consumed = state["step"], state["batches_consumed"]
        self.best = state.get("best")
        self.data_digest = state.get("data_digest", NO_DATA_DIGEST)
        self.guard.restore(state.get("guard"))
        self.stream = DataStream(**state.get("data_stream", {}))  # older checkpoints: one stream from the start
        restore_rng(state["rng"])

    def save(self) -> None:
        """Write the checkpoint; never one with a non-finite weight (the previous checkpoint stays)."""
        if self.rank == 0:
            self._check_weights_finite("checkpoint")
            save_checkpoint(self.state(), self.run_dir / LATEST)

    def _check_weights_finite(self, what: str) -> None:
        nets = [self.student] + ([self.swa.model] if self.swa is not None else [])
        if not all(all_finite(net.state_dict().values()) for net in nets):
            raise NonFiniteRunError(f"step {self.step}: the weights are not finite: no {what} is written "
                                    f"(the last checkpoint in {self.run_dir} is kept as it was)")

    # -- data -------------------------------------------------------------------------------------------
    def batches(self):
        """Training batches from where the run stands: the current stream is replayed to the batch reached
        (skipped batches are not expanded), or a new stream starts there (train.resume_data)."""
        skip = self.batches_consumed - self.stream.start
        if skip and self._reseed(skip):
            self.stream = DataStream(start=self.batches_consumed, seed_offset=2 + self.batches_consumed)
            self.log(f"data: a new stream from batch {self.batches_consumed} (seed offset "
                     f"{self.stream.seed_offset}) instead of re-reading {skip:,} batches")
            skip = 0
        data = self.config.data.model_copy(update={"batch_size": self.rank_batch_size})
        loader = make_loader(data, self.train_sources, passes=None, rank=self.rank,
                             world_size=self.world, device=str(self.device), seed_offset=self.stream.seed_offset,
                             needs_q=self.config.loss.q_ratio > 0, keep=self.keep_records,
                             origin_name=self.origin_name)
        self.train_loader = loader
        net_format = self.config.net.input_format
        for packed in loader.packed_batches():
            if skip:
                skip -= 1
                continue
            self.batches_consumed += 1
            self.data_digest = chain_digest(self.data_digest, packed)
            check_batch_formats(net_format, packed["input_format"], packed["chunk"], loader.source_name,
                                "the student (net.input_format)")
            yield make_batch(packed, self.device, self.config.data.q_source, self.config.data.rule50)

    def _reseed(self, skip: int) -> bool:
        mode = self.config.train.resume_data
        if mode != "auto":
            return mode == "reseed"
        data = self.config.data
        return skip * self.rank_batch_size * data.sample_rate > AUTO_REPLAY_RECORDS

    def test_batches(self):
        loader = make_loader(self.config.data, self.test_sources, passes=1, device=str(self.device), sample_rate=1,
                             seed_offset=1, origin_name=self.origin_name)
        self.test_loader = loader
        return iter(loader)

    # -- one step ---------------------------------------------------------------------------------------
    def autocast(self):
        amp = self.config.train.amp
        enabled = amp != "off" and self.device.type == "cuda"
        dtype = torch.bfloat16 if amp == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype, enabled=enabled)

    def schedules_at(self, step: int) -> tuple[float, float]:
        """(the teacher's weight, its temperature) for the update at `step` (0 for the first). With a weight
        per teacher, the first is their sum (teacher_weights_at gives each)."""
        config = self.config
        if config.teacher.per_teacher:
            alpha = sum(self.teacher_weights_at(step).values())
        else:
            alpha = teacher_weight(config.loss.teacher_weight, step) if self.teacher is not None else 0.0
        return alpha, temperature(config.loss.temperature, step)

    def teacher_weights_at(self, step: int) -> dict[str, float]:
        """{teacher name: lambda_k} for the update at `step`, in teacher.nets order (kickstarting form only)."""
        teachers = self.config.teacher
        return {name: teacher_weight(entry.weight, step) for name, entry in zip(teachers.names, teachers.entries)}

    def _teach(self, batch: Batch, planes: torch.Tensor, alpha: float):
        """The teachers' outputs for the step: one TeacherOutput (single-schedule form) or, kickstarting,
        [(name, lambda_k, output or None where lambda_k is 0 and the net was not run)]."""
        if self.teacher is None:
            return None
        if not self.config.teacher.per_teacher:
            return teach(self.teacher, batch, planes) if alpha > 0 else None
        weights = self.teacher_weights_at(self.step)
        outputs = self.teacher.each(planes, [weight > 0 for weight in weights.values()])
        return [(name, weight, out) for (name, weight), out in zip(weights.items(), outputs)]

    def train_step(self, batch: Batch) -> L.LossReport | None:
        """One optimizer step, or None when the non-finite guard skipped the batch."""
        config = self.config
        alpha, temp = self.schedules_at(self.step)
        set_learning_rate(self.optimizer, learning_rate(config.train.lr, self.step))
        if isinstance(self.teacher, SnapshotTeacher):
            self.teacher.refresh(self.student, self.step)
        planes = batch.planes
        if config.train.channels_last:
            planes = planes.contiguous(memory_format=torch.channels_last)
        self.student.train()
        statistics = batch_norm_state(self.student)
        with self.autocast():
            taught = self._teach(batch, planes, alpha)
            out = self.forward(planes)
            if isinstance(taught, list):
                report = kickstart_loss_parts(out, batch, taught, config.loss, temp)
            else:
                report = loss_parts(out, batch, taught, config.loss, alpha, temp)
        if not finite_on_every_rank(report.total, self.world):
            restore_batch_norm(self.student, statistics)
            self._skip_loss(batch, taught, report)
            return None
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(report.total).backward()
        if not gradients_finite(self.student, self.optimizer, self.scaler, config.train.grad_clip):
            self.optimizer.zero_grad(set_to_none=True)
            restore_batch_norm(self.student, statistics)
            self._skip(batch, "gradients", [])
            return None
        checked_step(self.student, self.optimizer, self.scaler, self.step + 1, self.run_dir)
        self.step += 1
        if self.swa is not None and self.step % config.train.swa_every == 0:
            self.swa.update(self.student)
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
        named = taught if isinstance(taught, list) else [(self._teacher_label(), 1.0, taught)]
        # NaN or +inf in a teacher's policy (-inf is a cache's illegal move), non-finite values in its WDL
        outputs = [(name, [out.policy_logits.masked_fill(torch.isneginf(out.policy_logits), 0.0), out.wdl])
                   for name, _, out in named if out is not None]
        broken = [(name, tensors) for name, tensors in outputs if non_finite_rows(tensors).numel()]
        if broken:
            what += f" from the outputs of teacher {', '.join(name for name, _ in broken)} on finite positions"
        self._skip(batch, what, [t for _, tensors in broken for t in tensors])

    def _teacher_label(self) -> str:
        teachers = self.config.teacher
        return f"cache {teachers.cache}" if teachers.cache else ", ".join(teachers.names)

    def _skip(self, batch: Batch, what: str, suspects: list) -> None:
        """Count a skipped step with the positions whose values were not finite (chunk and record)."""
        names = position_names(non_finite_rows(suspects), batch.chunk_index, batch.record_index,
                               self.train_loader.source_name)
        self.record("skipped", {"what": what, "positions": names, "batch": self.batches_consumed})
        self.guard.skip(SkippedStep(self.step, what, names), clock=self.batches_consumed)

    # -- logging ----------------------------------------------------------------------------------------
    def open_logs(self) -> None:
        if self.rank != 0:
            return
        make_folder(self.run_dir, "run folder")
        (self.run_dir / "config.yaml").write_text(dump_config(self.config))
        self.metrics_file = open(self.run_dir / "metrics.jsonl", "a")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tensorboard"))
        except ImportError:  # pragma: no cover - tensorboard is a dependency
            self.writer = None

    def close_logs(self) -> None:
        """metrics.jsonl and TensorBoard's files closed (several runs in one process, as the quick start makes)."""
        if self.metrics_file is not None:
            self.metrics_file.close()
            self.metrics_file = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def record(self, kind: str, values: dict) -> None:
        if self.rank != 0:
            return
        values = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in values.items()}
        self.metrics_file.write(json.dumps({"kind": kind, "step": self.step, **values}, allow_nan=False) + "\n")
        self.metrics_file.flush()
        if self.writer is not None:
            for name, value in values.items():
                if isinstance(value, (int, float)) and value is not None and math.isfinite(value):
                    self.writer.add_scalar(f"{kind}/{name}", value, self.step)

    def recorded(self, kind: str, step: int) -> dict:
        """The values of the last `kind` record at `step` in metrics.jsonl ({} if none)."""
        at_step = [r for r in read_records(self.run_dir / "metrics.jsonl", kind) if r.get("step") == step]
        return {k: v for k, v in at_step[-1].items() if k not in ("kind", "step")} if at_step else {}

    def final_net(self) -> SEResNet:
        """What is evaluated and exported: SWA's average once it has averaged, else the live student (before
        SWA's first update its copy still holds the initial weights)."""
        return self.swa.model if self.swa is not None and self.swa.count else self.student

    def evaluate(self) -> dict:
        net = self.final_net()
        metrics = evaluate_net(net, self.test_batches(), self.config.train.eval_positions, self.eval_teacher)
        self.record("test", metrics)
        if self.config.train.keep_best:
            self._keep_if_best(net, metrics)
        return metrics

    def _keep_if_best(self, net: SEResNet, metrics: dict) -> None:
        """best.pt and best.json: the net of the lowest held-out policy loss so far (ties: the earlier step)."""
        loss = metrics.get("policy_loss")
        if loss is None or (self.best is not None and loss >= self.best["policy_loss"]):
            return
        self._check_weights_finite("best.pt")
        save_model(net, self.run_dir / "best.pt")
        self.best = {"step": self.step, "policy_loss": loss}
        kept = {"step": self.step, "metrics": metrics, "data_digest": self.data_digest}
        write_atomic(self.run_dir / "best.json", (json.dumps(kept, indent=1, allow_nan=False) + "\n").encode())

    def check_ranks_agree(self) -> None:
        """DDP keeps every rank's parameters equal; batch-norm statistics are rank 0's (DDP broadcasts them
        before each forward, so after the last one each rank holds its own): take rank 0's, then verify that
        every rank holds the same weights (a fingerprint per rank) and record the result."""
        for buffer in self.student.buffers():
            dist.broadcast(buffer, src=0)
        flat = torch.cat([p.detach().double().flatten().cpu() for p in self.student.state_dict().values()
                          if p.dtype.is_floating_point])
        fingerprint = torch.tensor([flat.sum().item(), flat.abs().sum().item(), (flat * flat).sum().item()],
                                   dtype=torch.float64)
        gathered = [torch.zeros_like(fingerprint) for _ in range(self.world)]
        dist.all_gather(gathered, fingerprint)
        identical = all(torch.equal(g, gathered[0]) for g in gathered)
        self.record("ddp", {"ranks": self.world, "rank_batch_size": self.rank_batch_size,
                            "weights_identical": identical,
                            "fingerprints": [g.tolist() for g in gathered]})
        if not identical:
            raise Lc0DistillError(f"ranks ended with different weights: {[g.tolist() for g in gathered]}")
        dist.barrier()

    def final_outputs(self) -> None:
        if self.rank != 0:
            return
        self._check_weights_finite("final net")
        net = self.final_net()
        save_model(net, self.run_dir / "final.pt")
        if self.config.export.lc0:
            write_net(net.cpu() if self.device.type != "cpu" else net, self.run_dir / "final.pb.gz",
                      self.config.export.encoding, training_steps=self.step)
            net.to(self.device)


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
    with progress as tracker:
        run.tracker = tracker
        try:
            result = _loop(run)
        finally:
            run.tracker = None
            run.close_logs()
    if run.rank == 0:
        _plot(run)
    return result


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
    if run.world > 1:
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
        if report is None:  # skipped by the non-finite guard: nothing logged, evaluated or saved for it
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


def _log_step(run: Run, report: L.LossReport, rate: float, elapsed: float) -> None:
    """metrics.jsonl / TensorBoard, and a line for the person watching (the latest losses on the bar)."""
    steps = run.config.train.steps
    alpha, temp = run.schedules_at(run.step - 1)  # those of the update just made, beside its losses
    loader = run.train_loader
    losses = report.scalars()
    per_teacher = {f"teacher_weight/{name}": weight for name, weight in run.teacher_weights_at(run.step - 1).items()} \
        if run.config.teacher.per_teacher else {}
    values = {**losses, "positions_per_second": rate, "lr": run.optimizer.param_groups[0]["lr"],
              "teacher_weight": alpha, "temperature": temp, **per_teacher, "skipped_steps": run.guard.skipped,
              "bad_chunks": len(loader.bad_chunks) + run.unreadable_files, "bad_records": loader.bad_records}
    run.record("train", values)
    if run.rank != 0:
        return
    parts = "  ".join(f"{k} {v:.4f}" for k, v in losses.items())
    teacher = f"  teacher weight {alpha:.3f}  T {temp:.2f}" if run.teacher is not None else ""
    if per_teacher:
        weights = " ".join(f"{name.split('/', 1)[1]} {weight:.3f}" for name, weight in per_teacher.items())
        teacher = f"  teacher weights {weights}  T {temp:.2f}"
    problems = "".join(f"  {name} {count}" for name, count in (
        ("skipped steps", run.guard.skipped), ("bad chunks", values["bad_chunks"]),
        ("bad records", loader.bad_records)) if count)
    if loader.bad_records > run.reported_bad_records:  # name them as they come: the user may stop the run
        examples = "; ".join(loader.bad_record_examples)
        run.say(f"warning: {loader.bad_records} bad records skipped so far (not chess, non-finite or out of range; "
                f"first: {examples})")
        run.reported_bad_records = loader.bad_records
    eta = (steps - run.step) * elapsed / max(run.config.train.log_every, 1)
    line = f"step {run.step}/{steps}  {rate:,.0f} pos/s  ETA {eta:,.0f}s  {parts}{teacher}{problems}"
    if run.tracker is not None:
        run.tracker.update(run.step, info=f"{parts}{teacher}")
    run.say(line)


def _plot(run: Run) -> None:
    """Every run leaves a picture of itself: curves.png beside its metrics (a failure here costs only the picture)."""
    try:
        from lc0distill.report.plot import plot_runs

        plot_runs([run.run_dir], run.run_dir / "curves.png")
    except Lc0DistillError as error:
        run.say(f"warning: no curves.png: {error}")
