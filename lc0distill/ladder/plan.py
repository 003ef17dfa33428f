"""What a ladder is asked: the teacher, the student sizes, the data, the limits its matches play at and how
many games, and the recipe each rung trains with (by default the equal-terms winner of docs/distillation.md)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from lc0distill.config import RunConfig, dump_config, load_config
from lc0distill.errors import Lc0DistillError
from lc0distill.match.match import Sprt
from lc0distill.match.players import DEFAULT_ENGINE_OPTIONS, UciLimits, clock_limits

# The equal-terms winner (configs/distil-teacher-played.yaml, docs/distillation.md): Hinton's KL at T = 2,
# teacher weight 1 on policy and value, SGD with a cosine rate over 4,500 steps of 256, best.pt picked on the
# validation games every 300 steps. A test keeps it equal to the recipe file.
WINNING_RECIPE = (
    "data.batch_size=256", "data.sample_rate=1", "data.shuffle_buffer=32768",
    "net.moves_left=false",
    "loss.kl_form=hinton", "loss.teacher_weight.kind=constant", "loss.teacher_weight.weight=1.0",
    "loss.temperature.kind=constant", "loss.temperature.start=2.0", "loss.value_distill=1.0",
    "train.steps=4500", "train.optimizer=sgd", "train.lr.kind=cosine", "train.lr.lr=0.05",
    "train.lr.min_lr=0.0005", "train.lr.warmup_steps=225", "train.lr.total_steps=4500",
    "train.eval_every=300", "train.eval_positions=1000000000", "train.checkpoint_every=300", "train.keep_best=true",
)


@dataclass(frozen=True)
class Limit:
    """One search limit the students meet the teacher at: nodes per move, time per move or a clock."""

    uci: UciLimits

    @property
    def label(self) -> str:  # nodes=1, movetime=100ms, tc=10+0.1
        return self.uci.describe()

    @property
    def slug(self) -> str:  # a file name: nodes-1, movetime-100ms, tc-10+0.1
        return self.label.replace("=", "-")

    @property
    def equal_time(self) -> bool:
        return self.uci.nodes is None


def parse_limits(nodes: str | None, movetime: int | None, tc: str | None) -> tuple[Limit, ...]:
    """--nodes 1,100 and one clock (--movetime MS or --tc BASE+INC), in that order."""
    limits = []
    for part in (nodes or "").split(","):
        if not part.strip():
            continue
        if not part.strip().isdigit() or int(part) < 1:
            raise Lc0DistillError(f"--nodes {nodes}: whole numbers >= 1, comma-separated (e.g. 1,100)")
        limits.append(Limit(UciLimits(nodes=int(part))))
    if movetime is not None:
        limits.append(Limit(UciLimits(movetime=movetime / 1000)))
    if tc is not None:
        limits.append(Limit(clock_limits(tc)))
    if len({limit.label for limit in limits}) != len(limits):
        raise Lc0DistillError(f"--nodes {nodes}: a node count given twice")
    if not limits:
        raise Lc0DistillError("no limit to play at: give --nodes, --movetime or --tc")
    return tuple(limits)


def parse_sizes(text: str) -> tuple[str, ...]:
    sizes = tuple(part.strip() for part in text.split(",") if part.strip())
    bad = [size for size in sizes if not re.fullmatch(r"[1-9]\d*x[1-9]\d*", size)]
    if bad or not sizes:
        raise Lc0DistillError(f"--sizes {text}: FILTERSxBLOCKS, comma-separated (e.g. 16x2,32x4,48x5,64x6)")
    if len(set(sizes)) != len(sizes):
        raise Lc0DistillError(f"--sizes {text}: a size given twice")
    return sizes


@dataclass(frozen=True)
class LadderPlan:
    teacher: Path
    sizes: tuple[str, ...]
    data: tuple[str, ...]
    held_out: tuple[str, ...]
    out: Path
    limits: tuple[Limit, ...]
    validation: tuple[str, ...] = ()
    teacher_cache: str | None = None
    recipe: Path | None = None  # a training recipe instead of WINNING_RECIPE
    overrides: tuple[str, ...] = ()
    games: int = 100  # every pairing
    decisive_games: int = 200  # nodes 1, and the best student at the clock
    sprt: Sprt | None = None  # stops the other pairings early
    engine_path: str | None = None
    engine_options: dict = field(default_factory=lambda: dict(DEFAULT_ENGINE_OPTIONS))
    optional_engine_options: frozenset = frozenset(DEFAULT_ENGINE_OPTIONS)  # ours, left out where lc0 lacks them
    concurrency: int = 1
    nps_positions: int = 8
    nps_seconds: float = 1.0
    selfplay_games: int = 4  # lc0 self-play of each net, for its positions/s (0: not measured)
    selfplay_visits: int = 16
    held_out_positions: int = 10**9

    def rung_config(self, size: str) -> RunConfig:
        """The recipe one rung trains with: the base recipe, the ladder's data, teacher and size."""
        # best.pt is picked on the validation games (or the data's own held-out share): never on the held-out
        # games the table reports
        data = [f"data.paths={json.dumps(list(self.data))}", "train.keep_best=true"]
        if self.validation:
            data.append(f"data.test_paths={json.dumps(list(self.validation))}")
        teacher = [f"teacher.nets={json.dumps([str(self.teacher)])}"]
        if self.teacher_cache:
            teacher.append(f"teacher.cache={json.dumps(self.teacher_cache)}")
        base = () if self.recipe else WINNING_RECIPE
        overrides = [*base, *data, *teacher, *self.overrides, f"net.size={size}", "export.lc0=false",
                     f"train.run_dir={json.dumps(str(self.rung_dir(size)))}"]
        return load_config(str(self.recipe) if self.recipe else None, overrides)

    def rung_dir(self, size: str) -> Path:
        return self.out / "rungs" / size

    def match_pgn(self, size: str, limit: Limit) -> Path:
        return self.out / "matches" / f"{size}-vs-teacher-{limit.slug}.pgn"


def config_digest(config: RunConfig) -> str:
    """Equal for equal recipes (the run folder aside): a finished rung is reused only for its own recipe."""
    text = dump_config(config.model_copy(update={"train": config.train.model_copy(update={"run_dir": "-"})}))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
