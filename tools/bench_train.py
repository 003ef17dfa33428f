#!/usr/bin/env python3
"""Benchmark training throughput against the machine's measured dense conv throughput, in one run.

  conv    a plain `torch.nn.functional.conv2d` (3x3, C -> C, padding 1, no bias) on (B, C, 8, 8) inputs,
          forward + backward (grad of input and of weight, as in training) for C = 64 and 128 (and the
          teacher's width when a teacher row runs), at --batch-size B. This is the yardstick: the shape that
          dominates these nets, with nothing around it.
  train   `lc0distill.train.Run.train_step`, the real training step (learning rate, teacher forward,
          `loss_parts`, backward, gradient clipping, SGD step of `make_optimizer`, all at the RunConfig
          defaults), for the students --students (default 64x6 and 128x10): (a) without a teacher,
          (b) with a live --teacher net (default 256x20, randomly initialised, wrapped in `NetTeacher`: eval
          mode, forward only under no_grad), teacher weight --alpha 0.5, temperature --temperature 1,
          (c) with the same teacher's outputs read from a teacher cache (lc0distill.distill.cache, made once
          from the same batches before timing, float16 as `teacher cache` picks it): the join of every batch
          to its cached rows is timed, the teacher's forward pass is not.
          Batches are built once, before timing, from real chunks (read_chunk -> pack_records -> make_batch,
          --distinct-batches of them, cycled), so the data loader is not measured.

FLOP counting (FLOPs = 2 x multiply-adds): a conv forward is 2*C*C*9*64*B; its backward (grad input + grad
weight) is counted as 2x the forward, so a conv step is 3x the forward. A training position is
3 x flops_per_position(student) (lc0distill.models.net: convs and dense layers only; batch norm, activations,
SE pooling, the policy gather, the losses and the optimizer are not counted); the "incl. teacher" column adds
1 x flops_per_position(teacher) per position (forward only). Ratios: student FLOP/s / conv FLOP/s at the
student's width C; incl. teacher FLOP/s / the FLOP-weighted conv rate of both widths (C and the teacher's
Ct: 3*S+T FLOPs over 3*S/conv(C) + T/conv(Ct) seconds), since the teacher's FLOPs run at its own width.

Timing: --warmup steps first (not timed; they also estimate the step time), then --steps timed steps, best
of --repeat. A row whose warm-up step is slow gets fewer timed steps (at least 1) so that each timed run
takes about --row-seconds (conv rows: half of it); 0 turns that off. Other processes on the machine lower
every figure (and stall torch's threads at their barriers; --threads 1 suffers less): the load average at the
start and the share of the CPUs other processes used during the run are printed. On a 2-core CPU the default
run takes 2 to 4 minutes (4 when other processes hold most of a core), --quick about half that.

Usage: python tools/bench_train.py [PATH ...] [--batch-size B] [--steps N] [--repeat R] [--threads T]
       [--device cpu|cuda] [--quick]
PATH is a chunk file, directory, tar or glob (default: ../shared/lc0-selfplay-maia1900 relative to the
project root).
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from lc0distill.chunks.batch import Batch, make_batch
from lc0distill.chunks.config import DataConfig
from lc0distill.chunks.packed import pack_records
from lc0distill.chunks.reader import read_chunk
from lc0distill.chunks.sources import find_chunks
from lc0distill.config import RunConfig
from lc0distill.chunks.sources import ChunkSource
from lc0distill.distill.cache import TeacherCache, build_cache
from lc0distill.distill.teachers import NetTeacher
from lc0distill.errors import Lc0DistillError
from lc0distill.models.config import preset
from lc0distill.models.net import SEResNet, flops_per_position
from lc0distill.train import Run

from benchlib import DEFAULT_DATA, data_paths, format_table

PROG = "bench_train"
G = 1e9


def progress(what: str) -> None:
    print(f"{PROG}: {what} ...", file=sys.stderr, flush=True)


# --- timing -----------------------------------------------------------------------------------------------

def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(work: Callable[[], None], device: torch.device) -> float:
    """Wall time of work(), the device synchronised on both sides, garbage collection off."""
    synchronize(device)
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        work()
        synchronize(device)
        return time.perf_counter() - start
    finally:
        gc.enable()


@dataclass
class Timing:
    steps: int  # timed steps per run
    seconds: float  # best run
    warmup_seconds: float  # the fastest warm-up step (0 without warm-up)

    @property
    def per_step(self) -> float:
        return self.seconds / self.steps


def measure(step: Callable[[], None], device: torch.device, warmup: int, steps: int, repeat: int,
            row_seconds: float) -> Timing:
    """Warm-up steps, then the best of `repeat` runs of n timed steps (n <= steps, capped by row_seconds)."""
    warm = min((timed(step, device) for _ in range(warmup)), default=0.0)  # the first step costs extra
    n = steps
    if row_seconds > 0 and warm > 0:
        n = max(1, min(steps, int(row_seconds / warm)))
    best = min(timed(lambda: [step() for _ in range(n)], device) for _ in range(repeat))
    return Timing(n, best, warm)


class CpuShare:
    """Linux (/proc/stat): how much of the machine's CPU time other processes used since construction."""

    def __init__(self):
        self.start_busy = self._busy_seconds()
        self.start_own = self._own_seconds()
        self.start_wall = time.perf_counter()

    @staticmethod
    def _busy_seconds() -> float | None:
        try:
            fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        except (OSError, ValueError):
            return None
        user, nice, system, _idle, _iowait, irq, softirq, steal = fields
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own_seconds() -> float:
        times = os.times()
        return times.user + times.system

    def others(self) -> float | None:
        """Other processes' CPU time as a share of all the CPUs' wall time (0..1), or None if unknown."""
        busy = self._busy_seconds()
        if busy is None or self.start_busy is None:
            return None
        wall = (time.perf_counter() - self.start_wall) * (os.cpu_count() or 1)
        other = (busy - self.start_busy) - (self._own_seconds() - self.start_own)
        return min(max(other / wall, 0.0), 1.0) if wall > 0 else None


