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
import json
import math
import os
import random
import time
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
from lc0distill.chunks.config import make_loader, select_sources
from lc0distill.config import LossConfig, RunConfig, TrainConfig, dump_config
from lc0distill.distill import losses as L
from lc0distill.distill.schedules import learning_rate, set_learning_rate, teacher_weight, temperature
from lc0distill.distill.teachers import NetTeacher, SnapshotTeacher, TeacherOutput, check_compatible
from lc0distill.errors import Lc0DistillError
from lc0distill.evaluate import evaluate_net
from lc0distill.lc0.weights import write_net
from lc0distill.models.net import NetOutput, SEResNet
from lc0distill.models.store import net_state, save_model
from lc0distill.nets import load_inference_net

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
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise Lc0DistillError(f"train.device={name}, but no CUDA device is available")
    return device


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
        return SnapshotTeacher(student, teacher_config.snapshot_every)
    if not teacher_config.nets:
        return None
    nets = []
    for path in teacher_config.nets:
        net = load_inference_net(path, need_input_format=False,  # a trainable net, or ONNX in onnxruntime
                                 threads=config.train.threads, device=str(device))
        check_compatible(student, net, path, distil_value=config.loss.value_distill > 0)
        nets.append(net)
    return NetTeacher(nets, teacher_config.weights or None).to(device)


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


# ----------------------------------------------------------------------------------------------- losses

def loss_parts(out: NetOutput, batch: Batch, teacher: TeacherOutput | None, config: LossConfig,
               alpha: float, temp: float) -> L.LossReport:
    """The weighted loss parts of one batch (alpha: the teacher's weight now, temp: its temperature)."""
    parts = {"policy": L.policy_cross_entropy(out.policy_logits, batch.policy, batch.legal, config.mask_illegal)}
    weights = {"policy": (1 - alpha) * config.policy_weight}
    target = L.blend_value_target(batch.z, batch.q, config.q_ratio)
    if out.wdl_logits is not None:
        value = L.wdl_cross_entropy if config.value_loss == "cross_entropy" else L.wdl_mse
        parts["value"] = value(out.wdl_logits, target)
    else:
        parts["value"] = L.scalar_value_mse(out.value, target)
    weights["value"] = (1 - alpha) * config.value_weight
    if out.moves_left is not None:
        parts["moves_left"] = L.moves_left_huber(out.moves_left, batch.moves_left, batch.moves_left_known)
        weights["moves_left"] = config.moves_left_weight
    if teacher is not None:
        parts["policy_distill"] = _policy_distill(out, batch, teacher, config, temp)
        weights["policy_distill"] = alpha * config.policy_weight
        if teacher.wdl is not None and out.wdl_logits is not None and config.value_distill > 0:
            parts["value_distill"] = L.value_distill_wdl(out.wdl_logits, teacher.wdl.clamp_min(1e-30).log())
            weights["value_distill"] = alpha * config.value_distill * config.value_weight
    return L.weighted_losses(parts, weights)


def _policy_distill(out: NetOutput, batch: Batch, teacher: TeacherOutput, config: LossConfig, temp: float):
    if config.policy_distill == "nll":
        return L.policy_teacher_nll(out.policy_logits, teacher.policy_logits, batch.legal)
    if config.policy_distill == "mse":
        return L.policy_logit_mse(out.policy_logits, teacher.policy_logits, batch.legal)
    return L.policy_kl(out.policy_logits, teacher.policy_logits, batch.legal, temperature=temp,
                       t_squared=config.t_squared, scale_student=config.scale_student)


# ----------------------------------------------------------------------------------------------- the run

