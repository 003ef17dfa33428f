"""The losses against naive references: numpy float64, one loop over rows, nothing shared with the code."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lc0distill.distill.losses import (
    tempered_target,
    blend_value_target,
    mixture_log_probs,
    moves_left_huber,
    policy_cross_entropy,
    policy_kl,
    policy_kl_to,
    policy_logit_mse,
    policy_teacher_nll,
    scalar_value_mse,
    total_loss,
    value_distill_wdl,
    wdl_cross_entropy,
    wdl_mse,
    weighted_losses,
)

B, N, LEGAL = 6, 1858, 30
TOL = dict(rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------ inputs


def _inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed)
    legal = np.zeros((B, N), bool)
    target = np.zeros((B, N), np.float32)
    for row in range(B):
        count = 1 if row == B - 1 else int(rng.integers(LEGAL - 10, LEGAL + 10))  # last row: a single move
        idx = rng.choice(N, size=count, replace=False)
        legal[row, idx] = True
        target[row, idx] = rng.dirichlet(np.ones(count))
    wdl = lambda: rng.dirichlet(np.ones(3), size=B).astype(np.float32)  # noqa: E731
    return {
        "student": torch.from_numpy(rng.normal(0, 2, (B, N)).astype(np.float32)),
        "teacher": torch.from_numpy(rng.normal(0, 2, (B, N)).astype(np.float32)),
        "target": torch.from_numpy(target),
        "legal": torch.from_numpy(legal),
        "wdl_s": torch.from_numpy(rng.normal(0, 1.5, (B, 3)).astype(np.float32)),
        "wdl_t": torch.from_numpy(rng.normal(0, 1.5, (B, 3)).astype(np.float32)),
        "z": torch.from_numpy(wdl()),
        "q": torch.from_numpy(wdl()),
        "value": torch.from_numpy(np.tanh(rng.normal(0, 1, B)).astype(np.float32)),
        "ml_pred": torch.from_numpy(rng.uniform(0, 150, B).astype(np.float32)),
        "ml_target": torch.from_numpy(rng.uniform(0, 150, B).astype(np.float32)),
        "ml_known": torch.from_numpy(np.array([True, False, True, True, False, True])),
    }


@pytest.fixture
def x() -> dict[str, torch.Tensor]:
    return _inputs()


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy() if t.dtype != torch.bool else t.numpy()


# -------------------------------------------------------------------------------- naive references


def _lsm(v: np.ndarray) -> np.ndarray:
    m = max(v)
    log_sum = math.log(sum(math.exp(b - m) for b in v))
    return np.array([a - m - log_sum for a in v])


def ref_policy_ce(logits, target, legal, mask):
    logits, target, legal = _np(logits), _np(target), _np(legal)
    out = []
    for row in range(len(logits)):
        idx = np.flatnonzero(legal[row]) if mask else np.arange(logits.shape[1])
        out.append(-sum(t * lp for t, lp in zip(target[row, idx], _lsm(logits[row, idx]))))
    return np.mean(out)


def ref_kl(student, teacher, legal, temperature, form):
    """Hinton: KL(softmax(t/T) || softmax(s/T)) * T^2; lczero: KL(softmax(t/T) || softmax(s)), no factor."""
    student, teacher, legal = _np(student), _np(teacher), _np(legal)
    hinton = form == "hinton"
    out = []
    for row in range(len(student)):
        idx = np.flatnonzero(legal[row])
        lt = _lsm(teacher[row, idx] / temperature)
        ls = _lsm(student[row, idx] / (temperature if hinton else 1.0))
        out.append(sum(math.exp(a) * (a - b) for a, b in zip(lt, ls)))
    return np.mean(out) * (temperature**2 if hinton else 1.0)


def ref_mixture_kl(student, members, legal, temperature, form):
    """KL against sum_k w_k softmax(t_k / T), each teacher tempered before the mean (the reference's ensemble)."""
    student, legal = _np(student), _np(legal)
    hinton = form == "hinton"
    out = []
    for row in range(len(student)):
        idx = np.flatnonzero(legal[row])
        mixed = sum(w * np.exp(_lsm(_np(t)[row, idx] / temperature)) for w, t in members)
        ls = _lsm(student[row, idx] / (temperature if hinton else 1.0))
        out.append(sum(p * (math.log(p) - b) for p, b in zip(mixed, ls)))
    return np.mean(out) * (temperature**2 if hinton else 1.0)


def ref_entropy(teacher, legal):
    teacher, legal = _np(teacher), _np(legal)
    return np.mean([-sum(math.exp(a) * a for a in _lsm(teacher[r, np.flatnonzero(legal[r])]))
                    for r in range(len(teacher))])


def ref_teacher_nll(student, teacher, legal):
    student, teacher, legal = _np(student), _np(teacher), _np(legal)
    out = []
    for row in range(len(student)):
        idx = np.flatnonzero(legal[row])
        best = int(np.argmax(teacher[row, idx]))
        out.append(-_lsm(student[row, idx])[best])
    return np.mean(out)


def ref_logit_mse(student, teacher, legal):
    student, teacher, legal = _np(student), _np(teacher), _np(legal)
    out = []
    for row in range(len(student)):
        s, t = student[row, legal[row]], teacher[row, legal[row]]
        out.append(sum(((a - s.mean()) - (b - t.mean())) ** 2 for a, b in zip(s, t)) / len(s))
    return np.mean(out)


def ref_wdl_ce(logits, target):
    logits, target = _np(logits), _np(target)
    return np.mean([-sum(t * lp for t, lp in zip(target[r], _lsm(logits[r]))) for r in range(len(logits))])


def ref_wdl_mse(logits, target):
    logits, target = _np(logits), _np(target)
    out = []
    for row in range(len(logits)):
        p = np.exp(_lsm(logits[row]))
        out.append(((p[0] - p[2]) - (target[row, 0] - target[row, 2])) ** 2)
    return np.mean(out)


def ref_huber(pred, target, known):
    pred, target, known = _np(pred), _np(target), _np(known)
    out = []
    for p, t, k in zip(pred, target, known):
        if k:
            d = abs(p / 20 - t / 20)
            out.append(0.5 * d * d if d <= 0.5 else 0.5 * (d - 0.25))
    return np.mean(out) if out else 0.0


def _close(value: torch.Tensor, expected: float, **tol) -> None:
    assert value.shape == () and value.dtype == torch.float32
    np.testing.assert_allclose(value.item(), expected, **(tol or TOL))


# --------------------------------------------------------------------------------------------- policy


@pytest.mark.parametrize("mask", [True, False])
def test_policy_cross_entropy(x, mask):
    _close(policy_cross_entropy(x["student"], x["target"], x["legal"], mask_illegal=mask),
           ref_policy_ce(x["student"], x["target"], x["legal"], mask))


@pytest.mark.parametrize("temperature", [1.0, 2.5, 0.7, 0.25])
@pytest.mark.parametrize("form", ["hinton", "lczero"])
def test_policy_kl(x, temperature, form):
    _close(policy_kl(x["student"], x["teacher"], x["legal"], temperature, form),
           ref_kl(x["student"], x["teacher"], x["legal"], temperature, form))


def test_the_two_forms_agree_at_t1_only(x):
    hinton = policy_kl(x["student"], x["teacher"], x["legal"], 1.0, "hinton")
    torch.testing.assert_close(hinton, policy_kl(x["student"], x["teacher"], x["legal"], 1.0, "lczero"))
    assert not torch.isclose(policy_kl(x["student"], x["teacher"], x["legal"], 2.0, "hinton"),
                             policy_kl(x["student"], x["teacher"], x["legal"], 2.0, "lczero"))


def test_unknown_kl_form_is_an_error(x):
    with pytest.raises(ValueError, match="hinton, lczero"):
        policy_kl(x["student"], x["teacher"], x["legal"], 2.0, "t_squared")


@pytest.mark.parametrize("temperature", [1.0, 3.0, 0.5])
@pytest.mark.parametrize("form", ["hinton", "lczero"])
def test_an_ensemble_is_tempered_per_teacher(x, temperature, form):
    other = torch.from_numpy(np.random.default_rng(7).normal(0, 2, (B, N)).astype(np.float32))
    members = [(0.75, x["teacher"]), (0.25, other)]
    target = mixture_log_probs(members, x["legal"], temperature)
    _close(policy_kl_to(x["student"], target, x["legal"], temperature, form),
           ref_mixture_kl(x["student"], members, x["legal"], temperature, form))
    if temperature != 1.0:  # tempering the log of the T=1 mixture (the old way) is another target
        at_one = mixture_log_probs(members, x["legal"], 1.0)
        old = policy_kl(x["student"], at_one, x["legal"], temperature, form)
        assert abs(old.item() - ref_mixture_kl(x["student"], members, x["legal"], temperature, form)) > 1e-3


def test_kl_at_t1_is_cross_entropy_minus_teacher_entropy(x):
    legal = _np(x["legal"])
    teacher_probs = np.zeros((B, N))
    for row in range(B):
        idx = np.flatnonzero(legal[row])
        teacher_probs[row, idx] = np.exp(_lsm(_np(x["teacher"])[row, idx]))
    ce = policy_cross_entropy(x["student"], torch.from_numpy(teacher_probs).float(), x["legal"])
    kl = policy_kl(x["student"], x["teacher"], x["legal"])
    _close(kl, ce.item() - ref_entropy(x["teacher"], x["legal"]))


def test_hinton_gradient_keeps_its_size_as_t_grows(x):
    """Hinton's T^2: for large T the gradient of KL * T^2 tends to (s - t) / N-ish, not to 0 as 1/T^2."""
    sizes = []
    for t in (4.0, 8.0, 16.0):
        student = x["student"].clone().requires_grad_(True)
        policy_kl(student, x["teacher"], x["legal"], t, "hinton").backward()
        sizes.append(student.grad.norm().item())
    assert sizes[2] == pytest.approx(sizes[1], rel=0.1) and sizes[1] == pytest.approx(sizes[0], rel=0.2)


def test_lczero_form_divides_only_the_teacher(x):
    """Cyanogenoid: the student not divided by T, no T^2: his cross-entropy against softmax(teacher / T)
    minus that target's entropy."""
    t = 2.0
    unscaled = policy_kl(x["student"], x["teacher"], x["legal"], temperature=t, form="lczero")
    _close(unscaled, ref_policy_ce(x["student"], _teacher_probs(x, t), x["legal"], True)
           - ref_entropy(x["teacher"] / t, x["legal"]))


def _teacher_probs(x, temperature):
    legal, teacher = _np(x["legal"]), _np(x["teacher"])
    probs = np.zeros((B, N))
    for row in range(B):
        idx = np.flatnonzero(legal[row])
        probs[row, idx] = np.exp(_lsm(teacher[row, idx] / temperature))
    return torch.from_numpy(probs)


def test_policy_teacher_nll(x):
    _close(policy_teacher_nll(x["student"], x["teacher"], x["legal"]),
           ref_teacher_nll(x["student"], x["teacher"], x["legal"]))


def test_teacher_nll_ignores_the_teachers_illegal_favourite(x):
    teacher = x["teacher"].masked_fill(~x["legal"], 100.0)  # the teacher's largest logits are all illegal
    torch.testing.assert_close(policy_teacher_nll(x["student"], teacher, x["legal"]),
                               policy_teacher_nll(x["student"], x["teacher"], x["legal"]))


def test_policy_logit_mse(x):
    _close(policy_logit_mse(x["student"], x["teacher"], x["legal"]),
           ref_logit_mse(x["student"], x["teacher"], x["legal"]))


def test_policy_logit_mse_is_shift_invariant_per_row(x):
    shift = torch.randn(B, 1) * 5
    torch.testing.assert_close(policy_logit_mse(x["student"] + shift, x["teacher"], x["legal"]),
                               policy_logit_mse(x["student"], x["teacher"], x["legal"]))


MASKED = {
    "ce": lambda s, x: policy_cross_entropy(s, x["target"], x["legal"]),
    "kl": lambda s, x: policy_kl(s, x["teacher"], x["legal"], temperature=1.5, form="hinton"),
    "kl_cyan": lambda s, x: policy_kl(s, x["teacher"], x["legal"], temperature=1.5, form="lczero"),
    "nll": lambda s, x: policy_teacher_nll(s, x["teacher"], x["legal"]),
    "logit_mse": lambda s, x: policy_logit_mse(s, x["teacher"], x["legal"]),
}


@pytest.mark.parametrize("name", MASKED)
def test_illegal_student_logits_change_nothing(x, name):
    loss_fn = MASKED[name]
    noise = torch.randn(B, N) * 50 * (~x["legal"])
    results = []
    for student in (x["student"], x["student"] + noise):
        student = student.clone().requires_grad_(True)
        loss = loss_fn(student, x)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(student.grad).all()
        assert torch.equal(student.grad[~x["legal"]], torch.zeros(int((~x["legal"]).sum())))
        assert student.grad[x["legal"]].abs().sum() > 0
        results.append((loss.detach(), student.grad))
    assert torch.equal(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1], rtol=0, atol=0)


