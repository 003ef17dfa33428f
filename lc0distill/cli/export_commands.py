"""`lc0distill export`: write a net for engine use (ONNX, lc0 .pb.gz, or ONNX inside .pb.gz), checked first."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lc0distill.checks import check_finite_net
from lc0distill.cli.arguments import input_format, non_negative_float, positive_int
from lc0distill.errors import Lc0DistillError
from lc0distill.export.check_positions import DEFAULT_POSITIONS
from lc0distill.export.exporter import EXPORT_STAGES, ExportOptions, ExportTarget, convert_onnx_net, export_net
from lc0distill.export.names import DEFAULT_OPSET
from lc0distill.export.runtime import OnnxNet
from lc0distill.lc0.weights import Encoding
from lc0distill.models.store import model_from_state, read_state
from lc0distill.nets import NetFileKind, load_inference_net, net_file_kind
from lc0distill.progress import track


def register(groups: argparse._SubParsersAction) -> None:
    export = groups.add_parser(
        "export", help="write a net for the lc0 engine or ONNX runtimes, checked against PyTorch",
        description="Export a net: --to onnx writes the ONNX graph lc0's leela2onnx writes (input /input/planes, "
                    "outputs /output/policy, /output/wdl or /output/value, /output/mlh; dynamic batch axis "
                    "'batch'); --to lc0 writes lc0's native .pb.gz; --to lc0-onnx writes a .pb.gz embedding the "
                    "ONNX model, for lc0's onnx-* backends. Every export is run on real positions and compared "
                    "with the PyTorch net first (onnx.checker + onnxruntime for ONNX, our lc0 reader for .pb.gz); "
                    "nothing is written if the difference exceeds the tolerance.")
    export.add_argument("net", metavar="NET", help="an lc0distill checkpoint or net (.pt) or an lc0 .pb.gz; an ONNX "
                                                   "net (.onnx or lc0 ONNX .pb.gz) can be moved between the two "
                                                   "ONNX containers")
    export.add_argument("--to", required=True, choices=[t.value for t in ExportTarget], help="what to write")
    export.add_argument("--out", required=True, metavar="FILE", help="the file to write (atomically)")
    export.add_argument("--fp16", action="store_true",
                        help="float16 weights, input and outputs (ONNX); FLOAT16 layers (lc0, needs lc0 >= 0.33)")
    export.add_argument("--opset", type=int, help=f"ONNX opset, 9-22 (default: lc0's {DEFAULT_OPSET})")
    export.add_argument("--encoding", choices=[e.value for e in Encoding],
                        help="layer encoding of --to lc0 (default linear16, as lc0's trainers write)")
    export.add_argument("--tolerance", type=non_negative_float,
                        help="largest accepted output difference (default 1e-4 fp32, 0.05 fp16 and 16-bit lc0 files)")
    export.add_argument("--check-data", nargs="+", metavar="PATH",
                        help="check on these chunks instead of the built-in positions")
    export.add_argument("--check-positions", type=positive_int,
                        help=f"positions to check on (default {DEFAULT_POSITIONS})")
    export.add_argument("--input-format", type=input_format, help="input format of a raw .onnx that does not say it")
    export.add_argument("--license", default="", help="license text stored in .pb.gz files (default: none)")
    export.add_argument("--json", action="store_true", help="print one JSON object")
    export.set_defaults(run=run_export)


_CONVERSION_IGNORES = ("fp16", "opset", "encoding", "tolerance", "check_data", "check_positions")


def _refuse(args: argparse.Namespace, options: tuple[str, ...], why: str) -> None:
    """Options that would be silently ignored for this source are an error instead."""
    given = [f"--{name.replace('_', '-')}" for name in options if getattr(args, name) not in (None, False)]
    if given:
        raise Lc0DistillError(f"{args.net}: {', '.join(given)} cannot apply here ({why})")


def run_export(args: argparse.Namespace) -> int:
    target = ExportTarget(args.to)
    steps = None
    if net_file_kind(args.net) == NetFileKind.TORCH:  # a checkpoint knows its step: lc0 files record it
        state = read_state(args.net)
        net, steps = model_from_state(state, args.net), state.get("step")
    else:
        net = load_inference_net(args.net, args.input_format)
    if isinstance(net, OnnxNet):
        _refuse(args, _CONVERSION_IGNORES, "an ONNX net is copied unchanged between containers")
        report = convert_onnx_net(net, args.out, target, args.license)
    else:
        _refuse(args, ("input_format",), "the net says its own input format")
        options = ExportOptions(target=target, fp16=args.fp16, opset=args.opset or DEFAULT_OPSET,
                                encoding=Encoding(args.encoding) if args.encoding else None,
                                tolerance=args.tolerance, check_data=args.check_data,
                                check_positions=args.check_positions or DEFAULT_POSITIONS, license=args.license,
                                training_steps=steps)
        check_finite_net(net, args.net)
        with track(f"export {Path(args.out).name}", total=EXPORT_STAGES, unit="stages") as bar:
            report = export_net(net, args.out, options, stage=lambda name: bar.advance(info=name))
            bar.update(EXPORT_STAGES, info="done")
    if args.json:
        json.dump(report.to_json(), sys.stdout, indent=1)
        print()
        return 0
    kind = {"onnx": f"ONNX (opset {report.opset}, {report.data_type})",
            "lc0-onnx": f"lc0 .pb.gz embedding ONNX (opset {report.opset}, {report.data_type})",
            "lc0": f"lc0 .pb.gz ({report.data_type} layers)"}[report.target]
    print(f"wrote {report.path}: {kind}, {report.bytes:,} bytes")
    if report.check is not None:
        print(f"checked against PyTorch: {report.check.describe()} (tolerance {report.tolerance:g})")
    for note in report.notes:
        print(note)
    return 0
