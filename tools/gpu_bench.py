#!/usr/bin/env python3
"""What a GPU gets out of lc0distill's training: one table of positions/s, peak memory and FLOP/s against the card.

  train    the real training step (`Run.train_step`: schedules, forward, loss, backward, clip, the guard, the
           fused optimizer step) of each --sizes net alone (SE-ResNets FxB, attention bodies bt-WxL), for each --precisions (float32; bf16 and fp16 autocast,
           CUDA only) with and without torch.compile (--compile) and channels_last (--channels-last), on
           --batch-size positions of real data built on the device before timing and cycled. Peak memory is
           torch's peak allocated on the GPU. FLOP/s = 3 x flops_per_position x positions/s (forward + backward
           as 2 x forward; convs and dense layers only); "% peak" is against the card's dense tensor-core peak
           for the precision (float32 convs run as TF32, cuDNN's default; the table of cards is PEAK_TFLOPS,
           or --peak-tflops).
  teacher  --teacher-student distilled from a randomly initialised --teacher run live (its forward in the
           step, compiled and channels-last as the student where those are on) against the same teacher's
           outputs read from a teacher cache (the join on the host, the rows copied in one pinned transfer).
  loader   the training loader (2 worker processes, --loader-workers) streaming to model-ready batches on the
           device (on a GPU: one pinned copy of the packed bytes, expanded there) for --loader-seconds: from
           shards (the data repacked) and from gzip chunks at the loader's default sampling (1 in 32):
           positions/s, the CPU cores it took (this process and its workers), and whether it keeps up with
           the fastest training row of the run's largest net.
  reads    host reads (the calls that make the host wait for the device) in a steady training step, counted
           by lc0distill.training.host_reads; the guard reads its flags once per train.sync_every steps.

--quick runs a small CPU-sized form (the CI runs it): 64x6 at batch 64, float32, eager, channels_last on and
off, 64x6 + 128x10 teacher, loader 2 s per source. On CPU, autocast rows are skipped (lc0distill's autocast is
CUDA-only), torch.compile needs a C++ compiler and minutes, and "% peak" is blank.

Usage: python tools/gpu_bench.py [PATH ...] [--device cuda] [--quick] [--sizes 64x6,128x10,256x20]
       [--precisions float32,bf16,fp16] [--compile off,on] [--channels-last off,on] [--json FILE]
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import platform
import resource
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from lc0distill.chunks.batch import HOST_FIELDS, make_batch
from lc0distill.chunks.config import DataConfig
from lc0distill.chunks.dataset import BatchLoader, StreamSpec
from lc0distill.chunks.sources import ChunkSource
from lc0distill.config import RunConfig
from lc0distill.distill.teachers import NetTeacher
from lc0distill.errors import Lc0DistillError
from lc0distill.models.build import build_net
from lc0distill.models.config import NetConfig, preset_sizes
from lc0distill.models.net import flops_per_position
from lc0distill.train import Run
from lc0distill.training.host_reads import HostReads

from bench_loader import repack_for_bench
import bench_train
from bench_train import TrainStepper, cached_teacher, load_batches, measure
from benchlib import data_paths, find_chunk_files, format_table

PROG = "gpu_bench"
T = 1e12
# dense (no sparsity) tensor-core peaks, TFLOP/s: float32 as TF32 (cuDNN's default for convolutions), bf16, fp16
PEAK_TFLOPS = {"H100 PCIe": {"float32": 378.0, "bf16": 756.0, "fp16": 756.0},
               "H100": {"float32": 494.7, "bf16": 989.4, "fp16": 989.4},  # SXM (HBM3)
               "H200": {"float32": 494.7, "bf16": 989.4, "fp16": 989.4},
               "A100": {"float32": 156.0, "bf16": 312.0, "fp16": 312.0}}


QUICK = {"sizes": "64x6", "precisions": "float32", "compile": "off", "batch_size": 64, "steps": 3, "warmup": 1,
         "repeat": 1, "row_seconds": 1.0, "teacher": "128x10", "teacher_student": "64x6", "loader_seconds": 2.0,
         "loader_buffer": 8192}


def progress(what: str) -> None:
    print(f"{PROG}: {what} ...", file=sys.stderr, flush=True)


@dataclass
class Row:
    section: str
    setting: str
    positions_per_second: float | None = None
    ms_per_step: float | None = None
    peak_mib: float | None = None
    tflops: float | None = None
    peak_share: float | None = None
    note: str = ""

    def cells(self) -> tuple[str, ...]:
        def number(value, spec):
            return "-" if value is None else format(value, spec)
        return (self.section, self.setting, number(self.positions_per_second, ",.0f"), number(self.ms_per_step, ",.1f"),
                number(self.peak_mib, ",.0f"), number(self.tflops, ".3f" if (self.tflops or 0) < 1 else ".1f"),
                "-" if self.peak_share is None else f"{100 * self.peak_share:.1f}%", self.note)


HEADER = ("section", "setting", "positions/s", "ms/step", "peak MiB", "TFLOP/s", "% peak", "note")


def card_peak(device: torch.device, override: float | None) -> dict[str, float] | None:
    if override:
        return {p: override for p in ("float32", "bf16", "fp16")}
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key in PEAK_TFLOPS:  # the more specific names first
        if key in name:
            return PEAK_TFLOPS[key]
    return None


def net_section(size: str) -> dict:
    """The net section for a size: FILTERSxBLOCKS (an SE-ResNet preset) or bt-WIDTHxLAYERS (an attention body,
    a head per 32 channels, smolgen)."""
    if size.startswith("bt-"):
        width = preset_sizes(size[3:])["filters"]
        return {"size": size[3:], "body": "attention", "policy": "attention", "heads": max(1, width // 32),
                "activation": "mish"}
    return {"size": size}


def net_config(size: str) -> NetConfig:
    return RunConfig.model_validate({"data": {"paths": ["-"]}, "net": net_section(size)}).net


def make_run(size: str, paths: list[Path], device: torch.device, run_dir: str, precision: str, compiled: bool,
             channels_last: bool, teacher: bool = False) -> Run:
    amp = {"float32": "off", "bf16": "bf16", "fp16": "fp16"}[precision]
    return bench_train.make_run(net_section(size), paths, device, 0.5 if teacher else 0.0, 1.0, run_dir, amp=amp,
                                compile=compiled, channels_last=channels_last)


def peak_memory(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def train_rows(args, paths, batches, device, peak, run_dir) -> tuple[list[Row], dict]:
    rows, best = [], {}
    for size in args.size_list:
        flops = flops_per_position(build_net(net_config(size)))
        for precision in args.precision_list:
            for compiled in args.compile_list:
                for channels_last in args.channels_last_list:
                    setting = (f"{size} {precision}{' compiled' if compiled else ''}"
                               f"{' channels_last' if channels_last else ''}")
                    if device.type != "cuda" and precision != "float32":
                        rows.append(Row("train", setting, note="skipped: autocast is CUDA-only"))
                        continue
                    progress(f"train {setting}")
                    reset_peak(device)
                    run = make_run(size, paths, device, run_dir, precision, compiled, channels_last)
                    stepper = TrainStepper(run, batches)
                    started = time.perf_counter()
                    stepper()  # the first step: compilation, cuDNN's choice of kernels, lazy state
                    first = time.perf_counter() - started
                    timing = measure(stepper, device, args.warmup, args.steps, args.repeat, args.row_seconds)
                    stepper.check(setting, distilled=False)
                    rate = args.batch_size / timing.per_step
                    achieved = 3 * flops * rate
                    share = achieved / (peak[precision] * T) if peak else None
                    rows.append(Row("train", setting, rate, 1e3 * timing.per_step, peak_memory(device), achieved / T,
                                    share, f"first step {first:.1f} s"))
                    if rate > best.get(size, (0, ""))[0]:
                        best[size] = (rate, setting)
                    del run, stepper
    return rows, best


def teacher_rows(args, paths, batches, device, run_dir) -> list[Row]:
    """The student distilled from a live teacher, and from the same teacher's cached outputs."""
    torch.manual_seed(1)
    teacher_net = build_net(net_config(args.teacher))
    rows = []
    for kind in ("live", "cache"):
        setting = f"{args.teacher_student} + {args.teacher} {kind}"
        progress(f"teacher {setting}")
        reset_peak(device)
        precision = args.precision_list[-1] if device.type == "cuda" else "float32"
        run = make_run(args.teacher_student, paths, device, run_dir, precision, False, True, teacher=True)
        live = NetTeacher([teacher_net.to(memory_format=torch.channels_last)]).to(device)
        run.teaching.teacher = live if kind == "live" else cached_teacher(live, batches, paths, run_dir)
        stepper = TrainStepper(run, batches)
        stepper()
        timing = measure(stepper, device, args.warmup, args.steps, args.repeat, args.row_seconds)
        stepper.check(setting, distilled=True)
        rows.append(Row("teacher", setting, args.batch_size / timing.per_step, 1e3 * timing.per_step,
                        peak_memory(device), note=f"{precision}, channels_last"))
        del run, stepper
    return rows


