"""The objective's corrections (issue 25), each against values computed here in numpy float64 from the
published formulas, never through the code under test:
- the value parts always sum to one full value weight (Cyanogenoid's distill branch: (1-a) z + a teacher);
- the teacher's moves-left as an optional target, sharing the head's weight the same way;
- the teacher in float32 whatever autocast the student runs under;
- batch-norm statistics at momentum 0.01 (Keras' 0.99) by default;
- SWA falls back to the live student before its first average;
- data.rule50: trainer refused; an ensemble cache refused at T != 1; data.batch_size the global batch.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lc0distill.chunks.batch import Batch
from lc0distill.config import LossConfig, load_config
from lc0distill.distill.objective import loss_parts
from lc0distill.distill.teachers import NetTeacher, TeacherOutput
from lc0distill.errors import Lc0DistillError
from lc0distill.models.config import NetConfig
from lc0distill.models.net import NetOutput, SEResNet
from lc0distill.train import rank_batch_size

B = 5


def _batch() -> Batch:
    g = torch.Generator().manual_seed(3)
    legal = torch.zeros(B, 1858, dtype=torch.bool)
    for row in range(B):
        legal[row, torch.randperm(1858, generator=g)[:25]] = True
    policy = torch.rand(B, 1858, generator=g) * legal
    policy /= policy.sum(dim=1, keepdim=True)
    z = torch.eye(3)[[0, 1, 2, 0, 2]]
    return Batch(planes=torch.zeros(B, 112, 8, 8), policy=policy, legal=legal, z=z, q=z,
                 moves_left=torch.tensor([30.0, 12.0, 80.0, 5.0, 44.0]),
                 moves_left_known=torch.tensor([True, True, False, True, True]),
                 orig_q=torch.zeros(B), policy_kld=torch.zeros(B), played_idx=torch.zeros(B, dtype=torch.long),
                 best_idx=torch.zeros(B, dtype=torch.long), chunk_index=torch.zeros(B, dtype=torch.long),
                 record_index=torch.arange(B))


def _outputs(seed: int, moves_left: bool = True) -> tuple[NetOutput, TeacherOutput]:
    g = torch.Generator().manual_seed(seed)
    student = NetOutput(torch.randn(B, 1858, generator=g) * 2, torch.randn(B, 3, generator=g), None,
                        torch.rand(B, generator=g) * 100 if moves_left else None)
    teacher = TeacherOutput(torch.randn(B, 1858, generator=g) * 2,
                            torch.softmax(torch.randn(B, 3, generator=g), dim=1),
                            torch.rand(B, generator=g) * 100)
    return student, teacher


# ------------------------------------------------------------------------------- numpy references

def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def _log_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max()
    return x - (m + math.log(np.exp(x - m).sum()))


def ref_policy_ce(logits, target, legal) -> float:
    return float(np.mean([-(_np(target)[r, _np(legal)[r] > 0] * _log_softmax(_np(logits)[r, _np(legal)[r] > 0])).sum()
                          for r in range(B)]))


def ref_kl(student, teacher, legal, t: float) -> float:  # Hinton: both at T, times T^2
    rows = []
    for r in range(B):
        idx = _np(legal)[r] > 0
        lt, ls = _log_softmax(_np(teacher)[r, idx] / t), _log_softmax(_np(student)[r, idx] / t)
        rows.append((np.exp(lt) * (lt - ls)).sum())
    return float(np.mean(rows)) * t * t


def ref_wdl_ce(logits, target_probs) -> float:
    return float(np.mean([-(_np(target_probs)[r] * _log_softmax(_np(logits)[r])).sum() for r in range(B)]))


def ref_huber(pred, target, known) -> float:
    """lczero: Huber, delta 10 plies, on pred/20 and target/20; mean over the known rows."""
    losses = []
    for p, t, k in zip(_np(pred), _np(target), _np(known)):
        if k:
            d = abs(p - t) / 20
            losses.append(0.5 * d * d if d <= 0.5 else 0.5 * (d - 0.25))
    return float(np.mean(losses))


# ------------------------------------------------------------------------------- value shares


@pytest.mark.parametrize("alpha, value_distill", [(1.0, 0.0), (0.6, 0.5), (1.0, 1.0), (0.3, 1.0)])
def test_value_parts_sum_to_one_full_weight(alpha, value_distill):
    batch = _batch()
    student, teacher = _outputs(1, moves_left=False)
    config = LossConfig(value_distill=value_distill, value_weight=0.8)
    total = loss_parts(student, batch, teacher, config, alpha, temp=1.0).total.item()
    share = alpha * value_distill
    expected = ((1 - alpha) * ref_policy_ce(student.policy_logits, batch.policy, batch.legal)
                + alpha * ref_kl(student.policy_logits, teacher.policy_logits, batch.legal, 1.0)
                + 0.8 * ((1 - share) * ref_wdl_ce(student.wdl_logits, batch.z)
                         + share * ref_wdl_ce(student.wdl_logits, teacher.wdl)))
    assert total == pytest.approx(expected, rel=1e-5)


def test_a_teacher_without_wdl_leaves_the_value_head_to_the_data():
    """At teacher weight 1 the value head still learns z in full (it used to get weight 1 - a = 0)."""
    batch = _batch()
    student, teacher = _outputs(2, moves_left=False)
    teacher.wdl = None
    report = loss_parts(student, batch, teacher, LossConfig(), 1.0, temp=1.0)
    assert report.weights["value"] == 1.0 and "value_distill" not in report.parts
    expected = ref_kl(student.policy_logits, teacher.policy_logits, batch.legal, 1.0) + \
        ref_wdl_ce(student.wdl_logits, batch.z)
    assert report.total.item() == pytest.approx(expected, rel=1e-5)


def test_value_distill_above_one_is_refused():
    with pytest.raises(Lc0DistillError, match="loss.value_distill"):
        load_config(None, ["data.paths=[x]", "loss.value_distill=1.5"])


# ------------------------------------------------------------------------------- moves-left


@pytest.mark.parametrize("alpha, share", [(1.0, 0.5), (0.4, 1.0)])
def test_the_teachers_moves_left_is_an_optional_target(alpha, share):
    batch = _batch()
    student, teacher = _outputs(4)
    config = LossConfig(moves_left_distill=share, moves_left_weight=0.5)
    report = loss_parts(student, batch, teacher, config, alpha, temp=2.0)
    m = alpha * share
    expected = ((1 - alpha) * ref_policy_ce(student.policy_logits, batch.policy, batch.legal)
                + alpha * ref_kl(student.policy_logits, teacher.policy_logits, batch.legal, 2.0)
                + (1 - alpha) * ref_wdl_ce(student.wdl_logits, batch.z)
                + alpha * ref_wdl_ce(student.wdl_logits, teacher.wdl)
                + 0.5 * ((1 - m) * ref_huber(student.moves_left, batch.moves_left, batch.moves_left_known)
                         + m * ref_huber(student.moves_left, teacher.moves_left, torch.ones(B))))
    assert report.total.item() == pytest.approx(expected, rel=1e-5)
    off = loss_parts(student, batch, teacher, LossConfig(moves_left_weight=0.5), alpha, temp=2.0)
    assert "moves_left_distill" not in off.parts and off.weights["moves_left"] == 0.5  # the default: 0


# ------------------------------------------------------------------------------- ensembles


def test_an_ensemble_teaches_the_mean_of_its_tempered_nets():
    """Cyanogenoid's ensembling: each teacher's softmax(logits / T), then the weighted mean; through NetTeacher
    and the objective, against numpy on each net's own logits."""
    torch.manual_seed(1)
    nets = [SEResNet(NetConfig(filters=8, blocks=1)).eval() for _ in range(2)]
    batch = _batch()
    batch.planes = torch.rand(B, 112, 8, 8).round()
    student = NetOutput(torch.randn(B, 1858) * 2, torch.randn(B, 3), None, None)
    taught = NetTeacher(nets, [3.0, 1.0])(batch.planes)
    t = 3.0
    report = loss_parts(student, batch, taught, LossConfig(value_distill=0.0), 1.0, temp=t)
    with torch.no_grad():
        logits = [_np(net(batch.planes).policy_logits) for net in nets]
    legal, s = _np(batch.legal) > 0, _np(student.policy_logits)
    rows = []
    for r in range(B):
        each = [np.exp(_log_softmax(net_logits[r, legal[r]] / t)) for net_logits in logits]
        mixed = 0.75 * each[0] + 0.25 * each[1]
        rows.append((mixed * (np.log(mixed) - _log_softmax(s[r, legal[r]] / t))).sum())
    assert report.parts["policy_distill"].item() == pytest.approx(float(np.mean(rows)) * t * t, rel=1e-5)


