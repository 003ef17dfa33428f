"""Checkpoints: everything needed to continue a run exactly, written atomically.

A checkpoint is a dict saved with torch.save: `format`, `version`, `net_config` and `model` (so any checkpoint
is also a net file for lc0distill.models.store.load_model), `config` (the resolved RunConfig), `optimizer`,
`swa` (or None), `step`, `batches_consumed` (the data position), `rng` (python, numpy, torch), `metrics`.
The file appears under its final name only once complete: written to a temporary file in the same folder,
flushed to disk, then renamed over the old one, so a killed run never leaves a partial checkpoint.
"""

from __future__ import annotations

import io
import os
import random
from pathlib import Path

import numpy as np
import torch

from lc0distill.errors import Lc0DistillError
from lc0distill.fileio import write_atomic
from lc0distill.models.build import build_net
from lc0distill.models.store import check_state, load_torch_file

CHECKPOINT_FORMAT = "lc0distill-checkpoint"
CHECKPOINT_VERSION = 1
LATEST = "checkpoint.pt"


def rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def restore_rng(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    buffer = io.BytesIO()
    torch.save({**state, "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION}, buffer)
    write_atomic(path, buffer.getvalue())


def remove_stale_temporaries(folder: str | os.PathLike) -> int:
    """Delete temporary files a killed run left behind (never the checkpoint itself); returns how many."""
    stale = list(Path(folder).glob(f".{LATEST}.*.tmp")) if Path(folder).is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """A checkpoint, loaded weights-only (tensors, containers, numbers, strings and numpy's RNG state types:
    a pickle in the run folder asking for anything else is refused, never run), and checked to hold what a
    resume restores (a damaged or foreign file is one error naming the file and the key)."""
    state = load_torch_file(path, "lc0distill training checkpoint")
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise Lc0DistillError(f"{path}: not an lc0distill training checkpoint")
    version = state.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise Lc0DistillError(f"{path}: version: {version!r} is not a checkpoint version")
    if version > CHECKPOINT_VERSION:
        raise Lc0DistillError(f"{path}: checkpoint version {state['version']} is newer than this lc0distill")
    _check_contents(state, path)
    return state


# What a resume restores: key -> type (None: the key may be absent or None).
_SECTIONS = {"config": dict, "optimizer": dict, "scaler": dict, "rng": dict, "step": int, "batches_consumed": int}
_OPTIONAL_SECTIONS = {"swa": dict, "snapshot": dict, "guard": dict, "data_stream": dict}
_SECTION_FIELDS = {"swa": {"model": dict, "count": int}, "snapshot": {"model": dict, "taken_at": int},
                   "guard": {"skipped": int, "recent": list}, "data_stream": {"start": int, "seed_offset": int}}


def _check_contents(state: dict, path: str | os.PathLike) -> None:
    for key, kind in {**_SECTIONS, **_OPTIONAL_SECTIONS}.items():
        value = state.get(key)
        if key in _OPTIONAL_SECTIONS and value is None:
            continue
        if key not in state:
            raise Lc0DistillError(f"{path}: {key}: missing (not a complete training checkpoint)")
        if not _is(value, kind):
            raise Lc0DistillError(f"{path}: {key}: {_short(value)} is not a {'count' if kind is int else 'section'}")
    config = check_state(state, path)  # net_config and model: the net fits its description
    if state["config"].get("net", state["net_config"]) != state["net_config"]:
        raise Lc0DistillError(f"{path}: net_config and config.net differ (not a checkpoint lc0distill wrote)")
    optimizer = state["optimizer"]
    groups = optimizer.get("param_groups")
    if not (isinstance(optimizer.get("state"), dict) and isinstance(groups, list)
            and all(isinstance(group, dict) and isinstance(group.get("params"), list) for group in groups)):
        raise Lc0DistillError(f"{path}: optimizer: not an optimizer's state")
    with torch.device("meta"):
        parameters = len(list(build_net(config).parameters()))
    if sum(len(group["params"]) for group in groups) != parameters:
        raise Lc0DistillError(f"{path}: optimizer: holds the state of {sum(len(g['params']) for g in groups)} "
                              f"tensors, the {config.name} net has {parameters}")
    try:  # into generators of their own: the process's are set only by restore_rng
        random.Random().setstate(state["rng"]["python"])
        np.random.RandomState().set_state(state["rng"]["numpy"])
        torch.Generator().set_state(state["rng"]["torch"])
    except (KeyError, IndexError, TypeError, ValueError, OverflowError, RuntimeError) as error:
        raise Lc0DistillError(f"{path}: rng: not the random generators' state ({_short(error)})") from None
    for key, fields in _SECTION_FIELDS.items():
        section = state.get(key)
        if section is None:
            continue
        for field, kind in fields.items():
            value = section.get(field)
            if not _is(value, kind) or (kind is list and not all(_is(item, int) for item in value)):
                raise Lc0DistillError(f"{path}: {key}.{field}: {_short(value)} is not what lc0distill writes there")
        if "model" in fields:  # the SWA average and the snapshot teacher are copies of the student
            check_state({"net_config": state["net_config"], "model": section["model"]}, f"{path}: {key}")


def _is(value: object, kind: type) -> bool:
    """isinstance, where a count is an int (not a bool) >= 0."""
    return isinstance(value, kind) and not isinstance(value, bool) and (kind is not int or value >= 0)


def _short(value: object) -> str:
    text = " ".join(repr(value).split()) if not isinstance(value, Exception) else " ".join(str(value).split())
    return text if len(text) <= 80 else text[:77] + "..."
