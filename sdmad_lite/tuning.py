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
4. The F models of that point are trained for that number of epochs, model f on every support
   image outside fold f (:class:`FoldEnsemble`). Their out-of-fold scores fix the thresholds, and the
   same models predict the test images (each cut at those thresholds, majority vote; scores
   averaged): a threshold only ever cuts scores of the models whose scores fitted it, and the test
   images enter no choice.

What each run chose is recorded with its row (``tuning.*``). Every trained method goes through
:func:`fit_tuned`, the one template of these steps, and returns a :class:`Fitted`.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, TypeVar

import numpy as np
import torch

from .config import ExperimentConfig, deep_update
from .features import Features
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


def per_model(points: list[dict], n_folds: int, key: str, default: float) -> torch.Tensor:
    """One value of setting ``key`` per model of a stack (point g repeated for its F folds; ``default``
    where the point does not set it): each model's learning rate, weight decay or loss weight."""
    return torch.tensor([float(p.get(key, default)) for p in points for _ in range(n_folds)])


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


# ----------------------------------------------------------------------------- what a fitted method is
class Fitted:
    """What every fitted method exposes — the contract that :func:`sdmad_lite.methods.predict` and
    :func:`sdmad_lite.run.run` read. Each method's ``Fitted…`` class derives from it and overrides what
    applies to it; the defaults say "not applicable"."""

    #: (C, K) the signs sign selection kept, or None (a method without signs)
    kept: np.ndarray | None = None
    #: what cross-validation chose (:class:`Tuned`), or None (not tuned)
    tuned: Tuned | None = None
    #: trainable parameters
    n_parameters: int = 0
    #: per-epoch records of the final fit (``train.train``), or None
    history: list[dict] | None = None
    #: the epoch whose state the final fit kept, or None
    best_epoch: int | None = None

    def scores(self, feats: Features) -> tuple[np.ndarray, np.ndarray]:
        """Category (N, C) and anchor (N,) probabilities of the images of ``feats``."""
        raise NotImplementedError

    def labels(self, n: int) -> np.ndarray | None:
        """Predicted labels (n, C+1) that bypass the thresholds (the reference rows), or None."""
        return None


FittedT = TypeVar("FittedT", bound=Fitted)


