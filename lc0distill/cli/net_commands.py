"""`lc0distill net ...`: look into nets, evaluate positions with them (in PyTorch or in lc0), and check that
the lc0 engine reads a net file as lc0distill does."""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import chess
import numpy as np
import torch

from lc0distill.checks import check_finite_net
from lc0distill.cli import net_init
from lc0distill.cli.arguments import input_format, non_negative_float, positive_int
from lc0distill.engine.binary import uci_search
from lc0distill.engine.check import DEFAULT_TOLERANCE, check_net, lc0_net_path
from lc0distill.engine.evaluation import DEFAULT_BACKEND, lc0_evaluations
from lc0distill.engine.locate import find_engine
from lc0distill.engine.positions import DEFAULT_POSITIONS
from lc0distill.errors import Lc0DistillError
from lc0distill.export.runtime import OnnxNet, model_opset
from lc0distill.lc0.weights import attention_body, read_net_info
from lc0distill.models.config import Body, PolicyHead
from lc0distill.models.inference import evaluate_boards
from lc0distill.models.net import count_parameters, flops_per_position
from lc0distill.nets import NetFileKind, load_inference_net, net_file_kind
from lc0distill.progress import track

_FLOAT_TYPES = (1, 10, 16)  # onnx.TensorProto FLOAT, FLOAT16, BFLOAT16 (onnx is loaded only where needed)

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
    evaluate.add_argument("--engine", choices=("pytorch", "lc0"), default="pytorch",
                          help="who evaluates: lc0distill's PyTorch (default), or the lc0 engine itself (its "
                               "encoder and BLAS backend, through lc0's python module; NET must be a .pb.gz; "
                               "install it with: bash tools/install_lc0.sh)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.set_defaults(run=run_eval)
    check = commands.add_parser(
        "check", help="evaluate a .pb.gz in lc0 and in PyTorch; print the largest differences",
        description="Evaluate an lc0 .pb.gz in the lc0 engine (its encoder and backend) and in lc0distill's "
                    "PyTorch on real positions with history (castling, en passant, promotions), and print the "
                    "largest differences of the policy over the legal moves, WDL, Q and moves-left, and whether "
                    "the input planes and legal moves agree. Exit 1 when a difference exceeds the tolerance; a "
                    "net lc0 refuses is reported with lc0's own message (exit 2).")
    check.add_argument("net", metavar="NET", help="an lc0 network file (.pb.gz)")
    check.add_argument("--engine", metavar="PATH",
                       help="the lc0 binary (default: $LC0_BINARY, then lc0 on PATH, then the install cache)")
    check.add_argument("--positions", type=positive_int, default=DEFAULT_POSITIONS,
                       help=f"how many built-in positions (default {DEFAULT_POSITIONS})")
    check.add_argument("--tolerance", type=non_negative_float, default=DEFAULT_TOLERANCE,
                       help=f"largest accepted difference (default {DEFAULT_TOLERANCE:g}; moves-left relative to "
                            f"max(1, plies))")
    check.add_argument("--backend", choices=("blas", "eigen"), default=DEFAULT_BACKEND,
                       help="lc0's backend (default %(default)s)")
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.set_defaults(run=run_check)
    net_init.register(commands)


def net_summary(path: str, input_format: int | None = None) -> dict:
    kind = net_file_kind(path)
    model = load_inference_net(path, input_format, need_input_format=False)
    if isinstance(model, OnnxNet):
        return onnx_summary(path, kind, model)
    config = model.config
    body = {"body": config.body.value, "heads": config.heads, "ffn_width": config.dff,
            "ffn_activation": config.ffn_activation.value, "smolgen": config.smolgen,
            "input_gating": config.input_gating, "policy_encoders": config.policy_encoders} \
        if config.body == Body.ATTENTION else {"se_channels": config.squeeze}
    summary = {
        "path": path, "file_format": kind.value, "size": config.name, "filters": config.filters,
        "blocks": config.blocks, **body, "policy": config.policy.value,
        "value": config.value.value, "moves_left": config.moves_left, "activation": config.activation.value,
        "input_format": config.input_format, "parameters": count_parameters(model),
        "flops_per_position": flops_per_position(model),
    }
    if config.policy == PolicyHead.ATTENTION:
        summary["policy_embedding"], summary["policy_d_model"] = config.policy_embedding, config.policy_d_model
    if kind == NetFileKind.LC0:
        summary.update(lc0_header(path))
    return summary


def lc0_header(path: str) -> dict:
    info = read_net_info(path)
    return {"min_version": info.min_version, "network": info.network, "layer_encodings": list(info.layer_encodings)}


def onnx_summary(path: str, kind: NetFileKind, net: OnnxNet) -> dict:
    import onnx

    model = onnx.load_from_string(net.model)
    file_format, header = kind.value, lc0_header(path) if kind == NetFileKind.LC0 else {}
    if header:
        file_format += (" embedding ONNX" if header["network"] == "NETWORK_ONNX"
                        else ", run through lc0's leela2onnx conversion")
    body = attention_body(path) if header and header["network"] != "NETWORK_ONNX" else None
    summary = {
        "path": path, "file_format": file_format,
        # lc0distill's export names its size; an attention body's is embedding x layers, from its weights;
        # another ONNX graph's is not known (None)
        "size": body.name if body is not None else net.config.name,
        **({"embedding_size": body.embedding, "encoder_layers": body.layers, "heads": body.heads} if body else {}),
        "data_type": net.config.data_type, "input_format": net.config.input_format,
        "value": net.config.value.value, "moves_left": net.config.moves_left,
        "opset": model_opset(model),
        "ir_version": model.ir_version, "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "input": net.input_name, "outputs": [n for n in net.names.values() if n],
        "parameters": sum(int(np.prod(t.dims)) for t in model.graph.initializer if t.data_type in _FLOAT_TYPES),
    }
    summary.update(header)
    return summary


def run_info(args: argparse.Namespace) -> int:
    summary = net_summary(args.net, args.input_format)
    if args.json:
        json.dump(summary, sys.stdout, indent=1)
        print()
        return 0
    width = max(map(len, summary))
    for key, value in summary.items():
        shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else \
            "unknown" if value is None else value
        print(f"{key:<{width}}  {shown}")
    return 0


_STATUS_WORDS = {
    chess.STATUS_NO_WHITE_KING: "no white king", chess.STATUS_NO_BLACK_KING: "no black king",
    chess.STATUS_TOO_MANY_KINGS: "more than one king of a colour", chess.STATUS_TOO_MANY_WHITE_PAWNS:
    "more than 8 white pawns", chess.STATUS_TOO_MANY_BLACK_PAWNS: "more than 8 black pawns",
    chess.STATUS_PAWNS_ON_BACKRANK: "pawns on the first or last rank", chess.STATUS_TOO_MANY_WHITE_PIECES:
    "more than 16 white pieces", chess.STATUS_TOO_MANY_BLACK_PIECES: "more than 16 black pieces",
    chess.STATUS_BAD_CASTLING_RIGHTS: "castling rights without the king and rook at home",
    chess.STATUS_INVALID_EP_SQUARE: "an en-passant square no pawn just passed",
    chess.STATUS_OPPOSITE_CHECK: "the side not to move is in check", chess.STATUS_EMPTY: "an empty board",
    chess.STATUS_RACE_CHECK: "a racing-kings check", chess.STATUS_RACE_OVER: "a finished race",
    chess.STATUS_RACE_MATERIAL: "racing-kings material", chess.STATUS_TOO_MANY_CHECKERS: "more than two checkers",
    chess.STATUS_IMPOSSIBLE_CHECK: "a check no last move could give",
}


def _board(args: argparse.Namespace) -> chess.Board:
    if args.fen is not None:
        try:
            board = chess.Board(args.fen)
        except ValueError as error:
            raise Lc0DistillError(f"--fen: {error}") from None
        status = board.status()
        if status != chess.STATUS_VALID:  # a net evaluates anything; an impossible position means nothing
            problems = [word for flag, word in _STATUS_WORDS.items() if status & flag] or [f"status {int(status)}"]
            raise Lc0DistillError(f"--fen {args.fen!r}: not a position of a chess game ({', '.join(problems)})")
        return board
    board = chess.Board()
    for uci in args.moves.split():
        try:
            board.push_uci(uci)
        except ValueError:
            raise Lc0DistillError(f"--moves: {uci!r} is not a legal move in {board.fen()}") from None
    return board


def run_eval(args: argparse.Namespace) -> int:
    board = _board(args)
    if args.engine == "lc0":
        if args.input_format is not None:
            raise Lc0DistillError("--input-format: lc0 reads the input format from the .pb.gz")
        evaluation = lc0_evaluations(lc0_net_path(args.net), [board])[0]
    else:
        net = load_inference_net(args.net, args.input_format)
        if isinstance(net, torch.nn.Module):
            check_finite_net(net, args.net)
        evaluation = evaluate_boards(net, [board])[0]
    _check_finite_evaluation(evaluation, args.net)
    if args.json:
        json.dump(evaluation.to_json(), sys.stdout, indent=1, allow_nan=False)
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


def _check_finite_evaluation(evaluation, path: str) -> None:
    values = [*evaluation.policy.values(), *(evaluation.wdl or ()), evaluation.q]
    if evaluation.moves_left is not None:
        values.append(evaluation.moves_left)
    if not all(math.isfinite(v) for v in values):
        raise Lc0DistillError(f"{path}: the net's outputs are non-finite (NaN or infinity) on this position: "
                              "a net that cannot be right")


def run_check(args: argparse.Namespace) -> int:
    binary = find_engine(args.engine)
    path = lc0_net_path(args.net)
    with track(f"net check {Path(path).name}", total=2, unit="stages") as bar:
        bar.update(0, info=f"{args.positions} positions in lc0 and in PyTorch")
        report = check_net(path, positions=args.positions, tolerance=args.tolerance, backend=args.backend)
        bar.update(1, info="lc0 plays a move at 1 node")
        search = uci_search(binary, path, nodes=1, backend=args.backend)  # the binary loads it too, and plays
        bar.update(2, info="done")
    engine = {**report.engine, "binary": str(binary), "version": search.engine, "uci_bestmove": search.bestmove}
    report = replace(report, engine=engine)
    if args.json:
        json.dump(report.to_json(), sys.stdout, indent=1)
        print()
        return 0 if report.ok else 1
    print(f"net        {path} (input format {report.input_format})")
    print(f"lc0        {binary} ({search.engine}): loads it, plays {search.bestmove} at 1 node")
    print(f"           raw outputs from {engine['evaluator']} ({engine['bindings']}, backend {engine['backend']})")
    left_out = f"; {report.left_out} left out: lc0 v0.31 cannot encode them (FEN without history, input format 5)" \
        if report.left_out else ""
    print(f"positions  {report.positions}{left_out}")
    print(f"planes     {'identical' if not report.planes_differ else f'DIFFER on {report.planes_differ}'}; "
          f"legal moves {'identical' if not report.legal_moves_differ else f'DIFFER on {report.legal_moves_differ}'}")
    print("max |lc0 - PyTorch|")
    rows = [("policy (legal moves)", report.policy, "policy"), ("policy logits", report.policy_logits, None),
            ("WDL", report.wdl, "wdl"), ("Q", report.q, "q"), ("moves-left (plies)", report.mlh, None),
            ("moves-left (relative)", report.mlh_relative, "mlh_relative")]
    for name, value, limited in rows:
        if value is None:
            continue
        mark = "" if limited is None else ("  ok" if value <= report.tolerance else "  ABOVE TOLERANCE")
        print(f"  {name:<22} {value:.2e}{mark}")
    verdict = "lc0 reads this net as lc0distill does" if report.ok else "lc0 and lc0distill DISAGREE on this net"
    print(f"{'OK' if report.ok else 'FAIL'}: {verdict} (tolerance {report.tolerance:g})")
    return 0 if report.ok else 1
