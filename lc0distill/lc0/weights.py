"""Read and write lc0 network files (.pb.gz) for SEResNet (FORMATS.md §4). lc0's field names live here only.

Reading decodes every layer (LINEAR16, FLOAT16, BFLOAT16, FLOAT32), folds a conv bias into the batch-norm
mean, applies lc0's fix-ups for old files, checks every tensor's size and builds the matching SEResNet.
Writing walks the same tree: LINEAR16 by default as lc0's trainers write, FLOAT16/FLOAT32 on request
(those need lc0 >= 0.33, and min_version says so).
"""

from __future__ import annotations

import gzip
import math
import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np
import torch
from google.protobuf.message import DecodeError
from google.protobuf.unknown_fields import UnknownFieldSet
from pydantic import ValidationError

from lc0distill.chess.input_formats import is_hectoplies
from lc0distill.errors import Lc0DistillError
from lc0distill.fileio import write_atomic
from lc0distill.gzipio import GzipError, gunzip
from lc0distill.lc0 import proto
from lc0distill.lc0.attention_weights import (
    MIN_VERSION, attention_config, attention_network_format, fill_attention_weights, is_attention,
    is_supported_attention, load_attention_weights,
)
from lc0distill.models.attention import AttentionNet
from lc0distill.models.blocks import BN_EPSILON, ConvBN
from lc0distill.models.config import Activation, NetConfig, PolicyHead, ValueHead, check_net_size
from lc0distill.models.net import RULE50_INPUT_SCALE, RULE50_PLANE, SEResNet

MAGIC = 0x1C0
NF = proto.NetworkFormat


class WeightsError(Lc0DistillError):
    def __init__(self, path: str | os.PathLike, message: str):
        super().__init__(f"{path}: {message}")


class Encoding(str, Enum):
    LINEAR16 = "linear16"
    FLOAT16 = "float16"
    BFLOAT16 = "bfloat16"
    FLOAT32 = "float32"


_LAYER_ENCODING = {Encoding.LINEAR16: proto.Layer.LINEAR16, Encoding.FLOAT16: proto.Layer.FLOAT16,
                   Encoding.BFLOAT16: proto.Layer.BFLOAT16, Encoding.FLOAT32: proto.Layer.FLOAT32}


# ------------------------------------------------------------------------------------------- layers

def decode_layer(layer, name: str, path: str) -> np.ndarray:
    """One Layer's values as float32 (flat); NaN or infinite values (which no trained net holds, and which
    would make every output NaN) are an error naming the layer."""
    values = _decode_values(layer, name, path)
    finite = np.isfinite(values)
    if not finite.all():
        raise WeightsError(path, f"{name}: {values.size - int(finite.sum()):,} of {values.size:,} values are NaN or "
                                 "infinite")
    return values


def _decode_values(layer, name: str, path: str) -> np.ndarray:
    _check_known_encoding(layer, name, path)
    encoding = layer.encoding if layer.HasField("encoding") and layer.encoding else proto.Layer.LINEAR16
    params = layer.params
    if encoding == proto.Layer.FLOAT32:
        if len(params) % 4:
            raise WeightsError(path, f"{name}: {len(params)} bytes is not a whole number of FLOAT32 values")
        return np.frombuffer(params, dtype="<f4").copy()
    if len(params) % 2:
        raise WeightsError(path, f"{name}: {len(params)} bytes is not a whole number of 16-bit values")
    raw = np.frombuffer(params, dtype="<u2")
    if encoding == proto.Layer.FLOAT16:
        return raw.view("<f2").astype(np.float32)
    if encoding == proto.Layer.BFLOAT16:
        return (raw.astype(np.uint32) << 16).view(np.float32)
    if encoding == proto.Layer.LINEAR16:
        # lc0 computes v / 65535.0f * range + min in float32 with a fused multiply-add (one rounding at the
        # end); the product of two float32 is exact in float64, so this gives lc0's values bit for bit.
        low, high = np.float32(layer.min_val), np.float32(layer.max_val)
        if not (np.isfinite(low) and np.isfinite(high)
                and abs(float(high) - float(low)) <= float(np.finfo(np.float32).max)):
            raise WeightsError(path, f"{name}: LINEAR16 range [{layer.min_val:g}, {layer.max_val:g}] is not finite "
                                     "in float32")
        theta = raw.astype(np.float32) / np.float32(65535.0)
        return (theta.astype(np.float64) * float(high - low) + float(low)).astype(np.float32)
    raise WeightsError(path, f"{name}: unknown layer encoding {encoding}")


