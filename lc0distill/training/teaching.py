"""The teacher side of a run: live nets (one, an ensemble, or kickstarting teachers with a weight each), a
snapshot of the student, or a cache of a teacher's outputs; and the teacher's weight and temperature at a step."""

from __future__ import annotations

from typing import Callable

import torch

from lc0distill.checks import check_finite_net
from lc0distill.chunks.batch import Batch
from lc0distill.config import RunConfig
from lc0distill.distill.cache import open_for_run
from lc0distill.distill.schedules import teacher_weight, temperature
from lc0distill.distill.teachers import NetTeacher, SnapshotTeacher, check_compatible, teach
from lc0distill.errors import Lc0DistillError
from lc0distill.models.net import SEResNet
from lc0distill.nets import load_inference_net
from lc0distill.shards.select import is_shard_block


def build_teacher(config: RunConfig, student: SEResNet, device: torch.device):
    teacher_config = config.teacher
    if teacher_config.snapshot_every:
        return SnapshotTeacher(student, teacher_config.snapshot_every, teacher_config.precision)
    if not teacher_config.nets:
        return None
    nets = []
    for path in teacher_config.paths:
        net = load_inference_net(path, need_input_format=False,  # a trainable net, or ONNX in onnxruntime
                                 threads=config.train.threads, device=str(device))
        check_compatible(student, net, path, distil_value=config.loss.value_distill > 0)
        if isinstance(net, torch.nn.Module):  # ONNX teachers are watched by the non-finite guard instead
            check_finite_net(net, f"teacher {path}")
            net = _as_student_runs(net, config)
        nets.append(net)
    return NetTeacher(nets, teacher_config.weights or None, teacher_config.precision).to(device)


def _as_student_runs(net: torch.nn.Module, config: RunConfig) -> torch.nn.Module:
    """A live teacher laid out and compiled as the student is (train.channels_last, train.compile): a big
    teacher's forward is most of a distillation step, and it reads the student's channels-last planes."""
    if config.train.channels_last:
        net = net.to(memory_format=torch.channels_last)
    return torch.compile(net) if config.train.compile else net


class Teaching:
    """The teacher that trains the student (`teacher`) and the one that judges held-out data (`eval_teacher`:
    the same, or the live nets where a cache lacks the held-out positions)."""

    def __init__(self, config: RunConfig, student: SEResNet, device: torch.device):
        self.config, self.student, self.device = config, student, device
        self.teacher = build_teacher(config, student, device) if not config.teacher.cache else None
        self.eval_teacher = self.teacher

    def open_cache(self, train_sources: list, test_sources: list, say: Callable[[str], None]):
        """Teacher outputs read from `teacher.cache` (checked against teacher.nets and the data); the held-out
        data, when the cache lacks it, is judged by the live teacher. The records the cache keeps (None: all)."""
        config = self.config
        if any(is_shard_block(s) for s in (*train_sources, *test_sources)):
            raise Lc0DistillError("teacher.cache is keyed by chunk and record, and data.paths names a shard folder: "
                                  "give the teacher cache the chunks the shards were repacked from, or leave "
                                  "teacher.cache out (the teacher then runs live)")
        opened = open_for_run(config.teacher.cache, config.teacher.paths, config.teacher.weights or None,
                              config.data.sample_rate, config.net.input_format, train_sources, test_sources)
        self.teacher = opened.train
        if opened.test is not None:
            self.eval_teacher = opened.test
        else:
            live = config.model_copy(update={"teacher": config.teacher.model_copy(update={"cache": None})})
            self.eval_teacher = build_teacher(live, self.student, self.device)
        say(f"teacher outputs from the cache {config.teacher.cache} ({opened.train.cache.positions:,} positions"
            f"{', the sampled records only' if opened.keep is not None else ''})")
        return opened.keep

    def schedules_at(self, step: int) -> tuple[float, float]:
        """(the teacher's weight, its temperature) for the update at `step` (0 for the first). With a weight
        per teacher, the first is their sum (weights_at gives each)."""
        config = self.config
        if config.teacher.per_teacher:
            alpha = sum(self.weights_at(step).values())
        else:
            alpha = teacher_weight(config.loss.teacher_weight, step) if self.teacher is not None else 0.0
        return alpha, temperature(config.loss.temperature, step)

    def weights_at(self, step: int) -> dict[str, float]:
        """{teacher name: lambda_k} for the update at `step`, in teacher.nets order (kickstarting form only)."""
        teachers = self.config.teacher
        return {name: teacher_weight(entry.weight, step) for name, entry in zip(teachers.names, teachers.entries)}

    def teach(self, batch: Batch, planes: torch.Tensor, alpha: float, step: int):
        """The teachers' outputs for the step: one TeacherOutput (single-schedule form) or, kickstarting,
        [(name, lambda_k, output or None where lambda_k is 0 and the net was not run)]."""
        if self.teacher is None:
            return None
        if not self.config.teacher.per_teacher:
            return teach(self.teacher, batch, planes) if alpha > 0 else None
        weights = self.weights_at(step)
        outputs = self.teacher.each(planes, [weight > 0 for weight in weights.values()])
        return [(name, weight, out) for (name, weight), out in zip(weights.items(), outputs)]

    def label(self) -> str:
        teachers = self.config.teacher
        return f"cache {teachers.cache}" if teachers.cache else ", ".join(teachers.names)
