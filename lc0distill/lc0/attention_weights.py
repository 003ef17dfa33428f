"""Attention-body nets in lc0's file (NETWORK_ATTENTIONBODY_WITH_HEADFORMAT, the PE_MAP embedding): the walk
from AttentionNet's modules to the Weights message. Dense weights are stored [out][in] as nn.Linear holds
them; the input gates [channels][64] (transposed from the module's (64, channels)); the rule50 input column
of the embedding scaled for lc0's raw count (formats 1-3), as the SE writer does for its input convolution.
"""

from __future__ import annotations

import torch

from lc0distill.chess.input_formats import is_hectoplies
from lc0distill.lc0 import proto
from lc0distill.models.attention import AttentionNet, EncoderLayer
from lc0distill.models.config import Activation, NetConfig, ValueHead
from lc0distill.models.net import RULE50_INPUT_SCALE, RULE50_PLANE

NF = proto.NetworkFormat
ACTIVATIONS = {Activation.MISH: NF.ACTIVATION_MISH, Activation.RELU: NF.ACTIVATION_RELU,
               Activation.NONE: NF.ACTIVATION_NONE, Activation.SELU: NF.ACTIVATION_SELU,
               Activation.SWISH: NF.ACTIVATION_SWISH, Activation.RELU_2: NF.ACTIVATION_RELU_2}
MIN_VERSION = (0, 30, 0)  # lc0 runs attention bodies with smolgen and input gating since 0.30


def attention_network_format(config: NetConfig):
    """The SE-ResNet's format fields (input, heads, default activation), with the body's own."""
    from lc0distill.lc0.weights import network_format

    fmt = network_format(config)
    fmt.network = NF.NETWORK_ATTENTIONBODY_WITH_HEADFORMAT
    fmt.smolgen_activation = ACTIVATIONS[config.smolgen_activation]
    fmt.ffn_activation = ACTIVATIONS[config.ffn_activation]
    fmt.input_embedding = NF.INPUT_EMBEDDING_PE_MAP
    return fmt


def file_embedding_weight(model: AttentionNet) -> torch.Tensor:
    """(C, 176) float32: ip_emb as the file holds it (and lc0's ONNX conversion), the rule50 column scaled for
    the raw count lc0 feeds in formats 1-3."""
    embedding = model.embedding.weight.detach().float().clone()
    if not is_hectoplies(model.config.input_format):
        embedding[:, RULE50_PLANE] *= RULE50_INPUT_SCALE
    return embedding


def fill_attention_weights(model: AttentionNet, w, write) -> None:
    """`write` is weights._Writer: layer(target, tensor) and linear(weight, bias, module)."""
    write.layer(w.ip_emb_w, file_embedding_weight(model))
    write.layer(w.ip_emb_b, model.embedding.bias)
    if model.gate_mult is not None:
        write.layer(w.ip_mult_gate, model.gate_mult.detach().t())  # [channels][64]
        write.layer(w.ip_add_gate, model.gate_add.detach().t())
    for layer in model.encoders:
        _encoder(write, w.encoder.add(), layer)
    w.headcount = model.config.heads
    if model.smolgen_weight is not None:
        write.layer(w.smolgen_w, model.smolgen_weight.weight)  # [4096][gen]
    policy = model.policy
    write.linear(w.ip_pol_w, w.ip_pol_b, policy.embedding)
    for layer in policy.encoders:
        _encoder(write, w.pol_encoder.add(), layer)
    if len(policy.encoders):
        w.pol_headcount = model.config.policy_heads
    write.linear(w.ip2_pol_w, w.ip2_pol_b, policy.wq)
    write.linear(w.ip3_pol_w, w.ip3_pol_b, policy.wk)
    write.layer(w.ip4_pol_w, policy.ppo.weight)
    write.linear(w.ip_val_w, w.ip_val_b, model.value.embedding)
    write.linear(w.ip1_val_w, w.ip1_val_b, model.value.fc1)
    write.linear(w.ip2_val_w, w.ip2_val_b, model.value.fc2)
    if model.moves_left is not None:
        write.linear(w.ip_mov_w, w.ip_mov_b, model.moves_left.embedding)
        write.linear(w.ip1_mov_w, w.ip1_mov_b, model.moves_left.fc1)
        write.linear(w.ip2_mov_w, w.ip2_mov_b, model.moves_left.fc2)


def _ffn(write, target, ffn) -> None:
    write.linear(target.dense1_w, target.dense1_b, ffn.dense1)
    write.linear(target.dense2_w, target.dense2_b, ffn.dense2)


