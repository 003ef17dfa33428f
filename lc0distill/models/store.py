"""lc0distill's own net files (.pt): the NetConfig and the weights, enough to rebuild the net anywhere.

Training checkpoints (issue 5) hold these same two keys next to the optimizer, schedules and RNG states,
so any checkpoint is also a net file.
"""

from __future__ import annotations

import io
import os

import numpy as np
import torch

from lc0distill.errors import Lc0DistillError
from lc0distill.fileio import write_atomic
from lc0distill.models.config import NetConfig
from lc0distill.models.net import SEResNet

NET_FILE_FORMAT = "lc0distill-net"
NET_FILE_VERSION = 1


def net_state(model: SEResNet) -> dict:
    return {"format": NET_FILE_FORMAT, "version": NET_FILE_VERSION,
            "net_config": model.config.model_dump(mode="json"), "model": model.state_dict()}


def save_model(model: SEResNet, path: str | os.PathLike) -> None:
    """Write the net atomically (lc0distill.fileio.write_atomic)."""
    buffer = io.BytesIO()
    torch.save(net_state(model), buffer)
    write_atomic(path, buffer.getvalue())


def load_model(path: str | os.PathLike) -> SEResNet:
    """A net from an lc0distill net file or training checkpoint, in eval mode."""
    return model_from_state(read_state(path))


def model_from_state(state: dict) -> SEResNet:
    model = SEResNet(NetConfig.model_validate(state["net_config"]))
    model.load_state_dict(state["model"])
    return model.eval()


# Checkpoints hold numpy's RNG state (a uint32 array): allow just the numpy types that takes, so that reading
# a net from any checkpoint stays a weights-only load (no arbitrary code from a file someone sent).
_CHECKPOINT_NUMPY_TYPES = [np.zeros(1).__reduce__()[0], np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def read_state(path: str | os.PathLike) -> dict:
    """The saved dict of a net file or checkpoint (checked to hold a net; checkpoints also hold `step`)."""
    try:
        with torch.serialization.safe_globals(_CHECKPOINT_NUMPY_TYPES):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many kinds (pickle, zip, runtime) for a foreign file
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise Lc0DistillError(f"{path}: not a readable lc0distill net or checkpoint ({reason})") from None
    if not isinstance(state, dict) or "net_config" not in state or "model" not in state:
        raise Lc0DistillError(f"{path}: not an lc0distill net or checkpoint (no net_config and model)")
    return state
