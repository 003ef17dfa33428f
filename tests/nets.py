"""Nets the tests build or read: real lc0 messages from ../shared, random nets with non-trivial batch norm."""

from __future__ import annotations

import functools
import gzip
from pathlib import Path

import pytest
import torch

from lc0distill.lc0 import proto
from lc0distill.models.net import SEResNet


@functools.lru_cache(maxsize=4)
def lc0_message_bytes(path: Path) -> bytes:
    """The serialized Net message of an lc0 .pb.gz (inflated once per file)."""
    return gzip.decompress(path.read_bytes())


def lc0_message(path: Path) -> proto.Net:
    """A fresh, mutable copy of an lc0 net's Net message (skips when ../shared is absent)."""
    if not path.exists():
        pytest.skip(f"reference net {path} is absent (../shared holds lc0's own files; see README)")
    net = proto.Net()
    net.ParseFromString(lc0_message_bytes(path))
    return net


def randomize_batch_norm(net: SEResNet) -> SEResNet:
    """Random running statistics and affine parameters in every batch norm (a fresh net's are 0/1: a reader
    or writer that mixed them up would go unnoticed)."""
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.3, 0.3)
    return net