def _encoder(write, target, layer: EncoderLayer) -> None:
    mha = target.mha
    for name in ("q", "k", "v"):
        write.linear(getattr(mha, f"{name}_w"), getattr(mha, f"{name}_b"), getattr(layer, name))
    write.linear(mha.dense_w, mha.dense_b, layer.dense)
    if layer.smolgen is not None:
        smolgen, s = mha.smolgen, layer.smolgen
        write.layer(smolgen.compress, s.compress.weight)
        write.linear(smolgen.dense1_w, smolgen.dense1_b, s.dense1)
        write.layer(smolgen.ln1_gammas, s.ln1.weight)
        write.layer(smolgen.ln1_betas, s.ln1.bias)
        write.linear(smolgen.dense2_w, smolgen.dense2_b, s.dense2)
        write.layer(smolgen.ln2_gammas, s.ln2.weight)
        write.layer(smolgen.ln2_betas, s.ln2.bias)
    write.layer(target.ln1_gammas, layer.ln1.weight)
    write.layer(target.ln1_betas, layer.ln1.bias)
    _ffn(write, target.ffn, layer.ffn)
    write.layer(target.ln2_gammas, layer.ln2.weight)
    write.layer(target.ln2_betas, layer.ln2.bias)


def is_attention(model: torch.nn.Module) -> bool:
    return isinstance(model, AttentionNet)


# ------------------------------------------------------------------------------------------- reading

_ACTIVATION_OF = {value: key for key, value in ACTIVATIONS.items()}


def is_supported_attention(net) -> bool:
    """A file lc0distill builds as an AttentionNet: an attention body with head format, the PE_MAP embedding
    (as lc0 reads a file that names none) and no convolution tower before it (other attention nets run
    through lc0's ONNX conversion)."""
    fmt, w = net.format.network_format, net.weights
    return fmt.network == NF.NETWORK_ATTENTIONBODY_WITH_HEADFORMAT and \
        fmt.input_embedding in (NF.INPUT_EMBEDDING_NONE, NF.INPUT_EMBEDDING_PE_MAP) and not len(w.residual) and \
        not (w.HasField("policy_heads") or w.HasField("value_heads") or w.HasField("ip_emb_preproc_w"))


def _activation(value: int, default: Activation, name: str, fail) -> Activation:
    if value == NF.ACTIVATION_DEFAULT:  # lc0: an unset activation is the default one
        return default
    if value not in _ACTIVATION_OF:
        fail(f"format.network_format.{name}: {NF.ActivationFunction.Name(value)} is not one lc0 runs here")
    return _ACTIVATION_OF[value]


