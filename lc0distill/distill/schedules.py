"""Schedules for the learning rate, the teacher's weight and the distillation temperature.

Each schedule is a frozen config model plus a pure function of the step, so a training loop asks
`schedule.value_at(step)` (or `learning_rate(config, step)`, ...) and a checkpoint stores nothing but the
step. `step` counts the optimizer updates already applied: 0 while computing the first update.
"""

from __future__ import annotations

import bisect
import math
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

if TYPE_CHECKING:
    from torch.optim import Optimizer


def _check_step(step: int) -> int:
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    return step


class LrSchedule(BaseModel):
    """The learning rate: constant, lczero-style step drops, or a half-cosine, each with optional warmup."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    kind: Literal["constant", "steps", "cosine"] = Field(
        "constant", description="constant: lr; steps: lr_values between lr_boundaries; cosine: lr down to min_lr")
    lr: float = Field(0.02, ge=0.0, description="base learning rate (constant and cosine; unused by steps); 0 leaves the "
                                                "weights as they are (batch-norm statistics: train.batch_norm_momentum)")
    warmup_steps: int = Field(
        0, ge=0, description="steps of linear warmup up to the schedule's value at step warmup_steps "
                    "(step k uses (k+1)/warmup_steps of it, as lczero)")
    lr_values: list[Annotated[float, Field(ge=0.0)]] = Field(
        default_factory=list, validate_default=True,
        description="steps: the rate in each interval; one more entry than lr_boundaries (lczero's lr_values)")
    lr_boundaries: list[Annotated[int, Field(gt=0)]] = Field(
        default_factory=list, validate_default=True,
        description="steps: strictly increasing steps where the next lr_values entry starts (lczero's lr_boundaries)")
    total_steps: int | None = Field(
        None, gt=0, validate_default=True,
        description="cosine: the step where the rate reaches min_lr; the cosine starts after warmup_steps")
    min_lr: float = Field(0.0, ge=0.0, description="cosine: the rate at and after total_steps")

    @field_validator("lr_values")
    @classmethod
    def _values_for_steps(cls, values: list[float], info: ValidationInfo) -> list[float]:
        if info.data.get("kind") == "steps" and not values:
            raise ValueError("lr_values must hold at least one rate when kind is 'steps'")
        return values

    @field_validator("lr_boundaries")
    @classmethod
    def _boundaries_match_values(cls, boundaries: list[int], info: ValidationInfo) -> list[int]:
        for before, after in zip(boundaries, boundaries[1:]):
            if after <= before:
                raise ValueError(f"lr_boundaries must be strictly increasing, got {before} then {after}")
        values = info.data.get("lr_values")
        if values is not None and (values or boundaries) and len(values) != len(boundaries) + 1:
            raise ValueError(f"lr_boundaries has {len(boundaries)} entries and lr_values {len(values)}: "
                             "lr_values needs exactly one more entry than lr_boundaries")
        return boundaries

    @field_validator("total_steps")
    @classmethod
    def _total_for_cosine(cls, total: int | None, info: ValidationInfo) -> int | None:
        if info.data.get("kind") != "cosine":
            return total
        if total is None:
            raise ValueError("total_steps is required when kind is 'cosine'")
        warmup = info.data.get("warmup_steps", 0)
        if total <= warmup:
            raise ValueError(f"total_steps ({total}) must be greater than warmup_steps ({warmup})")
        return total

    @field_validator("min_lr")
    @classmethod
    def _min_below_lr(cls, min_lr: float, info: ValidationInfo) -> float:
        lr = info.data.get("lr")
        if info.data.get("kind") == "cosine" and lr is not None and min_lr > lr:
            raise ValueError(f"min_lr ({min_lr}) must not exceed lr ({lr})")
        return min_lr

    def value_at(self, step: int) -> float:
        return learning_rate(self, step)


def _lr_without_warmup(config: LrSchedule, step: int) -> float:
    if config.kind == "steps":
        # lczero: lr_values[bisect_right(lr_boundaries, step)]; a boundary step already uses the next value.
        return float(config.lr_values[bisect.bisect_right(config.lr_boundaries, step)])
    if config.kind == "cosine":
        assert config.total_steps is not None  # the validator guarantees it
        if step >= config.total_steps:
            return config.min_lr
        progress = max(step - config.warmup_steps, 0) / (config.total_steps - config.warmup_steps)
        return config.min_lr + (config.lr - config.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return config.lr


def learning_rate(config: LrSchedule, step: int) -> float:
    """The learning rate for the update at `step`."""
    _check_step(step)
    if step < config.warmup_steps:
        # lczero's ramp: (step + 1) / warmup_steps, so the first update already moves the weights.
        return _lr_without_warmup(config, config.warmup_steps) * (step + 1) / config.warmup_steps
    return _lr_without_warmup(config, step)


class TeacherWeightSchedule(BaseModel):
    """How much the teacher's targets count, from 0 (data only) to 1 (teacher only)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    kind: Literal["constant", "linear_decay", "switch_off", "pbt"] = Field(
        "constant", description="constant: weight; linear_decay: weight down to 0; switch_off: weight, then 0; "
                                "pbt: weight, a value that population-based training (lc0distill pbt) sets "
                                "between its perturbations (constant in a plain run)")
    weight: float = Field(1.0, ge=0.0, le=1.0, description="the teacher's share of the targets while it teaches")
    start_step: int = Field(0, ge=0, description="linear_decay: the last step at full weight")
    end_step: int | None = Field(
        None, gt=0, validate_default=True, description="linear_decay: the first step at weight 0")
    off_step: int | None = Field(
        None, ge=0, validate_default=True, description="switch_off: the first step at weight 0")

    @field_validator("end_step")
    @classmethod
    def _end_after_start(cls, end: int | None, info: ValidationInfo) -> int | None:
        if info.data.get("kind") != "linear_decay":
            return end
        if end is None:
            raise ValueError("end_step is required when kind is 'linear_decay'")
        start = info.data.get("start_step", 0)
        if end <= start:
            raise ValueError(f"end_step ({end}) must be greater than start_step ({start})")
        return end

    @field_validator("off_step")
    @classmethod
    def _off_for_switch(cls, off: int | None, info: ValidationInfo) -> int | None:
        if info.data.get("kind") == "switch_off" and off is None:
            raise ValueError("off_step is required when kind is 'switch_off'")
        return off

    def value_at(self, step: int) -> float:
        return teacher_weight(self, step)


