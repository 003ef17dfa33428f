"""`lc0distill net ...`: look into nets and evaluate positions with them."""

from __future__ import annotations

import argparse
import json
import sys

import chess
import numpy as np
import onnx

from lc0distill.cli.arguments import input_format
from lc0distill.errors import Lc0DistillError
from lc0distill.export.runtime import OnnxNet, model_opset
from lc0distill.lc0.weights import read_net_info
from lc0distill.models.inference import evaluate_boards
from lc0distill.models.net import count_parameters, flops_per_position
from lc0distill.nets import NetFileKind, load_inference_net, net_file_kind

_FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)

NET_HELP = "an lc0 network file (.pb.gz, weights or embedded ONNX), an lc0distill net or checkpoint (.pt) or an .onnx"
INPUT_FORMAT_HELP = "input format of a raw .onnx that does not say it (lc0's leela2onnx files; 1 = classical)"


def register(groups: argparse._SubParsersAction) -> None:
    net = groups.add_parser("net", help="inspect nets and evaluate positions",
                            description="Inspect nets and evaluate positions with them.")
    commands = net.add_subparsers(dest="command", metavar="COMMAND", required=True)
    info = commands.add_parser("info", help="format, size, heads, input format, parameters, FLOPs",
                               description="File format, filters x blocks, heads, input format, parameter "
                                           "count and FLOPs per position of a net.")
    info.add_argument("net", metavar="NET", help=NET_HELP)
    info.add_argument("--input-format", type=input_format, help=INPUT_FORMAT_HELP)
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(run=run_info)
    evaluate = commands.add_parser(
        "eval", help="policy, WDL, Q and moves-left of a position",
        description="Evaluate one position as the lc0 engine's raw net output: policy over the legal moves "
                    "(softmax over legal moves only), WDL, Q = W - L, moves-left.")
    evaluate.add_argument("net", metavar="NET", help=NET_HELP)
    evaluate.add_argument("--input-format", type=input_format, help=INPUT_FORMAT_HELP)
    where = evaluate.add_mutually_exclusive_group(required=True)
    where.add_argument("--fen", help="the position (history planes are filled as lc0 does for a FEN)")
    where.add_argument("--moves", help='UCI moves from the start position, e.g. "e2e4 e7e5" (real history)')
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.set_defaults(run=run_eval)


def net_summary(path: str, input_format: int | None = None) -> dict:
    kind = net_file_kind(path)
    model = load_inference_net(path, input_format, need_input_format=False)
    if isinstance(model, OnnxNet):
        return onnx_summary(path, kind, model)
    config = model.config
    summary = {
        "path": path, "file_format": kind.value, "size": config.name, "filters": config.filters,
        "blocks": config.blocks, "se_channels": config.squeeze, "policy": config.policy.value,
        "value": config.value.value, "moves_left": config.moves_left, "activation": config.activation.value,
        "input_format": config.input_format, "parameters": count_parameters(model),
        "flops_per_position": flops_per_position(model),
    }
    if kind == NetFileKind.LC0:
        summary.update(lc0_header(path))
    return summary


def lc0_header(path: str) -> dict:
    info = read_net_info(path)
    return {"min_version": info.min_version, "network": info.network, "layer_encodings": list(info.layer_encodings)}


def onnx_summary(path: str, kind: NetFileKind, net: OnnxNet) -> dict:
    model = onnx.load_from_string(net.model)
    summary = {
        "path": path, "file_format": "lc0 protobuf (.pb.gz) embedding ONNX" if kind == NetFileKind.LC0 else kind.value,
        "size": net.config.name, "data_type": net.config.data_type, "input_format": net.config.input_format,
        "value": net.config.value.value, "moves_left": net.config.moves_left,
        "opset": model_opset(model),
        "ir_version": model.ir_version, "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "input": net.input_name, "outputs": [n for n in net.names.values() if n],
        "parameters": sum(int(np.prod(t.dims)) for t in model.graph.initializer if t.data_type in _FLOAT_TYPES),
    }
    if kind == NetFileKind.LC0:
        summary.update(lc0_header(path))
    return summary


def run_info(args: argparse.Namespace) -> int:
    summary = net_summary(args.net, args.input_format)
    if args.json:
        json.dump(summary, sys.stdout, indent=1)
        print()
        return 0
    width = max(map(len, summary))
    for key, value in summary.items():
        shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else value
        print(f"{key:<{width}}  {shown}")
    return 0


def _board(args: argparse.Namespace) -> chess.Board:
    if args.fen is not None:
        try:
            return chess.Board(args.fen)
        except ValueError as error:
            raise Lc0DistillError(f"--fen: {error}") from None
    board = chess.Board()
    for uci in args.moves.split():
        try:
            board.push_uci(uci)
        except ValueError:
            raise Lc0DistillError(f"--moves: {uci!r} is not a legal move in {board.fen()}") from None
    return board


def run_eval(args: argparse.Namespace) -> int:
    board = _board(args)
    evaluation = evaluate_boards(load_inference_net(args.net, args.input_format), [board])[0]
    if args.json:
        json.dump(evaluation.to_json(), sys.stdout, indent=1)
        print()
        return 0
    print(board.fen())
    if evaluation.wdl:
        w, d, l = evaluation.wdl
        print(f"WDL {w:.4f} {d:.4f} {l:.4f}   Q {evaluation.q:+.4f}")
    else:
        print(f"Q {evaluation.q:+.4f}")
    if evaluation.moves_left is not None:
        print(f"moves left {evaluation.moves_left:.1f} plies")
    for move, probability in list(evaluation.policy.items())[:10]:
        print(f"  {move:<6} {probability:.4f}")
    return 0
