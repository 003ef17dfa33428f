"""Kickstarting: a weight lambda_k(t) per teacher. The loss is the data loss plus sum_k lambda_k times teacher
k's distillation loss (Schmitt et al. 2018), each part computed here independently of lc0distill's losses."""

import json

import pytest
import torch
import torch.nn.functional as F

from lc0distill.cli import main
from lc0distill.config import LossConfig, RunConfig, load_config
from lc0distill.distill.objective import kickstart_loss_parts
from lc0distill.distill.teachers import NetTeacher
from lc0distill.errors import Lc0DistillError
from tests.conftest import SHARED
from tests.train.test_parts import _batch, _net

MAIA_1900, MAIA_1100 = SHARED / "nets" / "maia-1900.pb.gz", SHARED / "nets" / "maia-1100.pb.gz"


def _masked_log_softmax(logits, legal, temperature=1.0):  # (B, 1858): over the legal moves only
    return torch.log_softmax((logits / temperature).masked_fill(~legal, -1e9), dim=1)


def _independent_total(out, batch, teachers, config: LossConfig, temp: float) -> float:
    """data CE + value CE + moves-left + sum_k lambda_k (T^2 KL_k at T + value_distill * CE(teacher k's WDL)),
    the KL in Hinton's form (the default loss.kl_form)."""
    legal = batch.legal
    log_s = _masked_log_softmax(out.policy_logits, legal)
    policy = -(batch.policy * log_s.masked_fill(~legal, 0)).sum(1).mean()
    target = config.q_ratio * batch.q + (1 - config.q_ratio) * batch.z
    value = -(target * torch.log_softmax(out.wdl_logits, 1)).sum(1).mean()
    moves_left = F.huber_loss(out.moves_left / 20, batch.moves_left / 20, delta=0.5)
    total = config.policy_weight * policy + config.value_weight * value + config.moves_left_weight * moves_left
    for weight, teacher in teachers:
        log_t = _masked_log_softmax(teacher.policy_logits, legal, temp)
        log_st = _masked_log_softmax(out.policy_logits, legal, temp)
        kl = (log_t.exp() * (log_t - log_st)).masked_fill(~legal, 0).sum(1).mean() * temp**2
        value_ce = -(teacher.wdl_logits.softmax(1) * torch.log_softmax(out.wdl_logits, 1)).sum(1).mean()
        total = total + weight * (config.policy_weight * kl + config.value_distill * config.value_weight * value_ce)
    return float(total)


def test_per_teacher_losses_sum_as_the_formula_says():
    batch, student, first, second = _batch(), _net(0), _net(1), _net(2)
    config = LossConfig(q_ratio=0.3, value_distill=0.6, moves_left_weight=0.25, value_weight=0.8)
    teachers = NetTeacher([first, second])
    with torch.no_grad():
        out = student(batch.planes)
        raw = [first(batch.planes), second(batch.planes)]
    outputs = teachers.each(batch.planes)
    report = kickstart_loss_parts(out, batch, [("a", 1.5, outputs[0]), ("b", 0.25, outputs[1])], config, temp=2.0)
    expected = _independent_total(out, batch, [(1.5, raw[0]), (0.25, raw[1])], config, temp=2.0)
    assert float(report.total) == pytest.approx(expected, rel=1e-5)
    parts = report.scalars()
    assert {"policy_distill/a", "policy_distill/b", "value_distill/a", "value_distill/b"} <= set(parts)
    # A teacher at lambda 0 adds nothing and its parts are absent (it was not run).
    alone = kickstart_loss_parts(out, batch, [("a", 1.5, outputs[0]), ("b", 0.0, None)], config, temp=2.0)
    assert "policy_distill/b" not in alone.scalars()
    assert float(alone.total) == pytest.approx(_independent_total(out, batch, [(1.5, raw[0])], config, 2.0), rel=1e-5)


class _Refuses(torch.nn.Module):
    """A net that must not be asked: running it fails the test."""

    def __init__(self, net):
        super().__init__()
        self.config = net.config

    def forward(self, planes):
        raise AssertionError("a teacher at weight 0 was run")


def test_a_teacher_at_weight_zero_is_not_run():
    batch = _batch()
    teacher = NetTeacher([_net(1), _Refuses(_net(2))])
    outputs = teacher.each(batch.planes, [True, False])
    assert outputs[1] is None and outputs[0].policy_logits.shape == (len(batch), 1858)


def _teacher_tree(*entries, **loss):
    return {"data": {"paths": ["chunks"]}, "teacher": {"nets": list(entries)}, "loss": loss}


def test_per_teacher_config_forms_and_names():
    config = RunConfig.model_validate(_teacher_tree({"path": "nets/maia-1900.pb.gz", "weight": 0.5},
                                                    {"path": "other/maia-1900.pb.gz", "weight": {
                                                        "kind": "switch_off", "weight": 2.0, "off_step": 100}}))
    assert config.teacher.per_teacher and config.teacher.names == ["maia-1900", "maia-1900-2"]
    assert config.teacher.entries[0].weight.kind == "constant" and config.teacher.entries[0].weight.weight == 0.5
    assert config.teacher.paths == ["nets/maia-1900.pb.gz", "other/maia-1900.pb.gz"]
    plain = RunConfig.model_validate(_teacher_tree("a.pb.gz", "b.pb.gz"))
    assert not plain.teacher.per_teacher and plain.teacher.paths == ["a.pb.gz", "b.pb.gz"]