def _check_known_encoding(layer, name: str, path: str) -> None:
    """An encoding this .proto does not list lands in the unknown fields (proto2 enums are closed), and the
    layer would read as LINEAR16: refuse it instead."""
    number = layer.DESCRIPTOR.fields_by_name["encoding"].number
    for field in UnknownFieldSet(layer):
        if field.field_number == number:
            raise WeightsError(path, f"{name}: layer encoding {field.data} is not one this lc0distill knows "
                                     f"({', '.join(proto.Layer.Encoding.keys())})")


def linear16_range(values: np.ndarray) -> tuple[float, float]:
    """(min, max) lc0's trainer stores for a tensor (single values: 0..x, or 0..1 for x == 0)."""
    if values.size == 1:
        value = float(values[0])
        return (0.0, value) if value != 0.0 else (0.0, 1.0)
    return float(values.min()), float(values.max())


def encode_layer(values: np.ndarray, encoding: Encoding = Encoding.LINEAR16):
    """A Layer holding `values` (any shape; stored flat in row-major order)."""
    flat = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
    # LINEAR16 layers carry no encoding field: absent means LINEAR16, and lc0 <= 0.32 predates the field.
    layer = proto.Layer() if encoding == Encoding.LINEAR16 else proto.Layer(encoding=_LAYER_ENCODING[Encoding(encoding)])
    if encoding == Encoding.FLOAT32:
        layer.params = flat.astype("<f4").tobytes()
    elif encoding == Encoding.FLOAT16:
        layer.params = flat.astype("<f2").tobytes()
    elif encoding == Encoding.BFLOAT16:
        bits = flat.view(np.uint32).astype(np.uint64)
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16  # round to nearest even
        layer.params = rounded.astype("<u2").tobytes()
    else:
        low, high = linear16_range(flat)
        layer.min_val, layer.max_val = low, high
        low, high = layer.min_val, layer.max_val  # as stored (float32), so decoding meets the same grid
        span = high - low
        q = np.zeros(flat.size) if span == 0 else np.round((flat.astype(np.float64) - low) / span * 65535.0)
        layer.params = np.clip(q, 0, 65535).astype("<u2").tobytes()
    return layer


def linear16_error_bound(values: np.ndarray) -> float:
    """The largest error LINEAR16 can make on this tensor: half a quantisation step, plus float rounding."""
    low, high = linear16_range(np.asarray(values, dtype=np.float32).reshape(-1))
    return abs(high - low) / 65535.0 / 2.0 + 4 * np.finfo(np.float32).eps * max(abs(low), abs(high))


# ------------------------------------------------------------------------------------------- reading

@dataclass(frozen=True)
class NetFileInfo:
    """What a `.pb.gz` says about itself, beyond the tensors."""

    path: str
    min_version: str
    network: str
    policy: str
    value: str
    moves_left: str
    input_format: int
    activation: str
    layer_encodings: tuple[str, ...]
    license: str


def _enum_name(enum_type, value: int) -> str:
    try:
        return enum_type.Name(value)
    except ValueError:
        return f"unknown ({value})"


# A .pb.gz is inflated in steps and given up on past these bounds (before the protobuf parser or any tensor
# takes memory): 1.5 GiB holds a 500M-parameter LINEAR16 net; weights compress by less than 2x, so a file
# that inflates 64 times its size past 64 MiB is not a net (a gzip bomb, or a net of zeros).
MAX_NET_BYTES = 3 << 29
MAX_INFLATE_RATIO = 64
_RATIO_FLOOR = 64 << 20


def _read_file(path: str) -> bytes:
    file = Path(path)
    try:
        if not file.is_file():
            raise WeightsError(path, "cannot read: " + ("no such file" if not file.exists() else "not a regular file"))
        size = file.stat().st_size
        if size > MAX_NET_BYTES:
            raise WeightsError(path, f"{size:,} bytes is larger than any net lc0distill reads ({MAX_NET_BYTES:,})")
        return file.read_bytes()
    except OSError as error:
        raise WeightsError(path, f"cannot read: {error.strerror or error}") from None


