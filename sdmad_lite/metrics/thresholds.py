"""Thresholds fitted on few-shot (validation or out-of-fold) scores only; the test set never enters."""
from __future__ import annotations

from typing import Any

import numpy as np

from ._checks import MetricInputError, _as_labels, _as_scores, _is_abnormal, _same_rows, _same_shape
from .labels import _f1

THRESHOLD_RULES = ("f1", "youden", "midpoint")

def _choose_threshold_1d(s: np.ndarray, y: np.ndarray, rule: str, default: float | None) -> tuple[float, bool]:
    """Threshold for one binary task; returns ``(threshold, fell_back)``.

    Candidates are one cut per distinct validation score: the lowest score (everything
    positive) and the midpoints between consecutive distinct scores, so a chosen threshold
    never sits exactly on a validation image. Ties in the criterion go to the lowest
    threshold (more sensitive: a missed anomaly is the costlier error).
    """
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:  # one class: no criterion can be optimised
        if default is not None:
            return float(default), True
        return float(0.5 * (s.min() + s.max())), True
    if rule == "midpoint":
        return float(0.5 * (s[y == 1].mean() + s[y == 0].mean())), False
    u, inv = np.unique(s, return_inverse=True)
    pos_per = np.bincount(inv, weights=y, minlength=u.size)
    neg_per = np.bincount(inv, weights=1 - y, minlength=u.size)
    tp = np.cumsum(pos_per[::-1])[::-1]  # positives with score >= u[j]
    fp = np.cumsum(neg_per[::-1])[::-1]
    cuts = np.r_[u[0], 0.5 * (u[1:] + u[:-1])]
    if rule == "f1":
        crit = _f1(tp, fp, n_pos - tp)
    else:  # youden
        crit = tp / n_pos - fp / n_neg
    return float(cuts[int(np.argmax(crit))]), False


def _check_rule(rule: str) -> None:
    if rule not in THRESHOLD_RULES:
        raise MetricInputError(f"unknown threshold rule {rule!r}; choose one of {', '.join(THRESHOLD_RULES)}")


def choose_thresholds(
    scores_val: Any,
    y_val: Any,
    rule: str = "f1",
    default: float | None = None,
    return_fallback: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Per-category thresholds fitted on validation (few-shot) data only.

    Rules (prediction is ``score >= threshold``):

    * ``"f1"`` (default) — maximise the category's F1 on the validation images.
    * ``"youden"`` — maximise sensitivity + specificity − 1.
    * ``"midpoint"`` — halfway between the mean score of positives and of negatives.

    Fallback: a category with a single class in ``y_val`` (common with k-shot support sets)
    cannot be fitted; it gets ``default`` if given, else the midpoint of its validation score
    range, ``(min + max) / 2``. ``return_fallback=True`` also returns a ``(C,)`` bool mask of
    the categories that fell back.

    The function only sees validation arrays; test data never enters threshold choice.
    """
    _check_rule(rule)
    s = _as_scores(scores_val, "scores_val")
    y = _as_labels(y_val, "y_val")
    _same_shape(s, y, "scores_val", "y_val")
    out = [_choose_threshold_1d(s[:, c], y[:, c], rule, default) for c in range(s.shape[1])]
    thresholds = np.array([t for t, _ in out])
    if return_fallback:
        return thresholds, np.array([f for _, f in out], dtype=bool)
    return thresholds


def choose_binary_threshold(
    anchor_val: Any,
    y_abnormal_val: Any,
    rule: str = "youden",
    default: float | None = None,
) -> float:
    """Anchor threshold (normal vs abnormal) fitted on validation data only.

    ``y_abnormal_val`` is ``(N,)`` 0/1 or the ``(N, C)`` label matrix (abnormal = any label).
    The default rule is Youden's J rather than F1 because few-shot validation sets are not at
    the test prevalence, and F1 of the abnormal class depends on prevalence while J does not.
    Fallback for a single class as in :func:`choose_thresholds`.
    """
    _check_rule(rule)
    y = _is_abnormal(y_abnormal_val, "y_abnormal_val")
    a = _as_scores(anchor_val, "anchor_val", ndim=1)
    _same_rows(y, a, "y_abnormal_val", "anchor_val")
    return _choose_threshold_1d(a, y, rule, default)[0]


