"""Fixtures of the engine tests: the lc0 engine (skip, saying why, when it is not installed) and the nets.

The nets of every variant (tests/engine/netzoo.py), random and briefly trained, are built and written once
(package scope) as LINEAR16 .pb.gz files; every engine test module reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import chess
import pytest
import torch

from lc0distill.engine.locate import EngineNotFound, find_engine, require_bindings
from lc0distill.engine.positions import engine_check_boards
from lc0distill.lc0.weights import write_net
from lc0distill.models.config import NetConfig
from lc0distill.models.inference import board_planes
from lc0distill.models.net import SEResNet
from tests.engine.netzoo import VARIANTS, random_net, trained_net, training_for

KINDS = ("random", "trained")


@pytest.fixture(scope="package", autouse=True)
def _one_torch_thread():
    """lc0 and our worker use one core; PyTorch's small nets gain nothing from two threads, and on a machine
    shared with other jobs its spinning threads made the zoo 8x slower (107 s instead of 13 s). Restored
    after this package's tests."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def lc0_binary() -> Path:
    try:
        binary = find_engine()
        require_bindings()
    except EngineNotFound as error:
        pytest.skip(f"the lc0 engine is not installed: {error}")
    return binary


@dataclass(frozen=True)
class ZooNet:
    name: str
    kind: str
    config: NetConfig
    net: SEResNet  # the net the file was written from
    path: Path  # LINEAR16 .pb.gz


@pytest.fixture(scope="package")
def zoo(lc0_binary, tmp_path_factory, _one_torch_thread) -> dict[tuple[str, str], ZooNet]:
    folder = tmp_path_factory.mktemp("zoo")
    nets = {}
    for name, config in VARIANTS.items():
        for kind in KINDS:
            net = random_net(config) if kind == "random" else trained_net(config, training_for(name))
            path = folder / f"{name}-{kind}.pb.gz"
            write_net(net, path)
            nets[name, kind] = ZooNet(name, kind, config, net, path)
    return nets


@pytest.fixture(scope="package")
def check_boards() -> list[chess.Board]:
    return engine_check_boards(256)


@pytest.fixture(scope="package")
def check_encoding(check_boards):
    """input format -> board_planes(check_boards, format), computed once (the slow part of a comparison)."""
    cache = {}

    def encoding(input_format: int):
        if input_format not in cache:
            cache[input_format] = board_planes(check_boards, input_format)
        return cache[input_format]

    return encoding