# --- the dense conv yardstick ------------------------------------------------------------------------------

def conv_flops(channels: int, batch: int) -> int:
    """Forward FLOPs of one 3x3 C->C conv on (B, C, 8, 8): 2 x multiply-adds."""
    return 2 * channels * channels * 9 * 64 * batch


def conv_step(channels: int, batch: int, device: torch.device) -> Callable[[], None]:
    generator = torch.Generator().manual_seed(channels)
    x = torch.randn(batch, channels, 8, 8, generator=generator).to(device).requires_grad_()
    w = (torch.randn(channels, channels, 3, 3, generator=generator) * (2 / (9 * channels)) ** 0.5).to(device)
    w.requires_grad_()
    grad_out = torch.randn(batch, channels, 8, 8, generator=generator).to(device)

    def step() -> None:
        y = F.conv2d(x, w, padding=1)
        torch.autograd.grad(y, (x, w), grad_out)

    return step


# --- training rows -----------------------------------------------------------------------------------------

def load_batches(paths: list[Path], batch_size: int, count: int, device: torch.device,
                 data: DataConfig) -> tuple[list[Batch], int, int]:
    """Up to `count` distinct batches of shuffled real positions (at least one); (batches, positions, chunks)."""
    wanted = batch_size * count
    records, have, chunks = [], 0, 0
    try:
        for source in find_chunks([str(p) for p in paths]):
            try:
                chunk = read_chunk(source)
            except Lc0DistillError:
                continue  # a bad chunk costs only itself, as in the loader
            records.append(chunk.records)
            have += len(chunk.records)
            chunks += 1
            if have >= wanted:
                break
    except Lc0DistillError as error:
        raise SystemExit(f"{PROG}: {error}") from None
    if have < batch_size:
        raise SystemExit(f"{PROG}: {have} positions found in {', '.join(map(str, paths))}, "
                         f"fewer than one batch of {batch_size}")
    everything = np.concatenate(records)
    everything = everything[np.random.default_rng(0).permutation(len(everything))]
    packed = pack_records(everything[: min(have, wanted) // batch_size * batch_size])
    batches = [make_batch(packed[i : i + batch_size], device, data.q_source, data.rule50)
               for i in range(0, len(packed), batch_size)]
    return batches, len(packed), chunks


def make_run(student: str | dict, paths: list[Path], device: torch.device, alpha: float, temp: float, run_dir: str,
             **train) -> Run:
    """A Run (the real training state: student, optimizer, schedules) at the RunConfig defaults; `student` is a
    size or a whole net section, `train` other train settings (amp, compile, channels_last)."""
    config = RunConfig.model_validate({
        "data": {"paths": [str(p) for p in paths], "test_ratio": 0.0, "workers": 0},
        "net": student if isinstance(student, dict) else {"size": student},
        "loss": {"teacher_weight": {"weight": alpha}, "temperature": {"start": temp}},
        "train": {"device": str(device), "run_dir": run_dir, **train},
    })
    return Run(config, log=lambda _: None)


class TrainStepper:
    """One call: Run.train_step on the next prepared batch (cycled); the last loss is kept for a check."""

    def __init__(self, run: Run, batches: list[Batch]):
        self.run, self.batches, self.count, self.last = run, batches, 0, None

    def __call__(self) -> None:
        self.last = self.run.train_step(self.batches[self.count % len(self.batches)])
        self.count += 1

    def check(self, label: str, distilled: bool) -> None:
        """The last step's loss is finite, and has a distillation part exactly when a teacher ran."""
        total = float(self.last.total.detach())
        if not math.isfinite(total):
            raise SystemExit(f"{PROG}: {label}: the loss became {total}")
        if ("policy_distill" in self.last.parts) != distilled:
            state = "did not run" if distilled else "ran"
            raise SystemExit(f"{PROG}: {label}: loss parts {sorted(self.last.parts)}: the teacher {state}")


def cached_teacher(teacher: NetTeacher, batches: list[Batch], paths: list[Path], folder: str):
    """The teacher's outputs on the prepared batches, cached as `teacher cache` does and bound for joins
    (the batches come from one concatenation: chunk 0, records 0..N-1)."""
    source = ChunkSource(path=str(next(iter(find_chunks([str(p) for p in paths]))).path))
    out = Path(folder) / "teacher-cache"
    build_cache(teacher, batches, [source], [], out, input_format=1, sample_rate=1, seed=0)
    return TeacherCache(out).bind([source])


# --- main --------------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark training: positions/s and achieved FLOP/s of the real training step, with and "
                    "without a live teacher, against the measured FLOP/s of a plain 3x3 conv2d forward+backward.")
    parser.add_argument("paths", nargs="*", type=Path,
                        help=f"chunk files, directories, tars or globs (default: {DEFAULT_DATA})")
    parser.add_argument("--batch-size", type=int, default=256, metavar="B", help="positions per step (default 256)")
    parser.add_argument("--steps", type=int, default=10, metavar="N",
                        help="timed steps per run, at most (default 10; see --row-seconds)")
    parser.add_argument("--warmup", type=int, default=1, metavar="W", help="untimed steps first (default 1)")
    parser.add_argument("--repeat", type=int, default=2, metavar="R", help="timed runs per row, best taken (default 2)")
    parser.add_argument("--row-seconds", type=float, default=8.0, metavar="S",
                        help="fewer timed steps (at least 1) for rows whose warm-up step is slow, so that one "
                             "timed run takes about S seconds; 0: always --steps (default 8)")
    parser.add_argument("--threads", type=int, default=None, metavar="T",
                        help="torch.set_num_threads(T) (default: torch's default; on a busy machine 1 can beat 2)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
    parser.add_argument("--students", default="64x6,128x10", metavar="LIST",
                        help="comma-separated student sizes (default 64x6,128x10)")
    parser.add_argument("--teacher", default="256x20", metavar="SIZE",
                        help="the live teacher's size, randomly initialised; 'none': no teacher rows (default 256x20)")
    parser.add_argument("--alpha", type=float, default=0.5, help="teacher weight in the teacher rows (default 0.5)")
    parser.add_argument("--temperature", type=float, default=1.0, help="distillation temperature (default 1)")
    parser.add_argument("--distinct-batches", type=int, default=4, metavar="K",
                        help="distinct batches built before timing and cycled through (default 4)")
    parser.add_argument("--quick", action="store_true",
                        help="a shorter, noisier run: --repeat 1 --steps 3 --row-seconds 4")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat, args.steps, args.row_seconds = 1, 3, 4.0
    for name in ("batch_size", "steps", "repeat", "distinct_batches"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup < 0 or args.row_seconds < 0:
        parser.error("--warmup and --row-seconds must be >= 0")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be at least 1")
    if not 0 < args.alpha <= 1:
        parser.error("--alpha must be in (0, 1]: at 0 the teacher is not run")
    if args.temperature <= 0:
        parser.error("--temperature must be > 0")
    try:
        args.device = torch.device(args.device)
        args.student_sizes = [s.strip() for s in args.students.split(",") if s.strip()]
        args.student_configs = [preset(s) for s in args.student_sizes]
        args.teacher_config = None if args.teacher.lower() == "none" else preset(args.teacher)
    except (RuntimeError, ValueError) as error:
        parser.error(str(error))
    if args.device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA device is available")
    if not args.student_sizes:
        parser.error("--students names no net")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device, batch = args.device, args.batch_size
    paths = data_paths(args.paths)
    started = time.perf_counter()
    cpu_share = CpuShare()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    data = DataConfig(paths=[str(p) for p in paths])  # q_source and rule50 as a run uses them by default
    batches, positions, chunks = load_batches(paths, batch, args.distinct_batches, device, data)
    print(f"torch {torch.__version__}, python {platform.python_version()}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs; device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
          + f"; torch threads {torch.get_num_threads()} (interop {torch.get_num_interop_threads()})")
    print(f"1-min load average at the start: {load:.2f} (other processes on the cores lower every figure)")
    print(f"data: {positions:,} positions from {chunks} chunk(s) in {', '.join(map(str, paths))}: "
          f"{len(batches)} distinct batches of {batch}, built before timing and cycled")
    print(f"timing: {args.warmup} warm-up step(s) untimed, then best of {args.repeat} runs of `steps` timed steps")
    print(flush=True)

    # The dense conv yardstick: C = 64 and 128, the students' widths, and the teacher's for reference.
    student_widths = [c.filters for c in args.student_configs]
    teacher_width = [args.teacher_config.filters] if args.teacher_config is not None else []
    conv: dict[int, float] = {}
    conv_rows = [("conv2d 3x3 C->C", "input", "steps", "ms/step", "GFLOP/step", "GFLOP/s")]
    for c in sorted({64, 128, *student_widths, *teacher_width}):
        progress(f"conv2d C={c}")
        t = measure(conv_step(c, batch, device), device, max(args.warmup, 1), args.steps, args.repeat,
                    args.row_seconds / 2)
        flops = 3 * conv_flops(c, batch)
        conv[c] = flops / t.per_step
        note = " (teacher)" if c not in (64, 128, *student_widths) else ""
        conv_rows.append((f"C={c}{note}", f"({batch},{c},8,8)", str(t.steps), f"{1e3 * t.per_step:,.1f}",
                          f"{flops / G:,.2f}", f"{conv[c] / G:,.1f}"))
    print("FLOPs = 2 x multiply-adds. conv2d step = forward (2*C*C*9*64*B) + backward (grad input + grad "
          "weight, counted 2 x forward) = 3 x forward")
    print(format_table(conv_rows))
    print(flush=True)

    # Training rows: each student without a teacher, then with the live teacher.
    teacher, teacher_flops = None, 0
    if args.teacher_config is not None:
        torch.manual_seed(1)
        teacher_net = SEResNet(args.teacher_config)
        teacher_flops = flops_per_position(teacher_net)
        teacher = NetTeacher([teacher_net]).to(device)  # eval mode, no gradients, forward under no_grad
    fpp: dict[str, int] = {}
    cached_shares: list[str] = []
    train_rows = [("student", "teacher", "steps", "ms/step", "pos/s", "student GFLOP/s", "x conv(C)",
                   "incl. teacher GFLOP/s", "x conv(C, Ct)")]
    with tempfile.TemporaryDirectory(prefix="bench_train-") as run_dir:  # Run writes nothing unless asked
        for size, config in zip(args.student_sizes, args.student_configs):
            for kind in (["alone", "live", "cached"] if teacher is not None else ["alone"]):
                with_teacher = kind != "alone"
                run = make_run(size, paths, device, args.alpha, args.temperature, run_dir)
                if kind == "live":
                    run.teacher = teacher  # what build_teacher returns for one net, here randomly initialised
                elif kind == "cached":
                    run.teacher = cached_teacher(teacher, batches, paths, run_dir)
                student_flops = fpp.setdefault(size, flops_per_position(run.student))
                label = {"alone": size, "live": f"{size} + {args.teacher}",
                         "cached": f"{size} + {args.teacher} cached"}[kind]
                progress(f"training {label}")
                stepper = TrainStepper(run, batches)
                t = measure(stepper, device, args.warmup, args.steps, args.repeat, args.row_seconds)
                stepper.check(label, with_teacher)
                rate = batch / t.per_step
                achieved = 3 * student_flops * rate
                total = achieved + teacher_flops * rate
                c = config.filters
                # the conv yardstick for student + teacher: every FLOP at the conv rate of its own net's width
                yardstick = (3 * student_flops + teacher_flops) / (
                    3 * student_flops / conv[c] + teacher_flops / conv[teacher_width[0]]) if with_teacher else 0
                if kind == "alone":
                    alone_rate = rate
                if kind == "cached":
                    cached_shares.append(f"{size}: {100 * rate / alone_rate:.0f}%")
                train_rows.append((size, {"alone": "-", "live": args.teacher, "cached": f"{args.teacher} (cache)"}[kind],
                                   str(t.steps),
                                   f"{1e3 * t.per_step:,.0f}", f"{rate:,.1f}", f"{achieved / G:,.1f}",
                                   f"{achieved / conv[c]:.2f}", f"{total / G:,.1f}" if kind == "live" else "-",
                                   f"{total / yardstick:.2f}" if kind == "live" else "-"))
                del run, stepper
                gc.collect()

    if teacher is not None:
        fpp[args.teacher] = teacher_flops
    print("training step: Run.train_step at the RunConfig defaults (SGD Nesterov momentum, grad clip 10)"
          + (f"; teacher rows: alpha {args.alpha}, temperature {args.temperature}" if teacher is not None else ""))
    print("student FLOPs = 3 x flops_per_position per position (forward + backward counted 2 x forward); "
          "incl. teacher adds 1 x the teacher's flops_per_position (forward only)")
    print("flops_per_position (2 x multiply-adds of convs and dense layers): "
          + ", ".join(f"{name} {flops / 1e6:,.1f} MFLOP" for name, flops in fpp.items()))
    print("x conv(C) = student FLOP/s / conv2d FLOP/s at the student's width C; x conv(C, Ct) = incl. teacher "
          "FLOP/s / the rate if each net's FLOPs ran at the conv2d rate of its width (C, teacher Ct)")
    print(format_table(train_rows))
    if cached_shares:
        print("with the cached teacher, training runs at this share of the student-alone speed: "
              + ", ".join(cached_shares))
    print()
    others = cpu_share.others()
    print(f"total time {time.perf_counter() - started:,.0f} s; other processes used "
          + ("an unknown share" if others is None else f"{100 * others:.0f}%") + f" of the {os.cpu_count()} CPUs "
          + "meanwhile" + (" (every figure above is low)" if others is not None and others > 0.1 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