def attention_config(net, size, fail) -> dict:
    """The NetConfig fields of an attention-body file, from its format and its tensors' sizes. `size(layer)`
    counts a layer's values; `fail(message)` raises."""
    fmt, w = net.format.network_format, net.weights
    filters = size(w.ip_emb_b)
    if not filters:
        fail("weights.ip_emb_b: an attention body without its embedding")
    default = Activation.MISH if fmt.default_activation == NF.DEFAULT_ACTIVATION_MISH else Activation.RELU
    encoder = w.encoder[0] if len(w.encoder) else None
    smolgen = encoder is not None and encoder.mha.HasField("smolgen")
    heads = w.headcount or 1
    moves_left = fmt.moves_left == NF.MOVES_LEFT_V1 and w.HasField("ip_mov_w")
    return dict(
        body="attention", filters=filters, blocks=len(w.encoder), heads=heads,
        ffn_width=size((encoder if encoder is not None else w.pol_encoder[0]).ffn.dense1_b)
        if encoder is not None or len(w.pol_encoder) else 0,
        input_gating=w.HasField("ip_mult_gate"),
        smolgen=smolgen,
        smolgen_channels=max(1, size(encoder.mha.smolgen.compress) // filters) if smolgen else 32,
        smolgen_hidden=max(1, size(encoder.mha.smolgen.dense1_b)) if smolgen else 256,
        smolgen_gen=max(1, size(encoder.mha.smolgen.dense2_b) // heads) if smolgen else 256,
        ffn_activation=_activation(fmt.ffn_activation, default, "ffn_activation", fail),
        smolgen_activation=_activation(fmt.smolgen_activation, default, "smolgen_activation", fail),
        policy="attention", policy_embedding=max(1, size(w.ip_pol_b)), policy_d_model=max(1, size(w.ip2_pol_b)),
        policy_encoders=len(w.pol_encoder), policy_heads=w.pol_headcount or 4,
        value=ValueHead.WDL if fmt.value == NF.VALUE_WDL else ValueHead.SCALAR,
        value_channels=max(1, size(w.ip_val_b)), value_hidden=max(1, size(w.ip1_val_b)),
        moves_left=moves_left,
        moves_left_channels=max(1, size(w.ip_mov_b)) if moves_left else 8,
        moves_left_hidden=max(1, size(w.ip1_mov_b)) if moves_left else 128,
        activation=default, input_format=fmt.input or 1,
    )


def load_attention_weights(model: AttentionNet, w, load) -> None:
    """`load` is weights._Loader: tensor(layer, name, target) and linear(weight, bias, name, module)."""
    load.linear(w.ip_emb_w, w.ip_emb_b, "weights.ip_emb", model.embedding)
    if not is_hectoplies(model.config.input_format) and not load.sizes_only:  # raw rule50 count in the file
        with torch.no_grad():
            model.embedding.weight[:, RULE50_PLANE] /= RULE50_INPUT_SCALE
    if model.gate_mult is not None:
        for layer, name, target in ((w.ip_mult_gate, "weights.ip_mult_gate", model.gate_mult),
                                    (w.ip_add_gate, "weights.ip_add_gate", model.gate_add)):
            transposed = torch.empty_like(target).t()  # the file's [channels][64]
            load.tensor(layer, name, transposed)
            if not load.sizes_only:
                with torch.no_grad():
                    target.copy_(transposed.t())
    for i, (layer, module) in enumerate(zip(w.encoder, model.encoders)):
        _load_encoder(load, layer, f"weights.encoder[{i}]", module)
    if model.smolgen_weight is not None:
        load.tensor(w.smolgen_w, "weights.smolgen_w", model.smolgen_weight.weight)
    policy = model.policy
    load.linear(w.ip_pol_w, w.ip_pol_b, "weights.ip_pol", policy.embedding)
    for i, (layer, module) in enumerate(zip(w.pol_encoder, policy.encoders)):
        _load_encoder(load, layer, f"weights.pol_encoder[{i}]", module)
    load.linear(w.ip2_pol_w, w.ip2_pol_b, "weights.ip2_pol", policy.wq)
    load.linear(w.ip3_pol_w, w.ip3_pol_b, "weights.ip3_pol", policy.wk)
    load.tensor(w.ip4_pol_w, "weights.ip4_pol_w", policy.ppo.weight)
    load.linear(w.ip_val_w, w.ip_val_b, "weights.ip_val", model.value.embedding)
    load.linear(w.ip1_val_w, w.ip1_val_b, "weights.ip1_val", model.value.fc1)
    load.linear(w.ip2_val_w, w.ip2_val_b, "weights.ip2_val", model.value.fc2)
    if model.moves_left is not None:
        load.linear(w.ip_mov_w, w.ip_mov_b, "weights.ip_mov", model.moves_left.embedding)
        load.linear(w.ip1_mov_w, w.ip1_mov_b, "weights.ip1_mov", model.moves_left.fc1)
        load.linear(w.ip2_mov_w, w.ip2_mov_b, "weights.ip2_mov", model.moves_left.fc2)


def _norm(load, gammas, betas, name: str, module: torch.nn.LayerNorm) -> None:
    load.tensor(gammas, f"{name}_gammas", module.weight)
    load.tensor(betas, f"{name}_betas", module.bias)


def _load_ffn(load, message, name: str, ffn) -> None:
    load.linear(message.dense1_w, message.dense1_b, f"{name}.dense1", ffn.dense1)
    load.linear(message.dense2_w, message.dense2_b, f"{name}.dense2", ffn.dense2)


def _load_encoder(load, message, name: str, layer: EncoderLayer) -> None:
    mha = message.mha
    for part in ("q", "k", "v", "dense"):
        load.linear(getattr(mha, f"{part}_w"), getattr(mha, f"{part}_b"), f"{name}.mha.{part}", getattr(layer, part))
    if layer.smolgen is not None:
        smolgen, s = mha.smolgen, layer.smolgen
        load.tensor(smolgen.compress, f"{name}.mha.smolgen.compress", s.compress.weight)
        load.linear(smolgen.dense1_w, smolgen.dense1_b, f"{name}.mha.smolgen.dense1", s.dense1)
        _norm(load, smolgen.ln1_gammas, smolgen.ln1_betas, f"{name}.mha.smolgen.ln1", s.ln1)
        load.linear(smolgen.dense2_w, smolgen.dense2_b, f"{name}.mha.smolgen.dense2", s.dense2)
        _norm(load, smolgen.ln2_gammas, smolgen.ln2_betas, f"{name}.mha.smolgen.ln2", s.ln2)
    _norm(load, message.ln1_gammas, message.ln1_betas, f"{name}.ln1", layer.ln1)
    _load_ffn(load, message.ffn, f"{name}.ffn", layer.ffn)
    _norm(load, message.ln2_gammas, message.ln2_betas, f"{name}.ln2", layer.ln2)
