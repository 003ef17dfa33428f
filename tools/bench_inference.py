#!/usr/bin/env python3
"""Benchmark inference: positions/s of a teacher and a student net, in PyTorch and in onnxruntime.

For each runtime and batch size (--batch-sizes, default 1 64 256) both nets are timed on the same real
positions (`builtin_planes`: the export check's FEN and game positions in each net's input format, tiled to
fill the batch):

  pytorch            `net(planes)` in eval mode, float32, under torch.inference_mode(), CPU.
  onnxruntime        the net exported by `build_onnx` (opset 17, lc0's graph), run by `OnnxNet`'s
                     InferenceSession; `session.run` of every output is timed on planes already cast to the
                     model's input type (no conversion overhead).
  onnxruntime fp16   (--fp16) the same with `build_onnx(fp16=True)`: float16 weights, input and outputs.

Printed next to each other: the FLOP ratio (teacher FLOPs / student FLOPs per position, from
`flops_per_position`: convs and dense layers only) and the measured speed ratio (student pos/s / teacher
pos/s); a speed ratio below the FLOP ratio means the student uses the machine less well than the teacher
(small nets and small batches are overhead-bound). Also printed: the onnxruntime / PyTorch speedup per net
and batch size.

Timing: per measurement, warm-up calls first (untimed: at least one, about min(1, S/3) seconds), then
--seconds S split into 3 rounds of repeated calls (each round at least one call), garbage collection off;
the best round's rate is reported (other processes only ever slow a round down). The teacher's and the
student's rounds alternate, so both nets of one ratio see the same machine load. Other processes on the
cores lower every figure (PyTorch's threads stall at their barriers when a core is taken: --threads 1 suffers
less): the load average at the start and the share of the CPUs other processes used during the run are printed.

Usage: python tools/bench_inference.py [--teacher NET] [--student NET] [--batch-sizes B ...] [--threads T]
       [--seconds S] [--quick] [--fp16] [--json]
NET is a net file (.pt or lc0 .pb.gz) or a size FILTERSxBLOCKS (randomly initialised: speed does not depend
on the weights).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnxruntime as ort
import torch

from lc0distill.errors import Lc0DistillError
from lc0distill.export.check_positions import builtin_planes
from lc0distill.export.onnx_graph import build_onnx
from lc0distill.export.runtime import built_onnx_net
from lc0distill.models.config import preset
from lc0distill.models.net import SEResNet, count_parameters, flops_per_position
from lc0distill.nets import load_net

from bench_train import CpuShare
from benchlib import format_table

PROG = "bench_inference"
ROUNDS = 3  # timed rounds per measurement, best taken
MAX_DISTINCT = 256  # distinct positions per net; larger batches repeat them
SIZE = re.compile(r"\d+x\d+")
NET_ROLES = ("teacher", "student")


def rate_text(pos_s: float) -> str:
    """Positions/s with about 3 significant figures (slow rows stay readable)."""
    return f"{pos_s:,.0f}" if pos_s >= 100 else f"{pos_s:.1f}" if pos_s >= 10 else f"{pos_s:.2f}"


def progress(what: str) -> None:
    print(f"{PROG}: {what} ...", file=sys.stderr, flush=True)


# --- nets ----------------------------------------------------------------------------------------------------

@dataclass
class Net:
    role: str  # teacher / student
    source: str  # the --teacher / --student argument
    net: SEResNet
    flops: int  # per position
    params: int

    @property
    def size(self) -> str:
        return f"{self.net.config.filters}x{self.net.config.blocks}"

    def describe(self) -> str:
        origin = "random init" if SIZE.fullmatch(self.source) and not Path(self.source).is_file() else self.source
        return (f"{self.role} {self.size} ({origin}): {self.params:,} parameters, "
                f"{self.flops / 1e6:,.1f} MFLOP/position, input format {self.net.config.input_format}")


def open_net(role: str, source: str, seed: int) -> Net:
    """A net file, or a FILTERSxBLOCKS size randomly initialised (a file of that name wins)."""
    try:
        if Path(source).is_file() or not SIZE.fullmatch(source):
            net = load_net(source)
        else:
            torch.manual_seed(seed)
            net = SEResNet(preset(source))
    except (Lc0DistillError, ValueError) as error:
        raise SystemExit(f"{PROG}: --{role} {source}: {error}") from None
    net = net.float().cpu().eval()
    return Net(role, source, net, flops_per_position(net), count_parameters(net))


def onnx_session(net: SEResNet, fp16: bool, threads: int) -> ort.InferenceSession:
    """The net exported as lc0's ONNX graph, in an onnxruntime session (via OnnxNet, as `net eval` runs it)."""
    model = build_onnx(net, opset=17, fp16=fp16).SerializeToString()
    return built_onnx_net(model, net.config, f"<{net.config.name}{' fp16' if fp16 else ''}>", threads).session


