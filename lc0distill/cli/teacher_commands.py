"""`lc0distill teacher cache`: run the teacher(s) once over the data and keep what distillation reads
(lc0distill/distill/cache.py), so that multi-epoch distillation pays the teacher once."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from lc0distill.chunks.config import DataConfig, make_loader
from lc0distill.chunks.sources import find_chunks
from lc0distill.cli.arguments import non_negative_float, positive_int, refuse_shard_folders
from lc0distill.distill.cache import build_cache, teacher_identities
from lc0distill.distill.teachers import NetTeacher, check_compatible
from lc0distill.errors import Lc0DistillError
from lc0distill.nets import load_inference_net
from lc0distill.progress import track


def register(groups: argparse._SubParsersAction) -> None:
    teacher = groups.add_parser("teacher", help="teacher outputs computed once (a cache for distillation)",
                                description="Work done by teachers ahead of training.")
    commands = teacher.add_subparsers(dest="command", metavar="COMMAND", required=True)
    cache = commands.add_parser(
        "cache", help="run teachers once over data and store their outputs for teacher.cache",
        description="Run the teacher (or the weighted ensemble) once over every record of DATA (or those a "
                    "sampling keeps) and store its policy over the legal moves (log-probabilities), WDL and "
                    "moves-left, zstandard-compressed, keyed by chunk and record with a fingerprint of the "
                    "planes. A run with teacher.cache: DIR (and the same teacher.nets) reads them instead of "
                    "running the teacher; a cache that no longer matches the data or the teacher is an error.")
    cache.add_argument("data", nargs="+", metavar="DATA", help="chunk files, folders, .tar archives, globs, @lists "
                                                              "(all of them: training and held-out chunks)")
    cache.add_argument("--teacher", nargs="+", required=True, metavar="NET", help="the teacher net(s)")
    cache.add_argument("--weights", nargs="+", type=non_negative_float, metavar="W", help="ensemble weights (default: equal)")
    cache.add_argument("--out", required=True, metavar="DIR", help="the cache folder (rewritten whole)")
    cache.add_argument("--sample-rate", type=positive_int, default=1,
                       help="keep about 1 record in N (default %(default)s: all; a run then needs the same "
                            "data.sample_rate and reads exactly the kept records)")
    cache.add_argument("--seed", type=int, default=0, help="the sampling's seed (default %(default)s)")
    cache.add_argument("--dtype", choices=("auto", "float16", "float32"), default="auto",
                       help="the log-probabilities' type; auto (default): float16 when it moves the policy loss "
                            "by less than 1e-3 on the first 4,096 positions, else float32")
    cache.add_argument("--batch-size", type=positive_int, default=512,
                       help="positions per teacher forward pass (default %(default)s)")
    cache.add_argument("--workers", type=int, default=1, help="loader processes (default %(default)s)")
    cache.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default %(default)s)")
    cache.add_argument("--json", action="store_true", help="print the manifest's summary as one JSON object")
    cache.set_defaults(run=run_cache)


def open_teacher(paths: list[str], weights: list[float] | None, device: str) -> tuple[NetTeacher, int]:
    nets = [load_inference_net(path, need_input_format=False, device=device) for path in paths]
    formats = {net.config.input_format for net in nets}
    if None in formats:
        bad = paths[[net.config.input_format for net in nets].index(None)]
        raise Lc0DistillError(f"teacher {bad} does not say its input format: wrap it with lc0distill export "
                              f"{bad} --to lc0-onnx --input-format N --out teacher.pb.gz")
    if len(formats) > 1:
        raise Lc0DistillError(f"the teachers read different input formats ({sorted(formats)}): one cache, one format")
    if weights is not None and len(weights) != len(paths):
        raise Lc0DistillError(f"--weights has {len(weights)} entries for {len(paths)} teachers")
    for path, net in zip(paths, nets):
        check_compatible(nets[0], net, path, distil_value=False)
    return NetTeacher(nets, weights).to(device), formats.pop()


def run_cache(args: argparse.Namespace) -> int:
    teacher, input_format = open_teacher(args.teacher, args.weights, args.device)
    refuse_shard_folders(args.data, "teacher cache")
    sources = list(find_chunks(args.data))
    if not sources:
        raise Lc0DistillError(f"no chunks found in {' '.join(args.data)}")
    data = DataConfig(paths=args.data, batch_size=args.batch_size, sample_rate=args.sample_rate, shuffle_buffer=0,
                      workers=max(0, args.workers), seed=args.seed)
    loader = make_loader(data, sources, passes=1, device=args.device)
    started = time.perf_counter()
    with track("teacher cache", total=None, unit="positions") as bar:
        manifest = build_cache(teacher, loader, sources, teacher_identities(args.teacher, args.weights),
                               Path(args.out), input_format=input_format, sample_rate=args.sample_rate,
                               seed=args.seed, dtype=args.dtype,
                               on_batch=lambda count: bar.advance(count, positions=count))
    seconds = time.perf_counter() - started
    size = sum(s["bytes"] for s in manifest["shards"])
    summary = {"out": args.out, "positions": manifest["positions"], "chunks": len(manifest["chunks"]),
               "bad_chunks": len(loader.bad_chunks), "bad_records": loader.bad_records, "dtype": manifest["dtype"],
               "fp16_loss_error": manifest["fp16_loss_error"], "bytes": size, "seconds": round(seconds, 2),
               "positions_per_second": round(manifest["positions"] / max(seconds, 1e-9), 1),
               "teachers": manifest["teachers"], "sample_rate": manifest["sample_rate"]}
    if args.json:
        json.dump(summary, sys.stdout, indent=1)
        print()
    else:
        print(f"{manifest['positions']:,} positions of {len(manifest['chunks']):,} chunks cached in {args.out}: "
              f"{manifest['dtype']} policies, {size / max(manifest['positions'], 1):.0f} bytes per position, "
              f"{seconds:.1f} s ({summary['positions_per_second']:,.0f} positions/s)")
        if loader.bad_chunks or loader.bad_records:
            print(f"skipped: {len(loader.bad_chunks)} bad chunks, {loader.bad_records} bad records")
    return 0
