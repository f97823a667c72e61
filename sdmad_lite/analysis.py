"""Reading result rows as the book does: tables of mean ± std over seeds and paired comparisons.

Every chapter's tables and sentences go through these functions (a notebook defines none of its
own): :func:`summarize` (mean ± std per group), :func:`fmt` (one cell), :func:`versus` (method ``a``
against ``b``, paired by seed, with one sentence saying which way it falls).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from . import metrics as M
from .metrics import mean_std


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


def versus(df, metric: str, a, b, scale: float = 100.0, by: str = "method", **where) -> tuple[M.PairedTest, str]:
    """``a`` against ``b`` on ``metric``, paired by seed over the rows of ``df`` that match ``where``
    (column = value): the paired test and one sentence saying which way it falls ("beats" / "trails"
    only when the 95 % interval of the difference excludes 0). ``by`` names the column that ``a`` and
    ``b`` are values of (default: the method; e.g. ``by="selection.noise"`` compares two noise levels)."""
    d = pd.DataFrame(df)
    for col, value in where.items():
        d = d[d[col] == value]
    x = d[d[by] == a].set_index("seed")[metric]
    y = d[d[by] == b].set_index("seed")[metric].reindex(x.index)
    if x.index.has_duplicates:
        raise ValueError(f"versus: several rows per seed for {by} = {a!r}; narrow them with column=value filters")
    t = M.paired_test(scale * x.to_numpy(float), scale * y.to_numpy(float))
    word = "beats" if t.low > 0 else ("trails" if t.high < 0 else "is not clearly different from")
    return t, (f"{word} {b} ({t.mean:+.1f} points paired over {t.n} seeds, 95 % interval [{t.low:+.1f}, "
               f"{t.high:+.1f}], paired t-test p = {t.p_t:.2g})")