@pytest.mark.parametrize("name", ["kl", "kl_cyan", "nll", "logit_mse"])
def test_illegal_teacher_logits_change_nothing(x, name):
    teacher = x["teacher"] + torch.randn(B, N) * 50 * (~x["legal"])
    assert torch.equal(MASKED[name](x["student"], {**x, "teacher": teacher}), MASKED[name](x["student"], x))


def test_unmasked_cross_entropy_sees_illegal_logits(x):
    raised = x["student"] + 5.0 * (~x["legal"])
    assert policy_cross_entropy(raised, x["target"], x["legal"], mask_illegal=False) > \
        policy_cross_entropy(x["student"], x["target"], x["legal"], mask_illegal=False) + 1.0


# ---------------------------------------------------------------------------------------------- value


@pytest.mark.parametrize("q_ratio", [0.0, 0.3, 1.0])
def test_blend_value_target(x, q_ratio):
    z, q = _np(x["z"]), _np(x["q"])
    expected = np.array([[q_ratio * q[r, i] + (1 - q_ratio) * z[r, i] for i in range(3)] for r in range(B)])
    out = blend_value_target(x["z"], x["q"], q_ratio)
    assert out.shape == (B, 3)
    np.testing.assert_allclose(out.numpy(), expected, **TOL)


