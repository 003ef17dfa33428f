"""The body's building blocks, mirroring lc0's weight layout (ConvBlock, SEunit, Residual)."""

from __future__ import annotations

import torch
from torch import nn

from lc0distill.models.config import Activation

BN_EPSILON = 1e-5  # lc0 folds batch norm with this epsilon


def activation(kind: Activation) -> nn.Module:
    return {Activation.RELU: nn.ReLU, Activation.MISH: nn.Mish, Activation.SWISH: nn.SiLU,
            Activation.RELU_2: SquaredReLU, Activation.SELU: nn.SELU, Activation.NONE: nn.Identity}[kind]()


class SquaredReLU(nn.Module):
    """relu(x)^2: the FFN activation of lc0's BT nets (ACTIVATION_RELU_2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x).square()


class ConvBN(nn.Module):
    """lc0's ConvBlock: a bias-free convolution and batch norm (the conv bias of a file folds into its mean)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPSILON)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, in, 8, 8) -> (B, out, 8, 8)
        return self.bn(self.conv(x))


class SEUnit(nn.Module):
    """Squeeze-excitation as lc0 computes it: pool, FC, act, FC to 2C; sigmoid(first C) * x + second C."""

    def __init__(self, channels: int, squeeze: int, kind: Activation):
        super().__init__()
        self.fc1 = nn.Linear(channels, squeeze)
        self.fc2 = nn.Linear(squeeze, 2 * channels)
        self.act = activation(kind)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, 8, 8)
        pooled = x.mean(dim=(2, 3))  # (B, C)
        gamma, beta = self.fc2(self.act(self.fc1(pooled))).chunk(2, dim=1)  # (B, C) each
        return torch.sigmoid(gamma)[:, :, None, None] * x + beta[:, :, None, None]


class ResidualBlock(nn.Module):
    """conv1 -> BN -> act -> conv2 -> BN -> SE -> + skip -> act."""

    def __init__(self, channels: int, squeeze: int, kind: Activation):
        super().__init__()
        self.conv1 = ConvBN(channels, channels, 3)
        self.conv2 = ConvBN(channels, channels, 3)
        self.se = SEUnit(channels, squeeze, kind) if squeeze else None
        self.act = activation(kind)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, 8, 8)
        out = self.conv2(self.act(self.conv1(x)))
        if self.se is not None:
            out = self.se(out)
        return self.act(out + x)

