"""An AttentionNet as the ONNX graph lc0's `leela2onnx` writes for the same weights (attention body, PE_MAP).

Tokens flow as (B*64, C) matrices, squares 8 * rank + file. The embedding: the planes transposed to
(B, 64, 112), the 64-channel positional map expanded over the batch and concatenated, a dense layer and the
default activation, then the input gates. Each encoder: multi-head attention (queries, keys and values as
(B, heads, 64, depth); smolgen's logits added before the softmax), the residual as lc0 writes it,
LN(alpha * x + f(x)) with epsilon 1e-6, which is our LN(x + f(x) / alpha) with epsilon 1e-6 / alpha^2 (layer
norm ignores the scale but not the epsilon), the FFN likewise. The heads read the tokens. Names, node order and
initializer order are lc0 v0.31's (tests/engine/test_attention_nets.py compares them node for node); the
embedding's weights are the file's (lc0/attention_weights.file_embedding_weight).
"""

from __future__ import annotations

import numpy as np
import torch

from lc0distill.chess.policy_index import POLICY_SIZE
from lc0distill.export.names import INPUT_NAME, MLH_NAME, VALUE_NAME, WDL_NAME
from lc0distill.export.onnx_graph import GraphBuilder, as_numpy, attention_policy_logits
from lc0distill.lc0.attention_weights import file_embedding_weight
from lc0distill.models.attention import AttentionNet, EncoderLayer, Smolgen, TokenHead
from lc0distill.models.config import Activation, NetConfig, ValueHead
from lc0distill.models.net import INPUT_PLANES


def _layer_norm(g: GraphBuilder, name: str, x: str, norm: torch.nn.LayerNorm) -> str:
    scale = g.weight(f"{name}/w/scale", as_numpy(norm.weight))
    bias = g.weight(f"{name}/w/bias", as_numpy(norm.bias))
    return g.node("LayerNormalization", name, [x, scale, bias], axis=1, epsilon=float(norm.eps))


def _embedding(g: GraphBuilder, net: AttentionNet) -> str:
    c = net.config.filters
    flow = g.node("Transpose", "/attn_body/transpose", [INPUT_NAME], perm=[0, 2, 3, 1])  # (B, 8, 8, 112)
    flow = g.reshape("/attn_body/reshape", flow, "/const/att_body_shape", [-1, 64, INPUT_PLANES])
    batch = g.slice("/attn_body/batch", g.node("Shape", "/attn_body/shape", [flow]), [0], [1])
    shape = g.node("Concat", "/attn_body/pos_encoding_shape",
                   [batch, g.initializer("/const/pos_encoding_shape", np.array([64, 64], dtype=np.int64))], axis=0)
    encoding = g.weight("/const/pos_encoding", net.position_map.double().cpu().numpy()[None])  # (1, 64, 64)
    encoding = g.node("Expand", "/attn_body/expand", [encoding, shape])  # (B, 64, 64)
    flow = g.node("Concat", "/attn_body/padded_input", [flow, encoding], axis=2)  # (B, 64, 176)
    flow = g.reshape("/attn_body/reshape2", flow, "/const/att_body_shape2", [-1, INPUT_PLANES + 64])
    weight = file_embedding_weight(net).cpu().numpy().T  # (176, C), as lc0's file holds it
    flow = g.add_bias("/attn_body/add", g.matmul("/attn_body/matmul", flow, weight), as_numpy(net.embedding.bias))
    flow = g.activation("/attn_body", flow, net.config.activation)
    if net.gate_mult is None:
        return flow
    flow = g.reshape("/attn_body/ma_gating/rehape1", flow, "/const/ma_gating/shape1", [-1, 64, c])  # lc0's spelling
    flow = g.node("Mul", "/ip_mul_gate", [flow, g.weight("/ip_mul_gate/w", as_numpy(net.gate_mult))])
    flow = g.node("Add", "/ip_add_gate", [flow, g.weight("/ip_add_gate/w", as_numpy(net.gate_add))])
    return g.reshape("/attn_body/ma_gating/rehape2", flow, "/const/ma_gating/shape2", [-1, c])


def _smolgen(g: GraphBuilder, name: str, x: str, smolgen: Smolgen, weight: str, kind: Activation) -> str:
    """(B*64, C) -> (B, heads, 64, 64) logits."""
    flow = g.matmul(f"{name}/compress", x, as_numpy(smolgen.compress.weight).T)
    flow = g.reshape(f"{name}/compress/reshape", flow, f"/const{name}/compress/shape",
                     [-1, 64 * smolgen.compress.out_features])
    for index, (dense, norm) in enumerate(((smolgen.dense1, smolgen.ln1), (smolgen.dense2, smolgen.ln2)), start=1):
        flow = g.dense(f"{name}/dense{index}/w", f"{name}/dense{index}/b", flow, dense)
        flow = _layer_norm(g, f"{name}/ln{index}", g.activation(f"{name}/dense{index}", flow, kind),
                           norm)
    flow = g.reshape(f"{name}/gen_from/reshape", flow, f"/const{name}/gen_from/shape", [-1, smolgen.heads, smolgen.gen])
    flow = g.node("MatMul", f"{name}/smol_weight_gen", [flow, weight])
    return g.reshape(f"{name}/out/reshape", flow, f"/const{name}/out/shape", [-1, smolgen.heads, 64, 64])