def _inflate_bounded(data: bytes, path: str) -> bytes:
    """gzip (every member) -> bytes, stopping at MAX_NET_BYTES or at a ratio no real net has."""
    by_ratio = max(_RATIO_FLOOR, MAX_INFLATE_RATIO * len(data))
    try:
        return gunzip(data, min(MAX_NET_BYTES, by_ratio))
    except GzipError as error:
        if error.kind != "too_big":
            reason = error.detail if error.kind != "trailing" else "bytes after the gzip stream that are not gzip"
            raise WeightsError(path, f"truncated or corrupt gzip data ({reason})") from None
        if by_ratio < MAX_NET_BYTES:
            raise WeightsError(path, f"inflates more than {MAX_INFLATE_RATIO}x ({len(data):,} bytes to over "
                                     f"{by_ratio:,}): not a net (lc0 weights compress by less than 2x)") from None
        raise WeightsError(path, f"inflates to more than {MAX_NET_BYTES:,} bytes: larger than any net lc0distill "
                                 "reads") from None


def open_net(path: str | os.PathLike):
    path = str(path)
    data = _read_file(path)
    if data[:2] == b"\x1f\x8b":
        data = _inflate_bounded(data, path)
    if data.startswith((b"1\n", b"2\n")):
        raise WeightsError(path, "text format weights files are no longer supported (lc0 refuses them too)")
    net = proto.Net()
    try:
        net.ParseFromString(data)
    except DecodeError as error:
        raise WeightsError(path, f"not an lc0 network file (protobuf: {error})") from None
    if net.magic != MAGIC:
        raise WeightsError(path, f"wrong magic 0x{net.magic:x} (lc0 nets have 0x1c0): not an lc0 network file")
    _check_known_enums(net.format.network_format, path)
    return net


def _check_known_enums(fmt, path: str) -> None:
    """proto2 enums are closed: a value this .proto does not list is parsed into the unknown fields and the
    field reads as unset (an unknown input format would read as format 1). Refuse such files instead."""
    for field in UnknownFieldSet(fmt):
        known = fmt.DESCRIPTOR.fields_by_number.get(field.field_number)
        if known is not None and known.enum_type is not None:
            raise WeightsError(path, f"format.network_format.{known.name}: value {field.data} is not one this "
                                     f"lc0distill knows ({', '.join(known.enum_type.values_by_name)})")


_UNSUPPORTED_BODIES = {
    NF.NETWORK_ATTENTIONBODY_WITH_HEADFORMAT: "attention body (transformer) nets",
    NF.NETWORK_ATTENTIONBODY_WITH_MULTIHEADFORMAT: "attention body (transformer) nets with multiple heads",
    NF.NETWORK_AB_LEGACY_WITH_MULTIHEADFORMAT: "legacy attention body nets",
    NF.NETWORK_ONNX: "nets that embed an ONNX model instead of weights (they can be evaluated, not trained)",
}


def needs_onnx(net) -> str | None:
    """Why a weights file's net is not one lc0distill builds in PyTorch (it then runs through ONNX), or None."""
    fmt = net.format.network_format
    if is_supported_attention(net):
        return None
    if fmt.network in _UNSUPPORTED_BODIES and fmt.network != NF.NETWORK_ONNX:
        return f"an attention-body net ({_enum_name(NF.NetworkStructure, fmt.network)})"
    if fmt.policy == NF.POLICY_ATTENTION and len(net.weights.pol_encoder):
        return f"an attention policy head with {len(net.weights.pol_encoder)} encoder layers (weights.pol_encoder)"
    return None


@dataclass(frozen=True)
class AttentionBody:
    """An attention-body net's dimensions, from its weights: embedding size x encoder layers, and heads."""

    embedding: int
    layers: int
    heads: int

    @property
    def name(self) -> str:
        return f"{self.embedding}x{self.layers}"