@dataclass
class CV:
    """The cross-validation of one support set: the fold of each support image, the grid, and the
    weights of a *stack* of G × F models (model ``g·F + f`` is grid point g trained without fold f)."""

    folds: np.ndarray  # (N,) fold of every support image
    n_folds: int
    points: list[dict]
    y: np.ndarray  # (N, C) the support labels of the columns scored

    @classmethod
    def of(cls, cfg: ExperimentConfig, y: np.ndarray) -> "CV":
        """Folds stratified by category (:func:`assign_folds`) over the grid of ``cfg.tuning``."""
        return cls(assign_folds(y, cfg.tuning.folds, cfg.seed), cfg.tuning.folds, grid_points(cfg.tuning.grid), y)

    def masks(self, n_points: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Training and held-out image weights (M, N) of the stack of ``n_points`` (default: every
        grid point) × F models: 1 where model m trains on (holds out) image n."""
        in_val = torch.as_tensor(self.folds)[None, :] == self.fold_of_model(n_points)[:, None]
        return (~in_val).float(), in_val.float()

    def fold_of_model(self, n_points: int | None = None) -> torch.Tensor:
        """The fold each model of a stack of ``n_points`` × F models holds out (M,)."""
        return torch.arange((len(self.points) if n_points is None else n_points) * self.n_folds) % self.n_folds

    def split(self, f: int) -> tuple[np.ndarray, np.ndarray]:
        """Support indices trained on and held out by fold ``f``."""
        return np.flatnonzero(self.folds != f), np.flatnonzero(self.folds == f)


class FoldScorer(Protocol):
    """The F models of one grid point, model f trained without fold f, scored together."""

    def scores(self, feats: Features) -> tuple[np.ndarray, np.ndarray]:
        """Category (F, N, C) and anchor (F, N) probabilities of ``feats`` under each of the F models."""


class ModelList:
    """A :class:`FoldScorer` of F separately fitted models (each with ``scores(feats) -> (cat, anchor)``)."""

    def __init__(self, models: list):
        self.models = list(models)

    def scores(self, feats: Features) -> tuple[np.ndarray, np.ndarray]:
        out = [m.scores(feats) for m in self.models]
        return np.stack([c for c, _ in out]), np.stack([a for _, a in out])


@dataclass
class FoldEnsemble(Fitted):
    """A tuned method as it predicts: the F models of the chosen grid point and number of epochs, model f
    trained on every support image outside fold f.

    Their out-of-fold scores (each support image scored by the model that did not see it) fix the
    thresholds; the *same* models score the test images, each is cut at those thresholds and the labels
    are their majority vote (:func:`sdmad_lite.protocols.vote`); scores (AUROC) are their mean. So every
    threshold cuts scores of the models whose scores fitted it — no model refitted on the whole support
    set, whose in-sample scores would be more confident than the out-of-fold ones."""

    folds: FoldScorer
    tuned: Tuned
    kept: np.ndarray | None = None
    n_parameters: int = 0

    @property
    def best_epoch(self) -> int | None:
        return self.tuned.epochs

    def scores(self, feats: Features) -> tuple[np.ndarray, np.ndarray]:
        cat, anchor = self.folds.scores(feats)
        return cat.mean(0), anchor.mean(0)

    def scores_per_model(self, feats: Features) -> tuple[np.ndarray, np.ndarray]:
        """Category (F, N, C) and anchor (F, N) probabilities under each fold model."""
        return self.folds.scores(feats)


def fit_tuned(cfg: ExperimentConfig, y: np.ndarray, support_feats: Features, *, once: Callable[[], FittedT],
              fit_folds: Callable[[CV, ExperimentConfig, Tuned], FoldScorer],
              stack: Callable[[CV], StackRecord] | None = None,
              fold_score: Callable[[dict, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
              kept: Callable[[FoldScorer], np.ndarray | None] | None = None,
              n_parameters: int = 0) -> FittedT | FoldEnsemble:
    """The one template of a trained method's fit on a support set (labels ``y`` (N, C), features
    ``support_feats`` in the same order).

    ``tuning.folds`` < 2: ``once()`` fits as configured. Otherwise the grid is cross-validated —
    ``stack(cv)`` trains every point × fold at once and returns its :class:`~sdmad_lite.train.StackRecord`
    (a method that trains by epochs; :func:`choose_from_stack`), or ``fold_score(point, train, held_out)``
    fits one model per point and fold (:func:`choose_from_folds`) — and the best point (and number of
    epochs) is chosen. ``fit_folds(cv, final, tuned)`` then fits the F models of that point (``final``:
    ``cfg`` with it) for ``tuned.epochs``; their out-of-fold scores become ``tuned.oof_*`` and they are the
    :class:`FoldEnsemble` returned (``kept(folds)``: the signs it keeps, ``n_parameters`` per model).
    """
    if cfg.tuning.folds < 2:
        return once()
    if (stack is None) == (fold_score is None):
        raise ValueError("fit_tuned: give exactly one of stack= (a method trained by epochs) or fold_score=")
    cv = CV.of(cfg, y)
    if stack is not None:
        tuned = choose_from_stack(stack(cv), cv.points, cv.n_folds, cv.folds, y, cfg.tuning.max_epochs)
    else:
        tuned = choose_from_folds(fold_score, cv.points, cv.folds, y)
    folds = fit_folds(cv, apply_point(cfg, tuned.point), tuned)
    cat, anchor = folds.scores(support_feats)  # (F, N, C): every support image under every fold model
    own = np.asarray(cv.folds), np.arange(len(y))
    tuned.oof_cat, tuned.oof_anchor = cat[own], anchor[own]  # each image from the model that held it out
    return FoldEnsemble(folds, tuned, kept(folds) if kept else None, n_parameters)
