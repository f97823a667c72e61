"""Learned prompt context (CoOp): M learnable context vectors before the category name, and before
"normal" / "abnormal" for the anchor, trained on the support set with the frozen image embedding
(``config.CoopConfig``). Tuned like every trained method: the grid × folds train at once, every
model's contexts stacked in one tensor and its prompts encoded in one batch."""
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


class LearnedContext(torch.nn.Module):
    """The context vectors of M models (M, 3, n_ctx, width): category, normal and abnormal prompts."""

    def __init__(self, backbone, names: list[str], obj: str, n_ctx: int, n_models: int = 1):
        super().__init__()
        self.backbone = [backbone]  # not a submodule: the frozen backbone is not trained or saved
        prefix = " ".join(["X"] * n_ctx)
        self.tok_c = backbone.tokenizer([f"{prefix} {obj} with {n}." for n in names])
        self.tok_n = backbone.tokenizer([f"{prefix} normal {obj}."])
        self.tok_a = backbone.tokenizer([f"{prefix} abnormal {obj}."])
        width = backbone.model.token_embedding.weight.shape[1]
        self.ctx = torch.nn.Parameter(torch.randn(n_models, 3, n_ctx, width) * 0.02)

    def texts(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Category (M, C, D), normal (M, D) and abnormal (M, D) text embeddings."""
        bb = self.backbone[0]
        return (F.normalize(bb.text_forward_with_contexts(self.tok_c, self.ctx[:, 0]), dim=-1),
                F.normalize(bb.text_forward_with_contexts(self.tok_n, self.ctx[:, 1]), dim=-1)[:, 0],
                F.normalize(bb.text_forward_with_contexts(self.tok_a, self.ctx[:, 2]), dim=-1)[:, 0])

    def probabilities(self, v: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Category (M, N, C) and anchor (M, N) probabilities of image embeddings ``v`` (N, D)."""
        tc, tn, ta = self.texts()
        pc = torch.sigmoid((torch.einsum("nd,mcd->mnc", v, tc) - (v @ tn.T).T[..., None]) / tau)
        pa = torch.sigmoid(((v @ ta.T) - (v @ tn.T)).T / tau)
        return pc, pa


def _loss(pc, pa, y, yab, w):
    bce_c = F.binary_cross_entropy(pc.clamp(1e-6, 1 - 1e-6), y.expand_as(pc), reduction="none").mean(-1)
    bce_a = F.binary_cross_entropy(pa.clamp(1e-6, 1 - 1e-6), yab.expand_as(pa), reduction="none")
    return ((bce_c + bce_a) * w).sum(-1) / w.sum(-1).clamp(min=1)


@dataclass
class FittedCoop(T.Fitted):
    prompts: LearnedContext
    tau: float
    tuned: T.Tuned | None = None

    @property
    def n_parameters(self) -> int:
        return self.prompts.ctx.numel()

    def scores(self, feats: Features) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            pc, pa = self.prompts.probabilities(feats.pooled, self.tau)
        return pc[0].numpy(), pa[0].numpy()


def _train(task: Task, rows: np.ndarray, cols: list[int], cfg: ExperimentConfig, points: list[dict], n_folds: int,
           w_tr: torch.Tensor, w_va: torch.Tensor | None, epochs: int, patience: int):
    torch.manual_seed(cfg.seed)
    m = len(points) * n_folds
    names = [task.bank.category_name(task.categories[c]) for c in cols]
    prompts = LearnedContext(task.backbone, names, task.bank.obj, cfg.coop.n_ctx, m)
    lr = T.per_model(points, n_folds, "coop.lr", cfg.coop.lr)
    wd = T.per_model(points, n_folds, "coop.weight_decay", cfg.coop.weight_decay)
    opt = StackedAdamW([(prompts.ctx, 0, torch.arange(m))], lr, wd)
    v = task.pool_feats.pooled[rows]
    ys = task.y_pool[rows][:, cols]
    y, yab = torch.as_tensor(ys).float(), torch.as_tensor(ys.sum(1) > 0).float()
    tau = cfg.loss.temperature

    def step():  # one forward pass: training losses, held-out losses and scores
        pc, pa = prompts.probabilities(v, tau)
        with torch.no_grad():
            held = _loss(pc, pa, y, yab, w_va) if w_va is not None else torch.zeros(m)
            scores = torch.cat([pc, pa[..., None]], -1)
        return _loss(pc, pa, y, yab, w_tr), held, scores

    with one_thread():
        record = train_stack(opt, step, epochs, patience)
    return prompts, record


@dataclass
class FoldCoop:
    """The F learned contexts of the chosen grid point (a :class:`~sdmad_lite.tuning.FoldScorer`)."""

    prompts: LearnedContext
    tau: float

    def scores(self, feats: Features) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            pc, pa = self.prompts.probabilities(feats.pooled, self.tau)
        return pc.numpy(), pa.numpy()


def fit(task: Task, support: Support, cfg: ExperimentConfig, cols: list[int], checkpoint=None) -> T.Fitted:
    rows = support.all
    ones = torch.ones(1, len(rows))

    def stack(cv: T.CV):
        return _train(task, rows, cols, cfg, cv.points, cv.n_folds, *cv.masks(), cfg.tuning.max_epochs,
                      cfg.tuning.patience)[1]

    def fit_folds(cv: T.CV, final: ExperimentConfig, tuned: T.Tuned) -> FoldCoop:
        prompts, _ = _train(task, rows, cols, final, [{}], cv.n_folds, *cv.masks(1), tuned.epochs, tuned.epochs + 1)
        return FoldCoop(prompts, cfg.loss.temperature)

    def once() -> FittedCoop:
        prompts, _ = _train(task, rows, cols, cfg, [{}], 1, ones, None, cfg.coop.epochs, cfg.coop.epochs + 1)
        return FittedCoop(prompts, cfg.loss.temperature)

    n_par = 3 * cfg.coop.n_ctx * task.backbone.model.token_embedding.weight.shape[1]
    return T.fit_tuned(cfg, task.y_pool[rows][:, cols], task.pool_feats.subset(rows), once=once, stack=stack,
                       fit_folds=fit_folds, n_parameters=n_par)
