"""The book's figures, drawn the same way in every chapter: one colour and one readable name per
method, paired differences as intervals around zero (never bars from zero), mean curves with their
intervals, co-occurrence heat maps.

Every function draws on a matplotlib ``Axes`` it is given and returns it; a chapter arranges them.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .methods import REGISTRY
from .metrics import mean_std

#: one colour per method, the same in every figure of the book (reference rows grey, SD-MAD blues,
#: baselines warm)
METHOD_COLORS: dict[str, str] = {
    "always-normal": "0.55", "label-prior": "0.7", "zeroshot-names": "tab:olive", "zeroshot-signs": "tab:green",
    "sdmad-init": "tab:cyan", "sdmad": "tab:blue", "sdmad-no-ss": "tab:purple", "sdmad-no-disc": "mediumslateblue",
    "sdmad-no-ss-no-disc": "slateblue", "sdmad-ss-before": "tab:orange", "sdmad-ss-per-image": "tab:red",
    "sdmad-residual": "navy", "sdmad-shift": "royalblue", "linear-probe": "tab:brown",
    "generic-prompt-adapters": "tab:pink", "learned-context": "goldenrod", "mvfa": "darkred", "anomalyclip": "sienna",
}


def color(method: str) -> str:
    """The colour of ``method`` (grey for a name the book has no colour for)."""
    return METHOD_COLORS.get(method, "0.4")


def label(method: str) -> str:
    """The readable name of ``method`` (its registry ``label``), for tables and legends."""
    m = REGISTRY.get(method)
    return m.label if m is not None and m.label else method


def prose(name: str) -> str:
    """How a sentence names ``name``, a method or its label (the registry's ``prose``: "the frozen sign
    prompts" where a table prints "zero-shot, expert signs"); any other name unchanged."""
    m = REGISTRY.get(name) or next((m for m in REGISTRY.values() if m.label == name), None)
    return m.prose if m is not None else name  # the registry's prose defaults to the label


def readable(df: pd.DataFrame, column: str = "method") -> pd.DataFrame:
    """``df`` with the method names of ``column`` (a column or the index level) replaced by their labels."""
    out = df.copy()
    if column in out.columns:
        out[column] = out[column].map(label)
    elif column in (out.index.names or []):
        out = out.rename(index=label, level=column)
    return out


def paired_intervals(ax, family: pd.DataFrame, labels: Sequence[str] | None = None, title: str = "",
                     unit: str = "points") -> plt.Axes:
    """The paired differences of a family of comparisons (:func:`sdmad_lite.analysis.family`) as dots with
    their adjusted intervals (each at the level of the Holm step that decided it, so an interval clear of
    zero is a verdict) around a line at zero; a comparison whose Holm-adjusted p is below 0.05 is drawn
    filled, the others hollow."""
    y = np.arange(len(family))[::-1]
    for yi, (_, r) in zip(y, family.iterrows()):
        clear = r["verdict"] != "is not clearly different from"
        col = color(str(r["a"])) if str(r["a"]) in METHOD_COLORS else "tab:blue"
        ax.plot([r["low"], r["high"]], [yi, yi], color=col, lw=2)
        ax.plot(r["mean"], yi, "o", color=col, mfc=col if clear else "white", ms=7)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(y)
    ax.set_yticklabels(labels if labels is not None else [f"{label(a)} − {label(b)}" for a, b in zip(family.a, family.b)],
                       fontsize=8)
    ax.set_xlabel(f"paired difference, {unit} (Holm-adjusted interval; filled: adjusted p < 0.05)")
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def mean_curve(ax, df: pd.DataFrame, x: str, metric: str, method: str, scale: float = 100.0,
               band: bool = True) -> plt.Axes:
    """The mean of ``metric`` over seeds of ``method`` against ``x``, with the 95 % t-interval of the mean
    as a band."""
    g = df[df["method"] == method]
    pts = []
    for xv, gg in g.groupby(x):
        ms = mean_std(gg[metric].astype(float).to_numpy())
        pts.append((xv, scale * ms.mean, scale * ms.low, scale * ms.high))
    if not pts:
        return ax
    xs, m, lo, hi = map(np.asarray, zip(*pts))
    ax.plot(xs, m, marker="o", ms=3, color=color(method), label=label(method))
    if band:
        ax.fill_between(xs, lo, hi, color=color(method), alpha=0.1)
    return ax


def cooccurrence_heatmap(ax, matrix: pd.DataFrame, title: str, vmax: float = 60.0, annot: bool = True) -> plt.Axes:
    """A conditional co-occurrence matrix P(column | row) in percent, diagonal blanked (it says nothing)."""
    import seaborn as sns  # seaborn is a dependency; imported here so that plain imports stay light

    m = matrix.mask(np.eye(len(matrix), dtype=bool))
    sns.heatmap(m, ax=ax, cmap="rocket_r", vmin=0, vmax=vmax, annot=annot, fmt=".0f", annot_kws={"fontsize": 8},
                square=True, linewidths=0.3, cbar_kws={"label": "P(column | row), %", "shrink": 0.7})
    ax.grid(False)
    ax.set_facecolor("0.92")
    ax.set_xlabel("b (co-occurring label)")
    ax.set_ylabel("a (given label)")
    ax.set_title(title, fontsize=11)
    ax.tick_params(labelsize=9)
    return ax
