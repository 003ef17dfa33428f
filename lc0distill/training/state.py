"""What a run's checkpoint holds: the student and what trains it (optimizer, loss scaler, SWA, a snapshot
teacher, the non-finite guard), where the run stands (step, data position and digest) and its best net so far.
Written atomically; never with a non-finite weight."""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lc0distill.checkpoint import LATEST, restore_rng, rng_state, save_checkpoint
from lc0distill.config import RunConfig
from lc0distill.distill.teachers import SnapshotTeacher
from lc0distill.errors import Lc0DistillError
from lc0distill.fileio import write_json
from lc0distill.guard import NonFiniteGuard, NonFiniteRunError, all_finite
from lc0distill.models.net import SEResNet
from lc0distill.models.store import net_state, save_model
from lc0distill.training.setup import keep_fused

NO_DATA_DIGEST = "00" * 16


def chain_digest(previous: str, packed: np.ndarray) -> str:
    """The digest of the positions consumed so far, extended by one batch: (chunk, record) of each position in
    order, chained, so a run's data stream is one short string (saved in checkpoints, resumed exactly)."""
    digest = hashlib.blake2b(bytes.fromhex(previous), digest_size=16)
    digest.update(np.ascontiguousarray(packed["chunk"], dtype="<u4").tobytes())
    digest.update(np.ascontiguousarray(packed["record"], dtype="<u4").tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class DataStream:
    """The training data stream in use: the batch it started at and its seed offset (the test stream uses 1)."""

    start: int = 0
    seed_offset: int = 0


class SWA:
    """Running average of the student's weights and buffers, the newest weighted at least 1 / max_models."""

    def __init__(self, model: SEResNet, max_models: int):
        self.model = copy.deepcopy(model).eval()
        self.count = 0
        self.max_models = max_models

    @torch.no_grad()
    def update(self, model: SEResNet) -> None:
        self.count += 1
        weight = 1.0 / min(self.count, self.max_models)
        for mine, theirs in zip(self.model.state_dict().values(), model.state_dict().values()):
            if mine.dtype.is_floating_point:
                mine.lerp_(theirs, weight)
            else:
                mine.copy_(theirs)


class RunState:
    """The student, what trains it, and where the run stands."""

    def __init__(self, student: SEResNet, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                 swa: SWA | None, guard: NonFiniteGuard):
        self.student, self.optimizer, self.scaler, self.swa, self.guard = student, optimizer, scaler, swa, guard
        self.snapshot: SnapshotTeacher | None = None  # teacher.snapshot_every: the teacher is a copy of the student
        self.step = 0
        self.batches_consumed = 0
        self.best: dict | None = None  # train.keep_best: {"step", "policy_loss"} of best.pt
        self.data_digest = NO_DATA_DIGEST  # the positions consumed, in order (two runs saw the same data: equal)
        self.stream = DataStream()

    def checkpoint(self, config: RunConfig) -> dict:
        return {**net_state(self.student), "config": config.model_dump(mode="json"),
                "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                "swa": None if self.swa is None else {"model": self.swa.model.state_dict(), "count": self.swa.count},
                "snapshot": None if self.snapshot is None else
                {"model": self.snapshot.net.state_dict(), "taken_at": self.snapshot.taken_at},
                "step": self.step, "batches_consumed": self.batches_consumed, "guard": self.guard.state(),
                "best": self.best, "data_digest": self.data_digest,
                "data_stream": {"start": self.stream.start, "seed_offset": self.stream.seed_offset},
                "rng": rng_state()}

    def restore(self, state: dict, path: Path | None = None) -> None:
        self.student.load_state_dict(state["model"])
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            keep_fused(self.optimizer)
            self.scaler.load_state_dict(state["scaler"])
        except (ValueError, KeyError, TypeError, RuntimeError) as error:  # torch's own checks of the saved state
            raise Lc0DistillError(f"{path or 'checkpoint'}: optimizer: does not fit this run's optimizer "
                                  f"({' '.join(str(error).split())[:200]})") from None
        if self.swa is not None and state.get("swa"):
            self.swa.model.load_state_dict(state["swa"]["model"])
            self.swa.count = state["swa"]["count"]
        if self.snapshot is not None and state.get("snapshot"):
            self.snapshot.net.load_state_dict(state["snapshot"]["model"])
            self.snapshot.taken_at = state["snapshot"]["taken_at"]
        self.step, self.batches_consumed = state["step"], state["batches_consumed"]
        self.best = state.get("best")
        self.data_digest = state.get("data_digest", NO_DATA_DIGEST)
        self.guard.restore(state.get("guard"))
        self.stream = DataStream(**state.get("data_stream", {}))  # older checkpoints: one stream from the start
        restore_rng(state["rng"])

    def save(self, config: RunConfig, run_dir: Path) -> None:
        """Write the checkpoint; never one with a non-finite weight (the previous checkpoint stays)."""
        self.check_weights_finite("checkpoint", run_dir)
        save_checkpoint(self.checkpoint(config), run_dir / LATEST)

    def check_weights_finite(self, what: str, run_dir: Path) -> None:
        nets = [self.student] + ([self.swa.model] if self.swa is not None else [])
        if not all(all_finite(net.state_dict().values()) for net in nets):
            raise NonFiniteRunError(f"step {self.step}: the weights are not finite: no {what} is written "
                                    f"(the last checkpoint in {run_dir} is kept as it was)")

    def final_net(self) -> SEResNet:
        """What is evaluated and exported: SWA's average once it has averaged, else the live student (before
        SWA's first update its copy still holds the initial weights)."""
        return self.swa.model if self.swa is not None and self.swa.count else self.student

    def keep_if_best(self, net: SEResNet, metrics: dict, run_dir: Path) -> None:
        """best.pt and best.json: the net of the lowest held-out policy loss so far (ties: the earlier step)."""
        loss = metrics.get("policy_loss")
        if loss is None or (self.best is not None and loss >= self.best["policy_loss"]):
            return
        self.check_weights_finite("best.pt", run_dir)
        save_model(net, run_dir / "best.pt")
        self.best = {"step": self.step, "policy_loss": loss}
        kept = {"step": self.step, "metrics": metrics, "data_digest": self.data_digest}
        write_json(run_dir / "best.json", kept)
