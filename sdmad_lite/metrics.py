"""Multi-label metrics and the evaluation protocols of SD-MAD.

Everything here is plain numpy; scikit-learn is only used by the tests, to check us.

Arrays
------
``y_true``, ``y_pred``
    ``(N, C)`` arrays of 0/1 (or bool): N images, C anomaly categories. An image whose row
    is all zero is *normal*.
``scores``
    ``(N, C)`` real-valued category scores (higher = more likely that category).
``anchor``
    ``(N,)`` anchor scores (higher = more likely abnormal), the paper's binary decision.

Two metrics that are both called "Hamming score"
------------------------------------------------
The multi-label literature uses the name *Hamming score* for two different quantities, and
the SD-MAD paper does not say which one it reports. This module names them apart:

* :func:`hamming_score` — the **example-based Jaccard accuracy** of Godbole & Sarawagi
  (2004): the mean over images of ``|Y ∩ Ŷ| / |Y ∪ Ŷ|``. An image with no true and no
  predicted label scores 1 (0/0 := 1: "predicted nothing, and there was nothing"). This is
  ``sklearn.metrics.jaccard_score(average="samples", zero_division=1)``.
* :func:`hamming_accuracy` — ``1 − Hamming loss``: the fraction of the N·C (image,
  category) cells predicted correctly. This is ``1 − sklearn.metrics.hamming_loss``.

Both are reported by the integrated protocol; the book discusses which one matches the
paper's numbers. :func:`subset_accuracy` is the exact-match ratio (every label right).

Conventions
-----------
* F1 follows scikit-learn with ``zero_division=0``: a category with no true and no predicted
  positive has F1 = 0 (not 1, and not skipped). Macro F1 is the plain mean over categories.
* AUROC and AP need both classes: a category with a single class in the evaluation set gets
  ``NaN``, never an exception. Macro means ignore NaN (``nanmean``) and every macro result
  says how many categories were defined (:class:`MacroScore`).
* A prediction is positive when ``score >= threshold``.
* Thresholds are chosen on few-shot / validation data by :func:`choose_thresholds` and
  :func:`choose_binary_threshold`; the protocol functions only *receive* thresholds and
  have no way to fit them on the test set.
* Bad inputs raise :class:`MetricInputError` (a ``ValueError``) with a message that says
  what is wrong and what to check.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "MetricInputError",
    "MacroScore",
    "BootstrapCI",
    "MeanStd",
    # label-based
    "subset_accuracy",
    "hamming_score",
    "hamming_accuracy",
    "per_category_f1",
    "micro_f1",
    "macro_f1",
    # score-based
    "auroc",
    "average_precision",
    "per_category_auroc",
    "per_category_ap",
    "macro_auroc",
    "macro_ap",
    "binary_auroc",
    # tables
    "bootstrap_ci",
    "mean_std",
    # thresholds
    "choose_thresholds",
    "choose_binary_threshold",
    # protocols
    "predict_integrated",
    "evaluate_integrated",
    "evaluate_per_anomaly",
    "evaluate_open_set",
]

THRESHOLD_RULES = ("f1", "youden", "midpoint")


# ============================================================================ validation
class MetricInputError(ValueError):
    """Inputs to a metric are malformed (shape, non-binary labels, NaN/inf scores)."""


def _as_labels(y: Any, name: str, ndim: int = 2) -> np.ndarray:
    """Return ``y`` as an int8 array of 0/1 with ``ndim`` dimensions, or raise."""
    a = np.asarray(y)
    if a.ndim != ndim:
        hint = " (one row per image, one column per category)" if ndim == 2 else ""
        raise MetricInputError(f"{name} must be a {ndim}-D array{hint}; got shape {a.shape}")
    if a.shape[0] == 0 or (a.ndim == 2 and a.shape[1] == 0):
        raise MetricInputError(f"{name} is empty (shape {a.shape}); there is nothing to evaluate")
    if a.dtype == bool:
        return a.astype(np.int8)
    if not np.issubdtype(a.dtype, np.number):
        raise MetricInputError(f"{name} must be numeric 0/1 labels; got dtype {a.dtype}")
    bad = ~((a == 0) | (a == 1))
    if bad.any():
        values = np.unique(a[bad])[:5]
        raise MetricInputError(
            f"{name} must contain only 0 and 1 (binary labels); found {int(bad.sum())} other value(s), "
            f"e.g. {values.tolist()} — threshold scores into predictions before calling a label metric"
        )
    return a.astype(np.int8)


def _as_scores(s: Any, name: str, ndim: int = 2) -> np.ndarray:
    """Return ``s`` as a finite float64 array with ``ndim`` dimensions, or raise."""
    a = np.asarray(s)
    if a.ndim != ndim:
        raise MetricInputError(f"{name} must be a {ndim}-D array; got shape {a.shape}")
    if a.shape[0] == 0 or (a.ndim == 2 and a.shape[1] == 0):
        raise MetricInputError(f"{name} is empty (shape {a.shape}); there is nothing to evaluate")
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise MetricInputError(f"{name} must be real-valued scores; got dtype {a.dtype}")
    a = a.astype(np.float64)
    bad = ~np.isfinite(a)
    if bad.any():
        n_nan, n_inf = int(np.isnan(a).sum()), int(np.isinf(a).sum())
        rows = np.unique(np.nonzero(bad)[0])
        where = ", ".join(map(str, rows[:5].tolist())) + (", ..." if rows.size > 5 else "")
        raise MetricInputError(
            f"{name} contains {n_nan} NaN and {n_inf} inf value(s) in {rows.size} image(s) (rows {where}): "
            "features contain NaN/inf — check the model/checkpoint (a diverged training run, "
            "or a checkpoint that does not match the backbone)"
        )
    return a


def _same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise MetricInputError(f"{name_a} has shape {a.shape} but {name_b} has shape {b.shape}; they must match")


def _same_rows(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape[0] != b.shape[0]:
        raise MetricInputError(
            f"{name_a} has shape {a.shape} but {name_b} has shape {b.shape}; "
            "they must have the same number of images (rows)"
        )


def _as_thresholds(t: Any, n_categories: int, name: str = "thresholds") -> np.ndarray:
    a = np.asarray(t, dtype=np.float64)
    if a.ndim == 0:
        a = np.full(n_categories, float(a))
    if a.shape != (n_categories,):
        raise MetricInputError(f"{name} has shape {a.shape} but there are {n_categories} categories; expected ({n_categories},)")
    if not np.isfinite(a).all():
        raise MetricInputError(f"{name} contains NaN/inf: {a.tolist()}")
    return a


def _as_threshold(t: Any, name: str) -> float:
    try:
        v = float(t)
    except (TypeError, ValueError):
        raise MetricInputError(f"{name} must be a number; got {t!r}") from None
    if not math.isfinite(v):
        raise MetricInputError(f"{name} must be finite; got {v}")
    return v


# ============================================================================ results
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


class BootstrapCI(NamedTuple):
    """Percentile bootstrap interval: ``estimate`` on the full data, ``[low, high]`` at ``level``."""

    estimate: float
    low: float
    high: float
    level: float
    n_valid: int  # resamples whose metric was defined (not NaN)
    n_resamples: int


class MeanStd(NamedTuple):
    """Mean ± sample standard deviation over seeds, with a t-based interval for the mean."""

    mean: float
    std: float  # ddof=1; NaN when n < 2
    n: int  # finite values used (NaN values are dropped)
    low: float  # mean − t_{(1+level)/2, n−1} · std / √n
    high: float
    level: float

    def format(self, scale: float = 100.0, digits: int = 1) -> str:
        """``"66.8 ± 9.7"`` (values × ``scale``); just the mean when n < 2."""
        if self.n == 0:
            return "n/a"
        m = f"{self.mean * scale:.{digits}f}"
        return m if self.n < 2 else f"{m} ± {self.std * scale:.{digits}f}"


def _nanmean_count(values: np.ndarray) -> tuple[float, int]:
    """``nanmean`` without the all-NaN RuntimeWarning, plus the number of defined values."""
    ok = ~np.isnan(values)
    n = int(ok.sum())
    return (float(values[ok].mean()) if n else float("nan")), n


def _macro(per_category: np.ndarray) -> MacroScore:
    value, n = _nanmean_count(per_category)
    return MacroScore(value, n, int(per_category.size), per_category)


# ============================================================================ label metrics
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


# ============================================================================ score metrics
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


def _is_abnormal(y: Any, name: str) -> np.ndarray:
    """Accept a ``(N,)`` abnormal flag or an ``(N, C)`` label matrix (abnormal = any label)."""
    a = np.asarray(y)
    if a.ndim == 2:
        return _as_labels(a, name).max(axis=1)
    return _as_labels(a, name, ndim=1)


def binary_auroc(y_abnormal: Any, anchor: Any) -> float:
    """AUROC of the anchor score for normal (0) vs abnormal (1).

    ``y_abnormal`` is either ``(N,)`` 0/1 or the ``(N, C)`` label matrix, in which case an
    image is abnormal when it has any label. NaN when only one class is present.
    """
    y = _is_abnormal(y_abnormal, "y_abnormal")
    a = _as_scores(anchor, "anchor", ndim=1)
    _same_rows(y, a, "y_abnormal", "anchor")
    return _auroc(y, a)


# ============================================================================ tables
def bootstrap_ci(
    metric_fn: Callable[..., Any],
    *arrays: Any,
    n: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    **kwargs: Any,
) -> BootstrapCI:
    """Percentile bootstrap over images: resample the rows of all ``arrays`` together.

    ``metric_fn(*arrays, **kwargs)`` must return a number (or anything ``float()`` accepts,
    such as a :class:`MacroScore`). Resamples on which the metric is NaN (e.g. AUROC of a
    resample with one class) are dropped and reported in ``n_valid``. Same seed, same
    interval. This is the uncertainty from the *test images*; the spread over training seeds
    and few-shot samples is :func:`mean_std`'s job.
    """
    if not arrays:
        raise MetricInputError("bootstrap_ci needs at least one array to resample")
    if n < 1:
        raise MetricInputError(f"bootstrap_ci: n must be ≥ 1, got {n}")
    if not 0.0 < level < 1.0:
        raise MetricInputError(f"bootstrap_ci: level must be in (0, 1), got {level}")
    arrs = [np.asarray(a) for a in arrays]
    n_rows = arrs[0].shape[0] if arrs[0].ndim else 0
    for i, a in enumerate(arrs):
        if a.ndim == 0 or a.shape[0] != n_rows:
            raise MetricInputError(
                f"bootstrap_ci: array {i} has shape {a.shape} but array 0 has shape {arrs[0].shape}; "
                "all arrays must have one row per image"
            )
    if n_rows == 0:
        raise MetricInputError("bootstrap_ci: the arrays have no rows")
    estimate = float(metric_fn(*arrs, **kwargs))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_rows, size=(n, n_rows))
    values = np.array([float(metric_fn(*(a[i] for a in arrs), **kwargs)) for i in idx])
    ok = ~np.isnan(values)
    if not ok.any():
        return BootstrapCI(estimate, float("nan"), float("nan"), level, 0, n)
    lo, hi = np.percentile(values[ok], [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return BootstrapCI(estimate, float(lo), float(hi), level, int(ok.sum()), n)


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    ln_bt = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    bt = math.exp(ln_bt)
    if x < (a + 1.0) / (a + b + 2.0):
        return bt * _betacf(a, b, x) / a
    return 1.0 - bt * _betacf(b, a, 1.0 - x) / b


def _t_cdf(t: float, df: float) -> float:
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def _t_ppf(p: float, df: float) -> float:
    """Quantile of Student's t (numpy-only; bisection on the CDF, accurate to ~1e-12)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if p < 0.5:
        return -_t_ppf(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while _t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-13 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def mean_std(values: Sequence[float] | np.ndarray, level: float = 0.95) -> MeanStd:
    """Mean ± sample std (ddof=1) over seeds, and the t-based ``level`` interval of the mean.

    NaN values (a metric undefined on some seed) are dropped; ``n`` says how many remain.
    With one value the std and interval are NaN; with none, everything is NaN.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[~np.isnan(v)]
    n = int(v.size)
    nan = float("nan")
    if n == 0:
        return MeanStd(nan, nan, 0, nan, nan, level)
    m = float(v.mean())
    if n < 2:
        return MeanStd(m, nan, 1, nan, nan, level)
    sd = float(v.std(ddof=1))
    half = _t_ppf((1 + level) / 2, n - 1) * sd / math.sqrt(n)
    return MeanStd(m, sd, n, m - half, m + half, level)


# ============================================================================ thresholds
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


# ============================================================================ protocols
def _protocol_inputs(scores: Any, y_true: Any, thresholds: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    yt, sc = _scores_pair(y_true, scores)
    return sc, yt, _as_thresholds(thresholds, sc.shape[1])


def predict_integrated(scores: Any, anchor: Any, thresholds: Any, anchor_threshold: float) -> np.ndarray:
    """Predicted labels of the integrated protocol, shape ``(N, C+1)``; column 0 = normal.

    An image is predicted normal when ``anchor < anchor_threshold``. Otherwise it is abnormal
    and gets every category with ``score >= threshold``; if none passes, it gets the single
    category with the largest margin ``score − threshold`` (the arg-max score when all
    thresholds are equal), because the anchor already said "abnormal". Every row therefore
    has at least one predicted label, and normal is never predicted together with a category.
    """
    sc = _as_scores(scores, "scores")
    an = _as_scores(anchor, "anchor", ndim=1)
    _same_rows(sc, an, "scores", "anchor")
    th = _as_thresholds(thresholds, sc.shape[1])
    at = _as_threshold(anchor_threshold, "anchor_threshold")
    abnormal = an >= at
    cats = (sc >= th).astype(np.int8)
    none = abnormal & (cats.sum(axis=1) == 0)
    cats[none, np.argmax(sc[none] - th, axis=1)] = 1
    cats[~abnormal] = 0
    return np.column_stack([(~abnormal).astype(np.int8), cats])


def evaluate_integrated(
    scores: Any,
    anchor: Any,
    y_true: Any,
    thresholds: Any,
    anchor_threshold: float,
) -> dict[str, Any]:
    """Integrated protocol: normal and all C anomaly categories in one label space.

    The paper does not define its protocols; this is the book's documented choice.

    * Label space: ``C+1`` columns; column 0 is *normal* (true iff the image has no anomaly),
      columns 1..C are the anomaly categories of ``y_true`` (shape ``(N, C)``).
    * Predictions: :func:`predict_integrated` (anchor gate, then per-category thresholds).
    * Label metrics (subset accuracy, both Hamming variants, micro/macro F1) are computed over
      the C+1 columns. Since every true and every predicted row has at least one label, the
      0/0 case of :func:`hamming_score` never occurs here.
    * Score metrics use raw scores, not the gate: column 0 is scored by ``−anchor`` (so its
      AUROC equals ``binary_auroc``), columns 1..C by ``scores`` over all images. Macro AUROC
      and AP average the C+1 columns, ignoring NaN; ``anomaly_macro_auroc`` / ``_ap`` average
      the C anomaly columns only.

    Returns a dict of floats, ``(C+1,)`` per-category arrays (index 0 = normal), the counts
    of defined AUROC/AP columns, ``y_pred`` and ``n_images``.
    """
    sc, yt, th = _protocol_inputs(scores, y_true, thresholds)
    an = _as_scores(anchor, "anchor", ndim=1)
    _same_rows(sc, an, "scores", "anchor")
    y_pred = predict_integrated(sc, an, th, anchor_threshold)
    normal = (yt.sum(axis=1) == 0).astype(np.int8)
    y_full = np.column_stack([normal, yt])
    s_full = np.column_stack([-an, sc])
    auc, ap = macro_auroc(y_full, s_full), macro_ap(y_full, s_full)
    auc_anom, ap_anom = _macro(auc.per_category[1:]), _macro(ap.per_category[1:])
    return {
        "protocol": "integrated",
        "n_images": int(yt.shape[0]),
        "n_categories": int(y_full.shape[1]),
        "subset_accuracy": subset_accuracy(y_full, y_pred),
        "hamming_score": hamming_score(y_full, y_pred),
        "hamming_accuracy": hamming_accuracy(y_full, y_pred),
        "micro_f1": micro_f1(y_full, y_pred),
        "macro_f1": macro_f1(y_full, y_pred),
        "macro_auroc": auc.value,
        "macro_ap": ap.value,
        "n_auroc_defined": auc.n_defined,
        "n_ap_defined": ap.n_defined,
        "anomaly_macro_auroc": auc_anom.value,
        "anomaly_macro_ap": ap_anom.value,
        "per_category_auroc": auc.per_category,
        "per_category_ap": ap.per_category,
        "per_category_f1": per_category_f1(y_full, y_pred),
        "binary_auroc": _auroc(1 - normal, an),
        "y_pred": y_pred,
    }


def evaluate_per_anomaly(scores: Any, y_true: Any, thresholds: Any) -> dict[str, Any]:
    """Per-anomaly protocol: each category as its own detection task against normals.

    For category c the evaluation set is the test images that are normal or contain c
    (images with other anomalies only are left out); positives are those containing c, and
    the score is ``scores[:, c]`` (the anchor is not used). Reported per category: AUROC, AP,
    and F1 at ``score >= thresholds[c]``, the numbers of positive and normal images, and the
    NaN-ignoring means. A category with no positive or no normal image gets NaN AUROC/AP;
    F1 is NaN only when there is no positive (the task is then undefined), and is counted.
    """
    sc, yt, th = _protocol_inputs(scores, y_true, thresholds)
    normal = yt.sum(axis=1) == 0
    C = yt.shape[1]
    aucs, aps, f1s = np.full(C, np.nan), np.full(C, np.nan), np.full(C, np.nan)
    n_pos = np.zeros(C, dtype=int)
    for c in range(C):
        keep = normal | (yt[:, c] == 1)
        y, s = yt[keep, c], sc[keep, c]
        n_pos[c] = int(y.sum())
        aucs[c], aps[c] = _auroc(y, s), _ap(y, s)
        if n_pos[c] > 0:
            f1s[c] = float(_f1(*_confusion(y[:, None], (s >= th[c]).astype(np.int8)[:, None]))[0])
    auc, ap, f1 = _macro(aucs), _macro(aps), _macro(f1s)
    return {
        "protocol": "per-anomaly",
        "n_images": int(yt.shape[0]),
        "n_normal": int(normal.sum()),
        "n_positive": n_pos,
        "per_category_auroc": aucs,
        "per_category_ap": aps,
        "per_category_f1": f1s,
        "mean_auroc": auc.value,
        "mean_ap": ap.value,
        "mean_f1": f1.value,
        "n_auroc_defined": auc.n_defined,
        "n_ap_defined": ap.n_defined,
        "n_f1_defined": f1.n_defined,
    }


def evaluate_open_set(
    anchor: Any,
    y_true: Any,
    held_out: Sequence[int],
    anchor_threshold: float,
) -> dict[str, Any]:
    """Open-set protocol: anomalies of categories held out of training must still be flagged.

    ``y_true`` is ``(N, C)`` over *all* categories, including the ``held_out`` column
    indices. Groups of test images:

    * normal — no label;
    * only held-out — at least one label, all of them held out (the strict, unseen case);
    * any held-out — at least one held-out label (possibly with seen ones);
    * seen only — labels, none held out (the reference: how the anchor does on seen categories).

    Reported: anchor AUROC of normal vs each abnormal group (``auroc_only_held_out``,
    ``auroc_any_held_out``, ``auroc_seen``), the recall of each group at ``anchor_threshold``
    (``anchor >= threshold`` flags abnormal), the false-positive rate on normals, and the
    group sizes. An empty group gives NaN, never an error.
    """
    yt = _as_labels(y_true, "y_true")
    an = _as_scores(anchor, "anchor", ndim=1)
    _same_rows(yt, an, "y_true", "anchor")
    at = _as_threshold(anchor_threshold, "anchor_threshold")
    C = yt.shape[1]
    ho = [int(h) for h in held_out]
    if not ho:
        raise MetricInputError("held_out is empty; give the column indices of the categories held out of training")
    if any(h < 0 or h >= C for h in ho) or len(set(ho)) != len(ho):
        raise MetricInputError(f"held_out must be distinct column indices in [0, {C - 1}]; got {list(held_out)}")
    mask = np.zeros(C, dtype=bool)
    mask[ho] = True
    n_labels = yt.sum(axis=1)
    n_held = yt[:, mask].sum(axis=1)
    normal = n_labels == 0
    groups = {
        "only_held_out": (n_labels > 0) & (n_held == n_labels),
        "any_held_out": n_held > 0,
        "seen": (n_labels > 0) & (n_held == 0),
    }
    flagged = an >= at

    def _recall(m: np.ndarray) -> float:
        return float(flagged[m].mean()) if m.any() else float("nan")

    out: dict[str, Any] = {
        "protocol": "open-set",
        "held_out": ho,
        "n_images": int(yt.shape[0]),
        "n_normal": int(normal.sum()),
        "false_positive_rate": _recall(normal),
    }
    for g, m in groups.items():
        keep = normal | m
        out[f"n_{g}"] = int(m.sum())
        out[f"auroc_{g}"] = _auroc(m[keep].astype(np.int8), an[keep])
        out[f"recall_{g}"] = _recall(m)
    return out
