"""The training losses of SD-MAD (the paper gives no formulas; these are our documented choices).

Notation (the book's notation table): for image i and category c, ``s_ic`` is the category logit
of the head, ``cos(ū_ic, t_cj)`` the similarity of the block-averaged category feature to sign j of
category c, and ``S_icc' = cos(ū_ic, t̄_c')`` its similarity to the mean active-sign embedding of
category c'.

- **Alignment** (multi-label): ``L_align = mean_ic BCE(σ(s_ic), y_ic)``.
- **Inter-anomaly discrepancy** (amplify the discrepancy between anomalies): for every positive
  (i, c) and every other category c' ≠ c, ``L_disc = mean relu(m + S_icc' − S_icc)`` — category
  c's feature must be closer to its own signs than to any other category's signs by a margin m.
- **Intra-anomaly alignment** (pull a category's signs together around its feature): for every
  positive (i, c), the spread of its similarities to the category's active signs,
  ``L_intra = mean_ic Var_j cos(ū_ic, t_cj)`` — the feature should agree with *all* its signs.
- **Anchor**: ``L_anchor = mean_i BCE(σ(s_ai), 1[i is abnormal])``.

Each term has a weight in :class:`~sdmad_lite.config.schema.LossConfig`; a weight of 0 turns it off.

Every function also takes image weights ``w`` (B,) — 1 for the images a model trains on, 0 for
the others — and leading dimensions before the image one: a stack of M models trained at once on
different folds of the support set (``(M, B, ...)`` inputs, ``(M,)`` losses). A mean over an empty
set is 0.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _weights(w: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """Image weights (..., B) for logits ``like`` (..., B, C); ones when ``w`` is None."""
    return torch.ones(like.shape[:-1], dtype=like.dtype, device=like.device) if w is None else w.to(like.dtype)


def alignment_loss(cat_logits: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
    """Multi-label BCE between category logits (..., B, C) and labels (B, C)."""
    bce = F.binary_cross_entropy_with_logits(cat_logits, y.float().expand_as(cat_logits), reduction="none")
    m = _weights(w, cat_logits).unsqueeze(-1).expand_as(bce)
    return (bce * m).sum((-2, -1)) / m.sum((-2, -1)).clamp(min=1.0)


def discrepancy_loss(cross_sim: torch.Tensor, y: torch.Tensor, margin: float | torch.Tensor,
                     w: torch.Tensor | None = None) -> torch.Tensor:
    """``mean relu(m + S_icc' − S_icc)`` over positive (i, c) and c' ≠ c.

    ``cross_sim``: (..., B, C, C) with ``cross_sim[..., i, c, c'] = cos(ū_ic, t̄_c')``; ``margin``: a
    number, or one per leading index (a stack of models).
    """
    c = cross_sim.shape[-1]
    own = cross_sim.diagonal(dim1=-2, dim2=-1)  # (..., B, C)
    m = torch.as_tensor(margin, dtype=cross_sim.dtype, device=cross_sim.device)
    m = m.reshape(m.shape + (1,) * 3) if m.ndim else m
    hinge = F.relu(m + cross_sim - own.unsqueeze(-1))  # (..., B, C, C')
    off = ~torch.eye(c, dtype=torch.bool, device=cross_sim.device)
    mask = (y.bool().unsqueeze(-1) & off) * _weights(w, own).unsqueeze(-1).unsqueeze(-1)
    mask = mask.expand_as(hinge).to(hinge.dtype)
    return (hinge * mask).sum((-3, -2, -1)) / mask.sum((-3, -2, -1)).clamp(min=1.0)


def intra_loss(sign_sim: torch.Tensor, active: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over positive (i, c) of the variance of ``cos(ū_ic, t_cj)`` over the active signs j.

    ``sign_sim``: (..., B, C, K); ``active``: (C, K) bool; ``y``: (B, C).
    """
    a = active.to(sign_sim.dtype)  # (C, K)
    n = a.sum(-1).clamp(min=1)
    mean = (sign_sim * a).sum(-1) / n
    var = (((sign_sim - mean.unsqueeze(-1)) ** 2) * a).sum(-1) / n  # (..., B, C)
    mask = (y.bool() * _weights(w, var).unsqueeze(-1)).expand_as(var).to(var.dtype)
    return (var * mask).sum((-2, -1)) / mask.sum((-2, -1)).clamp(min=1.0)


def anchor_loss(anchor_logits: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
    """BCE of the anchor logit (..., B) against 'abnormal' = any label (B, C)."""
    target = (y.sum(-1) > 0).to(anchor_logits.dtype).expand_as(anchor_logits)
    bce = F.binary_cross_entropy_with_logits(anchor_logits, target, reduction="none")
    m = (torch.ones_like(bce) if w is None else w.to(bce.dtype).expand_as(bce))
    return (bce * m).sum(-1) / m.sum(-1).clamp(min=1.0)


def total_loss(terms: dict[str, torch.Tensor], weights) -> torch.Tensor:
    """Σ weight·term over the terms whose weight is not 0 (``weights``: a LossConfig, or a dict of
    one weight per term — numbers, or tensors of one weight per model of a stack)."""
    out = 0.0
    for name, value in terms.items():
        w = weights[name] if isinstance(weights, dict) else getattr(weights, name)
        if torch.is_tensor(w) or w:
            out = out + w * value
    return out
