"""Open any net a command is given: an lc0 `.pb.gz` or an lc0distill net file / checkpoint (`.pt`)."""

from __future__ import annotations

import os
from pathlib import Path

from lc0distill.errors import Lc0DistillError
from lc0distill.lc0.weights import read_net
from lc0distill.models.net import SEResNet
from lc0distill.models.store import load_model


TORCH_FILE_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive


def is_lc0_file(path: str | os.PathLike) -> bool:
    """Anything but a torch.save file is read as an lc0 net (which names what is wrong if it is not one)."""
    with open(path, "rb") as handle:
        return handle.read(4) != TORCH_FILE_MAGIC


def load_net(path: str | os.PathLike) -> SEResNet:
    if not Path(path).is_file():
        raise Lc0DistillError(f"{path}: no such net file")
    return read_net(path) if is_lc0_file(path) else load_model(path)
