"""SD-MAD: train the branch adapters on the support set, select signs, score (chapter 5).

The pieces, in the order a run calls them: :func:`train_head` (the losses of ``losses.py``
through the one training loop of ``train.py``), :func:`select_signs` (``selection.py`` on the
support discrimination of every candidate sign), :func:`head_scores` (category and anchor
probabilities), and :func:`fit`, which chains them for the registry.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .. import losses as L
from .. import selection as S
from ..config import ExperimentConfig
from ..data.fewshot import Support
from ..features import Features
from ..models.sdmad import SDMADHead, TextBank
from ..task import Task, make_head
from ..train import TrainResult, one_thread, train


def branch_features(head: SDMADHead, task: Task, feats: Features, mode: str, tokens: str = "cls") -> torch.Tensor:
    """u (B, branches, blocks, D) of ``feats`` through ``head`` placed ``mode`` (side | residual)."""
    return head(feats.taps, task.backbone, mode, tokens)


def loss_terms(head: SDMADHead, u: torch.Tensor, y: torch.Tensor, text: TextBank, cfg: ExperimentConfig) -> dict:
    """The four loss terms of ``losses.py`` for branch features ``u`` and labels ``y``."""
    cat, anc = head.logits(u, text)
    uc = F.normalize(u[:, : head.n_categories].mean(2), dim=-1)
    cross = torch.einsum("bcd,kd->bck", uc, head.adapt_text(text.category_means()))
    return {
        "align": L.alignment_loss(cat, y),
        "discrepancy": L.discrepancy_loss(cross, y, cfg.loss.discrepancy_margin),
        "intra": L.intra_loss(head.sign_similarities(u, text), text.active, y),
        "anchor": L.anchor_loss(anc, y),
    }


@dataclass
class TrainedHead:
    """A trained head and its training record."""

    head: SDMADHead
    history: list[dict]
    best_epoch: int
    resumed_from: int | None = None


def train_head(task: Task, support: Support, cfg: ExperimentConfig, text: TextBank | None = None,
               categories: list[int] | None = None, checkpoint: str | os.PathLike | None = None,
               checkpoint_every: int = 10, stop_after: int | None = None, on_epoch=None) -> TrainedHead:
    """Train the adapters of a fresh head on ``support.train`` (full batch, AdamW), early stopping
    on the loss of ``support.val``; the side variant on one thread (:class:`~sdmad_lite.train.one_thread`).

    ``text``: the bank the head is trained against (default: the task's, expert signs active);
    ``categories``: the category columns (open-set runs hold one out); ``checkpoint`` etc.: see
    :func:`sdmad_lite.train.train`.
    """
    with one_thread(cfg.model.adapter_mode != "residual"):
        torch.manual_seed(cfg.seed if cfg.train_seed is None else cfg.train_seed)
        cols = list(range(len(task.categories))) if categories is None else list(categories)
        text = text or task.text
        if categories is not None:
            text = TextBank(text.signs[cols], text.sign_mask[cols], text.normal, text.abnormal, text.active[cols])
        head = make_head(task, cfg, len(cols))
        opt = torch.optim.AdamW([p for p in head.parameters() if p.requires_grad], lr=cfg.train.lr,
                                weight_decay=cfg.train.weight_decay, fused=True)
        tr, va = task.pool_feats.subset(support.train), task.pool_feats.subset(support.val)
        ytr = torch.as_tensor(task.y_pool[support.train][:, cols]).float()
        yva = torch.as_tensor(task.y_pool[support.val][:, cols]).float()
        mode = cfg.model.adapter_mode
        terms = {}

        def step():
            terms.clear()
            terms.update(loss_terms(head, branch_features(head, task, tr, mode), ytr, text, cfg))
            return L.total_loss(terms, cfg.loss), terms

        def held_out():
            vt = loss_terms(head, branch_features(head, task, va, mode), yva, text, cfg)
            return float(L.total_loss(vt, cfg.loss))

        res: TrainResult = train(head, opt, step, held_out if len(support.val) else None, cfg.train.epochs,
                                 cfg.train.patience, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                                 stop_after=stop_after, on_epoch=on_epoch)
    return TrainedHead(head, res.history, res.best_epoch, res.resumed_from)


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
    return torch.stack([S.support_discrimination(sims[y[:, c] == 1, c], sims[normal, c]) for c in range(len(cols))])


def select_signs(task: Task, support: Support, cfg: ExperimentConfig, cols: list[int],
                 head: SDMADHead | None = None) -> np.ndarray:
    """The signs kept for each category column ``cols``, (len(cols), K) booleans (``selection.py``)."""
    rule = cfg.selection.rule
    expert = task.expert[cols]
    cand = task.text.sign_mask[cols].numpy()
    pool = expert if cfg.selection.pool == "expert" else cand
    d = None
    if rule in ("auto", "topk"):
        d = sign_discrimination(task, support.all, cols, cfg.selection.features, head, cfg.model.adapter_mode)
    return np.stack([S.select(rule, None if d is None else d[i], pool[i], expert[i], cand[i], cfg.selection.top_k,
                              cfg.selection.z_threshold) for i in range(len(cols))])


@torch.no_grad()
def head_scores(head: SDMADHead, task: Task, feats: Features, text: TextBank, mode: str, batch: int = 256):
    """Category and anchor probabilities of ``feats`` (side variant on one thread)."""
    with one_thread(mode != "residual"):
        cats, ancs = [], []
        for lo in range(0, len(feats), batch):
            u = branch_features(head, task, feats.subset(range(lo, min(len(feats), lo + batch))), mode)
            c, a = head.logits(u, text)
            cats.append(torch.sigmoid(c))
            ancs.append(torch.sigmoid(a))
        return torch.cat(cats).numpy(), torch.cat(ancs).numpy()


@dataclass
class FittedSDMAD:
    """A fitted SD-MAD (or adapter baseline): the trained head, the text it scores against, the kept signs."""

    trained: TrainedHead
    task: Task
    text: TextBank
    mode: str
    kept: np.ndarray | None

    @property
    def head(self) -> SDMADHead:
        return self.trained.head

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.head.parameters())

    def scores(self, feats: Features) -> tuple[np.ndarray, np.ndarray]:
        return head_scores(self.head, self.task, feats, self.text, self.mode)


def fit(task: Task, support: Support, cfg: ExperimentConfig, cols: list[int],
        checkpoint: str | os.PathLike | None = None) -> FittedSDMAD:
    """Train SD-MAD on the support set, then select signs (after training, from the support set)."""
    whole = cols == list(range(len(task.categories)))
    res = train_head(task, support, cfg, categories=None if whole else cols, checkpoint=checkpoint)
    kept = select_signs(task, support, cfg, cols, res.head)
    t = task.text
    text = TextBank(t.signs[cols], t.sign_mask[cols], t.normal, t.abnormal).with_active(torch.as_tensor(kept))
    return FittedSDMAD(res, task, text, cfg.model.adapter_mode, kept)
