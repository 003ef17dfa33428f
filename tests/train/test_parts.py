"""The training loop's pieces: loss weighting, teachers (ensemble, snapshot), SWA, the optimizer."""

import pytest
import torch

from lc0distill.chunks.batch import Batch
from lc0distill.config import LossConfig, TrainConfig
from lc0distill.distill.teachers import NetTeacher, SnapshotTeacher
from lc0distill.models.config import NetConfig
from lc0distill.models.net import SEResNet
from lc0distill.train import SWA, loss_parts, make_optimizer


def _batch(size=6) -> Batch:
    torch.manual_seed(0)
    legal = torch.zeros(size, 1858, dtype=torch.bool)
    for row in range(size):
        legal[row, torch.randperm(1858)[:30]] = True
    policy = torch.rand(size, 1858) * legal
    policy /= policy.sum(dim=1, keepdim=True)
    wdl = torch.softmax(torch.randn(size, 3), dim=1)
    return Batch(planes=torch.rand(size, 112, 8, 8).round(), policy=policy, legal=legal, z=torch.eye(3)[[0, 1, 2, 0, 1, 2][:size]],
                 q=wdl, moves_left=torch.full((size,), 40.0), moves_left_known=torch.ones(size, dtype=torch.bool),
                 orig_q=torch.zeros(size), policy_kld=torch.zeros(size), played_idx=torch.zeros(size, dtype=torch.long),
                 best_idx=torch.zeros(size, dtype=torch.long), chunk_index=torch.zeros(size, dtype=torch.long),
                 record_index=torch.arange(size))


def _net(seed=0, **kw) -> SEResNet:
    torch.manual_seed(seed)
    return SEResNet(NetConfig(filters=8, blocks=1, **kw)).eval()


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_total_is_the_weighted_sum_of_logged_parts(alpha):
    batch, student, teacher = _batch(), _net(0), NetTeacher([_net(1)])
    config = LossConfig(q_ratio=0.4, value_distill=0.5, moves_left_weight=0.25)
    report = loss_parts(student(batch.planes), batch, teacher(batch.planes), config, alpha, temp=1.5)
    parts = report.scalars()
    assert ("value_distill" in parts) == (alpha > 0)  # a teacher at weight 0 teaches no value
    expected = ((1 - alpha) * parts["policy"] + alpha * parts["policy_distill"] + (1 - 0.5 * alpha) * parts["value"]
                + alpha * 0.5 * parts.get("value_distill", 0.0) + 0.25 * parts["moves_left"])
    assert parts["total"] == pytest.approx(expected, rel=1e-6)


def test_ensemble_mixes_probabilities_with_weights():
    a, b = _net(1), _net(2)
    planes = _batch().planes
    mixed = NetTeacher([a, b], [3.0, 1.0])(planes)
    with torch.no_grad():
        expected = 0.75 * a(planes).policy_logits.softmax(1) + 0.25 * b(planes).policy_logits.softmax(1)
        expected_wdl = 0.75 * a(planes).wdl_logits.softmax(1) + 0.25 * b(planes).wdl_logits.softmax(1)
    assert torch.allclose(mixed.policy_logits.softmax(1), expected, atol=1e-6)
    assert torch.allclose(mixed.wdl, expected_wdl, atol=1e-6)
    assert not any(p.requires_grad for p in a.parameters())


def test_snapshot_teacher_refreshes_every_n_steps():
    student = _net(0)
    snapshot = SnapshotTeacher(student, every=10)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    snapshot.refresh(student, 5)
    assert not torch.equal(snapshot.net.input.conv.weight, student.input.conv.weight)
    snapshot.refresh(student, 10)
    assert torch.equal(snapshot.net.input.conv.weight, student.input.conv.weight)


def test_swa_is_the_running_mean_capped_at_max_models():
    model = _net(0)
    swa = SWA(model, max_models=2)
    values = []
    for value in (1.0, 3.0, 5.0):
        with torch.no_grad():
            model.input.conv.weight.fill_(value)
        swa.update(model)
        values.append(swa.model.input.conv.weight.flatten()[0].item())
    assert values == [1.0, 2.0, 3.5]  # 1; (1+3)/2; then the newest weighted 1/2


def test_weight_decay_only_on_kernels_and_nesterov():
    model = _net(0)
    optimizer = make_optimizer(TrainConfig(weight_decay=0.01), model)
    decayed, plain = optimizer.param_groups
    assert all(p.ndim > 1 for p in decayed["params"]) and all(p.ndim <= 1 for p in plain["params"])
    assert decayed["weight_decay"] == 0.01 and plain["weight_decay"] == 0.0 and decayed["nesterov"]