def _cpu_seconds(pids: set[int]) -> float:
    """CPU seconds the processes `pids` (the loader's workers) have used, from /proc (Linux; 0 elsewhere)."""
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def _child_pids() -> set[int]:
    return {child.pid for child in multiprocessing.active_children()}


def loader_row(label: str, sources: tuple, sample_rate: int, device: torch.device, args) -> Row:
    """Stream `sources` (repeated to last) for --loader-seconds: positions/s of model-ready batches on `device`
    and the CPU cores the stream took."""
    progress(f"loader {label}")
    spec = StreamSpec(tuple(sources) * 400, batch_size=args.batch_size, sample_rate=sample_rate,
                      shuffle_buffer=args.loader_buffer // sample_rate, seed=0, passes=1)
    gc.collect()  # the workers of an earlier stream gone
    before = _child_pids()
    loader = BatchLoader(spec, workers=args.loader_workers)
    positions, started, own, workers, children = 0, None, 0.0, set(), 0.0
    stream = loader.packed_batches()  # held: closing it stops the workers, whose CPU time is read below
    for packed in stream:
        if started is None:  # from the first batch on: the workers' start-up and the first buffer fill left out
            workers = _child_pids() - before
            started, own, children = time.perf_counter(), time.process_time(), _cpu_seconds(workers)
            continue
        batch = make_batch(packed, device)
        positions += len(batch)
        if time.perf_counter() - started >= args.loader_seconds:
            break
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall = time.perf_counter() - started
    cores = (time.process_time() - own + _cpu_seconds(workers) - children) / wall
    stream.close()
    return Row("loader", f"{label}, {args.loader_workers} workers", positions / wall,
               note=f"{cores:.2f} cores")


def reads_row(paths, batches, device, run_dir) -> Row:
    run = make_run("64x6", paths, device, run_dir, "float32", False, False)
    run.train_step(batches[0])
    exempt = tuple(getattr(b, name) for b in batches for name in HOST_FIELDS)
    with HostReads(exempt=exempt) as reads:
        for batch in batches[1:4]:
            run.train_step(batch)
    with HostReads() as sync_reads:
        run.sync()
    return Row("reads", "host reads per training step", note=f"{reads.total / 3:g} per step; "
               f"{sync_reads.total} per read of the guard's flags (every train.sync_every steps)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Training positions/s, peak memory and FLOP/s on a GPU (or the "
                                                 "CPU): precisions, torch.compile, channels_last, a live teacher "
                                                 "against its cache, and whether the loader keeps up.")
    parser.add_argument("paths", nargs="*", type=Path, help="chunk files or folders (default: ../shared's self-play)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="the small CPU-sized form (CI)")
    parser.add_argument("--sizes", default="64x6,128x10,256x20,bt-256x8",
                        help="FILTERSxBLOCKS SE-ResNets and bt-WIDTHxLAYERS attention bodies (default %(default)s)")
    parser.add_argument("--precisions", default="float32,bf16,fp16")
    parser.add_argument("--compile", default="off,on", help="off, on, or off,on")
    parser.add_argument("--channels-last", default="off,on", help="off, on, or off,on")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per run, at most (see --row-seconds)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--row-seconds", type=float, default=3.0)
    parser.add_argument("--teacher", default="256x20", help="the live teacher's size (randomly initialised)")
    parser.add_argument("--teacher-student", default="128x10")
    parser.add_argument("--loader-workers", type=int, default=2)
    parser.add_argument("--loader-seconds", type=float, default=10.0)
    parser.add_argument("--loader-buffer", type=int, default=65536, help="shuffle buffer (positions)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the card's peak, if not in PEAK_TFLOPS")
    parser.add_argument("--parts", default="train,teacher,reads,loader",
                        help="which sections to run (default: all of train,teacher,reads,loader)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    argv = sys.argv[1:] if argv is None else argv
    if "--quick" in argv:  # the small form's settings, each still overridable on the command line
        parser.set_defaults(**QUICK)
    args = parser.parse_args(argv)
    try:
        args.device = torch.device(args.device)
        args.size_list = [s.strip() for s in args.sizes.split(",") if s.strip()]
        for size in [*args.size_list, args.teacher, args.teacher_student]:
            net_config(size)
    except (RuntimeError, ValueError, Lc0DistillError) as error:
        parser.error(str(error))
    if args.device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA device is available")
    args.part_list = [p.strip() for p in args.parts.split(",") if p.strip()]
    if not args.part_list or not set(args.part_list) <= {"train", "teacher", "reads", "loader"}:
        parser.error("--parts: a comma-separated list of train, teacher, reads, loader")
    args.precision_list = [p.strip() for p in args.precisions.split(",") if p.strip()]
    if not set(args.precision_list) <= {"float32", "bf16", "fp16"}:
        parser.error("--precisions: float32, bf16, fp16")
    flags = {"off": False, "on": True}
    try:
        args.compile_list = [flags[v.strip()] for v in args.compile.split(",")]
        args.channels_last_list = [flags[v.strip()] for v in args.channels_last.split(",")]
    except KeyError:
        parser.error("--compile and --channels-last take off, on or off,on")
    if min(args.batch_size, args.steps, args.repeat, args.loader_workers + 1) < 1 or args.loader_seconds <= 0:
        parser.error("--batch-size, --steps, --repeat must be >= 1, --loader-workers >= 0, --loader-seconds > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = args.device
    paths = data_paths(args.paths)
    files = find_chunk_files(paths, PROG)
    started = time.perf_counter()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({os.cpu_count()} cores)"
    peak = card_peak(device, args.peak_tflops)
    print(f"torch {torch.__version__}, python {platform.python_version()}; device {device}: {name}; "
          f"batch {args.batch_size}; data {len(files)} chunk files in {', '.join(map(str, paths))}")
    data = DataConfig(paths=[str(p) for p in paths])
    batches, _, _ = load_batches(paths, args.batch_size, 4, device, data)
    rows: list[Row] = []
    best, loaders = {}, []
    with tempfile.TemporaryDirectory(prefix="gpu_bench-") as run_dir:
        if "train" in args.part_list:
            trained, best = train_rows(args, paths, batches, device, peak, run_dir)
            rows += trained
        if "teacher" in args.part_list:
            rows += teacher_rows(args, paths, batches, device, run_dir)
        if "reads" in args.part_list:
            rows.append(reads_row(paths, batches, device, run_dir))
        if "loader" in args.part_list:
            from lc0distill.shards.index import folder_blocks

            shard_folder, _, index = repack_for_bench(files, Path(run_dir) / "shards", sample_rate=1)
            blocks = tuple(folder_blocks(shard_folder, index, "train"))
            loaders = [loader_row("shards", blocks, 1, device, args),
                       loader_row("gzip chunks, sampling 32", tuple(ChunkSource(str(f)) for f in files), 32, device,
                                  args)]
    target = best.get(args.size_list[-1])
    for row in loaders:
        if target:
            keeps = row.positions_per_second >= target[0]
            row.note += (f"; {'keeps up with' if keeps else 'does not keep up with'} {target[1]} "
                         f"({target[0]:,.0f} positions/s)")
    rows += loaders
    print(format_table([HEADER, *(row.cells() for row in rows)]))
    if peak:
        print(f"% peak: against {name}'s dense tensor-core peak (TFLOP/s: float32 as TF32 {peak['float32']}, "
              f"bf16 {peak['bf16']}, fp16 {peak['fp16']})")
    print(f"total {time.perf_counter() - started:,.0f} s; peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")
    if args.json:
        args.json.write_text(json.dumps({"device": name, "batch_size": args.batch_size,
                                         "rows": [asdict(row) for row in rows]}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
