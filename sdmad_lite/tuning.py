"""The fair protocol: every trained method tuned by the same cross-validation inside the support set.

For one few-shot draw (a support set of N images):

1. The support images are split into F folds, stratified by category (:func:`assign_folds`).
2. Every point of the method's grid (``tuning.grid`` of its registry entry, the same number of
   points for every trained method) is trained on F−1 folds and scored on the held-out one, for
   every fold — a method that trains by epochs records its held-out loss and scores after every
   epoch, up to an epoch budget; its number of epochs is the one that minimises the held-out loss
   averaged over the folds (:func:`choose_from_stack`).
3. The point with the best out-of-fold criterion (:func:`criterion`: the mean AUROC of the
   out-of-fold scores over the categories and the anchor) is chosen.
4. The method is refitted on all N support images with that point and number of epochs; its
   thresholds come from the *out-of-fold* scores of that point, never from scores of images the
   model was fitted on, and the test images enter no choice.

What each run chose is recorded with its row (``tuning.*``).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from .config import ExperimentConfig, deep_update
from .metrics import auroc
from .train import StackRecord


def grid_points(grid: dict[str, list]) -> list[dict[str, Any]]:
    """The cartesian product of ``grid`` (dotted config keys -> values), in key order."""
    if not grid:
        return [{}]
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def apply_point(cfg: ExperimentConfig, point: dict[str, Any]) -> ExperimentConfig:
    """``cfg`` with the dotted keys of ``point`` set (validated like any config)."""
    upd: dict = {}
    for key, value in point.items():
        d = upd
        parts = key.split(".")
        for p in parts[:-1]:
            d = d.setdefault(p, {})
        d[parts[-1]] = value
    return ExperimentConfig.from_dict(deep_update(cfg.to_dict(), upd), where=f"tuning point {point}")


def assign_folds(y: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold index (N,) of every support image, stratified: images are dealt round-robin in a seeded
    order grouped by their rarest category (normal images last), so that every category's shots
    spread over the folds."""
    y = np.asarray(y).astype(bool)
    n = len(y)
    if n_folds < 2 or n_folds > n:
        raise ValueError(f"tuning.folds must be in 2..{n} (the support images), got {n_folds}")
    freq = y.sum(0)
    rarest = np.array([int(np.argmin(np.where(r, freq, np.inf))) if r.any() else y.shape[1] for r in y])
    order = np.random.default_rng([seed, 11]).permutation(n)
    order = order[np.argsort(rarest[order], kind="stable")]
    folds = np.empty(n, dtype=int)
    folds[order] = np.arange(n) % n_folds
    return folds


def criterion(y: np.ndarray, cat: np.ndarray, anchor: np.ndarray) -> float:
    """Mean AUROC of out-of-fold scores over the categories and the anchor (undefined ones skipped)."""
    vals = [auroc(y[:, c], cat[:, c]) for c in range(y.shape[1])]
    vals.append(auroc((y.sum(1) > 0).astype(int), anchor))
    vals = [v for v in vals if v == v]
    return float(np.mean(vals)) if vals else float("nan")


@dataclass
class Tuned:
    """The outcome of cross-validation on one support set."""

    point: dict[str, Any]
    epochs: int | None  # None: the method does not train by epochs
    oof_cat: np.ndarray  # (N, C) out-of-fold category probabilities of the chosen point
    oof_anchor: np.ndarray  # (N,)
    records: list[dict] = field(default_factory=list)  # one per grid point: point, epochs, criterion
    budget: int | None = None  # the epoch budget
    stopped_at: int | None = None  # the epoch the stack stopped (all models past their patience)
    curves: np.ndarray | None = None  # (E+1, G) held-out loss after 0..E epochs, averaged over the folds

    def as_row(self) -> dict[str, Any]:
        out = {f"tuning.{k}": v for k, v in self.point.items()}
        out["tuning.criterion"] = max((r["criterion"] for r in self.records), default=float("nan"))
        if self.epochs is not None:
            out["tuning.epochs"] = self.epochs
            out["tuning.budget"] = self.budget
            out["tuning.at_budget"] = bool(self.epochs >= (self.budget or 0))
        out["tuning.points"] = len(self.records)
        return out


def choose_from_stack(record: StackRecord, points: list[dict], n_folds: int, folds: np.ndarray, y: np.ndarray,
                      budget: int, at_end: bool = False) -> Tuned:
    """Pick the point and the number of epochs from a stack of ``len(points)`` × ``n_folds`` models
    (model ``g·F + f`` is point g trained without fold f); ``at_end``: the epochs are the ones run."""
    g_n = len(points)
    curves = record.held_out.reshape(record.epochs + 1, g_n, n_folds).mean(-1)  # (E+1, G): after 0..E updates
    records, oofs = [], []
    for g, point in enumerate(points):
        e = record.epochs if at_end else int(torch.argmin(curves[:, g]))  # epochs with the best mean held-out loss
        scores = record.scores[e, g * n_folds:(g + 1) * n_folds]  # (F, N, C+1)
        oof = scores[torch.as_tensor(folds), torch.arange(len(folds))].numpy()  # each row from its fold's model
        oofs.append(oof)
        records.append({"point": point, "epochs": e, "criterion": criterion(y, oof[:, :-1], oof[:, -1])})
    best = _best(records)
    return Tuned(points[best], records[best]["epochs"], oofs[best][:, :-1], oofs[best][:, -1], records, budget,
                 record.epochs, curves.numpy())


def choose_from_folds(fit_score: Callable[[dict, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
                      points: list[dict], folds: np.ndarray, y: np.ndarray) -> Tuned:
    """Cross-validation of a method that does not train by epochs: ``fit_score(point, train_rows,
    val_rows)`` fits on ``train_rows`` (indices into the support set) and scores ``val_rows``."""
    records, oofs = [], []
    for point in points:
        cat = np.zeros(y.shape, dtype=float)
        anc = np.zeros(len(y), dtype=float)
        for f in np.unique(folds):
            tr, va = np.flatnonzero(folds != f), np.flatnonzero(folds == f)
            c, a = fit_score(point, tr, va)
            cat[va], anc[va] = c, a
        oofs.append((cat, anc))
        records.append({"point": point, "epochs": None, "criterion": criterion(y, cat, anc)})
    best = _best(records)
    return Tuned(points[best], None, oofs[best][0], oofs[best][1], records)


def _best(records: list[dict]) -> int:
    crit = np.array([r["criterion"] for r in records], dtype=float)
    crit = np.where(np.isnan(crit), -np.inf, crit)
    return int(np.argmax(crit))  # ties: the first point of the grid
