"""Uncertainty for tables: bootstrap over test images, mean ± std over seeds, paired tests."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
from scipy.stats import t as _t

from ._checks import MetricInputError

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
    such as a :class:`~sdmad_lite.metrics.scores.MacroScore`). Resamples on which the metric is NaN (e.g. AUROC of a
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
    half = float(_t.ppf((1 + level) / 2, n - 1)) * sd / math.sqrt(n)
    return MeanStd(m, sd, n, m - half, m + half, level)




class PairedTest(NamedTuple):
    """Paired comparison of two methods over the same seeds: the mean difference ``a − b``, its
    t-interval, and two-sided p-values of the paired t-test and of Wilcoxon's signed-rank test."""

    mean: float
    low: float
    high: float
    n: int
    p_t: float
    p_wilcoxon: float
    level: float


def paired_test(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, level: float = 0.95) -> PairedTest:
    """Compare paired values (one per seed) of two methods; pairs with a NaN are dropped.

    With fewer than two pairs, or no variation of the difference, the p-values are NaN.
    """
    from scipy.stats import ttest_rel, wilcoxon

    x, y = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise MetricInputError(f"paired_test: {x.size} values against {y.size}; give one value per seed for both")
    ok = ~(np.isnan(x) | np.isnan(y))
    d = x[ok] - y[ok]
    ms = mean_std(d, level)
    p_t = p_w = float("nan")
    if d.size >= 2 and np.ptp(d) > 0:
        p_t = float(ttest_rel(x[ok], y[ok]).pvalue)
        p_w = float(wilcoxon(d).pvalue) if np.any(d != 0) else float("nan")
    return PairedTest(ms.mean, ms.low, ms.high, int(d.size), p_t, p_w, level)
