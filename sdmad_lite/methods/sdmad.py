"""SD-MAD: train the branch adapters on the support set, select signs, score (chapter 5).

The pieces, in the order a run calls them: :func:`select_signs` (``selection.py`` on the support
discrimination of every candidate sign), :func:`cross_validate` (the grid × folds of
``tuning.py``, all heads trained at once as one stack), :func:`train_head` (the refit on the whole
support set through the one training loop of ``train.py``), :func:`head_scores`, and :func:`fit`,
which chains them for the registry. Sign selection runs ``after`` training (the paper's
inference-time selection: the head trains on the expert signs and scores with the kept ones),
``before`` it (the head also trains on the kept signs), or ``per-image`` (each test image scores
each category with the ``top_k`` signs it matches best).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .. import losses as L
from .. import selection as S
from .. import tuning as T
from ..config import ConfigError, ExperimentConfig
from ..data.fewshot import Support
from ..features import Features
from ..models.sdmad import SDMADHead, TextBank
from ..task import Task, adapter_hidden, make_head
from ..train import StackedAdamW, one_thread, train, train_stack

LOSS_TERMS = ("align", "discrepancy", "intra", "anchor")


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


# ----------------------------------------------------------------------------- sign selection
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


def _kept_text(task: Task, cols: list[int], kept: np.ndarray) -> TextBank:
    t = task.text
    return TextBank(t.signs[cols], t.sign_mask[cols], t.normal, t.abnormal).with_active(torch.as_tensor(kept))


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


def _per_model(points: list[dict], n_folds: int, key: str, default: float) -> torch.Tensor:
    """One value of setting ``key`` per model of the stack (point g repeated for its F folds)."""
    return torch.tensor([float(p.get(key, default)) for p in points for _ in range(n_folds)])


def cross_validate(task: Task, support: Support, cfg: ExperimentConfig, cols: list[int], train_text: TextBank,
                   score_text_of, points: list[dict], per_image_top: int | None = None,
                   exact_epochs: int | None = None) -> T.Tuned:
    """Every grid point × every fold trained at once as one stack of heads (``tuning.py``).

    ``score_text_of(train_rows)``: the text bank a model trained on ``train_rows`` scores with (sign
    selection on those rows only: the held-out fold never chooses a sign of the model that scores it).
    ``exact_epochs``: train exactly that many epochs and take the out-of-fold scores at the end (the
    residual placement's folds, at the point the side placement chose).
    """
    if cfg.model.text_adapter:
        raise ConfigError("model.text_adapter is not supported with tuning (the stacked heads share no text "
                          "adapter); set tuning.folds: 0 or text_adapter: false")
    tc = cfg.tuning
    rows = support.all
    y = task.y_pool[rows][:, cols]
    folds = T.assign_folds(y, tc.folds, cfg.seed)
    nf, m = tc.folds, len(points) * tc.folds
    fold_of_model = torch.arange(m) % nf
    in_val = torch.as_tensor(folds)[None, :] == fold_of_model[:, None]  # (M, N)
    w_tr, w_va = (~in_val).float(), in_val.float()
    with one_thread(cfg.model.adapter_mode != "residual"):
        torch.manual_seed(cfg.seed if cfg.train_seed is None else cfg.train_seed)
        head = SDMADHead(len(cols), task.blocks, task.backbone.width, adapter_hidden(task, cfg), cfg.model.adapter_lambda,
                         cfg.loss.temperature, False, task.backbone.embed_dim, n_models=m, init=cfg.model.adapter_init)
        nb = len(cols) + 1
        model_of_branch = torch.arange(m * nb) // nb
        lr = _per_model(points, nf, "train.lr", cfg.train.lr)
        wd = _per_model(points, nf, "train.weight_decay", cfg.train.weight_decay)
        opt = StackedAdamW([(head.adapters.down, 2, model_of_branch), (head.adapters.up, 1, model_of_branch)], lr, wd)
        weights = {t: _per_model(points, nf, f"loss.{t}", getattr(cfg.loss, t)) for t in LOSS_TERMS}
        feats = task.pool_feats.subset(rows)
        yt = torch.as_tensor(y).float()
        mode = cfg.model.adapter_mode
        # the text each model scores its held-out fold with, as category means (M, C, D)
        fold_text = [score_text_of(rows[folds != f]) for f in range(nf)]
        tbar = torch.stack([t.category_means() for t in fold_text])[fold_of_model]
        active = torch.stack([t.active.bool() for t in fold_text])[fold_of_model]  # (M, C, K)
        t_n, t_a, tau = train_text.normal, train_text.abnormal, cfg.loss.temperature

        def step():  # one forward pass: the training losses, and the held-out losses and scores
            u = head.per_model(branch_features(head, task, feats, mode))  # (M, N, C+1, L, D)
            loss = L.total_loss(loss_terms(head, u, yt, train_text, cfg, w_tr), weights)
            u = u.detach()
            with torch.no_grad():
                v = L.total_loss(loss_terms(head, u, yt, train_text, cfg, w_va), weights)
                return loss, v, _oof_scores(u)

        def _oof_scores(u):
            ubar = u.mean(-2)  # mean over blocks: the logits are linear in it
            if per_image_top:  # each image's best-matching signs of the pool (as head_scores)
                sims = torch.einsum("mncd,ckd->mnck", ubar[:, :, :-1], train_text.signs)
                sims = sims.masked_fill(~active[:, None], -2.0).topk(min(per_image_top, sims.shape[-1]), -1).values
                own = torch.where(sims > -2.0, sims, torch.nan).nanmean(-1)
            else:
                own = torch.einsum("mncd,mcd->mnc", ubar[:, :, :-1], tbar)
            cat = (own - ubar[:, :, :-1] @ t_n) / tau
            anc = (ubar[:, :, -1] @ t_a - ubar[:, :, -1] @ t_n) / tau
            return torch.sigmoid(torch.cat([cat, anc[..., None]], -1))

        if exact_epochs is not None:
            record = train_stack(opt, step, exact_epochs, exact_epochs + 1)
            return T.choose_from_stack(record, points, nf, folds, y, exact_epochs, at_end=True)
        record = train_stack(opt, step, tc.max_epochs, tc.patience)
    return T.choose_from_stack(record, points, nf, folds, y, tc.max_epochs)


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


@dataclass
class FittedSDMAD:
    """A fitted SD-MAD (or adapter baseline): the trained head, the text it scores against, the kept
    signs, and what tuning chose (or None)."""

    trained: TrainedHead
    task: Task
    text: TextBank
    mode: str
    kept: np.ndarray | None
    tuned: T.Tuned | None = None
    per_image_top: int | None = None

    @property
    def head(self) -> SDMADHead:
        return self.trained.head

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.head.parameters())

    def scores(self, feats: Features) -> tuple[np.ndarray, np.ndarray]:
        return head_scores(self.head, self.task, feats, self.text, self.mode, per_image_top=self.per_image_top)


def fit(task: Task, support: Support, cfg: ExperimentConfig, cols: list[int],
        checkpoint: str | os.PathLike | None = None) -> FittedSDMAD:
    """SD-MAD on one support set: sign selection, cross-validated tuning, refit on all support images.

    ``tuning.folds`` 0 (no tuning: chapter 5 and the untuned benchmarks) trains once on
    ``support.train`` with early stopping on ``support.val``.
    """
    when = cfg.selection.when
    expert_text = task.text_columns(cols)
    pool_text = task.text_columns(cols, task.expert[cols] if cfg.selection.pool == "expert"
                                  else task.text.sign_mask[cols].numpy())

    def chosen(rows) -> TextBank:
        return _kept_text(task, cols, select_signs(task, rows, cfg, cols))

    kept = select_signs(task, support.all, cfg, cols) if when != "per-image" else None
    train_text = _kept_text(task, cols, kept) if when == "before" else expert_text
    score_text = pool_text if when == "per-image" else _kept_text(task, cols, kept)
    top = cfg.selection.top_k if when == "per-image" else None
    if cfg.train.epochs == 0:  # the head at initialisation
        head = make_head(task, cfg, len(cols))
        return FittedSDMAD(TrainedHead(head.eval(), [], 0), task, score_text, cfg.model.adapter_mode, kept, None, top)
    if cfg.tuning.folds >= 2:
        score_of = (lambda rows: pool_text) if when == "per-image" else chosen
        side = T.apply_point(cfg, {"model.adapter_mode": "side"})
        tuned = cross_validate(task, support, side, cols, train_text, score_of, T.grid_points(cfg.tuning.grid), top)
        final = T.apply_point(cfg, tuned.point)
        if cfg.model.adapter_mode == "residual":  # the point and epochs of the side placement's folds (a stack
            # of residual heads costs a pass of the frozen blocks per branch and model); out-of-fold scores
            # for the thresholds from residual heads trained on each fold's complement
            res_folds = cross_validate(task, support, final, cols, train_text, score_of, [{}], top,
                                       exact_epochs=tuned.epochs)
            tuned.oof_cat, tuned.oof_anchor = res_folds.oof_cat, res_folds.oof_anchor
        res = train_head(task, support.all, final, train_text, cols, tuned.epochs, checkpoint=checkpoint)
        return FittedSDMAD(res, task, score_text, cfg.model.adapter_mode, kept, tuned, top)
    res = train_head(task, support.train, cfg, train_text, cols, cfg.train.epochs, held_out=support.val,
                     checkpoint=checkpoint)
    if cfg.selection.features == "adapted" and when == "after":
        kept = select_signs(task, support.all, cfg, cols, res.head)
        score_text = _kept_text(task, cols, kept)
    return FittedSDMAD(res, task, score_text, cfg.model.adapter_mode, kept, None, top)