# ------------------------------------------------------------------------------- teacher precision


def test_the_teacher_runs_in_float32_under_the_students_autocast():
    torch.manual_seed(0)
    net = SEResNet(NetConfig(filters=16, blocks=2)).eval()
    teacher = NetTeacher([net])
    planes = torch.rand(8, 112, 8, 8).round()
    with torch.no_grad():
        reference = net(planes)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            tainted = net(planes)  # what the teacher used to give inside the student's bf16 autocast
            taught = teacher(planes)
    assert not torch.equal(tainted.policy_logits.float(), reference.policy_logits)  # the test could fail
    assert taught.policy_logits.dtype == torch.float32
    assert torch.equal(taught.policy_logits, reference.policy_logits)
    assert torch.equal(taught.wdl, reference.wdl_logits.softmax(dim=1))


# ------------------------------------------------------------------------------- config refusals


def test_rule50_trainer_is_refused_in_one_line():
    with pytest.raises(Lc0DistillError) as error:
        load_config(None, ["data.paths=[x]", "data.rule50=trainer"])
    assert "99" in str(error.value) and "\n" not in str(error.value)


def test_an_ensemble_cache_is_refused_away_from_t1(tmp_path):
    base = ["data.paths=[x]", "teacher.nets=[a.pb.gz,b.pb.gz]", f"teacher.cache={tmp_path}"]
    load_config(None, base)  # at T = 1 the cached mixture is the target
    with pytest.raises(Lc0DistillError, match="tempered per teacher"):
        load_config(None, [*base, "loss.temperature.start=2"])


