"""SD-MAD's sign selection on a support set: the discrimination of every candidate sign between the
support images with and without its category (frozen or adapted features), and the rule of
``selection.py`` that keeps the aligned signs (chapter 7)."""
from __future__ import annotations

import numpy as np
import torch

from .. import selection as S
from ..config import ExperimentConfig
from ..data.fewshot import Support
from ..models.sdmad import SDMADHead, TextBank
from ..task import Task
from .heads import branch_features

def sign_discrimination(task: Task, rows: np.ndarray, cols: list[int], features: str = "frozen",
                        head: SDMADHead | None = None, mode: str = "side") -> torch.Tensor:
    """d_cj (C, K) of ``selection.py`` from the support images ``rows``: the frozen embedding of the
    images (``features="frozen"``) or the trained category features (``"adapted"``)."""
    y = task.y_pool[rows][:, cols]
    signs = task.text.signs[cols]
    with torch.no_grad():
        if features == "frozen":
            v = task.pool_feats.pooled[rows]  # (N, D)
            sims = torch.einsum("nd,ckd->nck", v, signs)
        elif features == "adapted":
            if head is None:
                raise ValueError("features='adapted' needs the trained head")
            u = branch_features(head, task, task.pool_feats.subset(rows), mode)
            sims = head.sign_similarities(u, TextBank(signs, torch.ones_like(signs[..., 0], dtype=torch.bool),
                                                      task.text.normal, task.text.abnormal))
        else:
            raise ValueError(f"selection.features must be 'frozen' or 'adapted', got {features!r}")
    normal = y.sum(1) == 0
    nan = torch.full(signs.shape[1:2], float("nan"))
    return torch.stack([S.support_discrimination(sims[y[:, c] == 1, c], sims[normal, c])
                        if (y[:, c] == 1).any() and normal.any() else nan for c in range(len(cols))])


def select_signs(task: Task, rows: np.ndarray | Support, cfg: ExperimentConfig, cols: list[int],
                 head: SDMADHead | None = None) -> np.ndarray:
    """The signs kept for each category column ``cols`` from the support images ``rows``,
    (len(cols), K) booleans (``selection.py``). A category without a positive or without a normal
    image among ``rows`` (a fold of a small support set) keeps its whole pool."""
    rows = rows.all if isinstance(rows, Support) else np.asarray(rows)
    rule = cfg.selection.rule
    expert = task.expert[cols]
    cand = task.text.sign_mask[cols].numpy()
    pool = expert if cfg.selection.pool == "expert" else cand
    d = None
    if rule in ("auto", "topk"):
        d = sign_discrimination(task, rows, cols, cfg.selection.features, head, cfg.model.adapter_mode)
    return np.stack([pool[i].astype(bool).copy() if d is not None and torch.isnan(d[i]).all() else
                     S.select(rule, None if d is None else d[i], pool[i], expert[i], cand[i], cfg.selection.top_k,
                              cfg.selection.z_threshold) for i in range(len(cols))])


def kept_text(task: Task, cols: list[int], kept: np.ndarray) -> TextBank:
    t = task.text
    return TextBank(t.signs[cols], t.sign_mask[cols], t.normal, t.abnormal).with_active(torch.as_tensor(kept))