def test_blend_keeps_unread_nan_out_and_checks_the_ratio(x):
    nan = torch.full((B, 3), float("nan"))
    assert torch.equal(blend_value_target(x["z"], nan, 0.0), x["z"])
    assert torch.equal(blend_value_target(nan, x["q"], 1.0), x["q"])
    with pytest.raises(ValueError, match="q_ratio"):
        blend_value_target(x["z"], x["q"], 1.5)


def test_wdl_cross_entropy(x):
    target = blend_value_target(x["z"], x["q"], 0.4)
    _close(wdl_cross_entropy(x["wdl_s"], target), ref_wdl_ce(x["wdl_s"], target))


def test_wdl_mse(x):
    _close(wdl_mse(x["wdl_s"], x["z"]), ref_wdl_mse(x["wdl_s"], x["z"]))


def test_scalar_value_mse(x):
    v, z = _np(x["value"]), _np(x["z"])
    _close(scalar_value_mse(x["value"], x["z"]), np.mean([(v[r] - (z[r, 0] - z[r, 2])) ** 2 for r in range(B)]))


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_value_distill_wdl(x, temperature):
    teacher = _np(x["wdl_t"])
    target = np.array([np.exp(_lsm(teacher[r] / temperature)) for r in range(B)])
    _close(value_distill_wdl(x["wdl_s"], x["wdl_t"], temperature), ref_wdl_ce(x["wdl_s"], torch.from_numpy(target)))


