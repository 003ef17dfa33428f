"""A member's hyperparameters: what PBT searches, the population's starting values, explore, and the member's
training config made from the recipe and them.

Hyperparameters are a flat {name: float}: "lr" (train.lr.lr), "temperature" (loss.temperature, constant)
and the teachers' weights, either "lambda_<teacher>" each (per_teacher) or "weight" and "share_<teacher>"
(factorised: lambda_k = weight * share_k, the shares summing to 1). Teacher names are teacher.names.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

from lc0distill.config import RunConfig
from lc0distill.distill.schedules import KickstartWeightSchedule, TemperatureSchedule
from lc0distill.errors import Lc0DistillError
from lc0distill.fileio import write_atomic
from lc0distill.pbt.config import PbtConfig, PbtRunConfig, SearchRange

Hyperparameters = dict[str, float]


@dataclass(frozen=True)
class Search:
    """What is searched, and in what bounds (from the pbt section and the recipe)."""

    pbt: PbtConfig
    teachers: tuple[str, ...]  # teacher names whose weights are searched; () when none are

    @property
    def factorised(self) -> bool:
        return bool(self.teachers) and self.pbt.teacher_weights == "factorised"

    def ranges(self) -> dict[str, SearchRange]:
        ranges = {}
        if self.pbt.lr is not None:
            ranges["lr"] = self.pbt.lr
        if self.pbt.temperature is not None:
            ranges["temperature"] = self.pbt.temperature
        if self.factorised:
            ranges["weight"] = self.pbt.teacher_weight
            ranges.update({f"share_{name}": SearchRange(low=0.0, high=1.0) for name in self.teachers})
        else:
            ranges.update({f"lambda_{name}": self.pbt.teacher_weight for name in self.teachers})
        return ranges


def search_of(config: PbtRunConfig) -> Search:
    """The search this recipe allows, or a clear error where a searched value has no single place to go."""
    pbt, teacher, train, loss = config.pbt, config.teacher, config.train, config.loss
    if pbt.perturb_every > train.steps:
        raise Lc0DistillError(f"pbt.perturb_every ({pbt.perturb_every}) is more than train.steps ({train.steps}): "
                              "no member would ever be compared")
    if pbt.lr is not None:
        if train.lr.kind not in ("constant", "cosine"):
            raise Lc0DistillError(f"pbt.lr searches train.lr.lr, which train.lr.kind {train.lr.kind!r} does not use: "
                                  "give train.lr.kind constant or cosine, or pbt.lr: null")
        if train.lr.kind == "cosine" and pbt.lr.low < train.lr.min_lr:
            raise Lc0DistillError(f"pbt.lr.low ({pbt.lr.low}) is below train.lr.min_lr ({train.lr.min_lr})")
    if pbt.temperature is not None and pbt.temperature.low <= 0:
        raise Lc0DistillError(f"pbt.temperature.low ({pbt.temperature.low}) must be above 0 (the distillation "
                              "temperature divides the logits)")
    if pbt.temperature is not None and loss.temperature.kind != "constant":
        raise Lc0DistillError("pbt.temperature sets a constant temperature: give loss.temperature.kind constant, "
                              "or pbt.temperature: null")
    if pbt.teacher_weight.high > KickstartWeightSchedule.model_fields["weight"].metadata[1].le:
        raise Lc0DistillError(f"pbt.teacher_weight.high ({pbt.teacher_weight.high}) is above 10, the largest "
                              "teacher weight")
    if pbt.teacher_weights == "fixed" or not teacher.nets:
        return Search(pbt, ())
    if not teacher.per_teacher:
        raise Lc0DistillError("pbt.teacher_weights searches a weight per teacher: give each teacher.nets entry its "
                              "own weight ({path: NET, weight: 1.0}), or pbt.teacher_weights: fixed")
    for name, entry in zip(teacher.names, teacher.entries):
        if entry.weight.kind not in ("constant", "pbt"):
            raise Lc0DistillError(f"teacher {name}: PBT sets its weight, so its schedule cannot be "
                                  f"{entry.weight.kind!r}: give weight kind constant or pbt (or a number)")
    return Search(pbt, tuple(teacher.names))


def recipe_values(config: PbtRunConfig, search: Search) -> Hyperparameters:
    """The recipe's own values of the searched hyperparameters (member 0 starts from them)."""
    values: Hyperparameters = {}
    if "lr" in search.ranges():
        values["lr"] = config.train.lr.lr
    if "temperature" in search.ranges():
        values["temperature"] = config.loss.temperature.start
    weights = {name: entry.weight.weight for name, entry in zip(config.teacher.names, config.teacher.entries)
               if name in search.teachers}
    if search.factorised:
        total = sum(weights.values())
        values["weight"] = total
        values.update({f"share_{n}": (w / total if total else 1 / len(weights)) for n, w in weights.items()})
    else:
        values.update({f"lambda_{n}": w for n, w in weights.items()})
    return _clipped(values, search)


def initial_population(config: PbtRunConfig, search: Search, population: int) -> list[Hyperparameters]:
    """Member 0: the recipe's values; the others sampled in the bounds (seeded by pbt.seed)."""
    rng = random.Random(config.pbt.seed)
    members = [recipe_values(config, search)]
    for _ in range(1, population):
        sampled = {name: _sample(bounds, rng) for name, bounds in search.ranges().items()}
        members.append(_clipped(sampled, search))
    return members


def _sample(bounds: SearchRange, rng: random.Random) -> float:
    if bounds.log:
        return math.exp(rng.uniform(math.log(bounds.low), math.log(bounds.high)))
    return rng.uniform(bounds.low, bounds.high)


