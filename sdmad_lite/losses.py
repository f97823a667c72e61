"""The training losses of SD-MAD (the paper gives no formulas; these are our documented choices).

Notation: for image i and category c, ``ℓ_ic`` is the category logit of the head,
``s_icj = cos(u_ic, t_cj)`` the similarity of the category feature to sign j of category c,
``S_icc' = cos(u_ic, t̄_c')`` its similarity to the mean sign embedding of category c'.

- **Alignment** (multi-label): ``L_align = mean_ic BCE(σ(ℓ_ic), y_ic)``.
- **Inter-anomaly discrepancy** (amplify the discrepancy between anomalies): for every positive
  (i, c) and every other category c' ≠ c,
  ``L_disc = mean relu(m + S_icc' − S_icc)`` — category c's feature must be closer to its own
  signs than to any other category's signs by a margin m.
- **Intra-anomaly alignment** (pull a category's signs together around its feature): for every
  positive (i, c), the spread of its similarities to the category's active signs,
  ``L_intra = mean_ic Var_j(s_icj)`` — the feature should agree with *all* its signs, not one.
- **Anchor**: ``L_anchor = mean_i BCE(σ(ℓ_ai), 1[i is abnormal])``.

Each term has a weight in :class:`~sdmad_lite.config.LossConfig`; a weight of 0 turns it off.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def alignment_loss(cat_logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Multi-label BCE between category logits (B, C) and labels (B, C)."""
    return F.binary_cross_entropy_with_logits(cat_logits, y.float())


def discrepancy_loss(cross_sim: torch.Tensor, y: torch.Tensor, margin: float) -> torch.Tensor:
    """``mean relu(m + S_icc' − S_icc)`` over positive (i, c) and c' ≠ c.

    ``cross_sim``: (B, C, C) with ``cross_sim[i, c, c'] = cos(u_ic, t̄_c')``.
    """
    b, c, _ = cross_sim.shape
    own = cross_sim.diagonal(dim1=1, dim2=2)  # (B, C)
    hinge = F.relu(margin + cross_sim - own.unsqueeze(-1))  # (B, C, C')
    off = ~torch.eye(c, dtype=torch.bool, device=cross_sim.device)
    mask = y.bool().unsqueeze(-1) & off.unsqueeze(0)
    if not mask.any():
        return cross_sim.sum() * 0.0
    return hinge[mask].mean()


def intra_loss(sign_sim: torch.Tensor, active: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean over positive (i, c) of the variance of ``s_icj`` over the active signs j.

    ``sign_sim``: (B, C, K); ``active``: (C, K) bool; ``y``: (B, C).
    """
    w = active.float().unsqueeze(0)  # (1, C, K)
    n = w.sum(-1).clamp(min=1)
    mean = (sign_sim * w).sum(-1) / n
    var = (((sign_sim - mean.unsqueeze(-1)) ** 2) * w).sum(-1) / n  # (B, C)
    pos = y.bool()
    if not pos.any():
        return sign_sim.sum() * 0.0
    return var[pos].mean()


def anchor_loss(anchor_logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """BCE of the anchor logit (B,) against 'abnormal' = any label (B, C)."""
    return F.binary_cross_entropy_with_logits(anchor_logits, (y.sum(1) > 0).float())


def total_loss(terms: dict[str, torch.Tensor], weights) -> torch.Tensor:
    """Σ weight·term over the terms whose weight is not 0 (``weights``: a LossConfig)."""
    out = 0.0
    for name, value in terms.items():
        w = getattr(weights, name)
        if w:
            out = out + w * value
    return out
