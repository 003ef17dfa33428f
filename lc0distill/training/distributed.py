"""DDP for a run under torchrun: the process group, the wrapped student, and the ranks' final agreement."""

from __future__ import annotations

import os
from typing import Callable

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from lc0distill.errors import Lc0DistillError


def init_distributed(device: torch.device) -> tuple[torch.device, bool]:
    """Join the process group (a caller's own group is used as it is); the device of this rank (cuda:LOCAL_RANK
    on GPUs), and whether the group was made here (then leave_distributed ends it)."""
    made = not dist.is_initialized()
    if made:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    return device, made


def leave_distributed() -> None:
    """Destroy the process group while the interpreter is whole: left to exit, gloo's worker threads can free
    tensors during the interpreter's teardown and abort the rank (SIGABRT) after a run that succeeded."""
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap_student(student: torch.nn.Module, distributed: bool, device: torch.device, compile: bool) -> torch.nn.Module:
    """What the step calls forward on: the student, in DDP under torchrun, compiled if asked."""
    module = student
    if distributed:
        module = DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
    if compile:
        module = torch.compile(module)
    return module


def check_ranks_agree(student: torch.nn.Module, world: int, rank_batch_size: int,
                      record: Callable[[str, dict], None]) -> None:
    """DDP keeps every rank's parameters equal; batch-norm statistics are rank 0's (DDP broadcasts them
    before each forward, so after the last one each rank holds its own): take rank 0's, then verify that
    every rank holds the same weights (a fingerprint per rank) and record the result."""
    for buffer in student.buffers():
        dist.broadcast(buffer, src=0)
    flat = torch.cat([p.detach().double().flatten().cpu() for p in student.state_dict().values()
                      if p.dtype.is_floating_point])
    fingerprint = torch.tensor([flat.sum().item(), flat.abs().sum().item(), (flat * flat).sum().item()],
                               dtype=torch.float64)
    gathered = [torch.zeros_like(fingerprint) for _ in range(world)]
    dist.all_gather(gathered, fingerprint)
    identical = all(torch.equal(g, gathered[0]) for g in gathered)
    record("ddp", {"ranks": world, "backend": dist.get_backend(), "rank_batch_size": rank_batch_size,
                   "weights_identical": identical,
                   "fingerprints": [g.tolist() for g in gathered]})
    if not identical:
        raise Lc0DistillError(f"ranks ended with different weights: {[g.tolist() for g in gathered]}")
    dist.barrier()
