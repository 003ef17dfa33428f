"""lc0distill's own net files (.pt): the NetConfig and the weights, enough to rebuild the net anywhere.

Training checkpoints (issue 5) hold these same two keys next to the optimizer, schedules and RNG states,
so any checkpoint is also a net file.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import torch
from pydantic import ValidationError

from lc0distill.errors import Lc0DistillError
from lc0distill.fileio import write_atomic
from lc0distill.models.config import NetConfig, check_net_size
from lc0distill.models.build import build_net
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
    return model_from_state(read_state(path), path)


def model_from_state(state: dict, path: str | os.PathLike = "net file") -> SEResNet:
    """The net a saved state describes; a config or weights that do not fit are one error naming the file."""
    config = check_state(state, path)
    model = build_net(config)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        raise _misfit(error, config, path) from None
    return model.eval()


def check_state(state: dict, path: str | os.PathLike = "net file") -> NetConfig:
    """The NetConfig of a saved state, once its weights are checked to fit it (names and shapes, on a net on the
    meta device: a few bytes of net_config must not make us allocate a huge net the weights do not fill)."""
    try:
        config = NetConfig.model_validate(state["net_config"])
    except ValidationError as error:
        problem = error.errors()[0]
        key = ".".join(str(part) for part in problem["loc"]) or "net_config"
        raise Lc0DistillError(f"{path}: net_config: {key}: {problem['msg']}") from None
    check_net_size(config, path)
    weights = state["model"]
    if not isinstance(weights, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                and not v.is_complex() for k, v in weights.items()):
        raise Lc0DistillError(f"{path}: model: not a dict of tensors (real numbers, by name)")
    for name, tensor in weights.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise Lc0DistillError(f"{path}: model: {name} holds non-finite values (NaN or infinity)")
    with torch.device("meta"):
        skeleton = build_net(config)
    try:
        # A plain copy: load_state_dict(assign=True) writes "assign" into the dict's _metadata, and a later
        # load of the same dict into the real net would then replace its parameters instead of copying into
        # them (an optimizer made for the net would no longer update it).
        skeleton.load_state_dict(dict(weights), assign=True)
    except RuntimeError as error:  # missing, unexpected or wrongly shaped tensors
        raise _misfit(error, config, path) from None
    return config


def _misfit(error: RuntimeError, config: NetConfig, path: str | os.PathLike) -> Lc0DistillError:
    reason = " ".join(str(error).split())
    return Lc0DistillError(f"{path}: the weights do not fit its net_config {config.name} ({reason[:300]})")


# Checkpoints hold numpy's RNG state (a uint32 array): allow just the numpy types that takes, so that reading
# a net from any checkpoint stays a weights-only load (no arbitrary code from a file someone sent).
_CHECKPOINT_NUMPY_TYPES = [np.zeros(1).__reduce__()[0], np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def load_torch_file(path: str | os.PathLike, what: str = "lc0distill net or checkpoint") -> object:
    """torch.load with weights_only=True (tensors, containers, numbers, strings and the numpy types above;
    a pickle asking for anything else is refused, never run), every failure one Lc0DistillError."""
    if not Path(path).is_file():
        raise Lc0DistillError(f"{path}: no such file" if not Path(path).exists() else f"{path}: not a regular file")
    _check_zip(path, what)
    try:
        with torch.serialization.safe_globals(_CHECKPOINT_NUMPY_TYPES):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many kinds (pickle, zip, runtime) for a foreign file
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise Lc0DistillError(f"{path}: not a readable {what} ({reason[:300]})") from None


def _check_zip(path: str | os.PathLike, what: str) -> None:
    """torch.load does not check the zip's CRCs: a damaged member would load as other weights. Each member's
    CRC is checked first (a file that is not a zip is left to torch.load, which refuses it)."""
    try:
        if not zipfile.is_zipfile(path):
            return
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError) as error:
        raise Lc0DistillError(f"{path}: not a readable {what} (damaged zip: {str(error)[:200]})") from None
    if damaged is not None:
        raise Lc0DistillError(f"{path}: not a readable {what} (zip member {damaged} fails its CRC check)")


def read_state(path: str | os.PathLike) -> dict:
    """The saved dict of a net file or checkpoint (checked to hold a net; checkpoints also hold `step`)."""
    state = load_torch_file(path)
    if not isinstance(state, dict) or "net_config" not in state or "model" not in state:
        raise Lc0DistillError(f"{path}: not an lc0distill net or checkpoint (no net_config and model)")
    return state
