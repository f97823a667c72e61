"""AnomalyCLIP-style prompt learning (Zhou et al., ICLR 2024; zqhang/AnomalyCLIP), one-vs-rest.

What it keeps of AnomalyCLIP's design (``prompt_ensemble.py``, ``AnomalyCLIP_lib/AnomalyCLIP.py``,
``train.py``, ``test.py`` of the repository): *object-agnostic* learnable prompts — ``[V₁…V_n]
object.`` for normality and ``[W₁…W_n] damaged object.`` for abnormality, n learnable context
tokens each — plus learnable *deep* text tokens that replace the hidden states at positions 1..t in
the first text blocks; patch-level anomaly maps from the frozen image encoder's patch tokens (final
LayerNorm and projection) against the two prompts, two-way softmax at temperature 0.07, averaged
over the tapped blocks; the image-level score from the global embedding only, as its test code; a
global cross-entropy plus a local loss on the maps; Adam with betas (0.5, 0.999).

What it changes (the departures page lists it): one abnormal context per category (one-vs-rest; the
normal context and the deep tokens are shared) and one for the anchor, because AnomalyCLIP is
binary; no pixel masks exist here, so the local loss is exact only where the mask is known — an
image without category c has an all-normal map for c (binary cross-entropy of every patch toward
normal) — and for an image with c the map's maximum must say abnormal (a multiple-instance
surrogate for focal + dice); no DPAM (the V–V attention of its last layers, which needs another
pass of the frozen encoder); the global embedding keeps CLIP's final LayerNorm; the support set of
the few-shot task trains the prompts (AnomalyCLIP trains on an auxiliary annotated dataset, zero-shot).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .. import tuning as T
from ..config import ExperimentConfig
from ..data.fewshot import Support
from ..features import Features
from ..task import Task
from ..train import StackedAdamW, one_thread, train_stack


class ObjectAgnosticPrompts(torch.nn.Module):
    """M models' prompts: contexts (M, 2 + C, n_ctx, width) — normal, anchor-abnormal, one abnormal per
    category — and deep tokens (M, depth, t, width)."""

    def __init__(self, backbone, n_categories: int, n_ctx: int, depth: int, deep_tokens: int, n_models: int = 1):
        super().__init__()
        self.backbone = [backbone]
        prefix = " ".join(["X"] * n_ctx)
        self.tokens = backbone.tokenizer([f"{prefix} object."] + [f"{prefix} damaged object."] * (1 + n_categories))
        width = backbone.model.token_embedding.weight.shape[1]
        self.ctx = torch.nn.Parameter(torch.randn(n_models, 2 + n_categories, n_ctx, width) * 0.02)
        self.deep = torch.nn.Parameter(torch.randn(n_models, depth, deep_tokens, width) * 0.02)

    def texts(self) -> torch.Tensor:
        """(M, 2 + C, D): normal, anchor-abnormal, category-abnormal prompt embeddings."""
        return F.normalize(self.backbone[0].text_forward_deep(self.tokens, self.ctx, self.deep), dim=-1)


def frozen_views(task: Task, feats: Features) -> tuple[torch.Tensor, torch.Tensor]:
    """The global embedding (N, D) and the patch tokens of every tapped block in the joint space
    (N, L, P, D), both normalised."""
    patches = feats.patch_tokens(task.blocks, "AnomalyCLIP")
    with torch.no_grad():
        p = F.normalize(task.backbone.to_joint(patches), dim=-1)
    return feats.pooled.float(), p


def probabilities(t: torch.Tensor, v: torch.Tensor, p: torch.Tensor, tau: float):
    """Global (M, N, 1 + C) and patch (M, N, P, 1 + C) abnormal probabilities (anchor first)."""
    g = torch.einsum("nd,mkd->mnk", v, t) / tau  # (M, N, 2 + C)
    glob = torch.sigmoid(g[..., 1:] - g[..., :1])
    s = torch.einsum("nlpd,mkd->mnlpk", p, t) / tau
    maps = torch.sigmoid(s[..., 1:] - s[..., :1]).mean(2)  # averaged over the tapped blocks
    return glob, maps


def _loss(glob, maps, y_full, w, local_weight):
    """Global BCE + local: negatives' maps toward normal, positives' map maximum toward abnormal."""
    yt = y_full.expand_as(glob)
    g = F.binary_cross_entropy(glob.clamp(1e-6, 1 - 1e-6), yt, reduction="none").mean(-1)
    neg = F.binary_cross_entropy(maps.clamp(1e-6, 1 - 1e-6), torch.zeros_like(maps), reduction="none").mean(2)
    pos = F.binary_cross_entropy(maps.amax(2).clamp(1e-6, 1 - 1e-6), torch.ones_like(glob), reduction="none")
    local = (torch.where(yt.bool(), pos, neg)).mean(-1)
    return ((g + local_weight * local) * w).sum(-1) / w.sum(-1).clamp(min=1)


@dataclass
class FittedAnomalyCLIP(T.Fitted):
    prompts: ObjectAgnosticPrompts
    task: Task
    tau: float
    tuned: T.Tuned | None = None

    @property
    def n_parameters(self) -> int:
        return self.prompts.ctx.numel() + self.prompts.deep.numel()

    def scores(self, feats: Features) -> tuple[np.ndarray, np.ndarray]:
        v, p = frozen_views(self.task, feats)
        with torch.no_grad():
            glob, _ = probabilities(self.prompts.texts(), v, p, self.tau)
        return glob[0, :, 1:].numpy(), glob[0, :, 0].numpy()


def _train(task, rows, cols, cfg, points, n_folds, w_tr, w_va, epochs, patience):
    ac = cfg.anomalyclip
    torch.manual_seed(cfg.seed)
    m = len(points) * n_folds
    depth = max(1, min(ac.depth, len(task.backbone.model.transformer.resblocks) - 1))
    prompts = ObjectAgnosticPrompts(task.backbone, len(cols), ac.n_ctx, depth, ac.deep_tokens, m)
    lr = T.per_model(points, n_folds, "anomalyclip.lr", ac.lr)
    model_of = torch.arange(m)
    opt = StackedAdamW([(prompts.ctx, 0, model_of), (prompts.deep, 0, model_of)], lr, torch.zeros(m), betas=(0.5, 0.999))
    v, p = frozen_views(task, task.pool_feats.subset(rows))
    ys = task.y_pool[rows][:, cols]
    y_full = torch.as_tensor(np.column_stack([ys.sum(1) > 0, ys])).float()
    tau = cfg.loss.temperature

    def step():  # one forward pass: training losses, held-out losses and scores
        glob, maps = probabilities(prompts.texts(), v, p, tau)
        with torch.no_grad():
            held = _loss(glob, maps, y_full, w_va, ac.local_weight) if w_va is not None else torch.zeros(m)
            scores = torch.cat([glob[..., 1:], glob[..., :1]], -1)  # categories, then the anchor
        return _loss(glob, maps, y_full, w_tr, ac.local_weight), held, scores

    with one_thread():
        record = train_stack(opt, step, epochs, patience)
    return prompts, record


@dataclass
class FoldAnomalyCLIP:
    """The F prompt sets of the chosen grid point (a :class:`~sdmad_lite.tuning.FoldScorer`)."""

    prompts: ObjectAgnosticPrompts
    task: Task
    tau: float

    def scores(self, feats: Features) -> tuple[np.ndarray, np.ndarray]:
        v, p = frozen_views(self.task, feats)
        with torch.no_grad():
            glob, _ = probabilities(self.prompts.texts(), v, p, self.tau)
        return glob[..., 1:].numpy(), glob[..., 0].numpy()


def fit(task: Task, support: Support, cfg: ExperimentConfig, cols: list[int], checkpoint=None) -> T.Fitted:
    rows = support.all
    ones = torch.ones(1, len(rows))
    tau = cfg.loss.temperature

    def stack(cv: T.CV):
        return _train(task, rows, cols, cfg, cv.points, cv.n_folds, *cv.masks(), cfg.tuning.max_epochs,
                      cfg.tuning.patience)[1]

    def fit_folds(cv: T.CV, final: ExperimentConfig, tuned: T.Tuned) -> FoldAnomalyCLIP:
        prompts, _ = _train(task, rows, cols, final, [{}], cv.n_folds, *cv.masks(1), tuned.epochs, tuned.epochs + 1)
        return FoldAnomalyCLIP(prompts, task, tau)

    def once() -> FittedAnomalyCLIP:
        prompts, _ = _train(task, rows, cols, cfg, [{}], 1, ones, None, cfg.anomalyclip.epochs,
                            cfg.anomalyclip.epochs + 1)
        return FittedAnomalyCLIP(prompts, task, tau)

    ac, width = cfg.anomalyclip, task.backbone.model.token_embedding.weight.shape[1]
    depth = max(1, min(ac.depth, len(task.backbone.model.transformer.resblocks) - 1))
    n_par = ((2 + len(cols)) * ac.n_ctx + depth * ac.deep_tokens) * width
    return T.fit_tuned(cfg, task.y_pool[rows][:, cols], task.pool_feats.subset(rows), once=once, stack=stack,
                       fit_folds=fit_folds, n_parameters=n_par)
