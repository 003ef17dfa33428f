"""A run's set-up: the device, each rank's share of the batch, the seeds and the optimizer."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from lc0distill.config import TrainConfig
from lc0distill.errors import Lc0DistillError


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise Lc0DistillError(f"train.device={name}: not a device (auto, cpu, cuda or cuda:N)") from None
    if device.type not in ("cpu", "cuda"):
        raise Lc0DistillError(f"train.device={name}: lc0distill trains on cpu or cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise Lc0DistillError(f"train.device={name}, but no CUDA device is available")
    return device


def rank_batch_size(batch_size: int, world: int) -> int:
    """Each rank's share of data.batch_size, the global batch (as lczero-training splits it over replicas):
    DDP averages the ranks' gradients, so a step sees and weighs batch_size positions whatever the ranks."""
    if batch_size % world:
        raise Lc0DistillError(f"data.batch_size={batch_size} is the global batch, split over {world} ranks: give a "
                              f"multiple of {world}")
    return batch_size // world


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def use_deterministic_kernels(on: bool) -> None:
    """train.deterministic: only kernels that give the same bits every time (GPU atomics otherwise reorder
    sums). cuBLAS needs its workspace fixed before its first use: set here unless the user did."""
    if not on:
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False


def set_batch_norm_momentum(model: torch.nn.Module, momentum: float) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = momentum


def set_train_mode(model: torch.nn.Module, freeze_batch_norm: bool) -> None:
    """model.train(); with freeze_batch_norm its batch-norm layers stay in eval mode (running statistics used
    and kept)."""
    model.train()
    if freeze_batch_norm:
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()


def make_optimizer(config: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """Weight decay on conv and dense weights only (lczero's L2 on kernels), not on norms, biases or an attention
    body's input gates (a scale and offset per square and channel). Fused
    (one kernel for all parameters, on CPU and CUDA alike), which is what lets the non-finite guard skip a step
    on the device: a fused optimizer reads its `found_inf` flag there (lc0distill.guard.guarded_update)."""
    decays = {n: p.ndim > 1 and not n.startswith("gate_") for n, p in model.named_parameters()}
    decay = [p for n, p in model.named_parameters() if decays[n]]
    other = [p for n, p in model.named_parameters() if not decays[n]]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": other, "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=config.lr.lr, momentum=config.momentum,
                                    nesterov=config.momentum > 0, fused=True)
        if config.momentum > 0:  # a first step skipped on found_inf would leave torch's buffers uninitialised;
            for p in model.parameters():  # zeros make the first update the same (m * 0 + g = g)
                optimizer.state[p]["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return optimizer
    return torch.optim.AdamW(groups, lr=config.lr.lr, fused=True)


def keep_fused(optimizer: torch.optim.Optimizer) -> None:
    """After load_state_dict: a checkpoint written before the optimizer was fused brings `fused: False` with
    its parameter groups; the guard needs the fused step."""
    for group in optimizer.param_groups:
        group["fused"], group["foreach"] = True, None
