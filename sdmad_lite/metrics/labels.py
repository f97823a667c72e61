"""Label metrics of multi-label predictions: subset accuracy, the two "Hamming" metrics, F1.

See the package docstring for the conventions (0/0 cases, zero_division).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ._checks import _as_labels, _same_shape

def _labels_pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    yt = _as_labels(y_true, "y_true")
    yp = _as_labels(y_pred, "y_pred")
    _same_shape(yt, yp, "y_true", "y_pred")
    return yt, yp


def subset_accuracy(y_true: Any, y_pred: Any) -> float:
    """Exact-match ratio: the fraction of images whose whole label row is right."""
    yt, yp = _labels_pair(y_true, y_pred)
    return float(np.all(yt == yp, axis=1).mean())


def hamming_score(y_true: Any, y_pred: Any) -> float:
    """Example-based Jaccard accuracy: mean over images of ``|Y ∩ Ŷ| / |Y ∪ Ŷ|``.

    An image with no true and no predicted label counts as 1 (0/0 := 1). Not to be confused
    with :func:`hamming_accuracy` (see the module docstring).
    """
    yt, yp = _labels_pair(y_true, y_pred)
    inter = np.sum(yt & yp, axis=1)
    union = np.sum(yt | yp, axis=1)
    per_image = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    return float(per_image.mean())


def hamming_accuracy(y_true: Any, y_pred: Any) -> float:
    """``1 − Hamming loss``: the fraction of (image, category) cells predicted correctly."""
    yt, yp = _labels_pair(y_true, y_pred)
    return float((yt == yp).mean())


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """``2TP / (2TP + FP + FN)``, 0 where the denominator is 0 (sklearn ``zero_division=0``)."""
    tp, fp, fn = (np.asarray(x, dtype=np.float64) for x in (tp, fp, fn))
    den = 2 * tp + fp + fn
    return np.where(den > 0, 2 * tp / np.where(den > 0, den, 1.0), 0.0)


def _confusion(yt: np.ndarray, yp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tp = np.sum((yt == 1) & (yp == 1), axis=0)
    fp = np.sum((yt == 0) & (yp == 1), axis=0)
    fn = np.sum((yt == 1) & (yp == 0), axis=0)
    return tp, fp, fn


def per_category_f1(y_true: Any, y_pred: Any) -> np.ndarray:
    """F1 of each category, shape ``(C,)``; 0 for a category with no true and no predicted positive."""
    yt, yp = _labels_pair(y_true, y_pred)
    return _f1(*_confusion(yt, yp))


def micro_f1(y_true: Any, y_pred: Any) -> float:
    """F1 of the pooled (image, category) cells; 0 if there is no true and no predicted positive."""
    yt, yp = _labels_pair(y_true, y_pred)
    tp, fp, fn = (x.sum() for x in _confusion(yt, yp))
    return float(_f1(tp, fp, fn))


def macro_f1(y_true: Any, y_pred: Any) -> float:
    """Unweighted mean of :func:`per_category_f1` (empty categories count as 0, like sklearn)."""
    return float(per_category_f1(y_true, y_pred).mean())