def test_old_kl_switches_name_their_replacement():
    with pytest.raises(Lc0DistillError, match="loss.kl_form"):
        load_config(None, ["data.paths=[x]", "loss.t_squared=true"])


def test_the_batch_size_is_the_global_batch_under_ddp():
    assert rank_batch_size(1024, 1) == 1024 and rank_batch_size(1024, 4) == 256
    with pytest.raises(Lc0DistillError, match="multiple of 3"):
        rank_batch_size(1024, 3)


@pytest.mark.parametrize("temperature", [0.25, 1.0, 3.0])
def test_the_search_policy_temperature_reshapes_only_the_datas_policy_target(temperature):
    """loss.search_policy_temperature T: the policy part is the cross-entropy against p^(1/T) / sum p^(1/T)
    (numpy, float64); the value part and the teacher's part are untouched."""
    batch = _batch()
    student, teacher = _outputs(2, moves_left=False)
    config = LossConfig(search_policy_temperature=temperature)
    parts = loss_parts(student, batch, teacher, config, 0.0, temp=1.0).parts
    target = _np(batch.policy) ** (1 / temperature)
    target /= target.sum(axis=1, keepdims=True)
    expected = ref_policy_ce(student.policy_logits, torch.from_numpy(target), batch.legal)
    assert parts["policy"].item() == pytest.approx(expected, rel=1e-5)
    assert parts["value"].item() == pytest.approx(ref_wdl_ce(student.wdl_logits, batch.z), rel=1e-5)
