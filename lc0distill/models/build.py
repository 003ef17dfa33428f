"""The net a NetConfig describes: an SE-ResNet or an attention body."""

from __future__ import annotations

from torch import nn

from lc0distill.models.attention import AttentionNet
from lc0distill.models.config import Body, NetConfig
from lc0distill.models.net import SEResNet


def build_net(config: NetConfig) -> nn.Module:
    return AttentionNet(config) if config.body == Body.ATTENTION else SEResNet(config)


TORCH_NETS = (SEResNet, AttentionNet)  # the nets lc0distill computes in PyTorch (isinstance checks)
