"""The evaluation of one few-shot draw: thresholds from the support scores, then the protocols.

:func:`evaluate` applies the integrated and per-anomaly protocols (``protocols.py``) to a method's
:class:`~sdmad_lite.train.Predictions`; the open-set protocol needs a method fitted *without* the
held-out category, so :func:`open_set` fits the method a second time, on a support set drawn from
the other categories, and says so in its result (``open-set.refit``).
"""
from __future__ import annotations

import numpy as np

from . import metrics as M
from . import methods, protocols
from .config import ExperimentConfig
from .data.fewshot import Support
from .errors import ConfigError
from .task import Task
from .train import Predictions


def evaluate(task: Task, support: Support, pred: Predictions, cols: list[int] | None = None) -> dict:
    """Thresholds from the few-shot scores (``pred.support_*``), then the integrated and per-anomaly
    protocols on the test set (never used for any choice). A tuned method's thresholds come from its
    fold models' out-of-fold scores and cut the same fold models' test scores (their labels are the
    majority vote, :func:`~sdmad_lite.protocols.vote`)."""
    cols = list(range(len(task.categories))) if cols is None else cols
    ys = task.y_pool[support.all][:, cols]
    yt = task.y_test[:, cols]
    thr = M.choose_thresholds(pred.support_scores, ys, rule="f1")
    athr = M.choose_binary_threshold(pred.support_anchor, (ys.sum(1) > 0).astype(int))
    labels, per_labels = pred.test_labels, None if pred.test_labels is None else pred.test_labels[:, 1:]
    if pred.test_scores_per_model is not None:
        labels, per_labels = protocols.vote(pred.test_scores_per_model, pred.test_anchor_per_model, thr, athr)
    integ = protocols.evaluate_integrated(pred.test_scores, pred.test_anchor, yt, thr, athr, labels)
    per = protocols.evaluate_per_anomaly(pred.test_scores, yt, thr, per_labels)
    return {"integrated": integ, "per-anomaly": per, "thresholds": thr, "anchor_threshold": athr}


def open_set_heldout(task: Task, seed: int, category: str | None = None) -> int:
    """The category held out in the open-set protocol: ``category`` when given (a name of the task's),
    else the one of ``seed`` (cycles through the categories)."""
    if category is None:
        return seed % len(task.categories)
    if category not in task.categories:
        raise ConfigError(f"open_set_category: {category!r} is not a category of {task.dataset}; choose one of "
                          f"{', '.join(task.categories)} (or leave it unset: the seed chooses)")
    return task.categories.index(category)


def open_set_columns(task: Task, cfg: ExperimentConfig) -> tuple[int, list[int]]:
    """The held-out category and the columns an open-set fit trains on (checked before any training)."""
    held = open_set_heldout(task, cfg.seed, cfg.open_set_category)
    return held, [c for c in range(len(task.categories)) if c != held]


def evaluate_open_set(task: Task, support: Support, pred: Predictions, held_out: int, cols: list[int]) -> dict:
    """The open-set protocol: the anchor threshold from the support set (held-out category absent)."""
    ys = task.y_pool[support.all][:, cols]
    athr = M.choose_binary_threshold(pred.support_anchor, (ys.sum(1) > 0).astype(int))
    flagged = None
    if pred.test_anchor_per_model is not None:  # the fold models' majority, each cut at the threshold
        flagged = (pred.test_anchor_per_model >= athr).sum(0) > pred.test_anchor_per_model.shape[0] / 2
    out = protocols.evaluate_open_set(pred.test_anchor, task.y_test, [held_out], athr, flagged)
    out["held_out_category"] = task.categories[held_out]
    return out


def open_set(task: Task, cfg: ExperimentConfig) -> dict:
    """The open-set protocol of ``cfg``: the method fitted a *second* time, on a support set drawn without
    the held-out category (its images are neither shots nor normals), then scored on every test image."""
    held, cols = open_set_columns(task, cfg)
    support = task.draw_support(cfg.k_shot, cfg.seed, cfg.train.val_fraction, categories=cols)
    pred, _ = methods.predict(task, support, cfg, cols, None)
    return evaluate_open_set(task, support, pred, held, cols) | {"refit": True}


def flatten(prefix: str, d: dict, out: dict) -> None:
    """The scalar entries of a nested result ``d`` into ``out`` as ``prefix + dotted key``."""
    for k, v in d.items():
        if isinstance(v, (np.ndarray, list)) or k == "y_pred":
            continue
        if isinstance(v, dict):
            flatten(f"{prefix}{k}.", v, out)
        elif isinstance(v, (int, float, np.floating, np.integer, str, bool)) or v is None:
            out[f"{prefix}{k}"] = v.item() if hasattr(v, "item") else v
