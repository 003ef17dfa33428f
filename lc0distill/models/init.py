"""Randomly initialised nets of any architecture (`lc0distill net init`, tests): PyTorch's initialisation of
the weights, and non-trivial normalisation statistics and affines, so that a reader or writer that mixed up a
mean with a variance, a scale with an offset or a gate's layout would not go unnoticed (fresh ones are 0 and 1)."""

from __future__ import annotations

import torch
from torch import nn

from lc0distill.models.attention import AttentionNet
from lc0distill.models.build import build_net
from lc0distill.models.config import NetConfig


def random_net(config: NetConfig, seed: int = 0) -> nn.Module:
    """The net `config` describes, its weights from `seed`, its normalisations randomised; in eval mode."""
    torch.manual_seed(seed)
    net = build_net(config)
    randomize_normalisations(net, torch.Generator().manual_seed(seed))
    return net.eval()


def randomize_normalisations(net: nn.Module, generator: torch.Generator) -> nn.Module:
    def uniform(tensor: torch.Tensor, low: float, high: float) -> None:
        tensor.copy_(torch.rand(tensor.shape, generator=generator) * (high - low) + low)

    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                uniform(module.running_mean, -0.5, 0.5)
                uniform(module.running_var, 0.5, 2.0)
            if isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm)):
                uniform(module.weight, 0.5, 1.5)
                uniform(module.bias, -0.3, 0.3)
            if isinstance(module, AttentionNet) and module.gate_mult is not None:
                uniform(module.gate_mult, 0.5, 1.5)
                uniform(module.gate_add, -0.3, 0.3)
    return net
