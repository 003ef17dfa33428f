"""The student's objective for one batch: the loss parts, their weights and the total (FORMATS.md §7).

Two forms, chosen by the config (lc0distill.config.LossConfig, TeacherConfig):
- one teacher weight a(t) (loss.teacher_weight) shared by a teacher or an ensemble: the data targets count
  (1 - a) and the teacher's a (`loss_parts`);
- kickstarting (Schmitt et al. 2018), a weight lambda_k(t) per teacher: the data loss keeps its full weight and
  each teacher adds lambda_k(t) times its own distillation loss (`kickstart_loss_parts`). Part names then carry
  the teacher's name: policy_distill/maia-1900, value_distill/maia-1900.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from lc0distill.chunks.batch import Batch
from lc0distill.distill import losses as L
from lc0distill.distill.teachers import TeacherOutput
from lc0distill.models.net import NetOutput

if TYPE_CHECKING:
    from lc0distill.config import LossConfig


def _data_parts(out: NetOutput, batch: Batch, config: "LossConfig", share: float):
    """(parts, weights) of the data targets, the policy and value counted `share` (moves-left always 1)."""
    parts = {"policy": L.policy_cross_entropy(out.policy_logits, batch.policy, batch.legal, config.mask_illegal)}
    weights = {"policy": share * config.policy_weight}
    target = L.blend_value_target(batch.z, batch.q, config.q_ratio)
    if out.wdl_logits is not None:
        value = L.wdl_cross_entropy if config.value_loss == "cross_entropy" else L.wdl_mse
        parts["value"] = value(out.wdl_logits, target)
    else:
        parts["value"] = L.scalar_value_mse(out.value, target)
    weights["value"] = share * config.value_weight
    if out.moves_left is not None:
        parts["moves_left"] = L.moves_left_huber(out.moves_left, batch.moves_left, batch.moves_left_known)
        weights["moves_left"] = config.moves_left_weight
    return parts, weights


def _teacher_parts(out: NetOutput, batch: Batch, teacher: TeacherOutput, config: "LossConfig", weight: float,
                   temp: float, suffix: str = ""):
    """(parts, weights) of one teacher's (or ensemble's) distillation loss, counted `weight`."""
    parts = {f"policy_distill{suffix}": policy_distill(out, batch, teacher, config, temp)}
    weights = {f"policy_distill{suffix}": weight * config.policy_weight}
    if teacher.wdl is not None and out.wdl_logits is not None and config.value_distill > 0:
        parts[f"value_distill{suffix}"] = L.value_distill_wdl(out.wdl_logits, teacher.wdl.clamp_min(1e-30).log())
        weights[f"value_distill{suffix}"] = weight * config.value_distill * config.value_weight
    return parts, weights


def policy_distill(out: NetOutput, batch: Batch, teacher: TeacherOutput, config: "LossConfig", temp: float):
    """() the policy distillation loss loss.policy_distill names, against one teacher's output."""
    if config.policy_distill == "nll":
        return L.policy_teacher_nll(out.policy_logits, teacher.policy_logits, batch.legal, teacher.best)
    if config.policy_distill == "mse":
        return L.policy_logit_mse(out.policy_logits, teacher.policy_logits, batch.legal)
    return L.policy_kl(out.policy_logits, teacher.policy_logits, batch.legal, temperature=temp,
                       t_squared=config.t_squared, scale_student=config.scale_student)


def loss_parts(out: NetOutput, batch: Batch, teacher: TeacherOutput | None, config: "LossConfig",
               alpha: float, temp: float) -> L.LossReport:
    """The single-schedule form (alpha: the teacher's weight now, temp: its temperature)."""
    parts, weights = _data_parts(out, batch, config, 1 - alpha)
    if teacher is not None:
        more, more_weights = _teacher_parts(out, batch, teacher, config, alpha, temp)
        parts, weights = {**parts, **more}, {**weights, **more_weights}
    return L.weighted_losses(parts, weights)


def kickstart_loss_parts(out: NetOutput, batch: Batch, teachers: Sequence[tuple[str, float, TeacherOutput | None]],
                         config: "LossConfig", temp: float) -> L.LossReport:
    """data loss + sum_k lambda_k * distill_k. teachers: (name, lambda_k now, its output), the output None for a
    teacher at weight 0 (not run this step: its parts are absent, not zero)."""
    parts, weights = _data_parts(out, batch, config, 1.0)
    for name, weight, teacher in teachers:
        if teacher is None:
            continue
        more, more_weights = _teacher_parts(out, batch, teacher, config, weight, temp, f"/{name}")
        parts, weights = {**parts, **more}, {**weights, **more_weights}
    return L.weighted_losses(parts, weights)
