"""Teachers: fixed nets (lc0 files or checkpoints, alone or as a weighted ensemble) or a frozen snapshot of
the student. Always in eval mode and without gradients; any net with the same outputs can teach any other, also
an exported ONNX net (run by onnxruntime: an lc0 net converted by leela2onnx can teach, whatever its body).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Literal, Protocol, Sequence

import torch

from lc0distill.distill.losses import mixture_log_probs, tempered_log_probs
from lc0distill.errors import Lc0DistillError
from lc0distill.models.config import ValueHead
from lc0distill.models.net import NetOutput, SEResNet


class ExportedNet(Protocol):
    """A net run outside PyTorch (an ONNX model in onnxruntime): the same call, and the config fields used here."""

    config: Any

    def eval(self) -> Any: ...

    def __call__(self, planes: torch.Tensor) -> NetOutput: ...


Net = SEResNet | ExportedNet


Precision = Literal["float32", "bf16", "fp16"]


@dataclass
class TeacherOutput:
    policy_logits: torch.Tensor  # (B, 1858): a single net's logits; for an ensemble, log of the mixed policy
    wdl: torch.Tensor | None  # (B, 3) win/draw/loss probabilities (weighted mean over the ensemble)
    moves_left: torch.Tensor | None = None  # (B,) plies (weighted mean), when every net has the head
    best: torch.Tensor | None = None  # (B,) int64 policy index of the best legal move, where known exactly (a
    # cache: its 16-bit log-probabilities can tie or swap two near-equal moves; the argmax was taken before)
    members: list[tuple[float, torch.Tensor]] | None = None  # an ensemble's (weight, (B, 1858) logits) per net

    def policy_log_probs(self, legal: torch.Tensor, temperature: float) -> torch.Tensor:
        """(B, 1858) the policy target at temperature T: log softmax(logits / T) over the legal moves, or for
        an ensemble the mixture of each net's softmax(logits_k / T)."""
        if self.members is not None:
            return mixture_log_probs(self.members, legal, temperature)
        return tempered_log_probs(self.policy_logits, legal, temperature)


def precision_context(device: torch.device, precision: Precision):
    """The autocast a teacher runs under, whatever the student's: float32 by default (autocast off); bf16 or
    fp16 autocast where asked for, on CUDA only (as train.amp)."""
    if precision == "float32" or device.type != "cuda":
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def teach(teacher, batch, planes: torch.Tensor | None = None) -> TeacherOutput:
    """A teacher's outputs for a batch: a cached teacher looks its positions up, a net runs on the planes
    (`planes`: the batch's, in the memory format the run uses)."""
    if getattr(teacher, "joins_batches", False):
        return teacher(batch)
    return teacher(batch.planes if planes is None else planes)


def check_compatible(student: SEResNet, teacher: Net, name: str, distil_value: bool) -> None:
    """Stop at start, with a clear message, if the teacher cannot teach this student."""
    if teacher.config.input_format is None:
        raise Lc0DistillError(f"teacher {name} does not say its input format (lc0's leela2onnx files do not): "
                              f"wrap it first with lc0distill export {name} --to lc0-onnx --input-format N --out "
                              f"teacher.pb.gz")
    if teacher.config.input_format != student.config.input_format:
        raise Lc0DistillError(f"teacher {name} reads input format {teacher.config.input_format} but the student "
                              f"(and its data) use {student.config.input_format}: their planes differ")
    if distil_value and teacher.config.value != ValueHead.WDL:
        raise Lc0DistillError(f"teacher {name} has a scalar value head; value distillation needs its WDL "
                              "(set loss.value_distill to 0 to distil the policy only)")


def _frozen(net: Net) -> Net:
    net.eval()
    if isinstance(net, torch.nn.Module):
        for parameter in net.parameters():
            parameter.requires_grad_(False)
    return net