class KickstartWeightSchedule(TeacherWeightSchedule):
    """One teacher's own weight lambda_k(t) in the kickstarting loss (teacher.nets entries with `weight`):
    the data loss keeps its full weight and each teacher adds lambda_k(t) times its distillation loss, so a
    weight is not a share of the targets and may pass 1."""

    weight: float = Field(1.0, ge=0.0, le=10.0, description="lambda_k while the teacher teaches")


def teacher_weight(config: TeacherWeightSchedule, step: int) -> float:
    """The teacher's weight for the update at `step`."""
    _check_step(step)
    if config.kind == "switch_off":
        assert config.off_step is not None
        return config.weight if step < config.off_step else 0.0
    if config.kind == "linear_decay":
        assert config.end_step is not None
        if step <= config.start_step:
            return config.weight
        if step >= config.end_step:
            return 0.0
        return config.weight * (config.end_step - step) / (config.end_step - config.start_step)
    return config.weight  # constant, and pbt: the value the population search last set


class TemperatureSchedule(BaseModel):
    """The softmax temperature of the teacher's policy targets; always > 0."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    kind: Literal["constant", "linear"] = Field(
        "constant", description="constant: start; linear: start to end over steps, then end")
    start: float = Field(1.0, gt=0.0, description="the temperature at step 0 (and always, when constant)")
    end: float = Field(1.0, gt=0.0, description="linear: the temperature at and after `steps`")
    steps: int | None = Field(
        None, gt=0, validate_default=True, description="linear: the step where the temperature reaches end")

    @field_validator("steps")
    @classmethod
    def _steps_for_linear(cls, steps: int | None, info: ValidationInfo) -> int | None:
        if info.data.get("kind") == "linear" and steps is None:
            raise ValueError("steps is required when kind is 'linear'")
        return steps

    def value_at(self, step: int) -> float:
        return temperature(self, step)


def temperature(config: TemperatureSchedule, step: int) -> float:
    """The temperature for the update at `step`."""
    _check_step(step)
    if config.kind == "linear":
        assert config.steps is not None
        if step >= config.steps:
            return config.end
        return config.start + (config.end - config.start) * step / config.steps
    return config.start


def set_learning_rate(optimizer: Optimizer, lr: float) -> None:
    """Set `lr` on every parameter group (call before `optimizer.step()`; no LambdaLR state to checkpoint)."""
    if not lr >= 0.0:
        raise ValueError(f"learning rate must be >= 0, got {lr}")
    for group in optimizer.param_groups:
        group["lr"] = lr
