"""`lc0distill export`: a net to ONNX, to lc0's `.pb.gz`, or to a `.pb.gz` embedding ONNX; checked before writing.

Every export is run on a batch of real positions and compared with the PyTorch net it came from (ONNX:
onnx.checker, then onnxruntime; lc0: the file read back through our reader, which computes what the lc0
engine computes). Nothing is written when the difference exceeds the tolerance. Nets that already are ONNX
(a `.onnx` file or an lc0 ONNX `.pb.gz`) can be moved between the two containers, as lc0's leela2onnx and
onnx2leela do.
"""

from __future__ import annotations

import copy
import gzip
import os
from typing import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import torch

from lc0distill.errors import Lc0DistillError
from lc0distill.export.check_positions import DEFAULT_POSITIONS, check_planes
from lc0distill.export.names import DEFAULT_OPSET
from lc0distill.export.runtime import OnnxNet, built_onnx_net
from lc0distill.export.validate import FP16_TOLERANCE, FP32_TOLERANCE, OutputDiff, non_finite_outputs, output_diff
from lc0distill.fileio import write_atomic
from lc0distill.lc0 import proto
from lc0distill.lc0.onnx_net import onnx_net_message
from lc0distill.lc0.weights import Encoding, net_file_bytes, net_from_message, net_message
from lc0distill.models.net import SEResNet


class ExportTarget(str, Enum):
    ONNX = "onnx"  # a raw ONNX model, as lc0's leela2onnx writes
    LC0 = "lc0"  # lc0's native .pb.gz (weights)
    LC0_ONNX = "lc0-onnx"  # a .pb.gz of format NETWORK_ONNX embedding the ONNX model, for lc0's onnx backends


# Reading back a 16-bit lc0 file changes the weights by up to half a quantisation step: outputs move by
# about 1e-3 (LINEAR16, FLOAT16) to 1e-2 (BFLOAT16) on trained nets.
LC0_TOLERANCE = {Encoding.FLOAT32: FP32_TOLERANCE, Encoding.LINEAR16: 0.05, Encoding.FLOAT16: 0.05,
                 Encoding.BFLOAT16: 0.25}


class ExportCheckFailed(Lc0DistillError):
    """The exported net does not compute what the PyTorch net computes (nothing was written)."""


@dataclass(frozen=True)
class ExportOptions:
    target: ExportTarget
    fp16: bool = False
    opset: int = DEFAULT_OPSET
    encoding: Encoding | None = None  # lc0 target; default LINEAR16 (FLOAT16 with fp16)
    tolerance: float | None = None  # default by target and precision
    check_data: list[str] | None = None  # chunks to check on instead of the built-in positions
    check_positions: int = DEFAULT_POSITIONS
    license: str = ""
    training_steps: int | None = None


@dataclass(frozen=True)
class ExportReport:
    path: str
    target: str
    bytes: int
    data_type: str
    opset: int | None
    encoding: str | None
    check: OutputDiff | None
    tolerance: float | None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"path": self.path, "target": self.target, "bytes": self.bytes, "data_type": self.data_type,
                "opset": self.opset, "encoding": self.encoding, "tolerance": self.tolerance,
                "check": self.check.to_json() if self.check else None, "notes": self.notes}


def _lc0_encoding(options: ExportOptions) -> Encoding:
    if options.encoding is not None:
        if options.fp16 and options.encoding != Encoding.FLOAT16:
            raise Lc0DistillError(f"--fp16 and --encoding {options.encoding.value} disagree (--fp16 means float16)")
        return options.encoding
    return Encoding.FLOAT16 if options.fp16 else Encoding.LINEAR16


def _check(diff: OutputDiff, tolerance: float, what: str) -> None:
    if not diff.worst <= tolerance:  # also catches NaN
        raise ExportCheckFailed(f"{what} does not match the PyTorch net: {diff.describe()} "
                                f"(tolerance {tolerance:g}); nothing written")


EXPORT_STAGES = 5  # stage() calls of export_net: positions, build, check, compare, write


def _no_stage(name: str) -> None:
    pass


