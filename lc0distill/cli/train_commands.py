"""`lc0distill train` and `lc0distill evaluate`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from pathlib import Path

import torch

from lc0distill.checks import check_batch_formats, check_finite_net, check_input_format
from lc0distill.chunks.batch import make_batch
from lc0distill.chunks.config import DataConfig, make_loader
from lc0distill.shards.select import every_source
from lc0distill.chunks.probe import probe_chunks
from lc0distill.cli.arguments import input_format, positive_int
from lc0distill.config import load_config
from lc0distill.errors import Lc0DistillError
from lc0distill.evaluate import METRICS, evaluate_net
from lc0distill.nets import load_inference_net
from lc0distill.progress import track


def register(groups: argparse._SubParsersAction) -> None:
    train = groups.add_parser(
        "train", help="train or distil a net from a recipe",
        description="Train a student from a YAML recipe (configs/*.yaml), with KEY=VALUE overrides such as "
                    "train.steps=2000 or teacher.nets=[nets/t.pb.gz]. A run started again with the same "
                    "train.run_dir resumes from its last checkpoint.")
    train.add_argument("--config", metavar="RECIPE.yaml", help="the recipe (see configs/)")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides of the recipe")
    train.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint in run_dir")
    train.set_defaults(run=run_train)

    evaluate = groups.add_parser(
        "evaluate", help="held-out metrics of nets, side by side",
        description="Policy loss, top-1 accuracy, value MSE and cross-entropy (against the game result) and "
                    "moves-left error of each net on the same positions.")
    evaluate.add_argument("nets", nargs="+", metavar="NET",
                          help="lc0 .pb.gz nets (weights or embedded ONNX), lc0distill .pt files or .onnx models "
                               "(ONNX nets run with onnxruntime)")
    evaluate.add_argument("--input-format", type=input_format,
                          help="input format of raw .onnx nets that do not say it (lc0's leela2onnx files)")
    evaluate.add_argument("--data", nargs="+", required=True, metavar="PATH", help="chunks, folders or .tar files; a shard folder "
                          "(data repack) gives all its positions")
    evaluate.add_argument("--positions", type=positive_int, default=50000, help="at most this many (default %(default)s)")
    evaluate.add_argument("--sample-rate", type=positive_int, default=1,
                          help="keep 1 record in N, of chunks and shard blocks alike (default: all)")
    evaluate.add_argument("--batch-size", type=positive_int, default=512,
                          help="positions per forward pass (default %(default)s)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.set_defaults(run=run_evaluate)


def run_train(args: argparse.Namespace) -> int:
    from lc0distill.train import train

    config = load_config(args.config, args.overrides)
    result = train(config, resume=not args.fresh)
    if int(os.environ.get("RANK", 0)) == 0:
        print(json.dumps({"run_dir": str(result.run_dir), "steps": result.steps, "test": result.final_metrics,
                          "positions_per_second": round(result.positions_per_second, 1)}))
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    selected = every_source(list(args.data))
    sources, unreadable = selected.test, selected.unreadable
    if not sources:
        raise Lc0DistillError(f"no chunks found in {', '.join(args.data)}")
    data = DataConfig(paths=list(args.data), batch_size=args.batch_size, shuffle_buffer=0, workers=0)
    probe = probe_chunks(sources)
    results, loaders = {}, []
    data_log = logging.getLogger("lc0distill.data")
    level, data_log.level = data_log.level, logging.ERROR  # said once, below
    try:
        for path in args.nets:
            loader = make_loader(data, sources, passes=1, sample_rate=args.sample_rate,
                                 origin_name=selected.origin_name, sample_shards=True)
            results[path] = _evaluate_one(path, args, loader, probe)
            loaders.append(loader)
    finally:
        data_log.setLevel(level)
    _warn_about_data(unreadable, loaders[0])
    if not any(metrics["positions"] for metrics in results.values()):
        raise Lc0DistillError(f"no position could be read from {', '.join(args.data)} ({len(sources)} chunks; "
                              f"{len(loaders[0].bad_chunks)} bad, {loaders[0].bad_records} bad records)")
    if args.json:
        json.dump({"nets": results}, sys.stdout, indent=1, allow_nan=False)
        print()
        return 0
    names = list(results)
    width = max(len(n) for n in names)
    print(f"{'net':<{width}}  " + "  ".join(f"{m:>17}" for m in (*METRICS, "positions")))
    for name in names:
        cells = [results[name][m] for m in (*METRICS, "positions")]
        print(f"{name:<{width}}  " + "  ".join(f"{c:>17.4f}" if isinstance(c, float) else f"{str(c):>17}" for c in cells))
    return 0


def _evaluate_one(path: str, args: argparse.Namespace, loader, probe) -> dict:
    """One net's metrics, after the checks that make them mean something (finite weights, its input format)."""
    net = load_inference_net(path, args.input_format)
    if isinstance(net, torch.nn.Module):
        check_finite_net(net, path)
    net_format = net.config.input_format
    check_input_format(net_format, probe, path)
    with track(f"evaluate {Path(path).name}", total=args.positions, unit="positions") as bar:
        return evaluate_net(net, _checked(loader, net_format, path), args.positions,
                            on_batch=lambda done: bar.update(min(done, args.positions), positions=done), name=path)


def _checked(loader, net_format: int, path: str):
    """The loader's batches, each checked to be in the net's input format (the probe only samples chunks)."""
    for packed in loader.packed_batches():
        check_batch_formats(net_format, packed["input_format"], packed["chunk"], loader.source_name, path)
        yield make_batch(packed, loader.device, loader.q_source, loader.rule50)


def _warn_about_data(unreadable: list[str], loader) -> None:
    """What was skipped, on stderr, once (the metrics are over the rest; the loader's own warnings are kept
    quiet while it reads, or each net's pass would repeat them)."""
    for problem in unreadable + loader.bad_chunks:
        print(f"lc0distill: warning: skipped: {problem}", file=sys.stderr)
    if loader.bad_records:
        examples = "; ".join(loader.bad_record_examples)
        print(f"lc0distill: warning: skipped {loader.bad_records} bad records ({examples})", file=sys.stderr)
