"""Linear probe: logistic regression per category and for the anchor on the frozen image embedding
(class-balanced BCE, L2 penalty, L-BFGS), trained on the support set (``config.ProbeConfig``);
its weight decay tuned by the cross-validation of ``tuning.py`` like every trained method."""
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


def fit_logistic(x: torch.Tensor, y: torch.Tensor, wd: float, steps: int = 300, lr: float = 0.5) -> torch.nn.Linear:
    """One linear layer ``x -> logits of y`` by L-BFGS on class-balanced BCE + ``wd``·‖W‖²."""
    lin = torch.nn.Linear(x.shape[1], y.shape[1])
    opt = torch.optim.LBFGS(lin.parameters(), lr=lr, max_iter=steps, line_search_fn="strong_wolfe")
    pos = y.mean(0).clamp(1e-3, 1 - 1e-3)

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(lin(x), y, pos_weight=(1 - pos) / pos) + wd * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return lin


@dataclass
class FittedProbe(T.Fitted):
    lin: torch.nn.Linear
    scale: float
    tuned: T.Tuned | None = None

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.lin.parameters())

    def scores(self, feats: Features) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            p = torch.sigmoid(self.lin(feats.pooled * self.scale)).numpy()
        return p[:, :-1], p[:, -1]


def _fit(task: Task, rows: np.ndarray, cols: list[int], cfg: ExperimentConfig) -> FittedProbe:
    torch.manual_seed(cfg.seed)
    ys = task.y_pool[rows][:, cols]
    y = torch.as_tensor(np.column_stack([ys, ys.sum(1) > 0])).float()
    pc = cfg.probe
    return FittedProbe(fit_logistic(task.pool_feats.pooled[rows] * pc.scale, y, pc.weight_decay, pc.steps, pc.lr),
                       pc.scale)


def fit(task: Task, support: Support, cfg: ExperimentConfig, cols: list[int], checkpoint=None) -> T.Fitted:
    rows = support.all

    def fold_score(point, tr, va):
        return _fit(task, rows[tr], cols, T.apply_point(cfg, point)).scores(task.pool_feats.subset(rows[va]))

    def fit_folds(cv: T.CV, final: ExperimentConfig, tuned: T.Tuned) -> T.ModelList:
        return T.ModelList([_fit(task, rows[cv.split(f)[0]], cols, final) for f in range(cv.n_folds)])

    return T.fit_tuned(cfg, task.y_pool[rows][:, cols], task.pool_feats.subset(rows),
                       once=lambda: _fit(task, rows, cols, cfg), fold_score=fold_score, fit_folds=fit_folds,
                       n_parameters=(task.pool_feats.pooled.shape[1] + 1) * (len(cols) + 1))
