"""lc0 network files that embed an ONNX model instead of weights (`NETWORK_ONNX`, FORMATS §5.2).

lc0's ONNX backends (onnx-cpu, onnx-cuda, onnx-trt, onnx-dml, ...) run these files as they are. The Net
carries the serialized ModelProto, its data type and the names of its input and outputs; the format fields
follow lc0's onnx2leela: policy always POLICY_CLASSICAL (the gather to 1858 moves is inside the graph),
min_version 0.28, magic 0x1c0, no `weights`. This module handles the container only; the graph is built in
lc0distill/export/onnx_graph.py.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import IntEnum

from lc0distill.lc0 import proto
from lc0distill.lc0.weights import MAGIC, NF, WeightsError, open_net

ONNX_MIN_VERSION = (0, 28, 0)


class OnnxDataType(IntEnum):
    """OnnxModel.data_type: the element type of the input and outputs (the numbers of ONNX TensorProto)."""

    FLOAT = 1
    FLOAT16 = 10
    BFLOAT16 = 16


@dataclass(frozen=True)
class EmbeddedOnnx:
    """What an lc0 ONNX net file holds besides the Net header."""

    model: bytes  # serialized onnx.ModelProto
    data_type: OnnxDataType
    input_planes: str
    output_policy: str
    output_wdl: str | None  # exactly one of output_wdl / output_value
    output_value: str | None
    output_mlh: str | None
    input_format: int


def onnx_net_message(embedded: EmbeddedOnnx, license: str = "", training_steps: int | None = None):
    """The Net message lc0's onnx backends load: format fields as onnx2leela writes them, no weights."""
    if (embedded.output_wdl is None) == (embedded.output_value is None):
        raise ValueError("an lc0 ONNX net has exactly one of a WDL and a value output")
    net = proto.Net(magic=MAGIC, license=license)
    net.min_version.major, net.min_version.minor, net.min_version.patch = ONNX_MIN_VERSION
    wdl = embedded.output_wdl is not None
    net.format.network_format.CopyFrom(NF(
        input=embedded.input_format,
        output=NF.OUTPUT_WDL if wdl else NF.OUTPUT_CLASSICAL,
        network=NF.NETWORK_ONNX,
        policy=NF.POLICY_CLASSICAL,
        value=NF.VALUE_WDL if wdl else NF.VALUE_CLASSICAL,
        moves_left=NF.MOVES_LEFT_V1 if embedded.output_mlh else NF.MOVES_LEFT_NONE,
    ))
    if training_steps is not None:
        net.training_params.training_steps = training_steps
    onnx = net.onnx_model
    onnx.model = embedded.model
    onnx.data_type = int(embedded.data_type)
    onnx.input_planes = embedded.input_planes
    onnx.output_policy = embedded.output_policy
    for field in ("output_wdl", "output_value", "output_mlh"):
        if getattr(embedded, field):
            setattr(onnx, field, getattr(embedded, field))
    return net


def is_onnx_net(net) -> bool:
    return net.format.network_format.network == NF.NETWORK_ONNX


def embedded_onnx(net, path: str | os.PathLike) -> EmbeddedOnnx:
    """The ONNX part of a NETWORK_ONNX Net message, checked as lc0 checks it."""
    if not is_onnx_net(net) or not net.HasField("onnx_model"):
        raise WeightsError(path, "not an lc0 ONNX net (network format NETWORK_ONNX with an onnx_model)")
    onnx = net.onnx_model
    missing = [f for f in ("model", "input_planes", "output_policy") if not onnx.HasField(f)]
    if missing:
        raise WeightsError(path, f"onnx_model lacks {', '.join(missing)}")
    if onnx.HasField("output_wdl") == onnx.HasField("output_value"):
        raise WeightsError(path, "onnx_model must name exactly one of output_wdl and output_value")
    try:
        data_type = OnnxDataType(onnx.data_type or OnnxDataType.FLOAT)
    except ValueError:
        raise WeightsError(path, f"onnx_model.data_type {onnx.data_type} is not FLOAT, FLOAT16 or BFLOAT16") from None
    return EmbeddedOnnx(
        model=onnx.model, data_type=data_type, input_planes=onnx.input_planes, output_policy=onnx.output_policy,
        output_wdl=onnx.output_wdl if onnx.HasField("output_wdl") else None,
        output_value=onnx.output_value if onnx.HasField("output_value") else None,
        output_mlh=onnx.output_mlh if onnx.HasField("output_mlh") else None,
        input_format=net.format.network_format.input or 1,
    )


def read_onnx_net(path: str | os.PathLike) -> EmbeddedOnnx:
    return embedded_onnx(open_net(path), path)
