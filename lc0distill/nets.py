"""Open any net a command is given: an lc0 `.pb.gz` (weights or embedded ONNX), an lc0distill net file /
checkpoint (`.pt`), or a raw `.onnx` model.

`load_net` gives a trainable SEResNet; `load_inference_net` also accepts ONNX nets, run with onnxruntime behind
the same call (evaluation, `net eval`, teachers, export sources), and lc0 nets whose body or policy encoders
lc0distill does not build (attention bodies): converted once by the lc0 engine's leela2onnx, then ONNX.
"""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path

from lc0distill.errors import Lc0DistillError
from lc0distill.export.runtime import OnnxNet, is_onnx_file, open_embedded_onnx, open_onnx_file
from lc0distill.lc0.onnx_net import embedded_onnx, is_onnx_net
from lc0distill.engine.onnx_conversion import converted_onnx
from lc0distill.lc0.weights import needs_onnx, net_from_message, open_net, read_net
from lc0distill.models.net import SEResNet
from lc0distill.models.store import load_model

TORCH_FILE_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive


class NetFileKind(str, Enum):
    TORCH = "lc0distill (.pt)"
    LC0 = "lc0 protobuf (.pb.gz)"
    ONNX = "ONNX"


def net_file_kind(path: str | os.PathLike) -> NetFileKind:
    """What a net file is, from its first bytes (anything unrecognised is read as lc0, which names the problem)."""
    if not Path(path).is_file():
        raise Lc0DistillError(f"{path}: no such net file" if not Path(path).exists() else
                              f"{path}: not a regular file (a folder, FIFO or device): not read")
    with open(path, "rb") as handle:
        if handle.read(4) == TORCH_FILE_MAGIC:
            return NetFileKind.TORCH
    return NetFileKind.ONNX if is_onnx_file(path) else NetFileKind.LC0


def is_lc0_file(path: str | os.PathLike) -> bool:
    return net_file_kind(path) == NetFileKind.LC0


def load_net(path: str | os.PathLike) -> SEResNet:
    """A trainable SEResNet from a .pt or an lc0 weights .pb.gz."""
    kind = net_file_kind(path)
    if kind == NetFileKind.TORCH:
        return load_model(path)
    if kind == NetFileKind.ONNX:
        raise Lc0DistillError(f"{path}: an ONNX model can be evaluated or teach, but not be trained: give the "
                              f".pt or .pb.gz it was exported from")
    return read_net(path)


def load_inference_net(path: str | os.PathLike, input_format: int | None = None,
                       need_input_format: bool = True, threads: int = 0, device: str = "cpu") -> SEResNet | OnnxNet:
    """Any net, for evaluation. `input_format` is needed only for raw ONNX files that do not say theirs (with
    need_input_format=False such a file opens with input_format None: enough to describe it). `threads` and
    `device` ("cpu", "cuda:N") are onnxruntime's for ONNX nets (threads 0: all cores)."""
    kind = net_file_kind(path)
    if kind == NetFileKind.TORCH:
        return load_model(path)
    if kind == NetFileKind.ONNX:
        return open_onnx_file(path, input_format, threads, need_input_format=need_input_format, device=device)
    message = open_net(path)
    if is_onnx_net(message):
        return open_embedded_onnx(embedded_onnx(message, path), path, threads, device)
    why = needs_onnx(message)
    if why is not None:  # lc0's own conversion, cached beside the net
        converted = converted_onnx(path, why)
        return open_onnx_file(converted, message.format.network_format.input or 1, threads, device=device)
    return net_from_message(message, path)


def load_fast_inference_net(path: str | os.PathLike, runtime: str = "onnxruntime",
                            threads: int = 0) -> SEResNet | OnnxNet:
    """load_inference_net for many small batches (matches, self-play): a PyTorch net is exported to ONNX and
    run by onnxruntime (2-2.5x PyTorch at batch 4-16 on a CPU) unless `runtime` is "pytorch"."""
    from lc0distill.export.onnx_graph import build_onnx
    from lc0distill.export.runtime import built_onnx_net

    net = load_inference_net(path, threads=threads)
    if runtime == "onnxruntime" and isinstance(net, SEResNet):
        net = built_onnx_net(build_onnx(net).SerializeToString(), net.config, str(path), threads)
    return net


def lc0_weights_file(path: str | os.PathLike, scratch: Path) -> Path:
    """A net as a file the lc0 engine loads: an lc0 .pb.gz as it is, a .pt net or checkpoint written to
    `scratch` as LINEAR16 .pb.gz (as runs write their final net); an .onnx file is an error."""
    kind = net_file_kind(path)
    if kind == NetFileKind.ONNX:
        raise Lc0DistillError(f"{path}: an .onnx file: lc0's blas backend reads .pb.gz nets (export it with "
                              f"lc0distill export {path} --to lc0-onnx, for an lc0 built with onnx)")
    if kind == NetFileKind.LC0:
        return Path(path)
    from lc0distill.lc0.weights import write_net

    write_net(load_model(path), scratch)
    return scratch
