"""Output heads in lc0's layout: convolution or classical policy, WDL or scalar value, moves-left."""

from __future__ import annotations

import torch
from torch import nn

from lc0distill.chess.policy_index import CONV_POLICY_CHANNELS, CONV_POLICY_GATHER, POLICY_SIZE
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