def attention_body(path: str | os.PathLike) -> AttentionBody | None:
    """The body of an attention-body weights file (None for any other net): the embedding size is the length
    of ip_emb_b (the embedding's bias), the layers are weights.encoder's, the heads weights.headcount."""
    net = open_net(path)
    if net.format.network_format.network not in _UNSUPPORTED_BODIES or \
            net.format.network_format.network == NF.NETWORK_ONNX:
        return None
    weights = net.weights
    embedding = decode_layer(weights.ip_emb_b, "ip_emb_b", str(path)).size if weights.HasField("ip_emb_b") else 0
    return AttentionBody(embedding=embedding, layers=len(weights.encoder), heads=weights.headcount)


def _network_format(net, path: str):
    """The file's NetworkFormat after lc0's fix-ups for older files."""
    fmt = NF()
    if net.format.HasField("network_format"):
        fmt.CopyFrom(net.format.network_format)
    else:  # lc0: no network_format means a classical net with classical heads
        fmt.network = NF.NETWORK_CLASSICAL_WITH_HEADFORMAT
    if fmt.network in (NF.NETWORK_SE, NF.NETWORK_CLASSICAL):
        fmt.network = NF.NETWORK_SE_WITH_HEADFORMAT if fmt.network == NF.NETWORK_SE else NF.NETWORK_CLASSICAL_WITH_HEADFORMAT
        fmt.value, fmt.policy = NF.VALUE_CLASSICAL, NF.POLICY_CLASSICAL
    if fmt.network in _UNSUPPORTED_BODIES:
        raise WeightsError(path, f"unsupported network format {_enum_name(NF.NetworkStructure, fmt.network)}: "
                                 f"{_UNSUPPORTED_BODIES[fmt.network]} are not SE-ResNets")
    if fmt.policy == NF.POLICY_ATTENTION and len(net.weights.pol_encoder):
        raise WeightsError(path, f"an attention policy head with {len(net.weights.pol_encoder)} encoder layers "
                                 "(weights.pol_encoder): lc0distill reads attention policy heads without them; "
                                 "convert the net to ONNX (lc0 leela2onnx) to use it as a teacher")
    if fmt.value == NF.VALUE_PARAM:
        raise WeightsError(path, "unsupported value format VALUE_PARAM")
    if not net.HasField("weights"):
        raise WeightsError(path, "the file holds no weights")
    return fmt


def _size(layer) -> int:
    encoding = layer.encoding if layer.HasField("encoding") and layer.encoding else proto.Layer.LINEAR16
    return len(layer.params) // (4 if encoding == proto.Layer.FLOAT32 else 2)


