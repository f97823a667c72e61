"""Reading result rows as the book does: tables of mean ± std over seeds and paired comparisons.

Every chapter's tables and sentences go through these functions (a notebook defines none of its
own): :func:`summarize` (mean ± std per group), :func:`fmt` (one cell), :func:`versus` (method ``a``
against ``b``, paired by seed), :func:`family` (a family of paired comparisons, Holm-adjusted together:
the verdicts a chapter's prose reads, each with the interval that agrees with it), :func:`minus_reference` (each method minus a reference row,
paired by seed), :func:`listing` (items of a sentence). Seeds are the unit of every paired test.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd

from . import metrics as M
from .metrics import mean_std


def listing(items, sep: str = ", ") -> str:
    """``"a, b and c"``: the items of a sentence (``sep="; "`` when an item holds commas, as method labels do)."""
    items = [str(x) for x in items]
    if len(items) < 2:
        return "".join(items)
    return sep.join(items[:-1]) + (";" if sep.startswith(";") else "") + " and " + items[-1]


def fmt(values, scale: float = 100.0, digits: int = 1) -> str:
    """``"66.8 ± 9.7"``: the mean ± std over seeds of ``values`` (× ``scale``; NaN dropped)."""
    return mean_std(np.asarray(values, dtype=float)).format(scale, digits)


def summarize(rows, metrics: Sequence[str], by: Sequence[str] = ("method", "k_shot"), scale: float = 100.0,
              digits: int = 1) -> pd.DataFrame:
    """Mean ± std over seeds of ``metrics`` per group: a column of text per metric and ``METRIC (mean)``
    with the number, plus ``seeds``."""
    df = pd.DataFrame(rows)
    out = []
    for key, g in df.groupby(list(by), sort=False):
        rec = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        rec["seeds"] = g["seed"].nunique()
        for m in metrics:
            ms = mean_std(g[m].astype(float).to_numpy())
            rec[m] = ms.format(scale, digits)
            rec[m + " (mean)"] = ms.mean * scale
        out.append(rec)
    return pd.DataFrame(out)


def _pairs(df, metric: str, a, b, scale: float, by: str, where: dict) -> tuple[np.ndarray, np.ndarray]:
    """``metric`` of ``a`` and of ``b`` (times ``scale``), aligned by seed, over the rows matching ``where``."""
    d = pd.DataFrame(df)
    for col, value in where.items():
        d = d[d[col] == value]
    x = d[d[by] == a].set_index("seed")[metric]
    y = d[d[by] == b].set_index("seed")[metric].reindex(x.index)
    if x.index.has_duplicates:
        raise ValueError(f"versus: several rows per seed for {by} = {a!r}; narrow them with column=value filters")
    return scale * x.to_numpy(float), scale * y.to_numpy(float)


def versus(df, metric: str, a, b, scale: float = 100.0, by: str = "method", **where) -> tuple[M.PairedTest, str]:
    """``a`` against ``b`` on ``metric``, paired by seed over the rows of ``df`` that match ``where``
    (column = value): the paired test and one sentence saying which way it falls ("beats" / "trails"
    only when the 95 % interval of the difference excludes 0). ``by`` names the column that ``a`` and
    ``b`` are values of (default: the method; e.g. ``by="selection.noise"`` compares two noise levels)."""
    t = M.paired_test(*_pairs(df, metric, a, b, scale, by, where))
    word = "beats" if t.low > 0 else ("trails" if t.high < 0 else "is not clearly different from")
    return t, (f"{word} {b} ({t.mean:+.1f} points paired over {t.n} seeds, 95 % interval [{t.low:+.1f}, "
               f"{t.high:+.1f}], paired t-test p = {t.p_t:.2g})")


# ----------------------------------------------------------------------------- families of paired tests
def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaN stays NaN and counts in no family):
    the adjusted p of the i-th smallest of m is max over j ≤ i of min(1, (m − j + 1)·p_(j))."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adj = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(adj)
    return out


def holm_levels(p_values, alpha: float = 0.05) -> np.ndarray:
    """The confidence level of the Holm step that decides each hypothesis of a family (NaN stays NaN).

    Holm's procedure tests the i-th smallest of m p-values at ``alpha / (m − i + 1)`` while it keeps
    rejecting; where it stops, every remaining hypothesis is kept at the level of that step,
    ``alpha / (m − r)`` with r the number rejected. The two-sided interval at ``1 −`` that level is
    the one dual to the test that decided the hypothesis: it excludes 0 exactly when the Holm-adjusted
    p is below ``alpha`` (for a t-test and its t-interval). It is not a simultaneous interval for the
    whole family (Bonferroni's, at ``1 − alpha/m``, is); it is the interval that agrees with the verdict."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    step_alpha = None  # set where the procedure stops
    for i, j in enumerate(ok[np.argsort(p[ok], kind="stable")]):
        a_i = alpha / (m - i)
        if step_alpha is None and not p[j] < a_i:
            step_alpha = a_i
        out[j] = 1 - (a_i if step_alpha is None else step_alpha)
    return out


#: the verdicts of a paired comparison, read from its Holm-adjusted p-value at level 0.05
BEATS, TRAILS, NOT_CLEAR = "beats", "trails", "is not clearly different from"


def family(df, comparisons: Sequence[dict], scale: float = 100.0, alpha: float = 0.05,
           names: Callable[[str], str] = str) -> pd.DataFrame:
    """A family of paired comparisons, Holm-adjusted together: one row per comparison.

    Each comparison is a dict with ``metric``, ``a``, ``b`` and optionally ``by`` (the column ``a`` and
    ``b`` are values of; default ``method``) and ``where`` (column = value filters). Columns of the
    result: the comparison, ``n`` (seeds paired), ``mean`` (a − b in points), ``p`` (paired t-test),
    ``p_holm`` (adjusted within this family), ``verdict`` (:data:`BEATS` / :data:`TRAILS` when ``p_holm``
    < ``alpha``, else :data:`NOT_CLEAR`), ``level`` (percent) with ``low``/``high``: the t-interval of the
    difference at the level of the Holm step that decided it (:func:`holm_levels`; it excludes 0 exactly
    when the verdict is beats or trails), ``low_95``/``high_95``: the unadjusted 95 % interval, and
    ``sentence`` (what a chapter glues: the verdict, ``names(b)``, the difference, the adjusted p and
    the adjusted interval; ``names=plots.prose`` names methods as a sentence does)."""
    recs, pairs = [], []
    for c in comparisons:
        pairs.append(_pairs(df, c["metric"], c["a"], c["b"], scale, c.get("by", "method"), c.get("where", {})))
        t = M.paired_test(*pairs[-1])
        recs.append({"metric": c["metric"], "a": c["a"], "b": c["b"], **{f"where.{k}": v for k, v in c.get("where", {}).items()},
                     "n": t.n, "mean": t.mean, "low_95": t.low, "high_95": t.high, "p": t.p_t})
    out = pd.DataFrame(recs)
    if out.empty:
        return out
    out["p_holm"] = holm(out["p"].to_numpy())
    out["verdict"] = [NOT_CLEAR if not (p < alpha) else (BEATS if m > 0 else TRAILS)
                      for p, m in zip(out["p_holm"], out["mean"])]
    levels = holm_levels(out["p"].to_numpy(), alpha)
    adj = [M.paired_test(x, y, level=lv) if lv == lv else None for (x, y), lv in zip(pairs, levels)]
    out["level"] = 100 * levels
    out["low"] = [t.low if t else lo for t, lo in zip(adj, out["low_95"])]
    out["high"] = [t.high if t else hi for t, hi in zip(adj, out["high_95"])]
    out["sentence"] = [f"{v} {names(b)} ({m:+.1f} points paired over {n} seeds, Holm-adjusted p = {ph:.2g} in a family "
                       f"of {len(out)}; {interval(lv, lo, hi)})"
                       for v, b, m, n, lo, hi, ph, lv in zip(out["verdict"], out["b"], out["mean"], out["n"], out["low"],
                                                             out["high"], out["p_holm"], out["level"])]
    return out


def interval(level: float, low: float, high: float) -> str:
    """A family's adjusted interval as a sentence writes it: ``99.7 % interval [+1.2, +3.4]`` (the level
    of the Holm step that decided the comparison, :func:`holm_levels`). A bound that one decimal would print
    as ±0.0 gets more digits, so that an interval that excludes 0 never reads as touching it."""
    return f"{level_text(level)} interval [{bound(low)}, {bound(high)}]"


def bound(x: float) -> str:
    """An interval's bound in points, signed, one decimal (more where one decimal would round it to 0)."""
    txt = f"{x:+.1f}"
    if x != 0 and txt in ("+0.0", "-0.0"):
        txt = f"{x:+.2f}" if abs(x) >= 0.005 else f"{x:+.1e}"
    return txt


def level_text(level: float) -> str:
    """A confidence level in percent, one decimal (more where one would round it to 100): ``99.7 %``."""
    if level != level:
        return "95 %"
    for digits in range(1, 4):
        if round(level, digits) < 100:
            txt = f"{level:.{digits}f}".rstrip("0").rstrip(".")
            return f"{txt} %"
    return f"{level:.4f} %"


def minus_reference(df, metrics: Sequence[str], reference: str = "always-normal", by: Sequence[str] = ("k_shot",),
                    scale: float = 100.0) -> pd.DataFrame:
    """Each method's ``metrics`` minus the reference row's on the same seed (and ``by`` group): the mean
    paired difference in points with its 95 % interval, e.g. subset accuracy minus always-normal — a
    label metric says something about a method only when this interval excludes 0."""
    d = pd.DataFrame(df)
    ref = d[d["method"] == reference].set_index([*by, "seed"])
    out = []
    for key, g in d[d["method"] != reference].groupby(["method", *by], sort=False):
        rec = dict(zip(["method", *by], key if isinstance(key, tuple) else (key,)))
        g = g.set_index([*by, "seed"])
        for m in metrics:
            x = g[m].astype(float)
            y = ref[m].astype(float).reindex(x.index)
            t = M.paired_test(scale * x.to_numpy(), scale * y.to_numpy())
            rec[m] = f"{t.mean:+.1f} [{t.low:+.1f}, {t.high:+.1f}]"
            rec[m + " (mean)"], rec[m + " (low)"], rec[m + " (high)"] = t.mean, t.low, t.high
        out.append(rec)
    return pd.DataFrame(out)
