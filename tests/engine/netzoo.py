"""The nets the engine tests give lc0: every variant the exporter writes, random and briefly trained.

Variants cover every pair of levels of the six NetConfig choices (policy head convolution, classical or attention,
value head, moves-left, activation, SE, input format 1/3/5) in thirteen small nets, plus a 64x6 with classical policy, moves-left and
Mish. Random nets get non-trivial batch-norm statistics (folding matters); trained nets take a few SGD steps
on real lc0 chunks of their own input format from ../shared, in train mode, so that weights and the running
batch-norm statistics come from data.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import torch

from lc0distill.chunks.config import DataConfig, make_loader
from lc0distill.chunks.sources import find_chunks
from lc0distill.models.build import build_net
from lc0distill.models.config import Activation, Body, NetConfig, PolicyHead, ValueHead
from lc0distill.models.init import randomize_normalisations
from lc0distill.models.net import SEResNet
from tests.conftest import SHARED
from tests.nets import randomize_batch_norm

# The value head keeps lc0's trainer widths (32 channels, 128 hidden): lc0's leela2onnx hard-codes them (it
# crashes on others) though the engine's backends read any; NARROW has other widths for the engine tests.
SMALL = dict(filters=16, blocks=2, policy_channels=8, policy_embedding=24, policy_d_model=12, moves_left_channels=4,
             moves_left_hidden=32)
FACTORS = {  # NetConfig field -> levels
    "policy": (PolicyHead.CONVOLUTION, PolicyHead.CLASSICAL, PolicyHead.ATTENTION),
    "value": (ValueHead.WDL, ValueHead.SCALAR),
    "moves_left": (True, False),
    "activation": (Activation.RELU, Activation.MISH),
    "se_channels": (4, 0),
    "input_format": (1, 3, 5),
}
_ROWS = [  # a covering array: every pair of levels of any two factors appears in some row
    ("convolution", "wdl", True, "relu", 4, 1),
    ("classical", "scalar", True, "mish", 0, 3),
    ("classical", "scalar", False, "relu", 4, 5),
    ("convolution", "wdl", False, "mish", 0, 5),
    ("convolution", "scalar", False, "relu", 0, 3),
    ("classical", "scalar", False, "mish", 0, 1),
    ("classical", "wdl", False, "mish", 4, 3),
    ("classical", "scalar", True, "mish", 0, 5),
    ("convolution", "wdl", True, "mish", 4, 5),
    ("classical", "wdl", True, "relu", 0, 1),
    ("attention", "wdl", True, "mish", 4, 1),  # with the pairs above, three rows cover every pair of attention's
    ("attention", "scalar", False, "relu", 0, 3),
    ("attention", "wdl", False, "mish", 0, 5),
]


def _name(config: dict) -> str:
    return "-".join([
        {"convolution": "conv", "classical": "classical", "attention": "attention"}[config["policy"]], config["value"],
        "mlh" if config["moves_left"] else "nomlh", config["activation"], "se" if config["se_channels"] else "nose",
        f"fmt{config['input_format']}"])


VARIANTS: dict[str, NetConfig] = {}
for _row in _ROWS:
    _fields = dict(zip(FACTORS, _row))
    VARIANTS[_name(_fields)] = NetConfig(**SMALL, **_fields)
NARROW = "narrow-value-head-conv-wdl-mlh-relu-se-fmt1"
VARIANTS[NARROW] = NetConfig(**{**SMALL, "value_channels": 8, "value_hidden": 32, "se_channels": 4})
BIG = "64x6-classical-wdl-mlh-mish-se-fmt1"  # maia's size: a real net's depth and widths, at a CI's cost
VARIANTS[BIG] = NetConfig(filters=64, blocks=6, se_channels=8, policy=PolicyHead.CLASSICAL, value=ValueHead.WDL,
                          moves_left=True, activation=Activation.MISH, input_format=1)


def uncovered_pairs() -> list[tuple]:
    """Pairs of factor levels no small variant has (the covering array's promise: none)."""
    rows = [tuple(getattr(c, f) for f in FACTORS) for name, c in VARIANTS.items() if name not in (BIG, NARROW)]
    rows = [tuple(v.value if hasattr(v, "value") else v for v in r) for r in rows]
    levels = [tuple(v.value if hasattr(v, "value") else v for v in lv) for lv in FACTORS.values()]
    missing = []
    for i, j in itertools.combinations(range(len(levels)), 2):
        for a in levels[i]:
            for b in levels[j]:
                if not any(r[i] == a and r[j] == b for r in rows):
                    missing.append((list(FACTORS)[i], a, list(FACTORS)[j], b))
    return missing


def random_net(config: NetConfig, seed: int = 0) -> SEResNet:
    """Random weights, random batch-norm statistics and affine parameters, moves-left around 30 plies."""
    torch.manual_seed(seed)
    if config.body == Body.ATTENTION:  # layer-norm affines and gates, as `net init` randomises them
        net = randomize_normalisations(build_net(config), torch.Generator().manual_seed(seed))
    else:
        net = randomize_batch_norm(SEResNet(config))
    with torch.no_grad():
        if net.moves_left is not None:  # tens of plies, as real nets say: ReLU active, so the head is compared
            net.moves_left.fc2.bias.uniform_(20.0, 40.0)
    return net.eval()


TRAINING_DATA = {1: SHARED / "lc0-selfplay-maia1900", 3: SHARED / "lc0-data" / "v6-fmt3-maia1100",
                 5: SHARED / "lc0-data" / "v6-fmt5-maia1100"}


@dataclass(frozen=True)
class Training:
    steps: int = 30
    batch_size: int = 48
    lr: float = 0.1


def trained_net(config: NetConfig, training: Training = Training(), seed: int = 0) -> SEResNet:
    """A random net after a few SGD steps on lc0 chunks of its input format: policy cross-entropy against the
    search policy, WDL cross-entropy (or tanh MSE) against the search q/d, moves-left Huber in units of 20
    plies. Batch norm in train mode, so that its running statistics move toward the data's."""
    net = random_net(config, seed)
    folder = TRAINING_DATA[config.input_format]
    if not folder.exists():
        import pytest

        pytest.skip(f"training data {folder} is absent (../shared holds lc0's own files)")
    data = DataConfig(paths=[str(folder)], batch_size=training.batch_size, sample_rate=1, shuffle_buffer=2048,
                      workers=0, seed=seed)
    loader = iter(make_loader(data, list(find_chunks([str(folder)])), passes=None))
    value = set(net.value.parameters())  # a slower value head: at the policy's pace a tanh value saturates
    optimiser = torch.optim.SGD([{"params": [p for p in net.parameters() if p not in value]},
                                 {"params": list(value), "lr": training.lr / 5}],
                                lr=training.lr, momentum=0.9, nesterov=True)
    net.train()
    for _ in range(training.steps):
        batch = next(loader)
        out = net(batch.planes)
        logits = out.policy_logits.masked_fill(~batch.legal, -1e9)
        loss = -(batch.policy * torch.log_softmax(logits, 1)).sum(1).mean()
        if out.wdl_logits is not None:
            loss = loss - (batch.q * torch.log_softmax(out.wdl_logits, 1)).sum(1).mean()
        else:
            loss = loss + ((out.value - (batch.q[:, 0] - batch.q[:, 2])) ** 2).mean()
        if out.moves_left is not None:
            known = batch.moves_left_known
            if known.any():
                loss = loss + torch.nn.functional.huber_loss(out.moves_left[known] / 20, batch.moves_left[known] / 20)
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
        optimiser.step()
    return net.eval()


def training_for(name: str) -> Training:
    return Training(steps=8, batch_size=32, lr=0.1) if name == BIG else Training()


def net_file(folder: Path, name: str, kind: str, encoding: str = "linear16") -> Path:
    return folder / f"{name}-{kind}-{encoding}.pb.gz"