def _channels(block, filters: int) -> int:
    """Output channels of a 1x1 ConvBlock, from its batch norm or conv bias if the weights are missing."""
    for layer in (block.weights, block.bn_means, block.biases):
        if layer.params:
            return max(1, _size(layer) // (filters if layer is block.weights else 1))
    return 1


_POLICY_HEADS = {NF.POLICY_UNKNOWN: PolicyHead.CLASSICAL,  # lc0: files from before the policy format was written
                 NF.POLICY_CLASSICAL: PolicyHead.CLASSICAL, NF.POLICY_CONVOLUTION: PolicyHead.CONVOLUTION,
                 NF.POLICY_ATTENTION: PolicyHead.ATTENTION}
_POLICY_FORMATS = {PolicyHead.CLASSICAL: NF.POLICY_CLASSICAL, PolicyHead.CONVOLUTION: NF.POLICY_CONVOLUTION,
                   PolicyHead.ATTENTION: NF.POLICY_ATTENTION}


def config_from_net(net, path: str) -> NetConfig:
    """The NetConfig of an lc0 SE-ResNet file (sizes read from the tensors, heads from the format)."""
    fmt = _network_format(net, path)
    w = net.weights
    filters, rest = divmod(_size(w.input.weights), 112 * 9)
    if rest or not filters:
        raise WeightsError(path, f"weights.input.weights: {_size(w.input.weights)} values is not 112 x 9 x filters")
    squeeze = _size(w.residual[0].se.b1) if len(w.residual) and w.residual[0].HasField("se") else 0
    policy = _POLICY_HEADS[fmt.policy]
    moves_left = fmt.moves_left == NF.MOVES_LEFT_V1 and w.HasField("moves_left")
    sizes = dict(
        filters=filters, blocks=len(w.residual), se_channels=squeeze,
        policy=policy,
        policy_channels=max(1, _size(w.policy.weights) // filters) if policy == PolicyHead.CLASSICAL else 32,
        policy_embedding=max(1, _size(w.ip_pol_b)) if policy == PolicyHead.ATTENTION else 64,
        policy_d_model=max(1, _size(w.ip2_pol_b)) if policy == PolicyHead.ATTENTION else 64,
        value=ValueHead.WDL if fmt.value == NF.VALUE_WDL else ValueHead.SCALAR,
        value_channels=_channels(w.value, filters), value_hidden=max(1, _size(w.ip1_val_b)),
        moves_left=moves_left,
        moves_left_channels=_channels(w.moves_left, filters) if moves_left else 8,
        moves_left_hidden=max(1, _size(w.ip1_mov_b)) if moves_left else 128,
        activation=Activation.MISH if fmt.default_activation == NF.DEFAULT_ACTIVATION_MISH else Activation.RELU,
        input_format=fmt.input or 1,
    )
    return _net_config(sizes, path)


def _net_config(sizes: dict, path: str) -> NetConfig:
    """The NetConfig of sizes read from a file; sizes beyond the bounds or an input format lc0distill does not
    know are a WeightsError naming the field."""
    try:
        return NetConfig(**sizes)
    except ValidationError as error:
        problem = error.errors()[0]
        key = ".".join(str(part) for part in problem["loc"])
        raise WeightsError(path, f"a net with {key} {sizes.get(key, '?')}: {problem['msg']}") from None


class _Loader:
    """Copies decoded layers into the model's tensors, checking sizes and naming what does not fit.
    `sizes_only`: check that every tensor is there with its size, without decoding or copying anything (run on
    a model on the meta device, before the real one takes memory)."""

    def __init__(self, path: str, sizes_only: bool = False):
        self.path = path
        self.sizes_only = sizes_only

    def tensor(self, layer, name: str, target: torch.Tensor, required: bool = True) -> None:
        if not layer.params:
            if required:
                raise WeightsError(self.path, f"{name}: missing (expected {target.numel()} values)")
            return
        values = None if self.sizes_only else decode_layer(layer, name, self.path)
        count = values.size if values is not None else _size(layer)
        if count != target.numel():
            shape = "x".join(map(str, target.shape))
            raise WeightsError(self.path, f"{name}: {count} values, expected {target.numel()} ({shape})")
        if values is None:
            return
        with torch.no_grad():
            target.copy_(torch.from_numpy(values).view_as(target))

    def conv_block(self, block, name: str, module: ConvBN) -> None:
        self.tensor(block.weights, f"{name}.weights", module.conv.weight)
        bn = module.bn
        with torch.no_grad():
            if block.bn_means.params:
                self.tensor(block.bn_means, f"{name}.bn_means", bn.running_mean)
                self.tensor(block.bn_stddivs, f"{name}.bn_stddivs", bn.running_var)
                bn.weight.fill_(1.0)
            else:  # no batch norm in the file: an identity BN (the conv bias below becomes its shift)
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0)
                bn.weight.fill_(math.sqrt(1.0 + BN_EPSILON))  # cancels 1 / sqrt(var + eps)
            bn.bias.zero_()
            self.tensor(block.bn_gammas, f"{name}.bn_gammas", bn.weight, required=False)
            self.tensor(block.bn_betas, f"{name}.bn_betas", bn.bias, required=False)
            if block.biases.params:  # a conv bias applies before BN: fold it into the mean
                bias = None if self.sizes_only else torch.from_numpy(
                    decode_layer(block.biases, f"{name}.biases", self.path))
                count = bias.numel() if bias is not None else _size(block.biases)
                if count != bn.running_mean.numel():
                    raise WeightsError(self.path, f"{name}.biases: {count} values, expected {bn.running_mean.numel()}")
                if bias is not None:
                    bn.running_mean.sub_(bias)

    def linear(self, weight, bias, name: str, module: torch.nn.Linear) -> None:
        self.tensor(weight, f"{name}_w", module.weight)
        self.tensor(bias, f"{name}_b", module.bias)


def _load_weights(model: SEResNet, w, path: str, sizes_only: bool = False) -> None:
    load = _Loader(path, sizes_only)
    load.conv_block(w.input, "weights.input", model.input)
    if not is_hectoplies(model.config.input_format):  # files hold weights for the raw rule50 count
        with torch.no_grad():
            model.input.conv.weight[:, RULE50_PLANE] /= RULE50_INPUT_SCALE
    for i, (block, module) in enumerate(zip(w.residual, model.residual)):
        name = f"weights.residual[{i}]"
        load.conv_block(block.conv1, f"{name}.conv1", module.conv1)
        load.conv_block(block.conv2, f"{name}.conv2", module.conv2)
        if module.se is not None:
            load.tensor(block.se.w1, f"{name}.se.w1", module.se.fc1.weight)
            load.tensor(block.se.b1, f"{name}.se.b1", module.se.fc1.bias)
            load.tensor(block.se.w2, f"{name}.se.w2", module.se.fc2.weight)
            load.tensor(block.se.b2, f"{name}.se.b2", module.se.fc2.bias)
        elif block.HasField("se") and any(layer.params for layer in (block.se.w1, block.se.b1, block.se.w2,
                                                                       block.se.b2)):
            raise WeightsError(path, f"{name}.se: SE weights in a net read without SE units (their width is the "
                                     f"size of weights.residual[0].se.b1: {_size(w.residual[0].se.b1)})")
    if model.config.policy == PolicyHead.CONVOLUTION:
        load.conv_block(w.policy1, "weights.policy1", model.policy.policy1)
        load.tensor(w.policy.weights, "weights.policy.weights", model.policy.policy.weight)
        load.tensor(w.policy.biases, "weights.policy.biases", model.policy.policy.bias)
    elif model.config.policy == PolicyHead.ATTENTION:
        load.linear(w.ip_pol_w, w.ip_pol_b, "weights.ip_pol", model.policy.embedding)
        load.linear(w.ip2_pol_w, w.ip2_pol_b, "weights.ip2_pol", model.policy.wq)
        load.linear(w.ip3_pol_w, w.ip3_pol_b, "weights.ip3_pol", model.policy.wk)
        load.tensor(w.ip4_pol_w, "weights.ip4_pol_w", model.policy.ppo.weight)
    else:
        load.conv_block(w.policy, "weights.policy", model.policy.conv)
        load.linear(w.ip_pol_w, w.ip_pol_b, "weights.ip_pol", model.policy.fc)
    load.conv_block(w.value, "weights.value", model.value.conv)
    load.linear(w.ip1_val_w, w.ip1_val_b, "weights.ip1_val", model.value.fc1)
    load.linear(w.ip2_val_w, w.ip2_val_b, "weights.ip2_val", model.value.fc2)
    if model.moves_left is not None:
        load.conv_block(w.moves_left, "weights.moves_left", model.moves_left.conv)
        load.linear(w.ip1_mov_w, w.ip1_mov_b, "weights.ip1_mov", model.moves_left.fc1)
        load.linear(w.ip2_mov_w, w.ip2_mov_b, "weights.ip2_mov", model.moves_left.fc2)


def _version_string(version) -> str:
    return f"{version.major}.{version.minor}.{version.patch}"


def _is_repeated(field) -> bool:
    """FieldDescriptor.is_repeated (protobuf >= 5.28; `label`, which it replaces, is gone in 7)."""
    repeated = getattr(field, "is_repeated", None)
    return repeated if repeated is not None else field.label == field.LABEL_REPEATED


def _layer_encodings(message) -> set[str]:
    found = set()
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        for item in value if _is_repeated(field) else [value]:
            if item.DESCRIPTOR.name == "Layer":
                encoding = item.encoding if item.HasField("encoding") and item.encoding else proto.Layer.LINEAR16
                found.add(proto.Layer.Encoding.Name(encoding))
            else:
                found |= _layer_encodings(item)
    return found


def read_net_info(path: str | os.PathLike) -> NetFileInfo:
    net = open_net(path)
    # ONNX inside, or a net that runs through lc0's ONNX conversion: describe the header
    onnx = net.format.network_format.network == NF.NETWORK_ONNX or needs_onnx(net) is not None
    fmt = net.format.network_format if onnx or is_supported_attention(net) else _network_format(net, str(path))
    return NetFileInfo(
        path=str(path), min_version=_version_string(net.min_version),
        network=_enum_name(NF.NetworkStructure, fmt.network), policy=_enum_name(NF.PolicyFormat, fmt.policy),
        value=_enum_name(NF.ValueFormat, fmt.value), moves_left=_enum_name(NF.MovesLeftFormat, fmt.moves_left),
        input_format=fmt.input or 1, activation=_enum_name(NF.DefaultActivation, fmt.default_activation),
        layer_encodings=tuple(sorted(_layer_encodings(net.weights))), license=net.license,
    )


def read_net(path: str | os.PathLike) -> SEResNet:
    """An lc0 `.pb.gz` as an SEResNet in eval mode (computes what the lc0 engine computes)."""
    return net_from_message(open_net(path), path)


def net_from_message(net, path: str | os.PathLike) -> SEResNet:
    """The SEResNet (or AttentionNet) of a parsed Net message (`path` names it in errors)."""
    if is_supported_attention(net):
        return _attention_from_message(net, str(path))
    config = config_from_net(net, str(path))
    check_net_size(config, path)
    with torch.device("meta"):  # every tensor there and of its size before the net takes memory: a few KB
        skeleton = SEResNet(config)  # describing a huge net with tensors missing must not allocate it
    _load_weights(skeleton, net.weights, str(path), sizes_only=True)
    model = SEResNet(config)
    _load_weights(model, net.weights, str(path))
    return model.eval()


def _attention_from_message(net, path: str):
    def fail(message: str):
        raise WeightsError(path, message)

    if not net.HasField("weights"):
        fail("the file holds no weights")
    config = _net_config(attention_config(net, _size, fail), path)
    check_net_size(config, path)
    with torch.device("meta"):
        skeleton = AttentionNet(config)
    load_attention_weights(skeleton, net.weights, _Loader(path, sizes_only=True))
    model = AttentionNet(config)
    load_attention_weights(model, net.weights, _Loader(path))
    return model.eval()


# ------------------------------------------------------------------------------------------- writing

def min_version_for(config: NetConfig, encoding: Encoding) -> tuple[int, int, int]:
    """The oldest lc0 that runs this net (lczero-training's table; per-layer float encodings need 0.33)."""
    version = (0, 21, 0)
    if config.input_format in (2, 3):
        version = (0, 25, 0)
    elif config.input_format in (4, 132):
        version = (0, 26, 0)
    elif config.input_format in (5, 133):
        version = (0, 27, 0)
    if config.policy == PolicyHead.ATTENTION:  # lc0 reads attention policy heads since 0.28
        version = max(version, (0, 28, 0))
    if config.activation == Activation.MISH:
        version = max(version, (0, 29, 0))
    if encoding != Encoding.LINEAR16:
        version = max(version, (0, 33, 0))
    return version


class _Writer:
    def __init__(self, encoding: Encoding):
        self.encoding = encoding

    def layer(self, target, tensor: torch.Tensor) -> None:
        target.CopyFrom(encode_layer(tensor.detach().float().cpu().numpy(), self.encoding))

    def conv_block(self, block, module: ConvBN, weight: torch.Tensor | None = None) -> None:
        bn = module.bn
        self.layer(block.weights, module.conv.weight if weight is None else weight)
        self.layer(block.bn_means, bn.running_mean)
        self.layer(block.bn_stddivs, bn.running_var)
        self.layer(block.bn_gammas, bn.weight)
        self.layer(block.bn_betas, bn.bias)

    def linear(self, weight, bias, module: torch.nn.Linear) -> None:
        self.layer(weight, module.weight)
        self.layer(bias, module.bias)


def _fill_weights(model: SEResNet, w, encoding: Encoding) -> None:
    write = _Writer(encoding)
    input_weight = model.input.conv.weight.detach().clone()
    if not is_hectoplies(model.config.input_format):  # lc0 feeds the raw rule50 count
        input_weight[:, RULE50_PLANE] *= RULE50_INPUT_SCALE
    write.conv_block(w.input, model.input, input_weight)
    for module in model.residual:
        block = w.residual.add()
        write.conv_block(block.conv1, module.conv1)
        write.conv_block(block.conv2, module.conv2)
        if module.se is not None:
            write.linear(block.se.w1, block.se.b1, module.se.fc1)
            write.linear(block.se.w2, block.se.b2, module.se.fc2)
    if model.config.policy == PolicyHead.CONVOLUTION:
        write.conv_block(w.policy1, model.policy.policy1)
        write.layer(w.policy.weights, model.policy.policy.weight)
        write.layer(w.policy.biases, model.policy.policy.bias)
    elif model.config.policy == PolicyHead.ATTENTION:
        write.linear(w.ip_pol_w, w.ip_pol_b, model.policy.embedding)
        write.linear(w.ip2_pol_w, w.ip2_pol_b, model.policy.wq)
        write.linear(w.ip3_pol_w, w.ip3_pol_b, model.policy.wk)
        write.layer(w.ip4_pol_w, model.policy.ppo.weight)
    else:
        write.conv_block(w.policy, model.policy.conv)
        write.linear(w.ip_pol_w, w.ip_pol_b, model.policy.fc)
    write.conv_block(w.value, model.value.conv)
    write.linear(w.ip1_val_w, w.ip1_val_b, model.value.fc1)
    write.linear(w.ip2_val_w, w.ip2_val_b, model.value.fc2)
    if model.moves_left is not None:
        write.conv_block(w.moves_left, model.moves_left.conv)
        write.linear(w.ip1_mov_w, w.ip1_mov_b, model.moves_left.fc1)
        write.linear(w.ip2_mov_w, w.ip2_mov_b, model.moves_left.fc2)


def network_format(config: NetConfig):
    wdl = config.value == ValueHead.WDL
    return NF(
        input=config.input_format,
        output=NF.OUTPUT_WDL if wdl else NF.OUTPUT_CLASSICAL,
        network=NF.NETWORK_SE_WITH_HEADFORMAT if config.squeeze else NF.NETWORK_CLASSICAL_WITH_HEADFORMAT,
        policy=_POLICY_FORMATS[config.policy],
        value=NF.VALUE_WDL if wdl else NF.VALUE_CLASSICAL,
        moves_left=NF.MOVES_LEFT_V1 if config.moves_left else NF.MOVES_LEFT_NONE,
        default_activation=(NF.DEFAULT_ACTIVATION_MISH if config.activation == Activation.MISH
                            else NF.DEFAULT_ACTIVATION_RELU),
    )


def net_message(model: SEResNet, encoding: Encoding = Encoding.LINEAR16, license: str = "",
                training_steps: int | None = None):
    """The Net message of `model`, as lc0 loads it."""
    encoding = Encoding(encoding)
    net = proto.Net(magic=MAGIC, license=license)
    attention = is_attention(model)
    major, minor, patch = max(min_version_for(model.config, encoding), MIN_VERSION if attention else (0, 0, 0))
    net.min_version.major, net.min_version.minor, net.min_version.patch = major, minor, patch
    net.format.weights_encoding = proto.Format.LINEAR16  # lc0 wants this even with per-layer float encodings
    net.format.network_format.CopyFrom(attention_network_format(model.config) if attention
                                       else network_format(model.config))
    if training_steps is not None:
        net.training_params.training_steps = training_steps
    if attention:
        fill_attention_weights(model, net.weights, _Writer(encoding))
    else:
        _fill_weights(model, net.weights, encoding)
    return net


def write_net(model: SEResNet, path: str | os.PathLike, encoding: Encoding = Encoding.LINEAR16,
              license: str = "", training_steps: int | None = None) -> None:
    """Write `model` as an lc0 `.pb.gz` (gzip of the serialized Net), atomically."""
    write_atomic(path, net_file_bytes(net_message(model, encoding, license, training_steps)))


def net_file_bytes(net) -> bytes:
    """A Net message as a `.pb.gz` file holds it (gzip, no timestamp: the same net gives the same bytes)."""
    return gzip.compress(net.SerializeToString(), compresslevel=9, mtime=0)
