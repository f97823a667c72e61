"""Score metrics (threshold-free): AUROC and average precision, per category and macro."""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ._checks import _as_labels, _as_scores, _is_abnormal, _same_rows, _same_shape

class MacroScore(NamedTuple):
    """A macro mean over categories that knows how many categories it averaged.

    ``value`` is the ``nanmean`` of ``per_category`` (NaN if no category is defined);
    ``float(m)`` gives ``value``, so a ``MacroScore`` can be used where a number is expected.
    """

    value: float
    n_defined: int
    n_categories: int
    per_category: np.ndarray

    def __float__(self) -> float:
        return float(self.value)


def _nanmean_count(values: np.ndarray) -> tuple[float, int]:
    """``nanmean`` without the all-NaN RuntimeWarning, plus the number of defined values."""
    ok = ~np.isnan(values)
    n = int(ok.sum())
    return (float(values[ok].mean()) if n else float("nan")), n


def _macro(per_category: np.ndarray) -> MacroScore:
    value, n = _nanmean_count(per_category)
    return MacroScore(value, n, int(per_category.size), per_category)



def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x``; tied values share the mean of their ranks."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])  # first index of each tie group
    ends = np.r_[starts[1:], xs.size]  # one past the last index
    group_rank = (starts + 1 + ends) / 2.0  # mean of ranks starts+1 .. ends
    group_of = np.repeat(np.arange(starts.size), ends - starts)
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = group_rank[group_of]
    return ranks


def _auroc(y: np.ndarray, s: np.ndarray) -> float:
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = _average_ranks(s)
    u = r[y == 1].sum() - n_pos * (n_pos + 1) / 2.0  # Mann–Whitney U of the positives
    return float(u / (n_pos * n_neg))


def _ap(y: np.ndarray, s: np.ndarray) -> float:
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last_of_group = np.r_[s_sorted[1:] != s_sorted[:-1], True]  # one threshold per distinct score
    tp = np.cumsum(y_sorted)[last_of_group].astype(np.float64)
    k = (np.flatnonzero(last_of_group) + 1).astype(np.float64)  # images at or above the threshold
    precision = tp / k
    recall = tp / n_pos
    d_recall = np.diff(np.r_[0.0, recall])
    return float(np.sum(d_recall * precision))


def _binary_pair(y: Any, s: Any, name_y: str, name_s: str) -> tuple[np.ndarray, np.ndarray]:
    yv = _as_labels(y, name_y, ndim=1)
    sv = _as_scores(s, name_s, ndim=1)
    _same_shape(yv, sv, name_y, name_s)
    return yv, sv


def auroc(y: Any, s: Any) -> float:
    """AUROC of one binary task (``y`` 0/1 of shape ``(N,)``, ``s`` scores ``(N,)``).

    Computed as the Mann–Whitney statistic from average ranks, so a tied positive/negative
    pair counts 1/2. NaN when ``y`` has a single class.
    """
    return _auroc(*_binary_pair(y, s, "y", "scores"))


def average_precision(y: Any, s: Any) -> float:
    """Average precision as scikit-learn defines it: ``Σ_n (R_n − R_{n−1}) P_n``.

    One operating point per distinct score (ties are not interpolated). NaN when ``y`` has a
    single class (with no negative, AP would be a trivial 1; we report it as undefined, like
    AUROC, so that macro means average the same categories).
    """
    return _ap(*_binary_pair(y, s, "y", "scores"))


def _scores_pair(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    yt = _as_labels(y_true, "y_true")
    sc = _as_scores(scores, "scores")
    _same_shape(yt, sc, "y_true", "scores")
    return yt, sc


def per_category_auroc(y_true: Any, scores: Any) -> np.ndarray:
    """AUROC of each column, shape ``(C,)``; NaN for a column with a single class."""
    yt, sc = _scores_pair(y_true, scores)
    return np.array([_auroc(yt[:, c], sc[:, c]) for c in range(yt.shape[1])])


def per_category_ap(y_true: Any, scores: Any) -> np.ndarray:
    """Average precision of each column, shape ``(C,)``; NaN for a column with a single class."""
    yt, sc = _scores_pair(y_true, scores)
    return np.array([_ap(yt[:, c], sc[:, c]) for c in range(yt.shape[1])])


def macro_auroc(y_true: Any, scores: Any) -> MacroScore:
    """NaN-ignoring mean of :func:`per_category_auroc`, with the count of defined categories."""
    return _macro(per_category_auroc(y_true, scores))


def macro_ap(y_true: Any, scores: Any) -> MacroScore:
    """NaN-ignoring mean of :func:`per_category_ap`, with the count of defined categories."""
    return _macro(per_category_ap(y_true, scores))


def binary_auroc(y_abnormal: Any, anchor: Any) -> float:
    """AUROC of the anchor score for normal (0) vs abnormal (1).

    ``y_abnormal`` is either ``(N,)`` 0/1 or the ``(N, C)`` label matrix, in which case an
    image is abnormal when it has any label. NaN when only one class is present.
    """
    y = _is_abnormal(y_abnormal, "y_abnormal")
    a = _as_scores(anchor, "anchor", ndim=1)
    _same_rows(y, a, "y_abnormal", "anchor")
    return _auroc(y, a)


