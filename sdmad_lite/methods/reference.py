"""Reference rows of every comparison: what a table must beat before any method counts as a win.

- ``always-normal`` — every test image predicted normal (the share of normal test images is its
  subset accuracy); constant scores (AUROC 0.5).
- ``label-prior`` — each category predicted independently at its frequency in the support set
  (seeded draws; normal when no category is drawn); constant scores (AUROC 0.5).

Their predictions are labels, not thresholded scores: they bypass the thresholds.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import ExperimentConfig
from ..data.fewshot import Support
from ..features import Features
from ..task import Task
from ..tuning import Fitted


@dataclass
class FittedReference(Fitted):
    prior: np.ndarray  # (C,) probability of each category
    abnormal: float
    draw: bool  # predict by drawing at the prior (label-prior) or predict normal (always-normal)
    seed: int

    def scores(self, feats: Features) -> tuple[np.ndarray, np.ndarray]:
        n = len(feats)
        return np.tile(self.prior, (n, 1)), np.full(n, self.abnormal)

    def labels(self, n: int) -> np.ndarray:
        """Predicted labels (n, C+1) of the integrated protocol (column 0: normal)."""
        cats = np.zeros((n, len(self.prior)), dtype=np.int8)
        if self.draw:
            cats = (np.random.default_rng([self.seed, 31]).random((n, len(self.prior))) < self.prior).astype(np.int8)
        return np.column_stack([(cats.sum(1) == 0).astype(np.int8), cats])


def fit_always_normal(task: Task, support: Support, cfg: ExperimentConfig, cols: list[int],
                      checkpoint=None) -> FittedReference:
    return FittedReference(np.zeros(len(cols)), 0.0, False, cfg.seed)


def fit_label_prior(task: Task, support: Support, cfg: ExperimentConfig, cols: list[int],
                    checkpoint=None) -> FittedReference:
    y = task.y_pool[support.all][:, cols]
    return FittedReference(y.mean(0), float((y.sum(1) > 0).mean()), True, cfg.seed)
