"""SD-MAD's head on a task: built to the task's size, its branch features and losses, trained once
(:func:`train_head`, through the one training loop of ``train.py``) or as a stack of grid points ×
folds (:func:`train_stack_of_heads`, ``tuning.py``), and scored (:func:`head_scores`). The module
``models/sdmad.py`` holds the head itself; this one fits it to a task's cached features."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .. import losses as L
from .. import tuning as T
from ..config import ConfigError, ExperimentConfig
from ..features import Features
from ..models.sdmad import SDMADHead, TextBank
from ..task import Task
from ..train import StackedAdamW, StackRecord, one_thread, train, train_stack

LOSS_TERMS = ("align", "discrepancy", "intra", "anchor")


def adapter_hidden(task: Task, cfg: ExperimentConfig) -> int:
    """The adapters' hidden width: ``model.adapter_hidden``, or a quarter of the backbone's width."""
    return cfg.model.adapter_hidden or max(1, task.backbone.width // 4)


def make_head(task: Task, cfg: ExperimentConfig, n_categories: int | None = None, lam: float | None = None,
              n_models: int = 1, text_adapter: bool | None = None) -> SDMADHead:
    """A fresh SD-MAD head for ``task`` (``lam=1`` gives the head at the frozen features: the adapters
    contribute nothing, every branch scores the frozen class token); ``n_models`` > 1: a stack."""
    return SDMADHead(n_categories or len(task.categories), task.blocks, task.backbone.width, adapter_hidden(task, cfg),
                     cfg.model.adapter_lambda if lam is None else lam, cfg.loss.temperature,
                     cfg.model.text_adapter if text_adapter is None else text_adapter, task.backbone.embed_dim,
                     n_models=n_models, init=cfg.model.adapter_init)


def branch_features(head: SDMADHead, task: Task, feats: Features, mode: str, tokens: str = "cls") -> torch.Tensor:
    """u (B, branches, blocks, D) of ``feats`` through ``head`` placed ``mode`` (side | residual)."""
    if mode == "residual":  # resumed from every token of the first tap
        feats.require_patches(task.blocks[:1], "the residual placement")
    elif tokens == "patches":
        feats.require_patches(task.blocks, "patch-level scores (localization maps)")
    return head(feats.taps, task.backbone, mode, tokens)


def loss_terms(head: SDMADHead, u: torch.Tensor, y: torch.Tensor, text: TextBank, cfg: ExperimentConfig,
               w: torch.Tensor | None = None) -> dict:
    """The four loss terms of ``losses.py`` for branch features ``u`` (..., B, C+1, L, D), labels ``y``
    and image weights ``w`` (..., B); a leading model axis gives one value per model."""
    cat, anc = head.logits(u, text)
    uc = F.normalize(u[..., : head.n_categories, :, :].mean(-2), dim=-1)
    cross = torch.einsum("...bcd,kd->...bck", uc, head.adapt_text(text.category_means()))
    return {
        "align": L.alignment_loss(cat, y, w),
        "discrepancy": L.discrepancy_loss(cross, y, cfg.loss.discrepancy_margin, w),
        "intra": L.intra_loss(head.sign_similarities(u, text), text.active, y, w),
        "anchor": L.anchor_loss(anc, y, w),
    }


# ----------------------------------------------------------------------------- training
@dataclass
class TrainedHead:
    """A trained head and its training record."""

    head: SDMADHead
    history: list[dict]
    best_epoch: int
    resumed_from: int | None = None


def train_head(task: Task, rows: np.ndarray, cfg: ExperimentConfig, text: TextBank, cols: list[int],
               epochs: int, held_out: np.ndarray | None = None, checkpoint: str | os.PathLike | None = None,
               checkpoint_every: int = 10, stop_after: int | None = None, on_epoch=None) -> TrainedHead:
    """Train the adapters of a fresh head on support ``rows`` (full batch, AdamW) for ``epochs``
    epochs against ``text``; with ``held_out`` rows, stop early on their loss (``train.patience``)
    and restore the best epoch. The side variant on one thread (:class:`~sdmad_lite.train.one_thread`)."""
    with one_thread(cfg.model.adapter_mode != "residual"):
        torch.manual_seed(cfg.seed if cfg.train_seed is None else cfg.train_seed)
        head = make_head(task, cfg, len(cols))
        opt = torch.optim.AdamW([p for p in head.parameters() if p.requires_grad], lr=cfg.train.lr,
                                weight_decay=cfg.train.weight_decay, fused=True)
        tr = task.pool_feats.subset(rows)
        ytr = torch.as_tensor(task.y_pool[rows][:, cols]).float()
        mode = cfg.model.adapter_mode
        terms: dict = {}

        def step():
            terms.clear()
            terms.update(loss_terms(head, branch_features(head, task, tr, mode), ytr, text, cfg))
            return L.total_loss(terms, cfg.loss), terms

        def val():
            va = task.pool_feats.subset(held_out)
            yva = torch.as_tensor(task.y_pool[held_out][:, cols]).float()
            return float(L.total_loss(loss_terms(head, branch_features(head, task, va, mode), yva, text, cfg), cfg.loss))

        early = held_out is not None and len(held_out) > 0
        res = train(head, opt, step, val if early else None, epochs, cfg.train.patience if early else None,
                    restore_best=early, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                    stop_after=stop_after, on_epoch=on_epoch)
    return TrainedHead(head, res.history, res.best_epoch, res.resumed_from)


@dataclass
class StackedHeads:
    """M heads trained as one stack (:func:`train_stack_of_heads`), each scoring with the text of its own
    fold (sign selection on that model's training rows): a :class:`~sdmad_lite.tuning.FoldScorer`."""

    head: SDMADHead
    task: Task
    mode: str
    fold_text: list[TextBank]  # the text each fold's model scores with
    fold_of_model: torch.Tensor  # (M,)
    train_text: TextBank
    tau: float
    per_image_top: int | None = None

    def __post_init__(self):
        self.tbar = torch.stack([t.category_means() for t in self.fold_text])[self.fold_of_model]  # (M, C, D)
        self.active = torch.stack([t.active.bool() for t in self.fold_text])[self.fold_of_model]  # (M, C, K)

    def probabilities(self, u: torch.Tensor) -> torch.Tensor:
        """Category and anchor probabilities (M, N, C+1) of the stack's branch features ``u`` (M, N, C+1, L, D)."""
        t_n, t_a, tau = self.train_text.normal, self.train_text.abnormal, self.tau
        ubar = u.mean(-2)  # mean over blocks: the logits are linear in it
        if self.per_image_top:  # each image's best-matching signs of the pool (as head_scores)
            sims = torch.einsum("mncd,ckd->mnck", ubar[:, :, :-1], self.train_text.signs)
            sims = sims.masked_fill(~self.active[:, None], -2.0).topk(min(self.per_image_top, sims.shape[-1]), -1).values
            own = torch.where(sims > -2.0, sims, torch.nan).nanmean(-1)
        else:
            own = torch.einsum("mncd,mcd->mnc", ubar[:, :, :-1], self.tbar)
        cat = (own - ubar[:, :, :-1] @ t_n) / tau
        anc = (ubar[:, :, -1] @ t_a - ubar[:, :, -1] @ t_n) / tau
        return torch.sigmoid(torch.cat([cat, anc[..., None]], -1))

    @torch.no_grad()
    def scores(self, feats: Features, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """Category (M, N, C) and anchor (M, N) probabilities of ``feats`` under each head of the stack."""
        with one_thread(self.mode != "residual"):
            out = [self.probabilities(self.head.per_model(branch_features(
                self.head, self.task, feats.subset(range(lo, min(len(feats), lo + batch))), self.mode)))
                for lo in range(0, len(feats), batch)]
        p = torch.cat(out, 1).numpy()
        return p[..., :-1], p[..., -1]

    def kept(self) -> np.ndarray:
        """(C, K) the signs a majority of the fold models keep."""
        return (torch.stack([t.active.float() for t in self.fold_text]).mean(0) >= 0.5).numpy()


def train_stack_of_heads(task: Task, rows: np.ndarray, cfg: ExperimentConfig, cols: list[int], train_text: TextBank,
                         score_text_of, cv: T.CV, points: list[dict] | None = None, per_image_top: int | None = None,
                         exact_epochs: int | None = None) -> tuple[StackedHeads, StackRecord]:
    """Every grid point (``points``, default ``cv.points``) × every fold of ``cv`` trained at once as one
    stack of heads on the support ``rows`` (``tuning.py``); returns the stack and what it saw.

    ``score_text_of(train_rows)``: the text bank a model trained on ``train_rows`` scores with (sign
    selection on those rows only: the held-out fold never chooses a sign of the model that scores it).
    ``exact_epochs``: train exactly that many epochs (the fold models of the chosen point).
    """
    if cfg.model.text_adapter:
        raise ConfigError("model.text_adapter is not supported with tuning (the stacked heads share no text "
                          "adapter); set tuning.folds: 0 or text_adapter: false")
    points = cv.points if points is None else points
    y = task.y_pool[rows][:, cols]
    nf, m = cv.n_folds, len(points) * cv.n_folds
    w_tr, w_va = cv.masks(len(points))
    with one_thread(cfg.model.adapter_mode != "residual"):
        torch.manual_seed(cfg.seed if cfg.train_seed is None else cfg.train_seed)
        head = make_head(task, cfg, len(cols), n_models=m, text_adapter=False)
        nb = len(cols) + 1
        model_of_branch = torch.arange(m * nb) // nb
        lr = T.per_model(points, nf, "train.lr", cfg.train.lr)
        wd = T.per_model(points, nf, "train.weight_decay", cfg.train.weight_decay)
        opt = StackedAdamW([(head.adapters.down, 2, model_of_branch), (head.adapters.up, 1, model_of_branch)], lr, wd)
        weights = {t: T.per_model(points, nf, f"loss.{t}", getattr(cfg.loss, t)) for t in LOSS_TERMS}
        feats = task.pool_feats.subset(rows)
        yt = torch.as_tensor(y).float()
        mode = cfg.model.adapter_mode
        # the text each model scores with (its held-out fold, and the test images as a fold model)
        stacked = StackedHeads(head, task, mode, [score_text_of(rows[cv.split(f)[0]]) for f in range(nf)],
                               cv.fold_of_model(len(points)), train_text, cfg.loss.temperature, per_image_top)

        def step():  # one forward pass: the training losses, and the held-out losses and scores
            u = head.per_model(branch_features(head, task, feats, mode))  # (M, N, C+1, L, D)
            loss = L.total_loss(loss_terms(head, u, yt, train_text, cfg, w_tr), weights)
            u = u.detach()
            with torch.no_grad():
                v = L.total_loss(loss_terms(head, u, yt, train_text, cfg, w_va), weights)
                return loss, v, stacked.probabilities(u)

        if exact_epochs is not None:
            record = train_stack(opt, step, exact_epochs, exact_epochs + 1)
        else:
            record = train_stack(opt, step, cfg.tuning.max_epochs, cfg.tuning.patience)
    head.eval()
    return stacked, record


# ----------------------------------------------------------------------------- scoring
@torch.no_grad()
def head_scores(head: SDMADHead, task: Task, feats: Features, text: TextBank, mode: str, batch: int = 256,
                per_image_top: int | None = None):
    """Category and anchor probabilities of ``feats`` (side variant on one thread).

    ``per_image_top``: score each category with the mean similarity of the ``per_image_top`` signs
    of its pool (``text.active``) that the image matches best, instead of their mean embedding.
    """
    with one_thread(mode != "residual"):
        cats, ancs = [], []
        for lo in range(0, len(feats), batch):
            u = branch_features(head, task, feats.subset(range(lo, min(len(feats), lo + batch))), mode)
            c, a = head.logits(u, text)
            if per_image_top:
                sims = head.sign_similarities(u, text).masked_fill(~text.active.bool(), -2.0)  # (B, C, K)
                top = sims.topk(min(per_image_top, sims.shape[-1]), dim=-1).values
                top = torch.where(top > -2.0, top, torch.nan).nanmean(-1)
                t_n = head.adapt_text(text.normal[None])[0]
                c = (top - u[:, : head.n_categories].mean(2) @ t_n) / head.temperature
            cats.append(torch.sigmoid(c))
            ancs.append(torch.sigmoid(a))
        return torch.cat(cats).numpy(), torch.cat(ancs).numpy()




@torch.no_grad()
def discrepancy_margins(head: SDMADHead, task: Task, feats: Features, y: np.ndarray, mode: str = "side") -> np.ndarray:
    """The inter-anomaly discrepancy the loss pushes for, measured: for every (image, category) pair with
    the category present (``y`` (N, C)), cos(ū_c, own sign mean) minus the largest cos(ū_c, another
    category's sign mean) — positive where the category's feature is closer to its own signs."""
    u = F.normalize(branch_features(head, task, feats, mode)[:, : head.n_categories].mean(2), dim=-1)
    s = torch.einsum("bcd,kd->bck", u, task.text.category_means())
    own = s.diagonal(dim1=1, dim2=2)
    other = s.masked_fill(torch.eye(head.n_categories, dtype=torch.bool), -2).amax(-1)
    return (own - other)[torch.as_tensor(y).bool()].numpy()