def _clipped(values: Hyperparameters, search: Search) -> Hyperparameters:
    """Every value in its bounds, teacher weights below pbt.zero_below at 0, shares summing to 1."""
    ranges, out = search.ranges(), {}
    for name, value in values.items():
        bounds = ranges[name]
        value = min(max(float(value), bounds.low), bounds.high)
        if (name.startswith("lambda_") or name == "weight") and value < search.pbt.zero_below:
            value = 0.0
        out[name] = value
    shares = [name for name in out if name.startswith("share_")]
    if shares:
        total = sum(out[name] for name in shares)
        for name in shares:
            out[name] = out[name] / total if total > 0 else 1 / len(shares)
    return out


class Explorer:
    """Tune's custom_explore_fn: perturbs the hyperparameters a member cloned from a better one (each value
    times a factor of pbt.perturbation_factors, or with resample_probability resampled in its bounds), then
    keeps them in bounds. Runs in the driver; its random stream is seeded by pbt.seed and by how many times
    the experiment was restored (read from `restores`, the driver's count): Ray saves no scheduler state, so
    a stream seeded by pbt.seed alone would repeat, after a kill, the draws made before it."""

    def __init__(self, search: Search, restores: Path | None = None):
        self.search, self.restores = search, restores
        self._rng: random.Random | None = None

    def __getstate__(self) -> dict:  # pickled with the experiment: a restored copy makes its stream again
        return {**self.__dict__, "_rng": None}

    @property
    def rng(self) -> random.Random:
        if self._rng is None:
            self._rng = explore_stream(self.search.pbt.seed, read_restores(self.restores))
        return self._rng

    def __call__(self, trial_config: dict) -> dict:
        return {**trial_config, "hyper": self.explore(trial_config["hyper"])}

    def explore(self, hyper: Hyperparameters) -> Hyperparameters:
        pbt, ranges, new = self.search.pbt, self.search.ranges(), {}
        for name, value in hyper.items():
            if self.rng.random() < pbt.resample_probability:
                new[name] = _sample(ranges[name], self.rng)
            else:
                new[name] = value * self.rng.choice(pbt.perturbation_factors)
        return _clipped(new, self.search)


def explore_stream(seed: int, restores: int) -> random.Random:
    """The explore draws of an experiment's first start (restores 0) and of each restore, all different."""
    return random.Random(seed + 1 if restores == 0 else f"{seed + 1}/restore {restores}")


def restores_file(run_dir: Path) -> Path:
    """The driver's count of restores of the experiment in run_dir (JSON {"restores": n})."""
    return run_dir / "ray" / "restores.json"


def write_restores(run_dir: Path, restores: int) -> None:
    path = restores_file(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, (json.dumps({"restores": restores}) + "\n").encode())


def read_restores(path: Path | None) -> int:
    """The driver's count of restores in `path` (JSON {"restores": n}); 0 without one."""
    if path is None or not path.is_file():
        return 0
    try:
        return int(json.loads(path.read_text())["restores"])
    except (ValueError, KeyError, TypeError):
        raise Lc0DistillError(f"{path}: not a count of restores ({{\"restores\": n}})") from None


def teacher_lambdas(hyper: Hyperparameters, search: Search) -> dict[str, float]:
    """{teacher: lambda_k} of the searched teachers."""
    if search.factorised:
        return {name: hyper["weight"] * hyper[f"share_{name}"] for name in search.teachers}
    return {name: hyper[f"lambda_{name}"] for name in search.teachers}


MEMBER_STREAM_STRIDE = 7919  # a prime: members' stream seed offsets never meet at small batch counts


def fresh_stream_offset(index: int) -> int:
    """The seed offset of member `index`'s first training stream: member 0 reads the recipe's order (a plain
    run's), the others orders of their own (the held-out stream uses offset 1)."""
    return MEMBER_STREAM_STRIDE * index


def exploit_stream_offset(index: int, batches_consumed: int) -> int:
    """The seed offset of the stream member `index` reads after cloning another member at `batches_consumed`:
    a stream of its own from there, not the donor's."""
    return 2 + batches_consumed + MEMBER_STREAM_STRIDE * (index + 1)


def member_config(config: PbtRunConfig, search: Search, hyper: Hyperparameters, index: int) -> RunConfig:
    """What member `index` trains: the recipe with its hyperparameters, its own run folder and seed, evaluated
    and checkpointed by the member at each report."""
    base, pbt = config.training(), config.pbt
    tree = base.model_dump(mode="json")
    tree["net_init"] = base.net_init.model_dump(mode="json")
    train = tree["train"]
    train["run_dir"] = str(Path(base.train.run_dir) / "members" / member_name(index))
    train["seed"] = base.train.seed + index  # its own initial weights (its own data order: fresh_stream_offset)
    # data.seed stays the recipe's: the held-out sample (seeded by it) is the same for every member, so members
    # are ranked on the same positions
    train["eval_every"] = 0  # the member evaluates at every report
    train["checkpoint_every"] = pbt.perturb_every
    if not base.train.threads:
        train["threads"] = max(1, int(pbt.cpus_per_member))
    if "lr" in hyper:
        train["lr"]["lr"] = hyper["lr"]
    if "temperature" in hyper:
        tree["loss"]["temperature"] = TemperatureSchedule(start=hyper["temperature"]).model_dump(mode="json")
    lambdas = teacher_lambdas(hyper, search)
    nets = []
    for name, entry in zip(base.teacher.names, base.teacher.entries):
        entry_tree = entry.model_dump(mode="json")
        if name in lambdas:
            entry_tree["weight"] = KickstartWeightSchedule(kind="pbt", weight=lambdas[name]).model_dump(mode="json")
        nets.append(entry_tree)
    tree["teacher"]["nets"] = nets
    return RunConfig.model_validate(tree)


def member_name(index: int) -> str:
    return f"member-{index}"
