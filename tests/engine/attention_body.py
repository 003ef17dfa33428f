"""A small attention-body lc0 net (NETWORK_ATTENTIONBODY_WITH_HEADFORMAT), written from the format's facts
with random weights: no such net is in ../shared. Embedding from the 112 planes plus lc0's 64-entry positional
map (176 inputs per square), post-LN encoder layers (multi-head attention, FFN), attention policy, WDL value
and moves-left heads from per-square embeddings. lc0 loads it, plays with it and converts it (tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lc0distill.lc0 import proto
from lc0distill.lc0.weights import MAGIC, encode_layer, net_file_bytes

NF = proto.NetworkFormat
EMBEDDING_INPUTS = 112 + 64  # the planes and lc0's positional map (input_embedding NONE / PE_MAP)


def write_attention_body_net(path: Path, embedding: int = 32, layers: int = 2, heads: int = 4, dff: int = 64,
                             policy_d_model: int = 32, head_embedding: int = 8, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)

    def fill(target, *shape, scale=None):  # (out, in) as lc0 stores dense weights
        spread = scale if scale is not None else 1 / np.sqrt(shape[-1] if len(shape) > 1 else 1)
        target.CopyFrom(encode_layer(rng.normal(0, spread, size=shape).astype(np.float32)))

    def near_one(target, size):
        target.CopyFrom(encode_layer((1 + rng.normal(0, 0.05, size)).astype(np.float32)))

    net = proto.Net(magic=MAGIC)
    net.min_version.major, net.min_version.minor = 0, 30  # lc0 reads attention bodies since 0.30
    net.format.weights_encoding = proto.Format.LINEAR16
    fmt = net.format.network_format
    fmt.input, fmt.output, fmt.network = 1, NF.OUTPUT_WDL, NF.NETWORK_ATTENTIONBODY_WITH_HEADFORMAT
    fmt.policy, fmt.value, fmt.moves_left = NF.POLICY_ATTENTION, NF.VALUE_WDL, NF.MOVES_LEFT_V1
    fmt.default_activation, fmt.input_embedding = NF.DEFAULT_ACTIVATION_MISH, NF.INPUT_EMBEDDING_NONE
    w = net.weights
    fill(w.ip_emb_w, embedding, EMBEDDING_INPUTS)
    fill(w.ip_emb_b, embedding, scale=0.1)
    for _ in range(layers):
        layer = w.encoder.add()
        for name in ("q", "k", "v", "dense"):
            fill(getattr(layer.mha, f"{name}_w"), embedding, embedding)
            fill(getattr(layer.mha, f"{name}_b"), embedding, scale=0.1)
        fill(layer.ffn.dense1_w, dff, embedding)
        fill(layer.ffn.dense1_b, dff, scale=0.1)
        fill(layer.ffn.dense2_w, embedding, dff)
        fill(layer.ffn.dense2_b, embedding, scale=0.1)
        for norm in ("ln1", "ln2"):
            near_one(getattr(layer, f"{norm}_gammas"), embedding)
            fill(getattr(layer, f"{norm}_betas"), embedding, scale=0.1)
    w.headcount = heads
    fill(w.ip_pol_w, embedding, embedding)
    fill(w.ip_pol_b, embedding, scale=0.1)
    for query_or_key in ("ip2_pol", "ip3_pol"):
        fill(getattr(w, f"{query_or_key}_w"), policy_d_model, embedding)
        fill(getattr(w, f"{query_or_key}_b"), policy_d_model, scale=0.1)
    fill(w.ip4_pol_w, 4, policy_d_model)
    for head, outputs in (("val", 3), ("mov", 1)):
        fill(getattr(w, f"ip_{head}_w"), head_embedding, embedding)
        fill(getattr(w, f"ip_{head}_b"), head_embedding, scale=0.1)
        fill(getattr(w, f"ip1_{head}_w"), 128, head_embedding * 64)
        fill(getattr(w, f"ip1_{head}_b"), 128, scale=0.1)
        fill(getattr(w, f"ip2_{head}_w"), outputs, 128)
        fill(getattr(w, f"ip2_{head}_b"), outputs, scale=0.1)
    Path(path).write_bytes(net_file_bytes(net))
    return Path(path)
