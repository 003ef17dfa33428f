"""The `pbt:` section of a population-based-training recipe: the search (what PBT may change, within what
bounds) and the scheduler's settings. A PBT recipe is a training recipe (every RunConfig section) plus it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, model_validator

from lc0distill.config import RunConfig
from lc0distill.evaluate import METRICS

HIGHER_IS_BETTER = ("top1_accuracy", "teacher_agreement")


class SearchRange(BaseModel):
    """The bounds a hyperparameter is kept in; `log`: sampled uniformly in log space."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    low: float = Field(0.0, ge=0.0)
    high: float = Field(gt=0.0)
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> "SearchRange":
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) is above high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


class PbtConfig(BaseModel):
    """Population-based training (Jaderberg et al. 2017) of the recipe's student on Ray Tune: every
    `perturb_every` steps each member reports its held-out `metric`; members in the worst `quantile_fraction`
    take the weights, optimizer state and hyperparameters of one in the best (exploit), then perturb them
    (explore: each one times a perturbation factor, or resampled with resample_probability, kept in bounds)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    population: int = Field(4, ge=2, description="members (--population)")
    perturb_every: int = Field(100, gt=0, description="steps between reports and perturbations (--perturb-every)")
    metric: Literal[METRICS] = Field("policy_loss", description="the held-out metric members are ranked by")  # type: ignore[valid-type]
    quantile_fraction: float = Field(0.25, gt=0.0, le=0.5, description="the share of members that exploit")
    resample_probability: float = Field(0.25, ge=0.0, le=1.0)
    perturbation_factors: tuple[PositiveFloat, PositiveFloat] = Field(
        (0.8, 1.2), description="explore multiplies by one of these")
    teacher_weights: Literal["per_teacher", "factorised", "fixed"] = Field(
        "per_teacher", description="per_teacher: each lambda_k searched; factorised: an overall weight times a "
                                   "share per teacher (shares sum to 1); fixed: the recipe's schedules")
    teacher_weight: SearchRange = Field(
        SearchRange(low=0.0, high=2.0), description="bounds of each lambda_k (per_teacher) or the overall weight")
    zero_below: float = Field(0.02, ge=0.0, description="a teacher weight explored below this becomes 0: that "
                                                        "teacher stops running until a resample revives it")
    lr: SearchRange | None = Field(SearchRange(low=1e-4, high=0.2, log=True),
                                   description="bounds of train.lr.lr (null: the recipe's, not searched)")
    temperature: SearchRange | None = Field(SearchRange(low=1.0, high=3.0), description="bounds of the "
                                            "distillation temperature (null: the recipe's, not searched)")
    synch: bool = Field(False, description="false: asynchronous, members never wait (a fast member may clone a "
                                           "slower one's older checkpoint more than once); true: members wait for "
                                           "each other at every report and are ranked together (resuming a killed "
                                           "synchronous run stalled in Ray 2.60: not supported)")
    cpus_per_member: float = Field(1.0, gt=0.0)
    gpus_per_member: float = Field(0.0, ge=0.0)
    seed: int = Field(0, description="the initial hyperparameters of members 1.. and the explore choices")
    keep_checkpoints: int = Field(4, ge=3, description="Ray checkpoints kept per member (clones need recent ones)")

    @property
    def mode(self) -> Literal["min", "max"]:
        return "max" if self.metric in HIGHER_IS_BETTER else "min"


class PbtRunConfig(RunConfig):
    """A PBT recipe: a training recipe plus `pbt:`. train.steps is each member's steps; train.run_dir the
    experiment's folder (members/, ray/, the table and PNG, best.pb.gz)."""

    pbt: PbtConfig = Field(default_factory=PbtConfig)

    def training(self) -> RunConfig:
        """The recipe without its pbt section: what each member trains (before its hyperparameters)."""
        fields = {name: getattr(self, name) for name in RunConfig.model_fields}
        return RunConfig.model_construct(**fields)