class NetTeacher:
    """One or more fixed nets. An ensemble mixes the probabilities with the given weights (at the distillation
    temperature, each net's softmax(logits / T): TeacherOutput.policy_log_probs). The nets run in `precision`
    (float32 by default) whatever autocast the caller is under."""

    def __init__(self, nets: Sequence[Net], weights: Sequence[float] | None = None, precision: Precision = "float32"):
        self.precision = precision
        if not nets:
            raise ValueError("a teacher needs at least one net")
        self.nets = [_frozen(net) for net in nets]
        raw = list(weights) if weights else [1.0] * len(nets)
        if any(w < 0 for w in raw) or sum(raw) <= 0:
            raise Lc0DistillError(f"teacher weights must be >= 0 and not all 0, got {raw}")
        self.weights = [w / sum(raw) for w in raw]

    def to(self, device: torch.device | str) -> "NetTeacher":
        # ONNX teachers run where they were opened (onnxruntime: CPU, or the run's GPU with onnxruntime-gpu)
        # and return tensors on the planes' device
        self.nets = [net.to(device) if isinstance(net, torch.nn.Module) else net for net in self.nets]
        return self

    @torch.no_grad()
    def each(self, planes: torch.Tensor, active: Sequence[bool] | None = None) -> list[TeacherOutput | None]:
        """Every net's own outputs (kickstarting: a loss per teacher); None for a net not `active` (one whose
        weight is 0 now: not run at all)."""
        active = [True] * len(self.nets) if active is None else list(active)
        if len(active) != len(self.nets):
            raise ValueError(f"{len(active)} active flags for {len(self.nets)} teacher nets")
        return [_single(self._run(net, planes)) if on else None for net, on in zip(self.nets, active)]

    def _run(self, net: Net, planes: torch.Tensor) -> NetOutput:
        with precision_context(planes.device, self.precision):
            return net(planes.float())

    @torch.no_grad()
    def __call__(self, planes: torch.Tensor) -> TeacherOutput:  # planes (B, 112, 8, 8)
        outputs = [self._run(net, planes) for net in self.nets]
        if len(outputs) == 1:
            return _single(outputs[0])
        # policy_logits: the mixture at T = 1 (the best move, agreement); the loss tempers each member
        policy = sum(w * o.policy_logits.float().softmax(dim=1) for w, o in zip(self.weights, outputs))
        wdl = mlh = None
        if all(o.wdl_logits is not None for o in outputs):
            wdl = sum(w * o.wdl_logits.float().softmax(dim=1) for w, o in zip(self.weights, outputs))
        if all(o.moves_left is not None for o in outputs):
            mlh = sum(w * o.moves_left.float().reshape(-1) for w, o in zip(self.weights, outputs))
        members = [(w, o.policy_logits.float()) for w, o in zip(self.weights, outputs)]
        return TeacherOutput(policy.clamp_min(1e-30).log(), wdl, mlh, members=members)


def _single(out: NetOutput) -> TeacherOutput:
    """One net's outputs as a teacher's: float32 logits, WDL as probabilities, moves-left flat."""
    wdl = out.wdl_logits.float().softmax(dim=1) if out.wdl_logits is not None else None
    mlh = out.moves_left.float().reshape(-1) if out.moves_left is not None else None
    return TeacherOutput(out.policy_logits.float(), wdl, mlh)


class SnapshotTeacher:
    """A frozen copy of the student, refreshed every `every` steps (the target-network idea)."""

    def __init__(self, student: SEResNet, every: int, precision: Precision = "float32"):
        self.every, self.precision = every, precision
        self.net = _frozen(copy.deepcopy(student))
        self.taken_at = 0

    def refresh(self, student: SEResNet, step: int) -> None:
        if step - self.taken_at >= self.every:
            self.net.load_state_dict(student.state_dict())
            self.net.eval()
            self.taken_at = step

    @torch.no_grad()
    def __call__(self, planes: torch.Tensor) -> TeacherOutput:
        with precision_context(planes.device, self.precision):
            return _single(self.net(planes.float()))
