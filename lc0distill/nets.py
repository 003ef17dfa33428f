"""Open any net a command is given: an lc0 `.pb.gz` or an lc0distill net file / checkpoint (`.pt`)."""

from __future__ import annotations

import os
from pathlib import Path

from lc0distill.errors import Lc0DistillError
from lc0distill.lc0.weights import read_net
from lc0distill.models.net import SEResNet
from lc0distill.models.store import load_model


def is_lc0_file(path: str | os.PathLike) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(5)
    return head[:2] == b"\x1f\x8b" or head == b"\x0d\xc0\x01\x00\x00"  # gzip, or a raw Net (magic field)


def load_net(path: str | os.PathLike) -> SEResNet:
    if not Path(path).is_file():
        raise Lc0DistillError(f"{path}: no such net file")
    return read_net(path) if is_lc0_file(path) else load_model(path)
