"""The student's objective for one batch: the loss parts, their weights and the total (FORMATS.md §7).

Two forms, chosen by the config (lc0distill.config.LossConfig, TeacherConfig):
- one teacher weight a(t) (loss.teacher_weight) shared by a teacher or an ensemble (`loss_parts`). Each head's
  target is a mix whose two shares sum to one full weight, as in Cyanogenoid's distill branch:
      policy: (1 - a) data + a teacher;
      value: (1 - a v) data + a v teacher, v = loss.value_distill (0 where the teacher has no WDL head);
      moves-left: (1 - a m) data + a m teacher, m = loss.moves_left_distill (0 where either lacks the head);
  so a teacher that cannot teach a head leaves that head the data's full weight;
- kickstarting (Schmitt et al. 2018), a weight lambda_k(t) per teacher: the data loss keeps its full weight and
  each teacher adds lambda_k(t) times its own distillation loss (`kickstart_loss_parts`). Part names then carry
  the teacher's name: policy_distill/maia-1900, value_distill/maia-1900.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch

from lc0distill.chunks.batch import Batch
from lc0distill.distill import losses as L
from lc0distill.distill.teachers import TeacherOutput
from lc0distill.models.net import NetOutput

if TYPE_CHECKING:
    from lc0distill.config import LossConfig


@dataclass(frozen=True)
class Shares:
    """The teacher's share of each head's target (the data's share is 1 minus it, in the single-weight form;
    the teacher's weight lambda_k, in the kickstarting form)."""

    policy: float = 0.0
    value: float = 0.0
    moves_left: float = 0.0


def teacher_shares(out: NetOutput, teacher: TeacherOutput | None, config: "LossConfig", weight: float) -> Shares:
    """What a teacher at `weight` teaches this student: nothing of a head that one of them lacks."""
    if teacher is None or weight == 0:
        return Shares()
    value = weight * config.value_distill if teacher.wdl is not None and out.wdl_logits is not None else 0.0
    moves_left = weight * config.moves_left_distill \
        if teacher.moves_left is not None and out.moves_left is not None else 0.0
    return Shares(weight, value, moves_left)


def _data_parts(out: NetOutput, batch: Batch, config: "LossConfig", taught: Shares):
    """(parts, weights) of the data targets, each head counted 1 minus the teacher's share of it."""
    policy = L.tempered_target(batch.policy, config.search_policy_temperature)
    parts = {"policy": L.policy_cross_entropy(out.policy_logits, policy, batch.legal, config.mask_illegal)}
    weights = {"policy": (1 - taught.policy) * config.policy_weight}
    target = L.blend_value_target(batch.z, batch.q, config.q_ratio)
    if out.wdl_logits is not None:
        value = L.wdl_cross_entropy if config.value_loss == "cross_entropy" else L.wdl_mse
        parts["value"] = value(out.wdl_logits, target)
    else:
        parts["value"] = L.scalar_value_mse(out.value, target)
    weights["value"] = (1 - taught.value) * config.value_weight
    if out.moves_left is not None:
        parts["moves_left"] = L.moves_left_huber(out.moves_left, batch.moves_left, batch.moves_left_known)
        weights["moves_left"] = (1 - taught.moves_left) * config.moves_left_weight
    return parts, weights


def _teacher_parts(out: NetOutput, batch: Batch, teacher: TeacherOutput, config: "LossConfig", taught: Shares,
                   temp: float, suffix: str = ""):
    """(parts, weights) of one teacher's (or ensemble's) distillation loss, each head counted its share."""
    parts = {f"policy_distill{suffix}": policy_distill(out, batch, teacher, config, temp)}
    weights = {f"policy_distill{suffix}": taught.policy * config.policy_weight}
    if taught.value > 0:
        parts[f"value_distill{suffix}"] = L.value_distill_wdl(out.wdl_logits, teacher.wdl.clamp_min(1e-30).log())
        weights[f"value_distill{suffix}"] = taught.value * config.value_weight
    if taught.moves_left > 0:
        every = torch.ones_like(teacher.moves_left, dtype=torch.bool)
        parts[f"moves_left_distill{suffix}"] = L.moves_left_huber(out.moves_left, teacher.moves_left, every)
        weights[f"moves_left_distill{suffix}"] = taught.moves_left * config.moves_left_weight
    return parts, weights


def policy_distill(out: NetOutput, batch: Batch, teacher: TeacherOutput, config: "LossConfig", temp: float):
    """() the policy distillation loss loss.policy_distill names, against one teacher's output."""
    if config.policy_distill == "nll":
        return L.policy_teacher_nll(out.policy_logits, teacher.policy_logits, batch.legal, teacher.best)
    if config.policy_distill == "mse":
        return L.policy_logit_mse(out.policy_logits, teacher.policy_logits, batch.legal)
    return L.policy_kl_to(out.policy_logits, teacher.policy_log_probs(batch.legal, temp), batch.legal, temp,
                          config.kl_form)


def loss_parts(out: NetOutput, batch: Batch, teacher: TeacherOutput | None, config: "LossConfig",
               alpha: float, temp: float) -> L.LossReport:
    """The single-schedule form (alpha: the teacher's weight now, temp: its temperature)."""
    taught = teacher_shares(out, teacher, config, alpha)
    parts, weights = _data_parts(out, batch, config, taught)
    if teacher is not None:
        more, more_weights = _teacher_parts(out, batch, teacher, config, taught, temp)
        parts, weights = {**parts, **more}, {**weights, **more_weights}
    return L.weighted_losses(parts, weights)


def kickstart_loss_parts(out: NetOutput, batch: Batch, teachers: Sequence[tuple[str, float, TeacherOutput | None]],
                         config: "LossConfig", temp: float) -> L.LossReport:
    """data loss + sum_k lambda_k * distill_k. teachers: (name, lambda_k now, its output), the output None for a
    teacher at weight 0 (not run this step: its parts are absent, not zero)."""
    parts, weights = _data_parts(out, batch, config, Shares())
    for name, weight, teacher in teachers:
        if teacher is None:
            continue
        taught = teacher_shares(out, teacher, config, weight)
        more, more_weights = _teacher_parts(out, batch, teacher, config, taught, temp, f"/{name}")
        parts, weights = {**parts, **more}, {**weights, **more_weights}
    return L.weighted_losses(parts, weights)