def test_moves_left_huber(x):
    # both branches of the Huber loss are exercised: |pred - target| / 20 above and below 0.5
    gaps = (_np(x["ml_pred"]) - _np(x["ml_target"]))[_np(x["ml_known"])] / 20
    assert (abs(gaps) > 0.5).any() and (abs(gaps) <= 0.5).any()
    _close(moves_left_huber(x["ml_pred"], x["ml_target"], x["ml_known"]),
           ref_huber(x["ml_pred"], x["ml_target"], x["ml_known"]))


def test_moves_left_huber_ignores_unknown_rows(x):
    known = x["ml_known"]
    target = x["ml_target"].masked_fill(~known, float("nan"))
    pred = (x["ml_pred"] + 1000.0 * (~known)).requires_grad_(True)
    loss = moves_left_huber(pred, target, known)
    loss.backward()
    _close(loss, ref_huber(x["ml_pred"], x["ml_target"], known))
    assert torch.equal(pred.grad[~known], torch.zeros(int((~known).sum())))
    assert torch.isfinite(pred.grad).all()


def test_moves_left_huber_with_no_known_row(x):
    pred = x["ml_pred"].clone().requires_grad_(True)
    loss = moves_left_huber(pred, x["ml_target"], torch.zeros(B, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(pred.grad, torch.zeros(B))


# ---------------------------------------------------------------------------------------------- total


def _all_parts(x, student=None, wdl=None) -> dict[str, torch.Tensor]:
    s = x["student"] if student is None else student
    w = x["wdl_s"] if wdl is None else wdl
    target = blend_value_target(x["z"], x["q"], 0.5)
    return {
        "policy": policy_cross_entropy(s, x["target"], x["legal"]),
        "policy_kl": policy_kl(s, x["teacher"], x["legal"], temperature=2.0, form="hinton"),
        "policy_nll": policy_teacher_nll(s, x["teacher"], x["legal"]),
        "policy_logit_mse": policy_logit_mse(s, x["teacher"], x["legal"]),
        "value": wdl_cross_entropy(w, target),
        "value_mse": wdl_mse(w, target),
        "value_distill": value_distill_wdl(w, x["wdl_t"], 1.5),
        "moves_left": moves_left_huber(x["ml_pred"], x["ml_target"], x["ml_known"]),
    }


def test_total_is_the_weighted_sum_of_parts(x):
    parts = _all_parts(x)
    weights = {name: 0.25 * (i + 1) for i, name in enumerate(parts)} | {"unused": 3.0}
    expected = torch.zeros(())
    for name, part in parts.items():
        expected = expected + weights[name] * part
    assert torch.equal(total_loss(parts, weights), expected)
    report = weighted_losses(parts, weights)
    assert torch.equal(report.total, expected)
    assert report.weights == {name: weights[name] for name in parts}
    logged = report.scalars()
    assert list(logged) == ["total", *parts]
    assert all(logged[name] == pytest.approx(part.item()) for name, part in parts.items())


def test_missing_weight_is_an_error_naming_it(x):
    parts = _all_parts(x)
    with pytest.raises(KeyError, match="moves_left"):
        total_loss(parts, {name: 1.0 for name in parts if name != "moves_left"})
    with pytest.raises(ValueError, match="policy"):
        total_loss({"policy": torch.ones(3)}, {"policy": 1.0})


def test_gradients_flow_through_every_part(x):
    student = x["student"].clone().requires_grad_(True)
    wdl = x["wdl_s"].clone().requires_grad_(True)
    value = x["value"].clone().requires_grad_(True)
    ml = x["ml_pred"].clone().requires_grad_(True)
    parts = _all_parts(x, student, wdl)
    parts["moves_left"] = moves_left_huber(ml, x["ml_target"], x["ml_known"])
    parts["scalar_value"] = scalar_value_mse(value, x["z"])
    for name, part in parts.items():
        for t in (student, wdl, value, ml):
            t.grad = None
        part.backward(retain_graph=True)
        grads = [t.grad for t in (student, wdl, value, ml) if t.grad is not None]
        assert grads, name
        assert all(torch.isfinite(g).all() for g in grads), name
        assert any(g.abs().sum() > 0 for g in grads), name


# ---------------------------------------------------------------------------- autocast and devices


def test_bf16_autocast_is_finite_and_close_to_float32(x):
    torch.manual_seed(0)
    head = torch.nn.Linear(64, N + 3)
    features = torch.randn(B, 64)
    head_t = torch.nn.Linear(64, N + 3)

    def losses():
        out, teacher = head(features), head_t(features)  # bf16 under autocast
        policy, wdl = out[:, :N] * 4, out[:, N:] * 4
        t_policy, t_wdl = teacher[:, :N] * 4, teacher[:, N:] * 4
        return {
            "ce": policy_cross_entropy(policy, x["target"], x["legal"]),
            "ce_all": policy_cross_entropy(policy, x["target"], x["legal"], mask_illegal=False),
            "kl": policy_kl(policy, t_policy, x["legal"], temperature=2.0, form="hinton"),
            "nll": policy_teacher_nll(policy, t_policy, x["legal"]),
            "logit_mse": policy_logit_mse(policy, t_policy, x["legal"]),
            "wdl_ce": wdl_cross_entropy(wdl, x["z"]),
            "wdl_mse": wdl_mse(wdl, x["z"]),
            "value_distill": value_distill_wdl(wdl, t_wdl, 1.5),
            "scalar": scalar_value_mse(torch.tanh(wdl[:, 0]), x["z"]),
            "mlh": moves_left_huber(wdl[:, 1] * 30 + 60, x["ml_target"], x["ml_known"]),
        }

    reference = losses()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert head(features).dtype == torch.bfloat16
        mixed = losses()
    for name, value in mixed.items():
        assert value.dtype == torch.float32 and torch.isfinite(value), name
        torch.testing.assert_close(value, reference[name], rtol=0.05, atol=0.05, msg=name)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu(x):
    cpu = _all_parts(x)
    cuda = _all_parts({name: t.cuda() for name, t in x.items()})
    for name, value in cuda.items():
        assert value.is_cuda, name
        torch.testing.assert_close(value.cpu(), cpu[name], rtol=1e-4, atol=1e-4, msg=name)


def test_a_search_policy_sharpened_by_hand():
    """(0.5, 0.3, 0.2) at T = 0.5 is (0.25, 0.09, 0.04) / 0.38; unvisited and illegal entries stay 0, an empty
    row stays empty, and T = 1 is the target itself."""
    target = torch.tensor([[0.5, 0.3, 0.2, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    sharp = tempered_target(target, 0.5)
    assert torch.allclose(sharp[0], torch.tensor([0.25 / 0.38, 0.09 / 0.38, 0.04 / 0.38, 0.0, 0.0]), atol=1e-6)
    assert torch.equal(sharp[1], torch.zeros(5))
    flat = tempered_target(target, 2.0)[0]
    roots = [math.sqrt(0.5), math.sqrt(0.3), math.sqrt(0.2)]
    assert torch.allclose(flat[:3], torch.tensor(roots) / sum(roots), atol=1e-6)
    assert tempered_target(target, 1.0) is target
    tiny = tempered_target(torch.tensor([[0.6, 0.4]]), 0.01)  # 0.4/0.6 to the 100th: no underflow to NaN
    assert torch.allclose(tiny, torch.tensor([[1.0, (0.4 / 0.6) ** 100]]), atol=1e-6)
