"""AttentionNet: lc0's attention body (the BT nets) and its heads, computed as the lc0 engine computes them.

The 64 squares are tokens. The embedding (lc0's PE_MAP): each square's 112 plane values followed by 64
positional channels, a fixed map of the squares it sees (position_map), through a dense layer with the default
activation, then the input gating (x * mult + add per square and channel). Then post-LN encoder layers:
multi-head attention whose logits get smolgen's per-position bias (a small generator per layer, expanded to
64 x 64 per head by one weight every layer shares), an FFN; each residual is LN(x + f(x) / alpha) with
DeepNorm's alpha = (2 N)^(1/4) for the N body layers (1 in policy encoders). Layer-norm epsilons as the lc0
engine has them: 1e-6 in encoders, 1e-3 in smolgen.

Heads read the tokens: the attention policy (a dense embedding with the default activation, optional
encoder layers, queries and keys, promotion offsets), and the value and moves-left heads (a dense layer per
square, flattened square-major, then two dense layers). The module tree mirrors lc0's weight file.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lc0distill.models.blocks import activation
from lc0distill.models.config import Activation, NetConfig, ValueHead
from lc0distill.models.heads import AttentionPolicy
from lc0distill.models.net import INPUT_PLANES, NetOutput, input_scale

ENCODER_EPSILON = 1e-6
SMOLGEN_EPSILON = 1e-3  # Keras' default, as lczero-training trains smolgen


def position_map() -> torch.Tensor:
    """(64, 64): for each square (row), which squares (columns) it relates to: 1 on its rank, file and
    diagonals and within two king steps, -1 at itself, 0 elsewhere. Squares are 8 * rank + file. The map the
    lc0 engine appends to each square's planes (its PE_MAP embedding; tests/engine checks it against the one
    lc0 writes into its own ONNX conversion)."""
    rank, file = torch.arange(64) // 8, torch.arange(64) % 8
    dr, df = (rank[:, None] - rank[None, :]).abs(), (file[:, None] - file[None, :]).abs()
    sees = (dr == 0) | (df == 0) | (dr == df) | ((dr <= 2) & (df <= 2))
    return torch.where(torch.eye(64, dtype=torch.bool), -1.0, sees.float())


class FFN(nn.Module):
    def __init__(self, width: int, hidden: int, kind: Activation):
        super().__init__()
        self.dense1, self.act, self.dense2 = nn.Linear(width, hidden), activation(kind), nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense2(self.act(self.dense1(x)))


class Smolgen(nn.Module):
    """Per position, a (heads, gen) code: compress each square, flatten, two dense layers each with its
    activation and layer norm. The shared `global_weight` turns each head's code into 64 x 64 logits."""

    def __init__(self, width: int, heads: int, channels: int, hidden: int, gen: int, kind: Activation):
        super().__init__()
        self.heads, self.gen = heads, gen
        self.compress = nn.Linear(width, channels, bias=False)
        self.dense1, self.ln1 = nn.Linear(64 * channels, hidden), nn.LayerNorm(hidden, eps=SMOLGEN_EPSILON)
        self.dense2, self.ln2 = nn.Linear(hidden, heads * gen), nn.LayerNorm(heads * gen, eps=SMOLGEN_EPSILON)
        self.act = activation(kind)

    def forward(self, x: torch.Tensor, global_weight: nn.Linear) -> torch.Tensor:  # (B, 64, C) -> (B, H, 64, 64)
        code = self.compress(x).flatten(1)  # (B, 64 * channels), square-major
        code = self.ln1(self.act(self.dense1(code)))
        code = self.ln2(self.act(self.dense2(code))).view(-1, self.heads, self.gen)
        return global_weight(code).view(-1, self.heads, 64, 64)  # [query square][key square]


class EncoderLayer(nn.Module):
    def __init__(self, width: int, heads: int, hidden: int, ffn_kind: Activation, epsilon: float, alpha: float,
                 smolgen: Smolgen | None = None):
        super().__init__()
        self.heads, self.depth, self.alpha = heads, width // heads, alpha
        self.q, self.k, self.v = nn.Linear(width, width), nn.Linear(width, width), nn.Linear(width, width)
        self.dense = nn.Linear(width, width)
        self.smolgen = smolgen
        self.ln1 = nn.LayerNorm(width, eps=epsilon)
        self.ffn = FFN(width, hidden, ffn_kind)
        self.ln2 = nn.LayerNorm(width, eps=epsilon)

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # (B, 64, H * depth) -> (B, H, 64, depth), heads-major
        return x.view(x.shape[0], 64, self.heads, self.depth).transpose(1, 2)

    def forward(self, x: torch.Tensor, smolgen_weight: nn.Linear | None = None) -> torch.Tensor:  # (B, 64, C)
        q, k, v = self._split(self.q(x)), self._split(self.k(x)), self._split(self.v(x))
        logits = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.depth)  # (B, H, 64 queries, 64 keys)
        if self.smolgen is not None:
            logits = logits + self.smolgen(x, smolgen_weight)
        attended = torch.matmul(logits.softmax(dim=-1), v).transpose(1, 2).reshape(x.shape)
        x = self.ln1(x + self.dense(attended) / self.alpha)
        return self.ln2(x + self.ffn(x) / self.alpha)


