"""SEResNet: lc0's SE-ResNet body and heads. The module tree mirrors lc0's weight file, so reading and
writing `.pb.gz` (lc0distill/lc0/weights.py) is a plain walk over it.

Input: the (B, 112, 8, 8) planes exactly as the lc0 engine feeds them (rule50 as a raw ply count for input
formats 1-3). The net multiplies plane 109 by RULE50_INPUT_SCALE for those formats so that training sees a
small number; lc0 files store the input weights for raw counts, so reading multiplies that input channel's
weights by 128 and writing divides them back (powers of two: the round trip is exact).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lc0distill.chess.input_formats import is_hectoplies
from lc0distill.models.blocks import ConvBN, ResidualBlock, activation
from lc0distill.models.config import NetConfig, PolicyHead, ValueHead
from lc0distill.models.heads import AttentionPolicy, ClassicalPolicy, ConvolutionPolicy, DenseHead

INPUT_PLANES = 112
RULE50_PLANE = 109
RULE50_INPUT_SCALE = 1.0 / 128.0  # formats 1-3 only; formats >= 4 already feed count / 100


@dataclass
class NetOutput:
    policy_logits: torch.Tensor  # (B, 1858)
    wdl_logits: torch.Tensor | None  # (B, 3) win/draw/loss logits (WDL value head)
    value: torch.Tensor | None  # (B,) tanh value in [-1, 1] (scalar value head)
    moves_left: torch.Tensor | None  # (B,) plies left, >= 0 (moves-left head)

    def q(self) -> torch.Tensor:
        """(B,) expected score W - L (or the scalar value)."""
        if self.wdl_logits is not None:
            wdl = self.wdl_logits.softmax(dim=1)
            return wdl[:, 0] - wdl[:, 2]
        return self.value


def input_scale(config: NetConfig) -> torch.Tensor:
    scale = torch.ones(INPUT_PLANES)
    if not is_hectoplies(config.input_format):
        scale[RULE50_PLANE] = RULE50_INPUT_SCALE
    return scale


class SEResNet(nn.Module):
    def __init__(self, config: NetConfig):
        super().__init__()
        self.config = config
        c = config.filters
        self.register_buffer("input_scale", input_scale(config).view(1, INPUT_PLANES, 1, 1), persistent=False)
        self.input = ConvBN(INPUT_PLANES, c, 3)
        self.act = activation(config.activation)
        self.residual = nn.ModuleList(ResidualBlock(c, config.squeeze, config.activation) for _ in range(config.blocks))
        if config.policy == PolicyHead.CONVOLUTION:
            self.policy = ConvolutionPolicy(c, config.activation)
        elif config.policy == PolicyHead.ATTENTION:
            self.policy = AttentionPolicy(c, config.policy_embedding, config.policy_d_model)
        else:
            self.policy = ClassicalPolicy(c, config.policy_channels, config.activation)
        outputs = 3 if config.value == ValueHead.WDL else 1
        self.value = DenseHead(c, config.value_channels, config.value_hidden, outputs, config.activation)
        self.moves_left = (DenseHead(c, config.moves_left_channels, config.moves_left_hidden, 1, config.activation)
                           if config.moves_left else None)

    def body(self, planes: torch.Tensor) -> torch.Tensor:  # (B, 112, 8, 8) -> (B, C, 8, 8)
        x = self.act(self.input(planes * self.input_scale))
        for block in self.residual:
            x = block(x)
        return x

    def forward(self, planes: torch.Tensor) -> NetOutput:
        x = self.body(planes)
        value = self.value(x)  # (B, 3) or (B, 1)
        wdl = value if self.config.value == ValueHead.WDL else None
        scalar = torch.tanh(value[:, 0]) if wdl is None else None
        moves_left = torch.relu(self.moves_left(x)[:, 0]) if self.moves_left is not None else None
        return NetOutput(self.policy(x), wdl, scalar, moves_left)


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def flops_per_position(net: nn.Module) -> int:
    """Multiply-adds x 2 of the convolutions and dense layers for one position (8x8 board)."""
    if hasattr(net, "flops"):  # an attention body counts its own (tokens, attention products)
        return net.flops()
    total = 0
    per_square = {id(m) for head in net.modules() if isinstance(head, AttentionPolicy) for m in head.modules()}
    for module in net.modules():
        if isinstance(module, AttentionPolicy):  # its dense layers run once per square, then Q.K^T
            total += 2 * 64 * 64 * module.wq.out_features
        if id(module) in per_square and isinstance(module, nn.Linear):
            total += 64 * 2 * module.in_features * module.out_features
        elif isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += 2 * module.in_channels * module.out_channels * kh * kw * 64 // module.groups
        elif isinstance(module, nn.Linear):
            total += 2 * module.in_features * module.out_features
    return total
