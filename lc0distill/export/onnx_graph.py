"""An SEResNet as the ONNX graph lc0's `leela2onnx` emits for the same weights (FORMATS §5.1); attention bodies
are written by export/onnx_attention.py on this module's GraphBuilder.

Node and tensor names, node order, initializer order and layouts follow lc0's converter, so an exported net
is a drop-in for lc0's own conversion: input `/input/planes` (batch, 112, 8, 8) with a dynamic axis named
`batch`; outputs `/output/policy` (batch, 1858) logits, `/output/wdl` (batch, 3) probabilities (Softmax
inside) or `/output/value` (batch, 1) tanh, and `/output/mlh` (batch, 1) when the net has a moves-left head.
Batch norm is folded into the convolutions; the input conv takes the planes exactly as lc0 feeds them (for
formats 1-3 the raw rule50 count: the net's input scaling is folded into that conv's weights).

One writer function per block, mirroring the module tree (models/net.py, models/heads.py).
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from lc0distill import __version__
from lc0distill.chess.policy_index import (ATTENTION_POLICY_GATHER, ATTENTION_POLICY_SIZE, CONV_POLICY_CHANNELS,
                                           CONV_POLICY_GATHER, POLICY_SIZE)
from lc0distill.errors import Lc0DistillError
from lc0distill.models.attention import AttentionNet
from lc0distill.models.blocks import ConvBN, ResidualBlock, SEUnit
from lc0distill.models.config import Activation, Body, PolicyHead, ValueHead
from lc0distill.models.heads import AttentionPolicy, ClassicalPolicy, ConvolutionPolicy, DenseHead
from lc0distill.models.net import INPUT_PLANES, SEResNet

from lc0distill.export.names import (  # noqa: F401  (re-exported: the graph's names)
    BATCH_AXIS, DEFAULT_OPSET, INPUT_NAME, MAX_OPSET, METADATA_INPUT_FORMAT, METADATA_NET, MIN_OPSET, MLH_NAME,
    MODEL_DOMAIN, POLICY_NAME, PRODUCER, VALUE_NAME, WDL_NAME,
)


ATTENTION_MIN_OPSET = 17  # LayerNormalization


def ir_version_for(opset: int) -> int:
    """The IR version for an opset by FORMATS §5.1's table (newer lc0; lc0 v0.31.2 wrote IR 4 at opset 17)."""
    for last_opset, ir in ((8, 3), (9, 4), (10, 5), (11, 6), (14, 7), (18, 8), (20, 9)):
        if opset <= last_opset:
            return ir
    return 10