class TokenHead(nn.Module):
    """lc0's value / moves-left head on tokens: a dense layer per square (act), flattened square-major, a
    dense layer (act), a dense layer to the outputs."""

    def __init__(self, width: int, channels: int, hidden: int, outputs: int, kind: Activation):
        super().__init__()
        self.embedding, self.fc1, self.fc2 = nn.Linear(width, channels), nn.Linear(64 * channels, hidden), \
            nn.Linear(hidden, outputs)
        self.act = activation(kind)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # (B, 64, C) -> (B, outputs)
        return self.fc2(self.act(self.fc1(self.act(self.embedding(tokens)).flatten(1))))


class AttentionNet(nn.Module):
    def __init__(self, config: NetConfig):
        super().__init__()
        self.config = config
        c, kind = config.filters, config.activation
        self.register_buffer("input_scale", input_scale(config).view(1, INPUT_PLANES, 1, 1), persistent=False)
        self.register_buffer("position_map", position_map(), persistent=False)
        self.embedding = nn.Linear(INPUT_PLANES + 64, c)  # ip_emb
        self.act = activation(kind)
        self.gate_mult = nn.Parameter(torch.ones(64, c)) if config.input_gating else None  # ip_mult_gate
        self.gate_add = nn.Parameter(torch.zeros(64, c)) if config.input_gating else None  # ip_add_gate
        alpha = (2 * config.blocks) ** 0.25 if config.blocks else 1.0
        self.encoders = nn.ModuleList(
            EncoderLayer(c, config.heads, config.dff, config.ffn_activation, ENCODER_EPSILON, alpha,
                         Smolgen(c, config.heads, config.smolgen_channels, config.smolgen_hidden, config.smolgen_gen,
                                 config.smolgen_activation) if config.smolgen else None)
            for _ in range(config.blocks))
        self.smolgen_weight = nn.Linear(config.smolgen_gen, 64 * 64, bias=False) if config.smolgen else None
        policy_encoders = [EncoderLayer(config.policy_embedding, config.policy_heads, config.dff,
                                        config.ffn_activation, ENCODER_EPSILON, 1.0)
                           for _ in range(config.policy_encoders)]
        self.policy = AttentionPolicy(c, config.policy_embedding, config.policy_d_model, kind, policy_encoders)
        outputs = 3 if config.value == ValueHead.WDL else 1
        self.value = TokenHead(c, config.value_channels, config.value_hidden, outputs, kind)
        self.moves_left = (TokenHead(c, config.moves_left_channels, config.moves_left_hidden, 1, kind)
                           if config.moves_left else None)

    def tokens(self, planes: torch.Tensor) -> torch.Tensor:  # (B, 112, 8, 8) -> (B, 64, C)
        squares = (planes * self.input_scale).flatten(2).transpose(1, 2)  # (B, 64, 112), square = 8 * rank + file
        positions = self.position_map.to(squares.dtype).expand(squares.shape[0], 64, 64)
        x = self.act(self.embedding(torch.cat([squares, positions], dim=2)))
        if self.gate_mult is not None:
            x = x * self.gate_mult + self.gate_add
        for layer in self.encoders:
            x = layer(x, self.smolgen_weight)
        return x

    def flops(self) -> int:
        """Multiply-adds x 2 per position: the dense layers (per square where they act on tokens), the
        attention products (Q.K^T and A.V) and smolgen's expansion; norms, activations and softmax left out."""
        c, cfg = self.config.filters, self.config

        def encoder(width: int, heads: int, smolgen: bool) -> int:
            total = 64 * 2 * (4 * width * width + 2 * width * cfg.dff) + 2 * 2 * 64 * 64 * width
            if smolgen:
                total += 64 * 2 * width * cfg.smolgen_channels + 2 * 64 * cfg.smolgen_channels * cfg.smolgen_hidden \
                    + 2 * cfg.smolgen_hidden * heads * cfg.smolgen_gen + 2 * cfg.smolgen_gen * 64 * 64 * heads
            return total

        e, d = cfg.policy_embedding, cfg.policy_d_model
        total = 64 * 2 * (INPUT_PLANES + 64) * c + cfg.blocks * encoder(c, cfg.heads, cfg.smolgen)
        total += 64 * 2 * c * e + cfg.policy_encoders * encoder(e, cfg.policy_heads, False)
        total += 64 * 2 * 2 * e * d + 2 * 64 * 64 * d
        for head in (self.value, self.moves_left):
            if head is not None:
                total += 64 * 2 * c * head.embedding.out_features + 2 * head.fc1.in_features * head.fc1.out_features \
                    + 2 * head.fc2.in_features * head.fc2.out_features
        return total

    def forward(self, planes: torch.Tensor) -> NetOutput:
        x = self.tokens(planes)
        value = self.value(x)
        wdl = value if self.config.value == ValueHead.WDL else None
        scalar = torch.tanh(value[:, 0]) if wdl is None else None
        moves_left = torch.relu(self.moves_left(x)[:, 0]) if self.moves_left is not None else None
        return NetOutput(self.policy.from_tokens(x), wdl, scalar, moves_left)
