"""Losses as pure functions on tensors (FORMATS.md §2 for lczero's legacy losses, §7 for distillation).

Conventions:
- B positions; policies are (B, 1858), `legal` is a (B, 1858) bool mask, WDL vectors are (B, 3) ordered
  (win, draw, loss) from the side to move's view.
- Every loss returns a float32 scalar: the mean over the batch of a per-position loss, unless stated.
- Softmax and log-softmax run in float32 (`.float()` on the logits), so the losses are safe under autocast
  (bf16 or fp16) on the CPU and on CUDA. No function synchronises with the device (no `.item()`).
- Masking: logits at illegal moves are set to -inf before the softmax, so they get no probability and a zero
  gradient. The log-probabilities at illegal moves are then replaced by 0, so a target with zero mass
  there contributes exactly 0 (not 0 * -inf = NaN). Target mass at illegal moves is therefore ignored; a
  `Batch` policy has none. A row with no legal move at all cannot come from real data (every position in a
  training chunk has a legal move) and gives NaN.
- Teacher inputs are detached: a teacher is a fixed target (lczero's stop_gradient), even when it is a
  snapshot of the student itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

MLH_SCALE = 20.0  # lczero divides moves-left output and target by 20 ...
MLH_DELTA = 10.0 / MLH_SCALE  # ... and the Huber delta of 10 plies with them: 0.5


def _log_probs(logits: torch.Tensor, legal: torch.Tensor | None) -> torch.Tensor:
    """(B, N) float32 log-softmax over the legal entries; 0 (not -inf) at illegal ones, safe to multiply."""
    logits = logits.float()  # (B, N)
    if legal is None:
        return logits.log_softmax(dim=1)
    log_p = logits.masked_fill(~legal, float("-inf")).log_softmax(dim=1)  # (B, N), -inf at illegal
    return log_p.masked_fill(~legal, 0.0)


def _probs(log_p: torch.Tensor, legal: torch.Tensor) -> torch.Tensor:
    """(B, N) probabilities from `_log_probs` output: exp, and exactly 0 at illegal entries."""
    return log_p.exp().masked_fill(~legal, 0.0)


def _score(wdl: torch.Tensor) -> torch.Tensor:
    """(B, 3) WDL -> (B,) expected score W - L in [-1, 1] (weights (1, 0, -1))."""
    return wdl[:, 0] - wdl[:, 2]


# ---------------------------------------------------------------------------------------------- policy


def policy_cross_entropy(logits: torch.Tensor, target: torch.Tensor, legal: torch.Tensor,
                         mask_illegal: bool = True) -> torch.Tensor:
    """Cross-entropy of the data policy against softmax(logits); lczero's policy loss (FORMATS §2.4).

    logits (B, 1858); target (B, 1858) visit distribution, rows sum to 1 over legal moves, 0 elsewhere;
    legal (B, 1858) bool. mask_illegal: the softmax runs over legal moves only (lczero's
    `mask_legal_moves`); otherwise over all 1858 entries, as lczero does by default.
    """
    log_p = _log_probs(logits, legal if mask_illegal else None)  # (B, 1858)
    return -(target.float() * log_p).sum(dim=1).mean()


def tempered_target(target: torch.Tensor, temperature: float) -> torch.Tensor:
    """(B, N) target^(1/T) renormalised per row: a visit distribution sharpened (T < 1) or flattened (T > 1);
    entries at 0 (unvisited or illegal) stay 0. Computed in logs so a small T does not underflow a row."""
    if temperature == 1.0:
        return target
    visited = target > 0  # (B, N); an all-zero row has none, and stays all zero
    return _probs(_log_probs(target.float().clamp_min(1e-38).log() / temperature, visited), visited)


KL_FORMS = ("hinton", "lczero")


def tempered_log_probs(teacher_logits: torch.Tensor, legal: torch.Tensor, temperature: float) -> torch.Tensor:
    """(B, N) log softmax(teacher_logits / T) over the legal moves (0 at illegal ones); the teacher detached."""
    return _log_probs(teacher_logits.detach().float() / temperature, legal)


def mixture_log_probs(members: "list[tuple[float, torch.Tensor]]", legal: torch.Tensor,
                      temperature: float) -> torch.Tensor:
    """(B, N) log of sum_k w_k softmax(y_k / T) over the legal moves: an ensemble tempered per teacher (each
    teacher's softmax at T, then averaged, as Cyanogenoid's branch averages its teachers' tempered targets).
    members: (w_k, logits_k (B, N)), the weights summing to 1."""
    mixed = sum(weight * _probs(tempered_log_probs(logits, legal, temperature), legal) for weight, logits in members)
    return mixed.clamp_min(1e-30).log().masked_fill(~legal, 0.0)  # (B, N)


def policy_kl_to(student_logits: torch.Tensor, target_log_p: torch.Tensor, legal: torch.Tensor,
                 temperature: float = 1.0, form: str = "hinton") -> torch.Tensor:
    """KL(p_T || student) for a target already at temperature T (`tempered_log_probs`, `mixture_log_probs`).

    student_logits (B, 1858); target_log_p (B, 1858) log-probabilities, 0 at illegal moves; legal (B, 1858).
    - form "hinton" (Hinton et al. 2015): the student at T too, and the KL times T^2, so that the gradient
      keeps its size as T changes;
    - form "lczero" (Cyanogenoid's `distill` branch, FORMATS §7): the student at T = 1 and no T^2 factor. The
      branch minimises the cross-entropy; the KL differs from it by the target's entropy, a constant: the
      same gradients. A sharp teacher (T < 1, Rusu et al. 2016) is this form.
    """
    if form not in KL_FORMS:
        raise ValueError(f"KL form must be one of {', '.join(KL_FORMS)}, got {form!r}")
    hinton = form == "hinton"
    log_s = _log_probs(student_logits.float() / temperature if hinton else student_logits.float(), legal)
    kl = (_probs(target_log_p, legal) * (target_log_p - log_s)).sum(dim=1).mean()
    return kl * temperature**2 if hinton else kl


def policy_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, legal: torch.Tensor,
              temperature: float = 1.0, form: str = "hinton") -> torch.Tensor:
    """KL(softmax(teacher / T) || student) over legal moves in the given form (see `policy_kl_to`).

    student_logits, teacher_logits (B, 1858); legal (B, 1858) bool; the teacher is detached. At T = 1 the
    two forms are the same loss.
    """
    return policy_kl_to(student_logits, tempered_log_probs(teacher_logits, legal, temperature), legal,
                        temperature, form)


def policy_teacher_nll(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                       legal: torch.Tensor, best: torch.Tensor | None = None) -> torch.Tensor:
    """Negative log-likelihood, under the student's masked softmax, of the teacher's best legal move.

    student_logits, teacher_logits (B, 1858); legal (B, 1858) bool. Ties go to the lowest policy index.
    best (B,) int64: that move's index where the caller knows it exactly (a teacher cache).
    """
    if best is None:
        best = teacher_logits.detach().float().masked_fill(~legal, float("-inf")).argmax(dim=1)  # (B,)
    log_s = _log_probs(student_logits, legal)  # (B, 1858)
    return -log_s.gather(1, best.unsqueeze(1)).mean()


def policy_logit_mse(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                     legal: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the logits over legal moves, each row centred on its legal mean first.

    student_logits, teacher_logits (B, 1858); legal (B, 1858) bool. Logits are shift-invariant, so each
    row's logits are centred by their mean over its legal moves. The squared differences are averaged over
    each row's legal moves, then over the batch (every position weighs the same, however many moves it has).
    """
    count = legal.sum(dim=1).float()  # (B,)
    diff = torch.where(legal, student_logits.float() - teacher_logits.detach().float(), 0.0)  # (B, 1858)
    centred = torch.where(legal, diff - (diff.sum(dim=1) / count).unsqueeze(1), 0.0)  # (B, 1858)
    return (centred.square().sum(dim=1) / count).mean()


# ----------------------------------------------------------------------------------------------- value


def blend_value_target(z: torch.Tensor, q: torch.Tensor, q_ratio: float) -> torch.Tensor:
    """(B, 3) q_ratio * q + (1 - q_ratio) * z on WDL vectors (FORMATS §2.2).

    z, q (B, 3). At q_ratio 0 (1) q (z) is not read at all, so a NaN there (e.g. an unknown orig_q) stays out.
    """
    if not 0.0 <= q_ratio <= 1.0:
        raise ValueError(f"q_ratio must be in [0, 1], got {q_ratio}")
    if q_ratio == 0.0:
        return z
    if q_ratio == 1.0:
        return q
    return q_ratio * q + (1.0 - q_ratio) * z


def wdl_cross_entropy(wdl_logits: torch.Tensor, target_wdl: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy of the WDL head against a target WDL; lczero's WDL value loss.

    wdl_logits (B, 3); target_wdl (B, 3), rows sum to 1 (e.g. `blend_value_target`).
    """
    return -(target_wdl.float() * _log_probs(wdl_logits, None)).sum(dim=1).mean()


def wdl_mse(wdl_logits: torch.Tensor, target_wdl: torch.Tensor) -> torch.Tensor:
    """MSE between the expected scores W - L of softmax(wdl_logits) and of the target, both in [-1, 1].

    wdl_logits (B, 3); target_wdl (B, 3). lczero's reported "MSE" is this value divided by 4 (the same
    squared error measured on the [0, 1] score scale); divide by 4 to compare with its logs.
    """
    score = _score(_log_probs(wdl_logits, None).exp())  # (B,)
    return (score - _score(target_wdl.float())).square().mean()


def scalar_value_mse(value: torch.Tensor, target_wdl: torch.Tensor) -> torch.Tensor:
    """MSE between a scalar tanh value head (B,) and the target's W - L (target_wdl (B, 3)); lczero's loss
    for the classical value head. Like `wdl_mse`, lczero displays it divided by 4."""
    return (value.float() - _score(target_wdl.float())).square().mean()


def value_distill_wdl(student_wdl_logits: torch.Tensor, teacher_wdl_logits: torch.Tensor,
                      temperature: float = 1.0) -> torch.Tensor:
    """Cross-entropy of the student's WDL head against the teacher's WDL, softmax(teacher / T).

    student_wdl_logits, teacher_wdl_logits (B, 3); the teacher is detached; the student is not divided by T
    (as Cyanogenoid's policy distillation). The teacher's entropy is included: 0 is not the minimum.
    """
    teacher = _log_probs(teacher_wdl_logits.detach().float() / temperature, None).exp()  # (B, 3)
    return wdl_cross_entropy(student_wdl_logits, teacher)


def moves_left_huber(pred: torch.Tensor, target: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """lczero's moves-left loss: Huber with delta 10 plies on pred / 20 and target / 20 (delta 0.5).

    pred (B,) plies predicted; target (B,) plies left; known (B,) bool. Averaged over the known rows only;
    0 (still attached to the graph) when no row is known. Unknown targets are never read, so NaN is fine.
    """
    target = torch.where(known, target.float(), 0.0)  # (B,)
    loss = F.huber_loss(pred.float() / MLH_SCALE, target / MLH_SCALE, reduction="none", delta=MLH_DELTA)  # (B,)
    return torch.where(known, loss, 0.0).sum() / known.sum().clamp(min=1)


# ----------------------------------------------------------------------------------------------- total


@dataclass
class LossReport:
    """The weighted total and every part, so that each part is logged separately (unweighted)."""

    total: torch.Tensor  # () float32, what the optimiser minimises
    parts: dict[str, torch.Tensor]  # name -> () float32, unweighted, still attached to the graph
    weights: dict[str, float]  # name -> the weight applied to that part

    def scalars(self) -> dict[str, float]:
        """{"total": ..., name: unweighted part, ...} as Python floats, with a single device sync."""
        names = ["total", *self.parts]
        values = torch.stack([self.total.detach(), *(p.detach().float() for p in self.parts.values())])
        return dict(zip(names, values.tolist()))


def weighted_losses(parts: dict[str, torch.Tensor], weights: dict[str, float]) -> LossReport:
    """Sum of weight * part over the parts present, with the parts kept for logging.

    parts: name -> () scalar loss; weights: name -> float, a superset of the part names (weights without a
    part are ignored, so one config serves runs with and without, say, a moves-left head). A part without a
    weight is an error naming it. A weight of 0 still keeps its part in the graph (zero gradients rather
    than unused parameters, which DDP rejects).
    """
    missing = [name for name in parts if name not in weights]
    if missing:
        raise KeyError(f"no loss weight for part(s) {', '.join(missing)}; weights given: {', '.join(weights)}")
    for name, part in parts.items():
        if part.ndim != 0:
            raise ValueError(f"loss part {name} must be a scalar, got shape {tuple(part.shape)}")
    total = sum((weights[name] * part for name, part in parts.items()), torch.zeros(()))
    used = {name: weights[name] for name in parts}
    return LossReport(total, dict(parts), used)


def total_loss(parts: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """() sum of weight * part over the parts present; see `weighted_losses`, which also keeps the parts."""
    return weighted_losses(parts, weights).total
