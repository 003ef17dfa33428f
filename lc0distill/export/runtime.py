"""Exported nets run with onnxruntime, behind the same call as SEResNet: planes (B, 112, 8, 8) -> NetOutput.

Reads raw ONNX files (ours, or lc0's `leela2onnx` output) and lc0 `.pb.gz` files that embed ONNX. Planes are
given as the lc0 engine feeds them (what the exported graph expects); they are cast to the model's input
type (float16 for --fp16 exports) and the outputs come back as float32 torch tensors. The WDL output holds
probabilities; NetOutput wants logits, so it gets their logarithm (softmax(log p) = p).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from google.protobuf.message import DecodeError

from lc0distill.chess.input_formats import SUPPORTED_INPUT_FORMATS
from lc0distill.errors import Lc0DistillError
from lc0distill.export.names import (
    INPUT_NAME, METADATA_INPUT_FORMAT, METADATA_NET, MLH_NAME, POLICY_NAME, VALUE_NAME, WDL_NAME,
)
from lc0distill.lc0.onnx_net import EmbeddedOnnx, OnnxDataType
from lc0distill.models.config import NetConfig, ValueHead
from lc0distill.models.net import NetOutput

_TINY = np.finfo(np.float32).tiny  # log(0) would make -inf logits (and NaN cross-entropies)


@dataclass(frozen=True)
class OnnxNetInfo:
    """The parts of a NetConfig that evaluating an ONNX net needs."""

    name: str | None  # its size as lc0distill's export wrote it (filters x blocks); None for other ONNX files
    input_format: int | None  # None: a raw ONNX file that does not say it (it can be described, not evaluated)
    value: ValueHead
    moves_left: bool
    data_type: str  # float32 / float16


def providers(device: str = "cpu") -> list:
    """onnxruntime providers for a torch-style device name: "cpu", or "cuda[:N]" when this onnxruntime build
    has CUDA (onnxruntime-gpu), with CPU as the fallback for any node CUDA lacks."""
    import onnxruntime as ort  # here, not at the top: commands that run no ONNX do not load it

    if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        index = int(device.partition(":")[2] or 0)
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxNet:
    """An ONNX chess net in onnxruntime. Call it like SEResNet; `.run(planes)` gives the raw named outputs."""

    def __init__(self, model: bytes, *, path: str, input_name: str, policy: str, wdl: str | None,
                 value: str | None, mlh: str | None, input_format: int | None, threads: int = 0,
                 device: str = "cpu"):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: onnxruntime's default (all cores)
        options.log_severity_level = 4  # fatal only: its errors are raised, and reported as one line
        try:
            self.session = ort.InferenceSession(model, options, providers=providers(device))
        except Exception as error:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise Lc0DistillError(f"{path}: onnxruntime cannot load the model ({str(error).splitlines()[0]})") from None
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = {o.name for o in self.session.get_outputs()}
        missing = [n for n in (input_name,) if n not in inputs] + [n for n in (policy, wdl, value, mlh)
                                                                   if n and n not in outputs]
        if missing:
            raise Lc0DistillError(f"{path}: the graph has no tensor named {', '.join(missing)} "
                                  f"(inputs: {', '.join(inputs)}; outputs: {', '.join(sorted(outputs))})")
        self.model = model
        self.path = path
        self.input_name = input_name
        self.names = {"policy": policy, "wdl": wdl, "value": value, "mlh": mlh}
        self.input_dtype = _input_type(path, inputs[input_name].type)
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.config = OnnxNetInfo(name=metadata.get(METADATA_NET), input_format=input_format,
                                  value=ValueHead.WDL if wdl else ValueHead.SCALAR, moves_left=mlh is not None,
                                  data_type=np.dtype(self.input_dtype).name)

    def eval(self) -> "OnnxNet":  # nothing to switch: lets callers treat it like an nn.Module
        return self

    @property
    def opset(self) -> int | None:
        import onnx

        return model_opset(onnx.load_from_string(self.model))

    def embedded(self) -> EmbeddedOnnx:
        """The model as an lc0 ONNX net file holds it: its bytes unchanged, its names, type and input format."""
        if self.config.input_format is None:
            raise Lc0DistillError(f"{self.path}: the ONNX file does not say its input format: pass --input-format N")
        return EmbeddedOnnx(
            model=self.model, data_type=OnnxDataType.FLOAT16 if self.input_dtype == np.float16 else OnnxDataType.FLOAT,
            input_planes=self.input_name, output_policy=self.names["policy"], output_wdl=self.names["wdl"],
            output_value=self.names["value"], output_mlh=self.names["mlh"], input_format=self.config.input_format)

    def run(self, planes: np.ndarray) -> dict[str, np.ndarray]:
        """Raw outputs by role (policy, wdl, value, mlh) for (B, 112, 8, 8) planes, as float32."""
        wanted = {role: name for role, name in self.names.items() if name}
        try:
            results = self.session.run(list(wanted.values()), {self.input_name: planes.astype(self.input_dtype)})
        except Exception as error:  # a damaged graph fails only when run (onnxruntime's own exception types)
            raise Lc0DistillError(f"{self.path}: onnxruntime cannot run the model "
                                  f"({str(error).splitlines()[0][:300]})") from None
        return {role: np.asarray(r, dtype=np.float32) for role, r in zip(wanted, results)}

    def __call__(self, planes: torch.Tensor) -> NetOutput:
        raw = self.run(planes.detach().float().cpu().numpy())
        out = {role: torch.from_numpy(a).to(planes.device) for role, a in raw.items()}
        wdl = out.get("wdl")
        return NetOutput(
            policy_logits=out["policy"],
            wdl_logits=torch.log(wdl.clamp_min(_TINY)) if wdl is not None else None,
            value=out["value"][:, 0] if "value" in out else None,
            moves_left=out["mlh"][:, 0] if "mlh" in out else None,
        )


def model_opset(model: onnx.ModelProto) -> int | None:
    """The opset of the default (ai.onnx) domain."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def _input_type(path: str, type_name: str) -> type:
    types = {"tensor(float)": np.float32, "tensor(float16)": np.float16}
    if type_name not in types:
        raise Lc0DistillError(f"{path}: input type {type_name} is not supported (float and float16 are)")
    return types[type_name]