@pytest.mark.parametrize("tree, message", [
    (_teacher_tree({"path": "a.pb.gz", "weight": 1.0}, "b.pb.gz"), "give every entry its own weight"),
    (_teacher_tree({"path": "a.pb.gz", "weight": 1.0}, teacher_weight={"weight": 0.5}), "loss.teacher_weight"),
    ({"data": {"paths": ["c"]}, "teacher": {"nets": [{"path": "a.pb.gz", "weight": 1.0}], "weights": [1.0]}},
     "teacher.weights"),
    ({"data": {"paths": ["c"]}, "teacher": {"nets": [{"path": "a.pb.gz", "weight": 1.0}], "cache": "c"}},
     "teacher.cache"),
    (_teacher_tree({"path": "a.pb.gz", "weight": 1.0, "name": "x"}, {"path": "b.pb.gz", "weight": 1, "name": "x"}),
     "same name"),
    (_teacher_tree({"path": "a.pb.gz", "weight": 11.0}), "less than or equal to 10"),
    (_teacher_tree({"path": "a.pb.gz", "weight": 1.0, "colour": 2}), "colour"),
])
def test_per_teacher_config_errors(tmp_path, tree, message):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(json.dumps(tree))
    with pytest.raises(Lc0DistillError, match=message):
        load_config(recipe)


def test_one_training_step_reports_the_kickstart_total(tmp_path, selfplay_dir):
    """A real step with maia-1900 and maia-1100 teaching (lr 0: the student as it was): the logged total is
    the formula's, recomputed here from the student's and teachers' outputs on the same batch."""
    from lc0distill.train import Run

    for net in (MAIA_1900, MAIA_1100):
        if not net.exists():
            pytest.skip(f"reference artifact {net} is absent")
    config = load_config(None, [
        f"data.paths=[{selfplay_dir}]", "data.workers=0", "data.batch_size=32", "data.sample_rate=1",
        "data.shuffle_buffer=200", "net.size=16x2", "train.steps=1", f"train.run_dir={tmp_path / 'run'}",
        "train.lr.lr=0", "loss.temperature.start=1.5", "loss.value_distill=0.5",
        f"teacher.nets=[{{path: {MAIA_1900}, weight: 0.75}}, {{path: {MAIA_1100}, weight: 2.0}}]"])
    run = Run(config, log=lambda message: None)
    batch = next(run.batches())
    before = {k: v.clone() for k, v in run.student.state_dict().items()}
    report = run.train_step(batch)
    assert run.teacher_weights_at(0) == {"maia-1900": 0.75, "maia-1100": 2.0}
    run.student.load_state_dict(before)  # lr 0 changed no weight; the batch-norm statistics did move
    run.student.train()
    with torch.no_grad():
        out = run.student(batch.planes)
        raw = [net(batch.planes) for net in run.teacher.nets]
    expected = _independent_total(out, batch, [(0.75, raw[0]), (2.0, raw[1])], config.loss, temp=1.5)
    assert float(report.total.detach()) == pytest.approx(expected, rel=1e-4)
    assert {"policy_distill/maia-1900", "policy_distill/maia-1100"} <= set(report.scalars())


def test_a_kickstart_run_logs_each_teachers_weight(tmp_path, selfplay_dir, capsys):
    if not MAIA_1100.exists():
        pytest.skip(f"reference artifact {MAIA_1100} is absent")
    run_dir = tmp_path / "kick"
    argv = ["train", f"data.paths=[{selfplay_dir}]", "data.workers=0", "data.batch_size=32", "data.sample_rate=1",
            "data.shuffle_buffer=200", "net.size=16x2", "train.steps=8", f"train.run_dir={run_dir}",
            "train.log_every=4", "train.eval_every=8", "train.eval_positions=64", "train.checkpoint_every=8",
            f"teacher.nets=[{{path: {MAIA_1100}, weight: {{kind: linear_decay, weight: 1.0, end_step: 8}}}}]"]
    assert main(argv) == 0
    records = {r["step"]: r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
               if r["kind"] == "train"}
    # logged beside the losses of the update just made: steps 3 and 7 of a decay from 1 at 0 to 0 at 8
    assert records[4]["teacher_weight/maia-1100"] == pytest.approx(1 - 3 / 8)
    assert records[8]["teacher_weight/maia-1100"] == pytest.approx(1 - 7 / 8)
    record = records[8]
    assert record["total"] == pytest.approx(record["policy"] + record["value"] + record["moves_left"] + (1 / 8) * (
        record["policy_distill/maia-1100"] + record["value_distill/maia-1100"]), rel=1e-5)
    assert (run_dir / "curves.png").exists()


def test_a_kickstart_config_reloads_from_its_dump(tmp_path):
    from lc0distill.config import dump_config

    config = RunConfig.model_validate(_teacher_tree({"path": "a.pb.gz", "weight": 0.5}, {"path": "b.pb.gz",
                                                                                        "weight": 1.5}))
    saved = tmp_path / "config.yaml"
    saved.write_text(dump_config(config))
    assert load_config(saved) == config
