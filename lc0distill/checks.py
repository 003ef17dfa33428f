"""Checks made before a run or an evaluation starts: can this net read this data, can the data give these
targets, can this checkpoint continue this config. Each failure is one error that says what differs and what
to do, instead of a run that trains on the wrong planes or on fake targets."""

from __future__ import annotations

import numpy as np
import torch

from lc0distill.chunks.config import DataConfig
from lc0distill.chunks.probe import DataProbe
from lc0distill.chunks.validate import required_q_version
from lc0distill.errors import Lc0DistillError


def check_input_format(net_format: int, probe: DataProbe, who: str) -> None:
    """The data's input formats (probed chunks) must all be the net's: another format means other planes."""
    others = [fmt for fmt in probe.input_formats if fmt != net_format]
    if others:
        raise Lc0DistillError(f"{who} reads input format {net_format}, but the data holds "
                              f"{probe.describe('format', others)}: the planes of other formats mean other things; "
                              f"use data of format {net_format} or a net of the data's format")


def check_batch_formats(net_format: int, formats: np.ndarray, chunks: np.ndarray, name_of, who: str) -> None:
    """The same check on every batch (the probe samples chunks; a mixed data set shows here)."""
    wrong = np.flatnonzero(formats != net_format)
    if wrong.size:
        first = int(wrong[0])
        raise Lc0DistillError(f"{name_of(int(chunks[first]))}: input format {int(formats[first])}, but {who} "
                              f"reads input format {net_format}")


def check_value_target(data: DataConfig, q_ratio: float, probe: DataProbe) -> None:
    """q_ratio > 0 reads data.q_source's q/d, which older record versions do not store."""
    if q_ratio == 0:
        return
    source = data.q_source.value
    need = required_q_version(data.q_source)
    old = [version for version in probe.versions if version < need]
    if old:
        alternatives = "root or best (V4+)" if need > 4 else "loss.q_ratio=0 (z only)"
        raise Lc0DistillError(
            f"data.q_source={source} with loss.q_ratio={q_ratio} reads {source}_q and {source}_d, which only "
            f"V{need}+ records store; the data has {probe.describe('version', old)}: use data.q_source={alternatives}")


def check_resumable(saved: dict, config_tree: dict, path) -> None:
    """A checkpoint continues only the run it was made by: same net and optimizer (their tensors fit only
    those); the rest (data, schedules, teachers, steps) may change on resume."""
    problems = []
    saved_config = saved.get("config") or {}
    saved_net, net = saved_config.get("net", {}), config_tree["net"]
    for key in sorted(set(saved_net) | set(net)):
        if saved_net.get(key) != net.get(key):
            problems.append(f"net.{key} {saved_net.get(key)!r} in the checkpoint, {net.get(key)!r} now")
    saved_optimizer = saved_config.get("train", {}).get("optimizer")
    if saved_optimizer != config_tree["train"]["optimizer"]:
        problems.append(f"train.optimizer {saved_optimizer!r} in the checkpoint, {config_tree['train']['optimizer']!r} now")
    if problems:
        raise Lc0DistillError(f"{path}: cannot resume this run with this config ({'; '.join(problems)}): use "
                              "another train.run_dir, or --fresh to start again from step 0")


def check_finite_net(net: torch.nn.Module, who: str) -> None:
    """A net with a NaN or infinite weight or statistic teaches, or evaluates, nothing."""
    for name, tensor in list(net.named_parameters()) + list(net.named_buffers()):
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise Lc0DistillError(f"{who}: {name} holds non-finite values (NaN or infinity)")