class Run:
    """One training run (or one rank of it). Small methods, one per stage of a step."""

    def __init__(self, config: RunConfig, log: Log = print):
        self.config = config
        self.log = log
        self.rank, self.world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        self.device = pick_device(config.train.device)
        if self.world > 1:
            self._init_distributed()
        self.run_dir = Path(config.train.run_dir)
        if config.train.threads:  # several processes on few cores stall each other's thread pools
            torch.set_num_threads(config.train.threads)
        seed_everything(config.train.seed)
        self.student = SEResNet(config.net).to(self.device)
        if config.train.channels_last:
            self.student = self.student.to(memory_format=torch.channels_last)
        self.teacher = build_teacher(config, self.student, self.device)
        self.optimizer = make_optimizer(config.train, self.student)
        self.swa = SWA(self.student, config.train.swa_max_models) if config.train.swa_every else None
        self.step = 0
        self.batches_consumed = 0
        self.stream = DataStream()
        self.scaler = torch.amp.GradScaler(enabled=config.train.amp == "fp16" and self.device.type == "cuda")
        self.train_sources, self.test_sources = select_sources(config.data)
        self.forward = self._wrapped_student()
        self.metrics_file = None
        self.writer = None

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
                "step": self.step, "batches_consumed": self.batches_consumed,
                "data_stream": {"start": self.stream.start, "seed_offset": self.stream.seed_offset},
                "rng": rng_state()}

    def restore(self, state: dict) -> None:
        self.student.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        if self.swa is not None and state.get("swa"):
            self.swa.model.load_state_dict(state["swa"]["model"])
            self.swa.count = state["swa"]["count"]
        if isinstance(self.teacher, SnapshotTeacher) and state.get("snapshot"):
            self.teacher.net.load_state_dict(state["snapshot"]["model"])
            self.teacher.taken_at = state["snapshot"]["taken_at"]
        self.step, self.batches_consumed = state["step"], state["batches_consumed"]
        self.stream = DataStream(**state.get("data_stream", {}))  # older checkpoints: one stream from the start
        restore_rng(state["rng"])

    def save(self) -> None:
        if self.rank == 0:
            save_checkpoint(self.state(), self.run_dir / LATEST)

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
        loader = make_loader(self.config.data, self.train_sources, passes=None, rank=self.rank,
                             world_size=self.world, device=str(self.device), seed_offset=self.stream.seed_offset)
        self.train_loader = loader
        for packed in loader.packed_batches():
            if skip:
                skip -= 1
                continue
            self.batches_consumed += 1
            yield make_batch(packed, self.device, self.config.data.q_source, self.config.data.rule50)

    def _reseed(self, skip: int) -> bool:
        mode = self.config.train.resume_data
        if mode != "auto":
            return mode == "reseed"
        data = self.config.data
        return skip * data.batch_size * data.sample_rate > AUTO_REPLAY_RECORDS

    def test_batches(self):
        loader = make_loader(self.config.data, self.test_sources, passes=1, device=str(self.device), sample_rate=1,
                             seed_offset=1)
        return iter(loader)

    # -- one step ---------------------------------------------------------------------------------------
    def autocast(self):
        amp = self.config.train.amp
        enabled = amp != "off" and self.device.type == "cuda"
        dtype = torch.bfloat16 if amp == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype, enabled=enabled)

    def train_step(self, batch: Batch) -> L.LossReport:
        config = self.config
        alpha = teacher_weight(config.loss.teacher_weight, self.step) if self.teacher is not None else 0.0
        temp = temperature(config.loss.temperature, self.step)
        set_learning_rate(self.optimizer, learning_rate(config.train.lr, self.step))
        if isinstance(self.teacher, SnapshotTeacher):
            self.teacher.refresh(self.student, self.step)
        planes = batch.planes
        if config.train.channels_last:
            planes = planes.contiguous(memory_format=torch.channels_last)
        self.student.train()
        with self.autocast():
            teacher_out = self.teacher(planes) if self.teacher is not None and alpha > 0 else None
            report = loss_parts(self.forward(planes), batch, teacher_out, config.loss, alpha, temp)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(report.total).backward()
        if config.train.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.student.parameters(), config.train.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step += 1
        if self.swa is not None and self.step % config.train.swa_every == 0:
            self.swa.update(self.student)
        return report

    # -- logging ----------------------------------------------------------------------------------------
    def open_logs(self) -> None:
        if self.rank != 0:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(dump_config(self.config))
        self.metrics_file = open(self.run_dir / "metrics.jsonl", "a")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tensorboard"))
        except ImportError:  # pragma: no cover - tensorboard is a dependency
            self.writer = None

    def record(self, kind: str, values: dict) -> None:
        if self.rank != 0:
            return
        self.metrics_file.write(json.dumps({"kind": kind, "step": self.step, **values}) + "\n")
        self.metrics_file.flush()
        if self.writer is not None:
            for name, value in values.items():
                if isinstance(value, (int, float)) and value is not None and math.isfinite(value):
                    self.writer.add_scalar(f"{kind}/{name}", value, self.step)

    def evaluate(self) -> dict:
        net = self.swa.model if self.swa is not None else self.student
        metrics = evaluate_net(net, self.test_batches(), self.config.train.eval_positions, self.teacher)
        self.record("test", metrics)
        return metrics

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
        self.record("ddp", {"ranks": self.world, "weights_identical": identical,
                            "fingerprints": [g.tolist() for g in gathered]})
        if not identical:
            raise Lc0DistillError(f"ranks ended with different weights: {[g.tolist() for g in gathered]}")
        dist.barrier()

    def final_outputs(self) -> None:
        if self.rank != 0:
            return
        net = self.swa.model if self.swa is not None else self.student
        save_model(net, self.run_dir / "final.pt")
        if self.config.export.lc0:
            write_net(net.cpu() if self.device.type != "cpu" else net, self.run_dir / "final.pb.gz",
                      self.config.export.encoding, training_steps=self.step)
            net.to(self.device)