def _residual(g: GraphBuilder, name: str, skip_name: str, f: str, x: str, alpha: float) -> str:
    if alpha != 1.0:
        x = g.node("Mul", name, [x, g.weight(f"{name}/w", np.array([alpha]))])
    return g.node("Add", skip_name, [f, x])


def _encoder(g: GraphBuilder, name: str, x: str, layer: EncoderLayer, config: NetConfig,
             smolgen_weight: str | None = None) -> str:
    width = layer.q.in_features
    shape = g.initializer(f"/const{name}/mha/shape", np.array([-1, 64, layer.heads, layer.depth], dtype=np.int64))
    heads = {}
    for part, dense, perm in (("Q", layer.q, [0, 2, 1, 3]), ("K", layer.k, [0, 2, 3, 1]), ("V", layer.v, [0, 2, 1, 3])):
        flow = g.dense(f"{name}/mha/{part}/w", f"{name}/mha/{part}/b", x, dense)
        flow = g.node("Reshape", f"{name}/mha/{part}/reshape", [flow, shape])
        heads[part] = g.node("Transpose", f"{name}/mha/{part}/transpose", [flow], perm=perm)
    logits = g.node("MatMul", f"{name}/mha/QK/matmul", [heads["Q"], heads["K"]])  # (B, H, 64, 64)
    logits = g.node("Mul", f"{name}/mha/QK/scale",
                    [logits, g.weight(f"{name}/mha/QK/scale/w", np.array([1.0 / np.sqrt(layer.depth)]))])
    if layer.smolgen is not None:
        logits = g.node("Add", f"{name}/smolgen_weights",
                        [logits, _smolgen(g, f"{name}/smolgen", x, layer.smolgen, smolgen_weight,
                                                   config.smolgen_activation)])
    flow = g.node("Softmax", f"{name}/mha/QK/softmax", [logits], axis=3)
    flow = g.node("MatMul", f"{name}/mha/QKV/matmul", [flow, heads["V"]])  # (B, H, 64, depth)
    flow = g.node("Transpose", f"{name}/mha/out/transpose", [flow], perm=[0, 2, 1, 3])
    flow = g.reshape(f"{name}/mha/out/reshape", flow, f"/const{name}/mha/out/shape", [-1, width])
    flow = g.dense(f"{name}/mha/out/dense/w", f"{name}/mha/out/dense/b", flow, layer.dense)
    x = _layer_norm(g, f"{name}/ln1", _residual(g, f"{name}/alpha*input", f"{name}/mha/out/skip", flow, x,
                                                layer.alpha), layer.ln1)
    flow = g.dense(f"{name}/ffn/dense1/w", f"{name}/ffn/dense1/b", x, layer.ffn.dense1)
    flow = g.activation(f"{name}/ffn/dense1", flow, config.ffn_activation)
    flow = g.dense(f"{name}/ffn/dense2/w", f"{name}/ffn/dense2/b", flow, layer.ffn.dense2)
    return _layer_norm(g, f"{name}/ln2", _residual(g, f"{name}/alpha*out1", f"{name}/ffn/skip", flow, x,
                                                   layer.alpha), layer.ln2)


def _token_head(g: GraphBuilder, prefix: str, shape_name: str, x: str, head: TokenHead, kind: Activation) -> str:
    flow = g.activation(f"{prefix}/embed", g.dense(f"{prefix}/embed/matmul", f"{prefix}/embed/add", x, head.embedding),
                        kind)
    flow = g.reshape(f"{prefix}/reshape", flow, shape_name, [-1, head.fc1.in_features])
    flow = g.activation(f"{prefix}/dense1", g.dense(f"{prefix}/dense1/matmul", f"{prefix}/dense1/add", flow, head.fc1),
                        kind)
    return g.dense(f"{prefix}/dense2/matmul", f"{prefix}/dense2/add", flow, head.fc2)


def attention_graph_nodes(g: GraphBuilder, net: AttentionNet) -> list[tuple[str, int]]:
    """Add every node of an attention-body net; returns the graph outputs as (name, width)."""
    kind = net.config.activation
    smolgen_weight = None
    if net.smolgen_weight is not None:  # lc0 adds the shared weight first: (gen, 64 * 64)
        smolgen_weight = g.weight("/const/smolgen_w", as_numpy(net.smolgen_weight.weight).T)
    flow = _embedding(g, net)
    for index, layer in enumerate(net.encoders):
        flow = _encoder(g, f"/encoder{index}", flow, layer, net.config, smolgen_weight)
    head = net.policy
    policy = g.activation("/policy/dense1", g.dense("/policy/dense1/matmul", "/policy/dense1/add", flow,
                                                    head.embedding), kind)
    for index, layer in enumerate(head.encoders):
        policy = _encoder(g, f"/policy/enc_layer_{index}", policy, layer, net.config)
    outputs = [(attention_policy_logits(g, policy, head), POLICY_SIZE)]
    value = _token_head(g, "/value", "/const/value_shape", flow, net.value, kind)
    if net.config.value == ValueHead.WDL:
        outputs.append((g.node("Softmax", WDL_NAME, [value], axis=1), 3))
    else:
        outputs.append((g.node("Tanh", VALUE_NAME, [value]), 1))
    if net.moves_left is not None:  # ReLU, as lc0's engine applies it (its converter applies the default act)
        moves_left = _token_head(g, "/mlh", "/const/mlh_shape", flow, net.moves_left, kind)
        outputs.append((g.node("Relu", MLH_NAME, [moves_left]), 1))
    return outputs
