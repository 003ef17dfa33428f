"""The process group of a torchrun run: made by the run and ended by it, a caller's own group left alone."""

from __future__ import annotations

import socket

import torch
import torch.distributed as dist

from lc0distill.training.distributed import init_distributed, leave_distributed


def _one_rank_world(monkeypatch) -> None:
    with socket.socket() as probe:  # a free port for this one-rank group's store
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "WORLD_SIZE": "1"}.items():
        monkeypatch.setenv(key, value)


def test_the_run_ends_the_group_it_made(monkeypatch):
    _one_rank_world(monkeypatch)
    device, made = init_distributed(torch.device("cpu"))
    try:
        assert made and dist.is_initialized() and device == torch.device("cpu")
    finally:
        leave_distributed()
    assert not dist.is_initialized()
    leave_distributed()  # nothing left to end: no error


def test_a_callers_group_is_used_and_not_claimed(monkeypatch):
    _one_rank_world(monkeypatch)
    dist.init_process_group("gloo")
    try:
        device, made = init_distributed(torch.device("cpu"))
        assert not made and dist.is_initialized()
    finally:
        dist.destroy_process_group()