def planes_for(net: SEResNet, batch: int) -> np.ndarray:
    """(batch, 112, 8, 8) float32 real positions in the net's input format (repeated beyond MAX_DISTINCT)."""
    distinct = builtin_planes(net.config.input_format, min(batch, MAX_DISTINCT)).numpy()
    reps = -(-batch // len(distinct))
    return np.ascontiguousarray(np.tile(distinct, (reps, 1, 1, 1))[:batch], dtype=np.float32)


# --- timing --------------------------------------------------------------------------------------------------

def torch_call(net: SEResNet, planes: np.ndarray) -> Callable[[], None]:
    x = torch.from_numpy(planes)

    def call() -> None:
        with torch.inference_mode():
            net(x)

    return call


def onnx_call(session: ort.InferenceSession, planes: np.ndarray) -> Callable[[], None]:
    name = session.get_inputs()[0].name
    dtype = np.float16 if session.get_inputs()[0].type == "tensor(float16)" else np.float32
    feed = {name: np.ascontiguousarray(planes, dtype=dtype)}  # cast once, before timing

    def call() -> None:
        session.run(None, feed)

    return call


def run_for(call: Callable[[], None], seconds: float) -> tuple[int, float]:
    """Calls (at least one) until `seconds` have passed; (calls, elapsed), garbage collection off."""
    gc.collect()
    gc.disable()
    try:
        calls, start = 0, time.perf_counter()
        while True:
            call()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                return calls, elapsed
    finally:
        gc.enable()


@dataclass
class Rate:
    pos_s: float  # best round
    calls: int  # timed calls, all rounds


def measure_pair(calls: dict[str, Callable[[], None]], batch: int, seconds: float) -> dict[str, Rate]:
    """Warm-up, then ROUNDS timed rounds of each net, the nets alternating; best round per net."""
    for call in calls.values():
        run_for(call, min(1.0, seconds / 3))
    best = {role: 0.0 for role in calls}
    total = {role: 0 for role in calls}
    for _ in range(ROUNDS):
        for role, call in calls.items():
            n, elapsed = run_for(call, seconds / ROUNDS)
            best[role] = max(best[role], n * batch / elapsed)
            total[role] += n
    return {role: Rate(best[role], total[role]) for role in calls}


# --- main ----------------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark inference: positions/s of a teacher and a student net in PyTorch and onnxruntime "
                    "at several batch sizes, the measured speed ratio next to the FLOP ratio. The defaults "
                    "(128x10 vs 64x6) are CPU-friendly; real runs should pass e.g. --teacher 256x40 "
                    "--student 128x10.")
    parser.add_argument("--teacher", default="128x10", metavar="NET",
                        help="teacher: a .pt or lc0 .pb.gz file, or a size FILTERSxBLOCKS, randomly initialised "
                             "(default 128x10; real runs: e.g. 256x40)")
    parser.add_argument("--student", default="64x6", metavar="NET",
                        help="student: as --teacher (default 64x6; real runs: e.g. 128x10)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64, 256], metavar="B",
                        help="batch sizes (default 1 64 256)")
    parser.add_argument("--threads", type=int, default=None, metavar="T",
                        help="torch.set_num_threads(T) and onnxruntime intra_op_num_threads (default: all "
                             f"{os.cpu_count()} cores)")
    parser.add_argument("--seconds", type=float, default=3.0, metavar="S",
                        help=f"timed seconds per net and measurement, after warm-up, in {ROUNDS} rounds, best "
                             "taken (default 3)")
    parser.add_argument("--quick", action="store_true", help="a short, noisier run (smoke test): --seconds 0.5")
    parser.add_argument("--fp16", action="store_true", help="also time the fp16 ONNX export in onnxruntime")
    parser.add_argument("--json", action="store_true", help="print one JSON object with all figures instead of tables")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds = 0.5
    if args.seconds <= 0:
        parser.error("--seconds must be > 0")
    if min(args.batch_sizes) < 1:
        parser.error("--batch-sizes must be at least 1")
    args.batch_sizes = list(dict.fromkeys(args.batch_sizes))
    if args.threads is None:
        args.threads = os.cpu_count() or 1
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join(["python", "tools/bench_inference.py", *(sys.argv[1:] if argv is None else argv)])
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    started = time.perf_counter()
    cpu_share = CpuShare()

    nets = {role: open_net(role, source, seed)
            for seed, (role, source) in enumerate(zip(NET_ROLES, (args.teacher, args.student)), start=1)}
    flop_ratio = nets["teacher"].flops / nets["student"].flops
    max_batch = max(args.batch_sizes)
    planes = {role: planes_for(n.net, max_batch) for role, n in nets.items()}

    runtimes = ["pytorch", "onnxruntime"] + (["onnxruntime fp16"] if args.fp16 else [])
    results: dict[tuple[str, int], dict[str, Rate]] = {}
    for runtime in runtimes:
        if runtime == "pytorch":
            makers = {role: (lambda p, n=n: torch_call(n.net, p)) for role, n in nets.items()}
        else:
            progress(f"exporting both nets to ONNX{' fp16' if 'fp16' in runtime else ''}")
            sessions = {role: onnx_session(n.net, "fp16" in runtime, args.threads) for role, n in nets.items()}
            makers = {role: (lambda p, s=s: onnx_call(s, p)) for role, s in sessions.items()}
        for batch in args.batch_sizes:
            progress(f"{runtime}, batch {batch}")
            calls = {role: makers[role](planes[role][:batch]) for role in NET_ROLES}
            results[runtime, batch] = measure_pair(calls, batch, args.seconds)
        makers = sessions = calls = None  # free the sessions before the next runtime
        gc.collect()

    rows = []
    for (runtime, batch), rates in results.items():
        teacher, student = rates["teacher"].pos_s, rates["student"].pos_s
        rows.append({"runtime": runtime, "batch": batch, "teacher_pos_s": teacher, "student_pos_s": student,
                     "speed_ratio": student / teacher, "flop_ratio": flop_ratio,
                     "teacher_calls": rates["teacher"].calls, "student_calls": rates["student"].calls})
    speedups = [{"net": role, "size": nets[role].size, "runtime": runtime, "batch": batch,
                 "speedup": results[runtime, batch][role].pos_s / results["pytorch", batch][role].pos_s}
                for role in NET_ROLES for runtime in runtimes[1:] for batch in args.batch_sizes]
    machine = {"cpus": os.cpu_count(), "threads": args.threads, "machine": platform.machine(),
               "python": platform.python_version(), "torch": torch.__version__, "onnxruntime": ort.__version__,
               "onnxruntime_providers": ort.get_available_providers(), "load_average_1min": load,
               "other_processes_cpu_share": cpu_share.others()}

    if args.json:
        print(json.dumps({
            "command": command, "machine": machine,
            "settings": {"batch_sizes": args.batch_sizes, "seconds": args.seconds, "rounds": ROUNDS,
                         "fp16": args.fp16},
            "nets": {role: {"source": n.source, "size": n.size, "parameters": n.params,
                            "flops_per_position": n.flops, "input_format": n.net.config.input_format}
                     for role, n in nets.items()},
            "flop_ratio": flop_ratio, "results": rows, "onnxruntime_speedup": speedups,
            "total_seconds": time.perf_counter() - started,
        }, indent=2))
        return 0

    print(f"command: {command}")
    print(f"{os.cpu_count()} CPUs, {platform.machine()}; threads {args.threads} (torch.set_num_threads, onnxruntime "
          f"intra_op_num_threads); python {platform.python_version()}, torch {torch.__version__}, "
          f"onnxruntime {ort.__version__} ({', '.join(ort.get_available_providers())})")
    print(f"1-min load average at the start: {load:.2f} (other processes on the cores lower every figure)")
    for n in nets.values():
        print(n.describe())
    print(f"timing: per net and row, warm-up then {args.seconds:g} s in {ROUNDS} rounds (teacher and student "
          f"alternating), best round; inputs: real positions (builtin_planes), tiled to the batch")
    print()
    print("speed ratio = student pos/s / teacher pos/s; FLOP ratio = teacher FLOPs / student FLOPs per position "
          "(flops_per_position)")
    table = [("runtime", "batch", f"teacher {nets['teacher'].size} pos/s", f"student {nets['student'].size} pos/s",
              "speed ratio", "FLOP ratio")]
    for r in rows:
        table.append((r["runtime"], str(r["batch"]), rate_text(r["teacher_pos_s"]), rate_text(r["student_pos_s"]),
                      f"{r['speed_ratio']:.2f}", f"{r['flop_ratio']:.2f}"))
    print(format_table(table))
    print()
    print("onnxruntime speedup = onnxruntime pos/s / PyTorch pos/s, same net and batch")
    table = [("net", "batch", "pytorch pos/s", *(f"{rt} pos/s" for rt in runtimes[1:]),
              *(f"{rt} speedup" for rt in runtimes[1:]))]
    for role in NET_ROLES:
        for batch in args.batch_sizes:
            base = results["pytorch", batch][role].pos_s
            others = [results[rt, batch][role].pos_s for rt in runtimes[1:]]
            table.append((f"{role} {nets[role].size}", str(batch), rate_text(base), *(rate_text(o) for o in others),
                           *(f"{o / base:.2f}" for o in others)))
    print(format_table(table))
    print()
    others = machine["other_processes_cpu_share"]
    share = "an unknown share" if others is None else f"{100 * others:.0f}%"
    warning = ""
    if others is not None and others > 0.1:
        warning = " (every figure above is low" + (
            "; PyTorch with several threads suffers most: try --threads 1)" if args.threads > 1 else ")")
    print(f"total time {time.perf_counter() - started:,.0f} s; other processes used {share} of the "
          f"{os.cpu_count()} CPUs meanwhile{warning}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