def train(config: RunConfig, log: Log = print, resume: bool = True) -> RunResult:
    run = Run(config, log)
    if run.rank == 0:
        remove_stale_temporaries(run.run_dir)
    checkpoint = run.run_dir / LATEST
    if resume and checkpoint.exists():
        run.restore(load_checkpoint(checkpoint))
        log(f"resuming {run.run_dir} at step {run.step} (data position: batch {run.batches_consumed})")
    run.open_logs()
    train_config = config.train
    started, positions, window_start, window_positions = time.perf_counter(), 0, time.perf_counter(), 0
    metrics: dict = {}
    batches = run.batches()
    while run.step < train_config.steps:
        batch = next(batches)
        report = run.train_step(batch)
        positions += len(batch)
        window_positions += len(batch)
        if run.step % train_config.log_every == 0 or run.step == train_config.steps:
            elapsed = time.perf_counter() - window_start
            rate = window_positions / max(elapsed, 1e-9)
            values = {**report.scalars(), "positions_per_second": rate,
                      "lr": run.optimizer.param_groups[0]["lr"], "bad_chunks": len(run.train_loader.bad_chunks)}
            run.record("train", values)
            eta = (train_config.steps - run.step) * elapsed / max(train_config.log_every, 1)
            if run.rank == 0:
                parts = "  ".join(f"{k} {v:.4f}" for k, v in report.scalars().items())
                log(f"step {run.step}/{train_config.steps}  {rate:,.0f} pos/s  ETA {eta:,.0f}s  {parts}")
            window_start, window_positions = time.perf_counter(), 0
        if train_config.eval_every and run.step % train_config.eval_every == 0 and run.rank == 0:
            metrics = run.evaluate()
        if run.step % train_config.checkpoint_every == 0 or run.step == train_config.steps:
            run.save()
    if run.rank == 0 and (not train_config.eval_every or run.step % train_config.eval_every):
        metrics = run.evaluate()
    run.final_outputs()
    if run.world > 1:
        run.check_ranks_agree()
    return RunResult(run.run_dir, run.step, metrics, positions / max(time.perf_counter() - started, 1e-9))
