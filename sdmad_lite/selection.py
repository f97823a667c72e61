"""Sign selection at inference: keep the signs the few-shot support set confirms.

An LLM's candidate descriptions include signs that are not visible, or that the
vision–language model does not know. SD-MAD drops them at inference; the paper does not give
its rule. Ours uses only the support set:

1. For category c and each sign j of its pool, the **support discrimination**
   ``d_cj = mean_{x ∈ S_c} cos(v(x), t_cj) − mean_{x ∈ S_0} cos(v(x), t_cj)``: how much more the
   sign's text matches the support images *with* c than the normal support images.
   ``v`` is the frozen image embedding (what the VLM itself sees), or the adapted category
   feature (``features="adapted"``).
2. An **outlier test** within the category: robust z-scores
   ``z_j = (d_cj − median_j d_c) / (1.4826·MAD_j d_c)``; a sign is kept when ``z_j ≥ −z_thr`` and
   ``d_cj > 0``. The best sign is always kept.

Alternatives for the ablation: ``none`` (the pool as it is), ``expert`` (the recorded 3–4),
``all`` (every candidate), ``topk`` (the ``top_k`` most discriminative of the pool).
"""
from __future__ import annotations

import numpy as np
import torch

RULES = ("auto", "none", "expert", "all", "topk")


def support_discrimination(sims_pos: torch.Tensor, sims_neg: torch.Tensor) -> torch.Tensor:
    """``d_j`` from similarities of positive (P, K) and normal (M, K) support images to K signs."""
    if len(sims_pos) == 0 or len(sims_neg) == 0:
        raise ValueError("sign selection needs at least one positive and one normal support image per category")
    return sims_pos.mean(0) - sims_neg.mean(0)


def outlier_keep(d: torch.Tensor, z_threshold: float = 1.0) -> torch.Tensor:
    """Boolean mask of kept signs by the robust-z rule of the module docstring."""
    med = d.median()
    mad = (d - med).abs().median() * 1.4826
    z = (d - med) / (mad + 1e-6 + 1e-3 * d.abs().max())
    keep = (z >= -z_threshold) & (d > 0)
    keep[d.argmax()] = True
    return keep


def select(rule: str, d: torch.Tensor | None, pool: np.ndarray, expert: np.ndarray, candidates: np.ndarray,
           top_k: int = 3, z_threshold: float = 1.0) -> np.ndarray:
    """Kept signs of one category as a boolean mask over its padded sign list.

    ``pool``: the signs selection chooses from (the expert subset, or all candidates);
    ``expert``/``candidates``: masks of the recorded subset and of every candidate; ``d``: the
    support discrimination of every sign (needed by ``auto`` and ``topk``).
    """
    if rule not in RULES:
        raise ValueError(f"unknown selection rule {rule!r}; choose one of {', '.join(RULES)}")
    pool = pool.astype(bool)
    if rule == "none":
        return pool.copy()
    if rule == "expert":
        return expert.astype(bool).copy()
    if rule == "all":
        return candidates.astype(bool).copy()
    if d is None:
        raise ValueError(f"selection rule {rule!r} needs the support discrimination d")
    idx = np.flatnonzero(pool)
    dd = torch.as_tensor(d)[idx]
    keep = np.zeros_like(pool)
    if rule == "topk":
        order = torch.argsort(dd, descending=True)[: max(1, top_k)]
        keep[idx[order.numpy()]] = True
    else:
        keep[idx[outlier_keep(dd, z_threshold).numpy()]] = True
    return keep


def precision_recall(kept: np.ndarray, truth: np.ndarray, pool: np.ndarray) -> tuple[float, float]:
    """Precision and recall of kept signs against ground truth (e.g. 'drawn by the renderer'), within the pool."""
    kept, truth, pool = kept.astype(bool) & pool.astype(bool), truth.astype(bool) & pool.astype(bool), pool.astype(bool)
    tp = (kept & truth).sum()
    precision = tp / kept.sum() if kept.sum() else float("nan")
    recall = tp / truth.sum() if truth.sum() else float("nan")
    return float(precision), float(recall)
