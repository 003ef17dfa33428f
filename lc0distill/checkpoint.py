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
    try:
        # The checkpoint holds RNG states and numpy arrays besides tensors: only load checkpoints you wrote.
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise Lc0DistillError(f"{path}: not a readable checkpoint ({str(error).splitlines()[0]})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise Lc0DistillError(f"{path}: not an lc0distill training checkpoint")
    if state.get("version", 0) > CHECKPOINT_VERSION:
        raise Lc0DistillError(f"{path}: checkpoint version {state['version']} is newer than this lc0distill")
    return state