class GraphBuilder:
    """Nodes and initializers in the order lc0's builder adds them; every node's output is named as the node."""

    def __init__(self, opset: int, fp16: bool):
        self.opset = opset
        self.float_type = np.float16 if fp16 else np.float32
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._initializer_names: set[str] = set()

    def initializer(self, name: str, array: np.ndarray) -> str:
        """Add a tensor once (constants shared between blocks are added at their first use)."""
        if name not in self._initializer_names:
            self._initializer_names.add(name)
            self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def weight(self, name: str, array: np.ndarray) -> str:
        return self.initializer(name, np.asarray(array, dtype=np.float64).astype(self.float_type))

    def node(self, op: str, name: str, inputs: list[str], outputs: list[str] | None = None, **attributes) -> str:
        node = helper.make_node(op, inputs, outputs or [name], name=name)
        node.attribute.extend(helper.make_attribute(k, v) for k, v in attributes.items())  # lc0's order, unsorted
        self.nodes.append(node)
        return name

    # ---- operators, as lc0's builder names their tensors
    def conv(self, name: str, x: str, kernel: np.ndarray, bias: np.ndarray) -> str:  # kernel (out, in, k, k)
        k = kernel.shape[-1]
        inputs = [x, self.weight(f"{name}/w/kernel", kernel), self.weight(f"{name}/w/bias", bias)]
        return self.node("Conv", name, inputs, pads=[k // 2] * 4, kernel_shape=[k, k])

    def matmul(self, name: str, x: str, weight: np.ndarray) -> str:  # weight (in, out)
        return self.node("MatMul", name, [x, self.weight(f"{name}/w", weight)])

    def add_bias(self, name: str, x: str, bias: np.ndarray) -> str:
        return self.node("Add", name, [x, self.weight(f"{name}/w", bias)])

    def dense(self, matmul_name: str, add_name: str, x: str, layer: torch.nn.Linear) -> str:
        """x @ W^T + b as lc0 writes it: MatMul by the (in, out) matrix, then Add of the bias."""
        return self.add_bias(add_name, self.matmul(matmul_name, x, as_numpy(layer.weight).T), as_numpy(layer.bias))

    def reshape(self, name: str, x: str, shape_name: str, shape: list[int]) -> str:
        return self.node("Reshape", name, [x, self.initializer(shape_name, np.array(shape, dtype=np.int64))])

    def activation(self, name: str, x: str, kind: Activation) -> str:
        if kind == Activation.RELU:
            return self.node("Relu", f"{name}/relu", [x])
        if kind == Activation.NONE:
            return x
        if kind == Activation.SELU:
            return self.node("Selu", f"{name}/selu", [x])
        if kind == Activation.SWISH:
            return self.node("Mul", f"{name}/swish", [self.node("Sigmoid", f"{name}/swish/sigmoid", [x]), x])
        if kind == Activation.RELU_2:  # relu(x)^2, as lc0 names it
            relu = self.node("Relu", f"{name}/sqrrelu/relu", [x])
            return self.node("Mul", f"{name}/sqrrelu/sqr", [relu, relu])
        if self.opset >= 18:
            return self.node("Mish", f"{name}/mish", [x])
        softplus = self.node("Softplus", f"{name}/mish/softplus", [x])
        return self.node("Mul", f"{name}/mish", [self.node("Tanh", f"{name}/mish/tanh", [softplus]), x])

    def reduce_mean(self, name: str, x: str, axes: list[int]) -> str:
        if self.opset >= 18:  # axes became an input
            axes_name = self.initializer("/const/reduce_axes", np.array(axes, dtype=np.int64))
            return self.node("ReduceMean", name, [x, axes_name], keepdims=0)
        return self.node("ReduceMean", name, [x], axes=axes, keepdims=0)

    def slice(self, name: str, x: str, starts: list[int], ends: list[int]) -> str:
        """x[starts:ends] over the leading axes (an end of INT32_MAX: to the end), as lc0 writes it."""
        if self.opset < 10:  # starts and ends were attributes
            return self.node("Slice", name, [x], starts=starts, ends=ends, axes=list(range(len(starts))))
        inputs = [self.initializer(f"{name}/starts", np.array(starts, dtype=np.int32)),
                  self.initializer(f"{name}/ends", np.array(ends, dtype=np.int32))]
        return self.node("Slice", name, [x, *inputs])

    def split(self, name: str, x: str, axis: int, sizes: list[int]) -> list[str]:
        outputs = [f"{name}/out{i + 1}" for i in range(len(sizes))]
        if self.opset < 13:  # the sizes were an attribute
            self.node("Split", name, [x], outputs, axis=axis, split=sizes)
        else:
            self.node("Split", name, [x, self.initializer(f"{name}/split", np.array(sizes, dtype=np.int64))],
                      outputs, axis=axis)
        return outputs

    def split_in_two(self, name: str, x: str, axis: int) -> tuple[str, str]:
        outputs = [f"{name}/out1", f"{name}/out2"]
        extra = {"num_outputs": 2} if self.opset >= 18 else {}
        self.node("Split", name, [x], outputs, axis=axis, **extra)
        return outputs[0], outputs[1]


# ---- BN folding, in lc0's float32 order (so maia's folded tensors equal leela2onnx's bit for bit)

def folded_conv(block: ConvBN, input_scale: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(kernel (out, in, k, k), bias (out,)) of conv + batch norm; `input_scale` (in,) multiplies input channels.

    lc0: s = gamma * (1 / sqrt(var + eps)), kernel * s, and beta - mean * s with one rounding (a fused
    multiply-add), all float32.
    """
    f32 = np.float32
    bn = block.bn
    kernel = block.conv.weight.detach().float().cpu().numpy()
    if input_scale is not None:
        kernel = kernel * input_scale.astype(f32)[None, :, None, None]
    var, mean, gamma, beta = (t.detach().float().cpu().numpy() for t in (bn.running_var, bn.running_mean,
                                                                          bn.weight, bn.bias))
    scale = gamma * (f32(1.0) / np.sqrt(var + f32(bn.eps)))
    bias = (beta.astype(np.float64) - mean.astype(np.float64) * scale.astype(np.float64)).astype(f32)
    return kernel * scale[:, None, None, None], bias


def as_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().cpu().numpy()


# ---- one writer per block

def _conv_block(g: GraphBuilder, name: str, x: str, block: ConvBN, kind: Activation,
                input_scale: np.ndarray | None = None) -> str:
    return g.activation(name, g.conv(name, x, *folded_conv(block, input_scale)), kind)


def _se_unit(g: GraphBuilder, name: str, x: str, se: SEUnit, kind: Activation, channels: int) -> str:
    se_shape = g.initializer("/const/se_reshape", np.array([-1, 2 * channels, 1, 1], dtype=np.int64))  # lc0's order
    flow = g.reduce_mean(f"{name}/reduce_mean", x, [2, 3])  # (B, C)
    flow = g.activation(name, g.dense(f"{name}/matmul1", f"{name}/add1", flow, se.fc1), kind)
    flow = g.dense(f"{name}/matmul2", f"{name}/add2", flow, se.fc2)
    flow = g.node("Reshape", f"{name}/reshape", [flow, se_shape])  # (B, 2C, 1, 1)
    gamma, beta = g.split_in_two(f"{name}/split", flow, axis=1)
    scaled = g.node("Mul", f"{name}/mul", [g.node("Sigmoid", f"{name}/sigmoid", [gamma]), x])
    return g.node("Add", f"{name}/add3", [scaled, beta])


def _residual_block(g: GraphBuilder, name: str, x: str, block: ResidualBlock, kind: Activation) -> str:
    flow = _conv_block(g, f"{name}/conv1", x, block.conv1, kind)
    conv2 = f"{name}/conv2"
    flow = g.conv(conv2, flow, *folded_conv(block.conv2))
    if block.se is not None:
        flow = _se_unit(g, f"{conv2}/se", flow, block.se, kind, block.conv2.conv.out_channels)
    flow = g.node("Add", f"{conv2}/mixin", [flow, x])
    return g.activation(conv2, flow, kind)


def _convolution_policy(g: GraphBuilder, x: str, head: ConvolutionPolicy, kind: Activation) -> str:
    flow = _conv_block(g, "/policy/conv1", x, head.policy1, kind)
    flow = g.conv("/policy/conv2", flow, as_numpy(head.policy.weight), as_numpy(head.policy.bias))  # (B, 80, 8, 8)
    flow = g.reshape("/policy/flatten", flow, "/const/policy_shape", [-1, CONV_POLICY_CHANNELS * 64])
    mapping = g.initializer("/const/mapping_table", CONV_POLICY_GATHER.astype(np.int32))
    return g.node("Gather", POLICY_NAME, [flow, mapping], axis=1)


def _classical_policy(g: GraphBuilder, x: str, head: ClassicalPolicy, kind: Activation) -> str:
    flow = _conv_block(g, "/policy/conv", x, head.conv, kind)
    flow = g.reshape("/policy/reshape", flow, "/const/policy_shape", [-1, head.conv.conv.out_channels * 64])
    return g.dense("/policy/dense/matmul", POLICY_NAME, flow, head.fc)


def _attention_policy(g: GraphBuilder, x: str, head: AttentionPolicy) -> str:
    """lc0's attention policy graph (see models/heads.py AttentionPolicy); the Slice names lack the leading
    slash in lc0's converter too."""
    channels = head.embedding.in_features
    flow = g.node("Transpose", "/policy/dense1/transpose", [x], perm=[0, 2, 3, 1])  # (B, 8, 8, C)
    flow = g.reshape("/policy/dense1/reshape", flow, "/const/policy_shape", [-1, channels])  # (B*64, C)
    flow = g.node("Selu", "/policy/dense1/selu",
                  [g.dense("/policy/dense1/matmul", "/policy/dense1/add", flow, head.embedding)])
    return attention_policy_logits(g, flow, head)


def attention_policy_logits(g: GraphBuilder, flow: str, head: AttentionPolicy) -> str:
    """From the embedded tokens (B*64, E) to /output/policy: queries, keys, promotions, the gather."""
    d_model = head.wq.out_features
    queries = g.reshape("/policy/Q/reshape", g.dense("/policy/Q/matmul", "/policy/Q/add", flow, head.wq),
                        "/const/QK_shape", [-1, 64, d_model])
    keys = g.reshape("/policy/K/reshape", g.dense("/policy/K/matmul", "/policy/K/add", flow, head.wk),
                     "/const/QK_shape", [-1, 64, d_model])
    transposed = g.node("Transpose", "/policy/K/transpose", [keys], perm=[0, 2, 1])
    logits = g.node("Mul", "/policy/scale", [g.node("MatMul", "/policy/matmul", [queries, transposed]),
                                             g.weight("/policy/scale/w", np.array([head.scale]))])  # (B, 64, 64)
    int_max = np.iinfo(np.int32).max
    rank8 = g.slice("policy/promotion/slice", keys, [0, 56, 0], [int_max, 64, d_model])  # (B, 8, d)
    offsets = g.matmul("/policy/promotion/matmul", rank8, as_numpy(head.ppo.weight).T)  # (B, 8, 4)
    offsets = g.node("Transpose", "/policy/promotion/transpose", [offsets], perm=[0, 2, 1])  # (B, 4, 8)
    pieces, knight = g.split("/policy/promotion/split", offsets, 1, [3, 1])
    offsets = g.node("Add", "/policy/promotion/add", [pieces, knight])  # (B, 3, 8)
    offsets = g.node("Transpose", "/policy/promotion/transpose2", [offsets], perm=[0, 2, 1])  # (B, 8, 3)
    offsets = g.reshape("/policy/promotion/reshape", offsets, "/const/policy_promotion_shape", [-1, 1, 24])
    plain = g.slice("policy/promotion/slice2", logits, [0, 48, 56], [int_max, 56, 64])  # (B, 8, 8) rank 7 -> 8
    plain = g.reshape("/policy/promotion/reshape2", plain, "/const/policy_promotion_shape2", [-1, 64, 1])
    plain = g.node("Concat", "/policy/promotion/concat", [plain] * 3, axis=2)  # (B, 64, 3)
    plain = g.reshape("/policy/promotion/reshape3", plain, "/const/policy_promotion_shape3", [-1, 8, 24])
    promotions = g.node("Add", "/policy/promotion/add2", [plain, offsets])  # (B, 8 from, 8 to x 3)
    promotions = g.reshape("/policy/promotion/reshape4", promotions, "/const/policy_promotion_shape4", [-1, 3, 64])
    flow = g.node("Concat", "/policy/concat", [logits, promotions], axis=1)  # (B, 67, 64)
    flow = g.reshape("/policy/reshape", flow, "/const/policy_out_shape", [-1, ATTENTION_POLICY_SIZE])
    mapping = g.initializer("/const/mapping_table", ATTENTION_POLICY_GATHER.astype(np.int32))
    return g.node("Gather", POLICY_NAME, [flow, mapping], axis=1)


def _dense_head(g: GraphBuilder, prefix: str, shape_name: str, x: str, head: DenseHead, kind: Activation) -> str:
    """conv, reshape, dense1 + act, dense2 (before the head's output op)."""
    flow = _conv_block(g, f"{prefix}/conv", x, head.conv, kind)
    flow = g.reshape(f"{prefix}/reshape", flow, shape_name, [-1, head.conv.conv.out_channels * 64])
    flow = g.activation(f"{prefix}/dense1", g.dense(f"{prefix}/dense1/matmul", f"{prefix}/dense1/add", flow, head.fc1),
                        kind)
    return g.dense(f"{prefix}/dense2/matmul", f"{prefix}/dense2/add", flow, head.fc2)


def _graph_nodes(g: GraphBuilder, net: SEResNet) -> list[tuple[str, int]]:
    """Add every node; returns the graph outputs as (name, width)."""
    kind = net.config.activation
    scale = net.input_scale.detach().double().cpu().numpy().reshape(INPUT_PLANES)
    flow = _conv_block(g, "/inputconv", INPUT_NAME, net.input, kind, input_scale=scale)
    for i, block in enumerate(net.residual):
        flow = _residual_block(g, f"/block{i}", flow, block, kind)
    if net.config.policy == PolicyHead.CONVOLUTION:
        outputs = [(_convolution_policy(g, flow, net.policy, kind), POLICY_SIZE)]
    elif net.config.policy == PolicyHead.ATTENTION:
        outputs = [(_attention_policy(g, flow, net.policy), POLICY_SIZE)]
    else:
        outputs = [(_classical_policy(g, flow, net.policy, kind), POLICY_SIZE)]
    value = _dense_head(g, "/value", "/const/value_shape", flow, net.value, kind)
    if net.config.value == ValueHead.WDL:
        outputs.append((g.node("Softmax", WDL_NAME, [value], axis=1), 3))
    else:
        outputs.append((g.node("Tanh", VALUE_NAME, [value]), 1))
    if net.moves_left is not None:
        moves_left = _dense_head(g, "/mlh", "/const/mlh_shape", flow, net.moves_left, kind)
        outputs.append((g.node("Relu", MLH_NAME, [moves_left]), 1))
    return outputs


def build_onnx(net: SEResNet | AttentionNet, opset: int = DEFAULT_OPSET, fp16: bool = False) -> onnx.ModelProto:
    """The ONNX model of `net` (float32, or float16 weights, input and outputs with fp16=True)."""
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise Lc0DistillError(f"--opset {opset}: supported opsets are {MIN_OPSET} to {MAX_OPSET} (lc0 uses 17)")
    g = GraphBuilder(opset, fp16)
    if net.config.body == Body.ATTENTION:
        if opset < ATTENTION_MIN_OPSET:
            raise Lc0DistillError(f"--opset {opset}: attention bodies need opset {ATTENTION_MIN_OPSET} or later "
                                  f"(LayerNormalization), as lc0's converter writes them")
        from lc0distill.export.onnx_attention import attention_graph_nodes  # it builds on this module's builder

        outputs = attention_graph_nodes(g, net)
    else:
        outputs = _graph_nodes(g, net)
    elem = TensorProto.FLOAT16 if fp16 else TensorProto.FLOAT
    graph = helper.make_graph(
        g.nodes, f"lc0distill/{net.config.name}",
        [helper.make_tensor_value_info(INPUT_NAME, elem, [BATCH_AXIS, INPUT_PLANES, 8, 8])],
        [helper.make_tensor_value_info(name, elem, [BATCH_AXIS, width]) for name, width in outputs],
        g.initializers)
    opset_import = onnx.OperatorSetIdProto(version=opset)  # the default domain, left unset as lc0 does
    model = helper.make_model(graph, opset_imports=[opset_import], producer_name=PRODUCER,
                              producer_version=__version__, domain=MODEL_DOMAIN)
    model.ir_version = ir_version_for(opset)
    helper.set_model_props(model, {METADATA_INPUT_FORMAT: str(net.config.input_format),
                                   METADATA_NET: net.config.name})
    return model
