"""Checks of the phantom world itself (chapter 3): no trivial image statistic gives a label away.

If the mean and spread of an image's grey values predicted its category, any method (and any
backbone) could score well without seeing a single sign. :func:`cue_auroc` measures it: the
cross-validated AUROC of a logistic regression on a few global statistics, with a bootstrap interval.
"""
from __future__ import annotations

import numpy as np
import torch

from . import metrics as M
from .methods.probe import fit_logistic


def cue_auroc(x: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0, n_boot: int = 300) -> tuple[float, float, float]:
    """The AUROC of ``y`` (N,) from features ``x`` (N, F) under a logistic regression cross-validated in
    ``folds`` stratified folds (features standardised on each training part), with a percentile bootstrap
    95 % interval over the images: ``(auroc, low, high)``."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y).astype(int)
    rng = np.random.default_rng([seed, 5])
    fold = np.empty(len(y), dtype=int)
    for cls in (0, 1):  # stratified: each class dealt round-robin in a seeded order
        idx = rng.permutation(np.flatnonzero(y == cls))
        fold[idx] = np.arange(len(idx)) % folds
    p = np.zeros(len(y))
    torch.manual_seed(seed)
    for f in range(folds):
        tr, va = fold != f, fold == f
        mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-9
        lin = fit_logistic(torch.as_tensor((x[tr] - mu) / sd, dtype=torch.float32),
                           torch.as_tensor(y[tr], dtype=torch.float32)[:, None], wd=1e-4, steps=100)
        with torch.no_grad():
            p[va] = lin(torch.as_tensor((x[va] - mu) / sd, dtype=torch.float32))[:, 0].numpy()
    ci = M.bootstrap_ci(M.auroc, y, p, n=n_boot, seed=seed)
    return float(ci.estimate), float(ci.low), float(ci.high)
