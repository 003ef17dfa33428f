"""A run's logs (rank 0's): metrics.jsonl, TensorBoard's scalars, the lines for the person watching (above the
progress bar when there is one), and curves.png at the end."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable

from lc0distill.config import RunConfig, dump_config
from lc0distill.errors import Lc0DistillError
from lc0distill.fileio import make_folder, read_records


class RunLogs:
    """Every record is written by rank 0 only; `tracker` is the progress bar while the loop runs."""

    def __init__(self, config: RunConfig, rank: int, run_dir: Path, log: Callable[[str], None]):
        self.config, self.rank, self.run_dir, self.log = config, rank, run_dir, log
        self.tracker = None
        self.metrics_file = None
        self.writer = None
        self.reported_bad_records = 0  # bad records named so far (warned again when more come)

    def say(self, message: str) -> None:
        """A line for the person watching (rank 0's): above the progress bar when there is one."""
        if self.rank != 0:
            return
        if self.tracker is not None:
            self.tracker.print(message)
        else:
            self.log(message)

    def open(self) -> None:
        if self.rank != 0:
            return
        make_folder(self.run_dir, "run folder")
        (self.run_dir / "config.yaml").write_text(dump_config(self.config))
        self.metrics_file = open(self.run_dir / "metrics.jsonl", "a")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tensorboard"))
        except ImportError:  # pragma: no cover - tensorboard is a dependency
            self.writer = None

    def close(self) -> None:
        """metrics.jsonl and TensorBoard's files closed (several runs in one process, as the quick start makes)."""
        if self.metrics_file is not None:
            self.metrics_file.close()
            self.metrics_file = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def record(self, kind: str, values: dict, step: int) -> None:
        if self.rank != 0:
            return
        values = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in values.items()}
        self.metrics_file.write(json.dumps({"kind": kind, "step": step, **values}, allow_nan=False) + "\n")
        self.metrics_file.flush()
        if self.writer is not None:
            for name, value in values.items():
                if isinstance(value, (int, float)) and value is not None and math.isfinite(value):
                    self.writer.add_scalar(f"{kind}/{name}", value, step)

    def recorded(self, kind: str, step: int) -> dict:
        """The values of the last `kind` record at `step` in metrics.jsonl ({} if none)."""
        at_step = [r for r in read_records(self.run_dir / "metrics.jsonl", kind) if r.get("step") == step]
        return {k: v for k, v in at_step[-1].items() if k not in ("kind", "step")} if at_step else {}

    def warn_bad_records(self, loader) -> None:
        """Name bad records as they come (the user may stop the run), once per new batch of them."""
        if loader.bad_records > self.reported_bad_records:
            examples = "; ".join(loader.bad_record_examples)
            self.say(f"warning: {loader.bad_records} bad records skipped so far (not chess, non-finite or out of "
                     f"range; first: {examples})")
            self.reported_bad_records = loader.bad_records

    def plot(self) -> None:
        """Every run leaves a picture of itself: curves.png beside its metrics (a failure costs only the picture)."""
        try:
            from lc0distill.report.plot import plot_runs

            plot_runs([self.run_dir], self.run_dir / "curves.png")
        except Lc0DistillError as error:
            self.say(f"warning: no curves.png: {error}")


def step_line(step: int, steps: int, rate: float, eta: float, losses: dict, alpha: float, temp: float,
              teaching: bool, per_teacher: dict, problems: dict) -> tuple[str, str]:
    """(the line for the person watching, the progress bar's info): losses, teacher weights, problems."""
    parts = "  ".join(f"{k} {v:.4f}" for k, v in losses.items())
    teacher = f"  teacher weight {alpha:.3f}  T {temp:.2f}" if teaching else ""
    if per_teacher:
        weights = " ".join(f"{name.split('/', 1)[1]} {weight:.3f}" for name, weight in per_teacher.items())
        teacher = f"  teacher weights {weights}  T {temp:.2f}"
    shown = "".join(f"  {name} {count}" for name, count in problems.items() if count)
    return f"step {step}/{steps}  {rate:,.0f} pos/s  ETA {eta:,.0f}s  {parts}{teacher}{shown}", f"{parts}{teacher}"