def is_onnx_file(path: str | os.PathLike) -> bool:
    """A raw ONNX ModelProto (by name, or by its first field: ir_version, tag 0x08)."""
    if str(path).endswith(".onnx"):
        return True
    with open(path, "rb") as handle:
        return handle.read(1) == b"\x08"


def open_onnx_file(path: str | os.PathLike, input_format: int | None = None, threads: int = 0,
                   need_input_format: bool = True, device: str = "cpu") -> OnnxNet:
    """A raw ONNX file with lc0's tensor names. lc0's own files do not say their input format: pass it."""
    data = Path(path).read_bytes()  # kept as they are: a converted file carries the same model bytes
    try:
        import onnx

        model = onnx.load_from_string(data)
    except Exception as error:  # DecodeError and friends
        raise Lc0DistillError(f"{path}: not an ONNX model ({str(error).splitlines()[0]})") from None
    check_finite_weights(model, path)
    metadata = {p.key: p.value for p in model.metadata_props}
    if input_format is None:
        if METADATA_INPUT_FORMAT in metadata:
            text = metadata[METADATA_INPUT_FORMAT]
            if not text.strip().isdigit() or int(text) not in SUPPORTED_INPUT_FORMATS:
                raise Lc0DistillError(f"{path}: metadata {METADATA_INPUT_FORMAT} {text!r} is not an input format "
                                      f"lc0distill knows ({', '.join(map(str, sorted(SUPPORTED_INPUT_FORMATS)))})")
            input_format = int(text)
        elif need_input_format:
            raise Lc0DistillError(f"{path}: the ONNX file does not say its input format (lc0's leela2onnx files "
                                  f"do not): pass --input-format N (1 = classical)")
    outputs = {o.name for o in model.graph.output}
    inputs = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    net = OnnxNet(data, path=str(path), input_name=INPUT_NAME if INPUT_NAME in inputs
                  else (inputs[0] if len(inputs) == 1 else INPUT_NAME), policy=POLICY_NAME,
                  wdl=WDL_NAME if WDL_NAME in outputs else None,
                  value=VALUE_NAME if VALUE_NAME in outputs and WDL_NAME not in outputs else None,
                  mlh=MLH_NAME if MLH_NAME in outputs else None, input_format=input_format, threads=threads,
                  device=device)
    if net.names["wdl"] is None and net.names["value"] is None:
        raise Lc0DistillError(f"{path}: no {WDL_NAME} or {VALUE_NAME} output (outputs: {', '.join(sorted(outputs))})")
    return net


def check_finite_weights(model: onnx.ModelProto, path: str | os.PathLike) -> None:
    """Every floating-point initializer and Constant of the graph finite: a NaN in a weight would give NaN
    outputs on some positions only (a net file never gets trusted on its word)."""
    from onnx import numpy_helper

    tensors = [(t.name, t) for t in model.graph.initializer]
    tensors += [(node.output[0] if node.output else node.name, attribute.t) for node in model.graph.node
                if node.op_type == "Constant" for attribute in node.attribute if attribute.name == "value"]
    for name, tensor in tensors:
        try:
            values = numpy_helper.to_array(tensor)
        except Exception:  # noqa: BLE001 - external or odd data: onnxruntime says what is wrong with it
            continue
        if values.dtype.kind == "f" and not np.isfinite(values.astype(np.float32)).all():
            raise Lc0DistillError(f"{path}: weight {name} holds non-finite values (NaN or infinity)")


def built_onnx_net(model: bytes, config: NetConfig, path: str, threads: int = 0) -> OnnxNet:
    """An ONNX model made by build_onnx from a net with this config (its outputs follow from the heads)."""
    return OnnxNet(model, path=path, input_name=INPUT_NAME, policy=POLICY_NAME,
                   wdl=WDL_NAME if config.value == ValueHead.WDL else None,
                   value=VALUE_NAME if config.value == ValueHead.SCALAR else None,
                   mlh=MLH_NAME if config.moves_left else None, input_format=config.input_format, threads=threads)


def open_embedded_onnx(embedded: EmbeddedOnnx, path: str | os.PathLike, threads: int = 0,
                       device: str = "cpu") -> OnnxNet:
    if embedded.data_type == OnnxDataType.BFLOAT16:
        raise Lc0DistillError(f"{path}: bfloat16 ONNX nets are not supported here (float32 and float16 are)")
    try:
        import onnx

        check_finite_weights(onnx.load_from_string(embedded.model), path)
    except DecodeError:
        pass  # onnxruntime names what is wrong with the embedded model when it opens it
    return OnnxNet(embedded.model, path=str(path), input_name=embedded.input_planes, policy=embedded.output_policy,
                   wdl=embedded.output_wdl, value=embedded.output_value, mlh=embedded.output_mlh,
                   input_format=embedded.input_format, threads=threads, device=device)
