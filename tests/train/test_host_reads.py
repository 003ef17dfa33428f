"""A training step that never makes the host wait for the device: counted, on the CPU, with the counter that
watches torch's calls (lc0distill.training.host_reads), for a run without a teacher, with a live teacher and with
a teacher cache. The guard's flags are read once per read (train.sync_every steps, and before each log,
evaluation and checkpoint), and that read still catches and names a bad batch (tests/train/test_guard.py).

Before this (commit 49a3fb2), counted the same way: 3 reads every step (the loss's `.item()`, the gradient
norm's and the weights' `bool`), 7 with a teacher cache (its join read the batch's chunk and record numbers and
its legal-move counts back from the device, and indexed by the legal mask)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lc0distill.chunks.batch import HOST_FIELDS
from lc0distill.cli import main
from lc0distill.config import load_config
from lc0distill.train import Run
from lc0distill.training.host_reads import HostReads
from tests.conftest import SELFPLAY, SHARED, copy_games

MAIA = SHARED / "nets" / "maia-1900.pb.gz"
SETTINGS = ["data.workers=0", "data.batch_size=32", "data.sample_rate=1", "data.shuffle_buffer=256",
            "data.test_ratio=0", "net.size=8x1", "train.eval_every=0", "export.lc0=false", "train.log_every=50"]


@pytest.fixture(scope="module")
def games(tmp_path_factory) -> Path:
    if not MAIA.exists():
        pytest.skip(f"the shared net {MAIA} is absent")
    return copy_games(SELFPLAY, tmp_path_factory.mktemp("games"), 4)


def _run(games: Path, run_dir: Path, *extra: str) -> Run:
    config = load_config(None, [f"data.paths=[{games}]", *SETTINGS, f"train.run_dir={run_dir}", *extra])
    run = Run(config, log=lambda line: None)
    run.open_logs()
    return run


def _host_tensors(batches) -> tuple:
    return tuple(getattr(batch, name) for batch in batches for name in HOST_FIELDS)


@pytest.mark.parametrize("teacher", ["none", "live", "cache"])
def test_steps_between_reads_of_the_guard_never_wait_for_the_device(games, tmp_path, capsys, teacher):
    extra = {"none": [], "live": [f"teacher.nets=[{MAIA}]", "net.moves_left=false"],
             "cache": [f"teacher.nets=[{MAIA}]", "net.moves_left=false", f"teacher.cache={tmp_path / 'cache'}"]}
    if teacher == "cache":
        assert main(["teacher", "cache", str(games), "--teacher", str(MAIA), "--out", str(tmp_path / "cache"),
                     "--workers", "0"]) == 0
        capsys.readouterr()
    run = _run(games, tmp_path / "run", *extra[teacher])
    stream = run.batches()
    batches = [next(stream) for _ in range(5)]
    run.train_step(batches[0])  # the first step sets things up (lazy state): not a steady step
    with HostReads(exempt=_host_tensors(batches)) as reads:
        for batch in batches[1:]:
            assert run.train_step(batch) is not None
    assert reads.total == 0, reads.counts
    with HostReads() as reads:
        assert run.sync() == 0
    assert reads.total == 1, reads.counts  # the pending steps' flags, in one read
    assert run.step == 5


def test_reading_every_step_costs_one_read_a_step(games, tmp_path):
    """train.sync_every=1, as a debugging run would: one read per step (the old guard made three)."""
    run = _run(games, tmp_path / "run", "train.sync_every=1")
    stream = run.batches()
    batches = [next(stream) for _ in range(4)]
    run.train_step(batches[0])
    with HostReads(exempt=_host_tensors(batches)) as reads:
        for batch in batches[1:]:
            run.train_step(batch)
    assert reads.total == 3 and reads.counts["cpu"] == 3, reads.counts