def export_net(net: SEResNet, out: str | os.PathLike, options: ExportOptions,
               stage: Callable[[str], None] = _no_stage) -> ExportReport:
    """Export, check against `net` on real positions, then write `out` atomically. `stage(name)` is called as
    each of the EXPORT_STAGES stages begins (progress)."""
    net = copy.deepcopy(net).float().cpu().eval()  # the caller's net keeps its device, dtype and mode
    stage("check positions")
    planes = check_planes(net.config.input_format, options.check_data, options.check_positions)
    with torch.no_grad():
        reference = net(planes)
    broken = non_finite_outputs(reference)
    if broken:
        raise ExportCheckFailed(f"the net's {' and '.join(broken)} outputs are not finite (NaN or infinity) on the "
                                f"{len(planes)} check positions: a net that cannot play; nothing written")
    if options.target == ExportTarget.LC0:
        return _export_lc0(net, out, options, planes, reference, stage)
    stage("build the ONNX graph")
    import onnx  # here, not at the top: loading onnx is most of a command's start-up

    from lc0distill.export.onnx_graph import build_onnx

    model = build_onnx(net, options.opset, options.fp16)
    stage("onnx.checker")
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as error:  # a bug here, not a user error: say so plainly
        raise ExportCheckFailed(f"onnx.checker rejects the exported model: {error}") from None
    data = model.SerializeToString()
    stage("onnxruntime against PyTorch")
    runtime = built_onnx_net(data, net.config, str(out))
    tolerance = options.tolerance if options.tolerance is not None else (FP16_TOLERANCE if options.fp16 else FP32_TOLERANCE)
    diff = output_diff(reference, runtime(planes))
    _check(diff, tolerance, "onnxruntime on the exported model")
    if options.target == ExportTarget.LC0_ONNX:
        data = net_file_bytes(onnx_net_message(runtime.embedded(), options.license, options.training_steps))
    stage("write")
    write_atomic(out, data)
    return ExportReport(path=str(out), target=options.target.value, bytes=len(data),
                        data_type="float16" if options.fp16 else "float32", opset=options.opset, encoding=None,
                        check=diff, tolerance=tolerance)


def _export_lc0(net: SEResNet, out: str | os.PathLike, options: ExportOptions, planes: torch.Tensor,
                reference, stage: Callable[[str], None]) -> ExportReport:
    encoding = _lc0_encoding(options)
    stage("encode the weights")
    data = net_file_bytes(net_message(net, encoding, options.license, options.training_steps))
    stage("read back")
    reread = net_from_message(proto.Net.FromString(gzip.decompress(data)), out)  # through the reader, as saved
    with torch.no_grad():
        diff = output_diff(reference, reread(planes))
    tolerance = options.tolerance if options.tolerance is not None else LC0_TOLERANCE[encoding]
    _check(diff, tolerance, f"the {encoding.value} lc0 file read back")
    stage("compared; write")
    write_atomic(out, data)
    return ExportReport(path=str(out), target=options.target.value, bytes=len(data), data_type=encoding.value,
                        opset=None, encoding=encoding.value, check=diff, tolerance=tolerance)


def convert_onnx_net(source: OnnxNet, out: str | os.PathLike, target: ExportTarget, license: str = "") -> ExportReport:
    """Move an ONNX net between a raw .onnx file and an lc0 ONNX .pb.gz (leela2onnx / onnx2leela)."""
    if target == ExportTarget.LC0:
        raise Lc0DistillError(f"{source.path} is an ONNX net: it has no lc0 weights to write (use --to onnx "
                              f"or --to lc0-onnx)")
    data = source.model
    if target == ExportTarget.LC0_ONNX:
        data = net_file_bytes(onnx_net_message(source.embedded(), license))
    write_atomic(out, data)
    return ExportReport(path=str(Path(out)), target=target.value, bytes=len(data),
                        data_type=source.config.data_type, opset=source.opset, encoding=None, check=None, tolerance=None,
                        notes=["the model is copied unchanged (no PyTorch net to compare with)"])
