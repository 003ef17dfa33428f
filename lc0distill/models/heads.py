"""Output heads in lc0's layout: convolution, classical or attention policy, WDL or scalar value, moves-left."""

from __future__ import annotations

import math

import torch
from torch import nn

from lc0distill.chess.policy_index import (ATTENTION_POLICY_GATHER, CONV_POLICY_CHANNELS, CONV_POLICY_GATHER,
                                           POLICY_SIZE)
from lc0distill.models.blocks import ConvBN, activation
from lc0distill.models.config import Activation


class ConvolutionPolicy(nn.Module):
    """policy1 (3x3 ConvBN, act) -> policy (3x3 conv to 80 planes, with bias) -> gather to 1858 logits."""

    def __init__(self, channels: int, kind: Activation):
        super().__init__()
        self.policy1 = ConvBN(channels, channels, 3)
        self.act = activation(kind)
        self.policy = nn.Conv2d(channels, CONV_POLICY_CHANNELS, 3, padding=1, bias=True)
        self.register_buffer("gather", torch.from_numpy(CONV_POLICY_GATHER), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, 8, 8) -> (B, 1858)
        planes = self.policy(self.act(self.policy1(x)))  # (B, 80, 8, 8)
        return planes.flatten(1).index_select(1, self.gather)


class ClassicalPolicy(nn.Module):
    """1x1 ConvBN to a few planes, act, then a dense layer to 1858 logits."""

    def __init__(self, channels: int, policy_channels: int, kind: Activation):
        super().__init__()
        self.conv = ConvBN(channels, policy_channels, 1)
        self.act = activation(kind)
        self.fc = nn.Linear(policy_channels * 64, POLICY_SIZE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, 8, 8) -> (B, 1858)
        return self.fc(self.act(self.conv(x)).flatten(1))


class AttentionPolicy(nn.Module):
    """lc0's attention policy (FORMATS.md §3.4): each square's C features are a token; a dense embedding
    (SELU on SE bodies as lc0 has it, the default activation on attention bodies), optional encoder layers,
    queries and keys; the from->to logit is q.k / sqrt(d); a promotion adds an offset per to-file and piece
    (from the rank-8 keys, unscaled, as the lc0 engine computes it; the knight's offset is added to the other
    three) to the rank-7 -> rank-8 logit. 64*64 + 8*24 logits gathered to the 1858 moves."""

    def __init__(self, channels: int, embedding: int, d_model: int, kind: Activation = Activation.SELU,
                 encoders: list[nn.Module] = ()):
        super().__init__()
        self.embedding = nn.Linear(channels, embedding)  # ip_pol
        self.act = activation(kind)
        self.encoders = nn.ModuleList(encoders)  # pol_encoder
        self.wq = nn.Linear(embedding, d_model)  # ip2_pol
        self.wk = nn.Linear(embedding, d_model)  # ip3_pol
        self.ppo = nn.Linear(d_model, 4, bias=False)  # ip4_pol: offsets q, r, b, n
        self.scale = 1.0 / math.sqrt(d_model)
        self.register_buffer("gather", torch.from_numpy(ATTENTION_POLICY_GATHER), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, 8, 8) -> (B, 1858)
        return self.from_tokens(x.flatten(2).transpose(1, 2))  # (B, 64, C), square = 8 * rank + file

    def from_tokens(self, tokens: torch.Tensor) -> torch.Tensor:  # (B, 64, C) -> (B, 1858)
        embedded = self.act(self.embedding(tokens))
        for layer in self.encoders:
            embedded = layer(embedded)
        queries, keys = self.wq(embedded), self.wk(embedded)  # (B, 64, d)
        logits = torch.matmul(queries, keys.transpose(1, 2)) * self.scale  # (B, 64 from, 64 to)
        offsets = self.ppo(keys[:, 56:64])  # (B, 8 to-files, 4); lc0 does not scale these by 1 / sqrt(d)
        offsets = offsets[..., :3] + offsets[..., 3:]  # (B, 8, 3): q, r, b
        promotions = logits[:, 48:56, 56:64].unsqueeze(-1) + offsets.unsqueeze(1)  # (B, 8 from, 8 to, 3)
        flat = torch.cat([logits.flatten(1), promotions.flatten(1)], dim=1)  # (B, 4288)
        return flat.index_select(1, self.gather)


class DenseHead(nn.Module):
    """1x1 ConvBN, act, dense, act, dense: the shape of lc0's value and moves-left heads."""

    def __init__(self, channels: int, head_channels: int, hidden: int, outputs: int, kind: Activation):
        super().__init__()
        self.conv = ConvBN(channels, head_channels, 1)
        self.fc1 = nn.Linear(head_channels * 64, hidden)
        self.fc2 = nn.Linear(hidden, outputs)
        self.act = activation(kind)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, 8, 8) -> (B, outputs)
        return self.fc2(self.act(self.fc1(self.act(self.conv(x)).flatten(1))))
