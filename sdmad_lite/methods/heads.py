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
from ..models.shift import PromptStates, TextVectors, category_means
from ..task import Task
from ..train import StackedAdamW, StackRecord, one_thread, train, train_stack

LOSS_TERMS = ("align", "discrepancy", "intra", "anchor")


def adapter_hidden(task: Task, cfg: ExperimentConfig) -> int:
    """The adapters' hidden width: ``model.adapter_hidden``, or a quarter of the backbone's width."""
    return cfg.model.adapter_hidden or max(1, task.backbone.width // 4)


def make_head(task: Task, cfg: ExperimentConfig, n_categories: int | None = None, lam: float | None = None,
              n_models: int = 1, text_adapter: bool | None = None, cols: list[int] | None = None) -> SDMADHead:
    """A fresh SD-MAD head for ``task``'s category columns ``cols`` (default: the first ``n_categories``, all by
    default); ``lam=1`` gives the head at the frozen features: the adapters contribute nothing, every branch
    scores the frozen class token (and, shift, the frozen text); ``n_models`` > 1: a stack. Under the shift
    placement the head carries the text-side Shift Adapter on the prompts of those columns (:func:`prompt_states`)."""
    cols = list(range(n_categories or len(task.categories))) if cols is None else list(cols)
    states = prompt_states(task, cols) if cfg.model.adapter_mode == "shift" else None
    return SDMADHead(len(cols), task.blocks, task.backbone.width, adapter_hidden(task, cfg),
                     cfg.model.adapter_lambda if lam is None else lam, cfg.loss.temperature,
                     cfg.model.text_adapter if text_adapter is None else text_adapter, task.backbone.embed_dim,
                     n_models=n_models, init=cfg.model.adapter_init, text_states=states)


def prompt_states(task: Task, cols: list[int]) -> PromptStates:
    """The end-of-text states of the prompts behind ``task.text_columns(cols)``: every template prompt of every
    candidate sign of those categories (the padded (C, K) layout of ``task.sign_ids``) and the anchor prompts
    (``models/shift.py``), as ``task.build_text_bank`` embeds them."""
    bank, k = task.bank, task.text.signs.shape[1]

    def prompts(cat: str, sign_id: str) -> list[str]:
        if not sign_id:  # padding
            return []
        owners = [cat] + [c for c in bank.categories if c != cat]  # a noisy pool's sign may be another category's
        owner = next(c for c in owners if sign_id in {s.id for s in bank.candidates(c)})
        return bank.sign_prompts(owner, [sign_id])[sign_id]

    groups = [prompts(task.categories[c], task.sign_ids[c][j]) for c in cols for j in range(k)]
    anchors = bank.anchor_prompts()
    return PromptStates.of(task.backbone, groups + [anchors["normal"], anchors["abnormal"]], (len(cols), k))


def branch_features(head: SDMADHead, task: Task, feats: Features, mode: str, tokens: str = "cls") -> torch.Tensor:
    """u (B, branches, blocks, D) of ``feats`` through ``head`` placed ``mode`` (side | residual | shift)."""
    inputs = [b - 1 for b in task.blocks] if mode == "shift" else []
    if any(b not in feats.taps for b in inputs):
        raise ValueError(f"the shift placement reads the outputs of blocks {inputs} (the adapted blocks' inputs), but "
                         f"these features hold blocks {sorted(feats.taps)}: build the task from a config with "
                         "model.adapter_mode: shift (task.get_task)")
    if mode == "residual":  # resumed from every token of the first tap
        feats.require_patches(task.blocks[:1], "the residual placement")
    elif tokens == "patches":
        feats.require_patches(sorted(set(task.blocks) | set(inputs)), "patch-level scores (localization maps)")
    return head(feats.taps, task.backbone, mode, tokens)


def loss_terms(head: SDMADHead, u: torch.Tensor, y: torch.Tensor, text: TextBank, cfg: ExperimentConfig,
               w: torch.Tensor | None = None, tv: TextVectors | None = None) -> dict:
    """The four loss terms of ``losses.py`` for branch features ``u`` (..., B, C+1, L, D), labels ``y``
    and image weights ``w`` (..., B); a leading model axis gives one value per model. ``tv``: the head's
    :meth:`~sdmad_lite.models.sdmad.SDMADHead.text_vectors` of ``text`` when the caller has them."""
    tv = head.text_vectors(text) if tv is None else tv
    cat, anc = head.logits(u, tv)
    uc = F.normalize(u[..., : head.n_categories, :, :].mean(-2), dim=-1)
    cross = torch.einsum("mbcd,mkd->mbck" if tv.per_model else "...bcd,kd->...bck", uc, tv.means)
    return {
        "align": L.alignment_loss(cat, y, w),
        "discrepancy": L.discrepancy_loss(cross, y, cfg.loss.discrepancy_margin, w),
        "intra": L.intra_loss(head.sign_similarities(u, tv), text.active, y, w),
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
        head = make_head(task, cfg, cols=cols)
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

    def probabilities(self, u: torch.Tensor, tv: TextVectors | None = None) -> torch.Tensor:
        """Category and anchor probabilities (M, N, C+1) of the stack's branch features ``u`` (M, N, C+1, L, D)
        (``tv``: the stack's adapted text under the shift placement, when the caller has it)."""
        if self.head.shift_text is not None:
            return self._shift_probabilities(u.mean(-2), self.head.text_vectors(self.train_text) if tv is None else tv)
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

    def _shift_probabilities(self, ubar: torch.Tensor, tv: TextVectors) -> torch.Tensor:
        """:meth:`probabilities` with one adapted text per model: signs (M, C, K, D), anchors (M, D)."""
        t_n, t_a = tv.normal[:, None, None], tv.abnormal[:, None]  # (M, 1, 1, D), (M, 1, D)
        if self.per_image_top:
            sims = torch.einsum("mncd,mckd->mnck", ubar[:, :, :-1], tv.signs)
            sims = sims.masked_fill(~self.active[:, None], -2.0).topk(min(self.per_image_top, sims.shape[-1]), -1).values
            own = torch.where(sims > -2.0, sims, torch.nan).nanmean(-1)
        else:
            own = torch.einsum("mncd,mcd->mnc", ubar[:, :, :-1], category_means(tv.signs, self.active))
        cat = (own - (ubar[:, :, :-1] * t_n).sum(-1)) / self.tau
        anc = ((ubar[:, :, -1] * t_a).sum(-1) - (ubar[:, :, -1] * t_n[:, 0]).sum(-1)) / self.tau
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
        head = make_head(task, cfg, n_models=m, text_adapter=False, cols=cols)
        nb = len(cols) + 1
        model_of_branch = torch.arange(m * nb) // nb
        lr = T.per_model(points, nf, "train.lr", cfg.train.lr)
        wd = T.per_model(points, nf, "train.weight_decay", cfg.train.weight_decay)
        params = [(head.adapters.down, 2, model_of_branch), (head.adapters.up, 1, model_of_branch)]
        if head.shift_text is not None:  # one text adapter per model
            params += [(head.shift_text.down, 0, torch.arange(m)), (head.shift_text.up, 0, torch.arange(m))]
        opt = StackedAdamW(params, lr, wd)
        weights = {t: T.per_model(points, nf, f"loss.{t}", getattr(cfg.loss, t)) for t in LOSS_TERMS}
        feats = task.pool_feats.subset(rows)
        yt = torch.as_tensor(y).float()
        mode = cfg.model.adapter_mode
        # the text each model scores with (its held-out fold, and the test images as a fold model)
        stacked = StackedHeads(head, task, mode, [score_text_of(rows[cv.split(f)[0]]) for f in range(nf)],
                               cv.fold_of_model(len(points)), train_text, cfg.loss.temperature, per_image_top)

        def step():  # one forward pass: the training losses, and the held-out losses and scores
            u = head.per_model(branch_features(head, task, feats, mode))  # (M, N, C+1, L, D)
            tv = head.text_vectors(train_text)  # once per step (the shift placement's text adapters run here)
            loss = L.total_loss(loss_terms(head, u, yt, train_text, cfg, w_tr, tv), weights)
            u, tv = u.detach(), tv.detach()
            with torch.no_grad():
                v = L.total_loss(loss_terms(head, u, yt, train_text, cfg, w_va, tv), weights)
                return loss, v, stacked.probabilities(u, tv)

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
        tv = head.text_vectors(text)
        for lo in range(0, len(feats), batch):
            u = branch_features(head, task, feats.subset(range(lo, min(len(feats), lo + batch))), mode)
            c, a = head.logits(u, tv)
            if per_image_top:
                sims = head.sign_similarities(u, tv).masked_fill(~text.active.bool(), -2.0)  # (B, C, K)
                top = sims.topk(min(per_image_top, sims.shape[-1]), dim=-1).values
                top = torch.where(top > -2.0, top, torch.nan).nanmean(-1)
                c = (top - u[:, : head.n_categories].mean(2) @ tv.normal) / head.temperature
            cats.append(torch.sigmoid(c))
            ancs.append(torch.sigmoid(a))
        return torch.cat(cats).numpy(), torch.cat(ancs).numpy()


@torch.no_grad()
def discrepancy_margins(head: SDMADHead, task: Task, feats: Features, y: np.ndarray, mode: str = "side") -> np.ndarray:
    """The inter-anomaly discrepancy the loss pushes for, measured: for every (image, category) pair with
    the category present (``y`` (N, C)), cos(ū_c, own sign mean) minus the largest cos(ū_c, another
    category's sign mean) — positive where the category's feature is closer to its own signs. One head:
    a stack of heads (``n_models`` > 1, a tuned run's fold models) is refused, not read as its first model."""
    if head.n_models != 1:
        raise ValueError(f"discrepancy_margins measures one head, got a stack of {head.n_models}: pass one head "
                         "(heads.train_head), or measure each fold model of a tuned run apart")
    u = F.normalize(branch_features(head, task, feats, mode)[:, : head.n_categories].mean(2), dim=-1)
    means = task.text.category_means() if head.shift_text is None else head.text_vectors(task.text).means
    s = torch.einsum("bcd,kd->bck", u, means)
    own = s.diagonal(dim1=1, dim2=2)
    other = s.masked_fill(torch.eye(head.n_categories, dtype=torch.bool), -2).amax(-1)
    return (own - other)[torch.as_tensor(y).bool()].numpy()
