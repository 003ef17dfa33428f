"""Schedules: exact values at and around every boundary, validation errors that name the key, purity."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from lc0distill.distill.schedules import (
    LrSchedule,
    TeacherWeightSchedule,
    TemperatureSchedule,
    learning_rate,
    set_learning_rate,
    teacher_weight,
    temperature,
)


def _error_loc(excinfo: pytest.ExceptionInfo[ValidationError]) -> tuple:
    errors = excinfo.value.errors()
    assert len(errors) == 1, errors
    return errors[0]["loc"]


# --- learning rate -------------------------------------------------------------------------------------------


def test_constant_lr() -> None:
    config = LrSchedule(lr=0.1)
    assert [learning_rate(config, s) for s in (0, 1, 10**9)] == [0.1, 0.1, 0.1]


def test_constant_lr_warmup() -> None:
    config = LrSchedule(lr=0.1, warmup_steps=10)
    assert learning_rate(config, 0) == pytest.approx(0.01, rel=1e-15)  # lczero: (step + 1) / warmup_steps
    assert learning_rate(config, 5) == pytest.approx(0.06, rel=1e-15)
    assert learning_rate(config, 9) == pytest.approx(0.1, rel=1e-15)
    assert learning_rate(config, 10) == 0.1
    assert learning_rate(config, 11) == 0.1


def test_steps_lr_lczero_boundaries() -> None:
    config = LrSchedule(kind="steps", lr_values=[0.02, 0.002, 0.0005], lr_boundaries=[100, 130])
    expected = {0: 0.02, 99: 0.02, 100: 0.002, 101: 0.002, 129: 0.002, 130: 0.0005, 131: 0.0005, 10**9: 0.0005}
    assert {s: learning_rate(config, s) for s in expected} == expected


def test_steps_lr_single_value() -> None:
    config = LrSchedule(kind="steps", lr_values=[0.3])
    assert learning_rate(config, 0) == learning_rate(config, 10**6) == 0.3


def test_steps_lr_warmup_ramps_to_value_at_end_of_warmup() -> None:
    # Warmup ends inside the second interval: the ramp aims at 0.002, not at lr_values[0].
    config = LrSchedule(kind="steps", lr_values=[0.02, 0.002], lr_boundaries=[5], warmup_steps=10)
    assert learning_rate(config, 0) == pytest.approx(0.0002, rel=1e-15)
    assert learning_rate(config, 5) == pytest.approx(0.0012, rel=1e-15)
    assert learning_rate(config, 10) == 0.002
    # Warmup ends before the first boundary: ramp to lr_values[0], drops as usual later.
    config = LrSchedule(kind="steps", lr_values=[0.02, 0.002], lr_boundaries=[100], warmup_steps=10)
    assert learning_rate(config, 8) == pytest.approx(0.018, rel=1e-15)
    assert learning_rate(config, 10) == learning_rate(config, 99) == 0.02
    assert learning_rate(config, 100) == 0.002


def test_cosine_lr() -> None:
    config = LrSchedule(kind="cosine", lr=0.1, min_lr=0.001, total_steps=1000)
    assert learning_rate(config, 0) == 0.1
    assert learning_rate(config, 500) == pytest.approx((0.1 + 0.001) / 2, rel=1e-12)
    assert learning_rate(config, 250) == pytest.approx(0.001 + 0.099 * 0.5 * (1 + math.cos(math.pi / 4)), rel=1e-12)
    assert 0.001 < learning_rate(config, 999) < 0.001 + 1e-6
    assert learning_rate(config, 1000) == 0.001
    assert learning_rate(config, 1001) == 0.001
    assert learning_rate(config, 10**9) == 0.001


def test_cosine_lr_is_monotonic() -> None:
    config = LrSchedule(kind="cosine", lr=0.1, min_lr=0.0, total_steps=100)
    values = [learning_rate(config, s) for s in range(102)]
    assert all(a > b for a, b in zip(values[:100], values[1:101]))
    assert values[100] == values[101] == 0.0


def test_cosine_lr_with_warmup() -> None:
    # Warmup 0 -> lr over 100 steps, then the cosine from lr at step 100 to min_lr at step 1100.
    config = LrSchedule(kind="cosine", lr=0.1, min_lr=0.0, warmup_steps=100, total_steps=1100)
    assert learning_rate(config, 0) == pytest.approx(0.001, rel=1e-15)
    assert learning_rate(config, 49) == pytest.approx(0.05, rel=1e-15)
    assert learning_rate(config, 99) == pytest.approx(0.1, rel=1e-15)
    assert learning_rate(config, 100) == 0.1
    assert learning_rate(config, 600) == pytest.approx(0.05, rel=1e-12)
    assert learning_rate(config, 1100) == 0.0
    assert learning_rate(config, 1101) == 0.0


def test_value_at_matches_function() -> None:
    config = LrSchedule(kind="cosine", lr=0.1, total_steps=50, warmup_steps=5)
    assert [config.value_at(s) for s in range(60)] == [learning_rate(config, s) for s in range(60)]


def test_negative_step_is_rejected() -> None:
    with pytest.raises(ValueError, match="step"):
        learning_rate(LrSchedule(), -1)
    with pytest.raises(ValueError, match="step"):
        teacher_weight(TeacherWeightSchedule(), -1)
    with pytest.raises(ValueError, match="step"):
        temperature(TemperatureSchedule(), -1)


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        ({"kind": "steps", "lr_values": [0.1, 0.01], "lr_boundaries": [10, 20]}, "lr_boundaries"),
        ({"kind": "steps", "lr_values": [0.1, 0.01, 0.001], "lr_boundaries": [10]}, "lr_boundaries"),
        ({"kind": "steps", "lr_values": [0.1, 0.01, 0.001], "lr_boundaries": [20, 10]}, "lr_boundaries"),
        ({"kind": "steps", "lr_values": [0.1, 0.01, 0.001], "lr_boundaries": [10, 10]}, "lr_boundaries"),
        ({"kind": "steps", "lr_values": [0.1, 0.01], "lr_boundaries": [0]}, "lr_boundaries"),
        ({"kind": "steps"}, "lr_values"),
        ({"kind": "steps", "lr_values": [0.1, -0.01], "lr_boundaries": [10]}, "lr_values"),
        ({"kind": "cosine"}, "total_steps"),
        ({"kind": "cosine", "total_steps": 10, "warmup_steps": 10}, "total_steps"),
        ({"kind": "cosine", "total_steps": 10, "lr": 0.1, "min_lr": 0.2}, "min_lr"),
        ({"lr": -0.1}, "lr"),  # 0 is allowed: a run at lr 0 (net.init_from) leaves the weights
        ({"warmup_steps": -1}, "warmup_steps"),
        ({"kind": "linear"}, "kind"),
        ({"lr_rate": 0.1}, "lr_rate"),
    ],
)
def test_lr_validation_names_the_key(fields: dict, key: str) -> None:
    with pytest.raises(ValidationError, match=key) as excinfo:
        LrSchedule(**fields)
    assert _error_loc(excinfo)[0] == key


def test_lr_decreasing_boundaries_message() -> None:
    with pytest.raises(ValidationError, match="lr_boundaries must be strictly increasing"):
        LrSchedule(kind="steps", lr_values=[0.1, 0.01, 0.001], lr_boundaries=[20, 10])


def test_lr_length_mismatch_message_names_both_keys() -> None:
    with pytest.raises(ValidationError) as excinfo:
        LrSchedule(kind="steps", lr_values=[0.1, 0.01], lr_boundaries=[10, 20])
    message = str(excinfo.value)
    assert "lr_values" in message and "lr_boundaries" in message


def test_lr_config_is_frozen() -> None:
    config = LrSchedule()
    with pytest.raises(ValidationError):
        config.lr = 0.5  # type: ignore[misc]


# --- teacher weight ------------------------------------------------------------------------------------------


def test_constant_teacher_weight() -> None:
    config = TeacherWeightSchedule(weight=0.7)
    assert [teacher_weight(config, s) for s in (0, 1, 10**9)] == [0.7, 0.7, 0.7]
    assert teacher_weight(TeacherWeightSchedule(weight=0.0), 5) == 0.0


def test_linear_decay_teacher_weight() -> None:
    config = TeacherWeightSchedule(kind="linear_decay", weight=0.8, start_step=100, end_step=300)
    assert teacher_weight(config, 0) == 0.8
    assert teacher_weight(config, 99) == 0.8
    assert teacher_weight(config, 100) == 0.8
    assert teacher_weight(config, 101) == pytest.approx(0.8 * 199 / 200, rel=1e-15)
    assert teacher_weight(config, 200) == pytest.approx(0.4, rel=1e-15)
    assert teacher_weight(config, 299) == pytest.approx(0.8 / 200, rel=1e-15)
    assert teacher_weight(config, 300) == 0.0
    assert teacher_weight(config, 301) == 0.0
    assert teacher_weight(config, 10**9) == 0.0


def test_linear_decay_from_step_zero() -> None:
    config = TeacherWeightSchedule(kind="linear_decay", weight=1.0, end_step=10)
    assert [teacher_weight(config, s) for s in (0, 5, 10)] == [1.0, 0.5, 0.0]


def test_switch_off_teacher_weight() -> None:
    config = TeacherWeightSchedule(kind="switch_off", weight=0.5, off_step=1000)
    assert teacher_weight(config, 0) == 0.5
    assert teacher_weight(config, 999) == 0.5
    assert teacher_weight(config, 1000) == 0.0
    assert teacher_weight(config, 1001) == 0.0
    assert teacher_weight(TeacherWeightSchedule(kind="switch_off", off_step=0), 0) == 0.0


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        ({"kind": "linear_decay", "start_step": 100, "end_step": 100}, "end_step"),
        ({"kind": "linear_decay", "start_step": 100, "end_step": 50}, "end_step"),
        ({"kind": "linear_decay"}, "end_step"),
        ({"kind": "switch_off"}, "off_step"),
        ({"kind": "switch_off", "off_step": -1}, "off_step"),
        ({"weight": -0.1}, "weight"),
        ({"weight": 1.5}, "weight"),
        ({"start_step": -1}, "start_step"),
        ({"kind": "cosine"}, "kind"),
        ({"weigth": 0.5}, "weigth"),
    ],
)
def test_teacher_weight_validation_names_the_key(fields: dict, key: str) -> None:
    with pytest.raises(ValidationError, match=key) as excinfo:
        TeacherWeightSchedule(**fields)
    assert _error_loc(excinfo)[0] == key


def test_end_step_message() -> None:
    with pytest.raises(ValidationError, match=r"end_step \(100\) must be greater than start_step \(100\)"):
        TeacherWeightSchedule(kind="linear_decay", start_step=100, end_step=100)


# --- temperature ---------------------------------------------------------------------------------------------


def test_constant_temperature() -> None:
    config = TemperatureSchedule(start=2.0)
    assert [temperature(config, s) for s in (0, 1, 10**9)] == [2.0, 2.0, 2.0]
    assert temperature(TemperatureSchedule(), 7) == 1.0


def test_linear_temperature() -> None:
    config = TemperatureSchedule(kind="linear", start=2.0, end=1.0, steps=100)
    assert temperature(config, 0) == 2.0
    assert temperature(config, 1) == pytest.approx(1.99, rel=1e-15)
    assert temperature(config, 50) == 1.5
    assert temperature(config, 99) == pytest.approx(1.01, rel=1e-15)
    assert temperature(config, 100) == 1.0
    assert temperature(config, 101) == 1.0
    assert temperature(config, 10**9) == 1.0
    rising = TemperatureSchedule(kind="linear", start=0.5, end=3.0, steps=10)
    assert [temperature(rising, s) for s in (0, 5, 10, 11)] == [0.5, 1.75, 3.0, 3.0]


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        ({"start": 0.0}, "start"),
        ({"start": -1.0}, "start"),
        ({"kind": "linear", "end": 0.0, "steps": 10}, "end"),
        ({"kind": "linear"}, "steps"),
        ({"kind": "linear", "steps": 0}, "steps"),
        ({"kind": "cosine"}, "kind"),
        ({"value": 1.0}, "value"),
    ],
)
def test_temperature_validation_names_the_key(fields: dict, key: str) -> None:
    with pytest.raises(ValidationError, match=key) as excinfo:
        TemperatureSchedule(**fields)
    assert _error_loc(excinfo)[0] == key


# --- purity and the optimizer helper -------------------------------------------------------------------------


def test_schedules_are_pure_functions_of_the_step() -> None:
    schedules = [
        LrSchedule(kind="cosine", lr=0.1, min_lr=0.01, warmup_steps=10, total_steps=200),
        LrSchedule(kind="steps", lr_values=[0.1, 0.01], lr_boundaries=[50], warmup_steps=5),
        TeacherWeightSchedule(kind="linear_decay", weight=0.9, start_step=20, end_step=120),
        TemperatureSchedule(kind="linear", start=3.0, end=1.0, steps=80),
    ]
    steps = list(range(250))
    for schedule in schedules:
        forward = [schedule.value_at(s) for s in steps]
        backward = [schedule.value_at(s) for s in reversed(steps)][::-1]
        rebuilt = type(schedule).model_validate(schedule.model_dump())
        assert forward == backward == [rebuilt.value_at(s) for s in steps]
        assert all(isinstance(v, float) for v in forward)


def test_temperature_stays_positive() -> None:
    config = TemperatureSchedule(kind="linear", start=1e-3, end=5.0, steps=7)
    assert all(temperature(config, s) > 0 for s in range(20))


class _Optimizer:
    """What set_learning_rate touches of a torch optimizer (building a real one costs ~1 s of lazy imports)."""

    def __init__(self, *lrs: float) -> None:
        self.param_groups = [{"params": [], "lr": lr, "momentum": 0.9} for lr in lrs]


def test_set_learning_rate_sets_every_group() -> None:
    optimizer = _Optimizer(0.5, 0.25)
    set_learning_rate(optimizer, 0.125)  # type: ignore[arg-type]
    assert [group["lr"] for group in optimizer.param_groups] == [0.125, 0.125]
    assert [group["momentum"] for group in optimizer.param_groups] == [0.9, 0.9]
    with pytest.raises(ValueError, match="learning rate"):
        set_learning_rate(optimizer, -0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="learning rate"):
        set_learning_rate(optimizer, float("nan"))  # type: ignore[arg-type]


def test_training_loop_usage() -> None:
    lr_config = LrSchedule(kind="steps", lr_values=[0.2, 0.02], lr_boundaries=[3], warmup_steps=2)
    optimizer = _Optimizer(123.0)
    seen = []
    for step in range(5):
        set_learning_rate(optimizer, lr_config.value_at(step))  # type: ignore[arg-type]
        seen.append(optimizer.param_groups[0]["lr"])
    assert seen == [pytest.approx(0.1, rel=1e-15), 0.2, 0.2, 0.02, 0.02]
