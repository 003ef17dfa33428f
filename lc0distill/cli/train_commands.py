"""`lc0distill train` and `lc0distill evaluate`."""

from __future__ import annotations

import argparse
import json
import os
import sys

from lc0distill.chunks.config import DataConfig, make_loader
from lc0distill.cli.arguments import input_format
from lc0distill.chunks.sources import find_chunks
from lc0distill.config import load_config
from lc0distill.errors import Lc0DistillError
from lc0distill.evaluate import METRICS, evaluate_net
from lc0distill.nets import load_inference_net


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
    evaluate.add_argument("--data", nargs="+", required=True, metavar="PATH", help="chunks, folders or .tar files")
    evaluate.add_argument("--positions", type=int, default=50000, help="at most this many (default %(default)s)")
    evaluate.add_argument("--sample-rate", type=int, default=1, help="keep 1 record in N (default: all)")
    evaluate.add_argument("--batch-size", type=int, default=512)
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
    sources = list(find_chunks(args.data))
    if not sources:
        raise Lc0DistillError(f"no chunks found in {', '.join(args.data)}")
    data = DataConfig(paths=list(args.data), batch_size=args.batch_size, shuffle_buffer=0, workers=0)
    results = {}
    for path in args.nets:
        net = load_inference_net(path, args.input_format)
        loader = make_loader(data, sources, passes=1, sample_rate=args.sample_rate)
        results[path] = evaluate_net(net, loader, args.positions)
    if args.json:
        json.dump({"nets": results}, sys.stdout, indent=1)
        print()
        return 0
    names = list(results)
    width = max(len(n) for n in names)
    print(f"{'net':<{width}}  " + "  ".join(f"{m:>17}" for m in (*METRICS, "positions")))
    for name in names:
        cells = [results[name][m] for m in (*METRICS, "positions")]
        print(f"{name:<{width}}  " + "  ".join(f"{c:>17.4f}" if isinstance(c, float) else f"{str(c):>17}" for c in cells))
    return 0
