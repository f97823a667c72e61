"""Label co-occurrence statistics of the real tables (reviewers asked for them).

A *unit* is what carries one label vector: a ChestX-ray14 image, a fastMRI+ brain
(volume, slice) pair with at least one box, an OCT2017 test image. All numbers are
computed from the shipped tables; :func:`paper_subset_candidates` compares simple
selections with the counts the paper reports (its selection is not published).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from . import tables
from .fastmri_plus import fastmri_brain_slice_labels, fastmri_brain_units, fastmri_brain_volumes

UNIT: dict[str, str] = {
    "chestxray14": "image (official train_val + test lists)",
    "fastmri-brain": "(volume, slice) pair with at least one fastMRI+ box",
    "oct2017": "image of the OCT2017 test set",
}

DEFAULT_CATEGORIES: dict[str, tuple[str, ...] | None] = {
    "chestxray14": tables.CHESTXRAY14_LABELS,
    "fastmri-brain": None,  # all 21 slice-level labels
    "oct2017": tables.OCT2017_ANOMALIES,
}

PAPER_COUNTS: dict[str, dict[str, int]] = {
    "chestxray14": {"with_any_label": 16806, "with_2plus_labels": 2567},
    "fastmri-brain": {"with_any_label": 293, "with_2plus_labels": 79},
}
"""Counts the paper reports (units with labels, units with >= 2 labels)."""


def _categories(dataset: str, categories: Sequence[str] | None) -> list[str]:
    if categories is not None:
        return list(categories)
    default = DEFAULT_CATEGORIES.get(dataset)
    return list(default if default is not None else tables.dataset_categories(dataset))


def stats_from_matrix(y: np.ndarray, categories: Sequence[str], *, dataset: str = "",
                      unit: str = "unit", top: int = 10) -> dict[str, Any]:
    """Co-occurrence statistics of a binary (N, C) label matrix (JSON-serialisable)."""
    y = np.asarray(y).astype(np.int64)
    cats = list(categories)
    if y.ndim != 2 or y.shape[1] != len(cats):
        raise ValueError(f"labels must be (N, {len(cats)}), got {y.shape}")
    card = y.sum(axis=1)
    any_ = int((card >= 1).sum())
    two = int((card >= 2).sum())
    pair = y.T @ y  # pair[a, b] = units with both a and b; diagonal = label counts
    counts = np.diag(pair)
    with np.errstate(invalid="ignore", divide="ignore"):
        cond = np.where(counts[:, None] > 0, pair / counts[:, None], 0.0)
    iu = np.triu_indices(len(cats), k=1)
    order = sorted(range(len(iu[0])), key=lambda i: (-pair[iu[0][i], iu[1][i]], iu[0][i], iu[1][i]))
    top_pairs = [[cats[iu[0][i]], cats[iu[1][i]], int(pair[iu[0][i], iu[1][i]])]
                 for i in order[:top] if pair[iu[0][i], iu[1][i]] > 0]
    hist = np.bincount(card, minlength=2)
    return {
        "dataset": dataset,
        "unit": unit,
        "categories": cats,
        "units": int(y.shape[0]),
        "with_any_label": any_,
        "with_2plus_labels": two,
        "share_2plus": round(two / any_, 4) if any_ else 0.0,
        "mean_labels_per_labelled_unit": round(float(card[card > 0].mean()), 4) if any_ else 0.0,
        "label_counts": {c: int(n) for c, n in zip(cats, counts)},
        "cardinality_histogram": {str(k): int(v) for k, v in enumerate(hist)},
        "top_pairs": top_pairs,
        "conditional": {
            "labels": cats,
            "note": "p_b_given_a[i][j] = P(label j | label i) over units",
            "p_b_given_a": np.round(cond, 4).tolist(),
        },
    }


def cooccurrence_stats(dataset: str, categories: Sequence[str] | None = None) -> dict[str, Any]:
    """Units, label counts, cardinality histogram, top-10 pairs and P(b|a) for a real table.

    ``categories`` defaults to all 14 ChestX-ray14 findings, the 21 fastMRI+ slice labels, or
    CNV/DME/DRUSEN for OCT2017 (one label per image, so ``with_2plus_labels`` is 0).
    """
    cats = _categories(dataset, categories)
    y = tables.label_matrix(dataset, cats)
    return stats_from_matrix(y, cats, dataset=dataset, unit=UNIT[dataset])


def max_cardinality(s: dict[str, Any]) -> int:
    """The largest number of labels on one unit, read from the ``cardinality_histogram`` of
    :func:`cooccurrence_stats` (or :func:`stats_from_matrix`); 0 when no unit has a label."""
    return max((int(k) for k, v in s["cardinality_histogram"].items() if v > 0), default=0)


def pair_table(dataset: str, categories: Sequence[str] | None = None, top: int = 8) -> pd.DataFrame:
    """The ``top`` most frequent label pairs of a real table (chapter 2), most frequent first.

    Columns: ``dataset``, ``a`` and ``b`` (the pair, in table order), ``both`` (units that carry
    both), ``P(b|a)`` (the share of the units with ``a`` that also carry ``b``) and ``P(a|b)``,
    rounded to 3 decimals. Pairs no unit carries are left out, so a single-label table (OCT2017)
    gives an empty frame with these columns. ``categories`` as in :func:`cooccurrence_stats`.
    """
    cats = _categories(dataset, categories)
    s = stats_from_matrix(tables.label_matrix(dataset, cats), cats, dataset=dataset, unit=UNIT[dataset], top=top)
    n = s["label_counts"]
    return pd.DataFrame([{"dataset": dataset, "a": a, "b": b, "both": k,
                          "P(b|a)": round(k / n[a], 3), "P(a|b)": round(k / n[b], 3)}
                         for a, b, k in s["top_pairs"]],
                        columns=["dataset", "a", "b", "both", "P(b|a)", "P(a|b)"])


def cooccurrence_matrix(dataset: str, categories: Sequence[str] | None = None,
                        normalize: str | None = None) -> pd.DataFrame:
    """C x C frame for heatmaps: counts (``normalize=None``), ``"conditional"`` (row a, column b:
    P(b|a)) or ``"jaccard"`` (``|a and b| / |a or b|``). The diagonal holds label counts (1.0 when
    normalised)."""
    cats = _categories(dataset, categories)
    y = tables.label_matrix(dataset, cats).astype(np.int64)
    pair = y.T @ y
    n = np.diag(pair).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        if normalize is None:
            m = pair
        elif normalize == "conditional":
            m = np.where(n[:, None] > 0, pair / n[:, None], 0.0)
        elif normalize == "jaccard":
            union = n[:, None] + n[None, :] - pair
            m = np.where(union > 0, pair / union, 0.0)
        else:
            raise ValueError(f"normalize must be None, 'conditional' or 'jaccard', got {normalize!r}")
    return pd.DataFrame(m, index=cats, columns=cats)


# --------------------------------------------------------------------------- paper subsets

CHEST8: tuple[str, ...] = tables.CHESTXRAY14_LABELS[:8]
"""The 8 findings of the original ChestX-ray8 release."""
BRAIN6: tuple[str, ...] = (
    "Nonspecific white matter lesion", "Posttreatment change", "Craniotomy", "Mass", "Edema",
    "Enlarged ventricles",
)
"""The six fastMRI+ labels the phantom brain uses (the paper names 6 labels, not which)."""


def _row(dataset: str, selection: str, y: np.ndarray) -> dict[str, Any]:
    card = y.sum(axis=1)
    a, b = int((card >= 1).sum()), int((card >= 2).sum())
    paper = PAPER_COUNTS[dataset]
    return {
        "dataset": dataset, "selection": selection, "units": int(len(y)),
        "with_any_label": a, "with_2plus_labels": b,
        "share_2plus": round(b / a, 3) if a else 0.0,
        "paper_with_any": paper["with_any_label"], "paper_2plus": paper["with_2plus_labels"],
        "paper_share_2plus": round(paper["with_2plus_labels"] / paper["with_any_label"], 3),
        "rel_error": round(abs(a - paper["with_any_label"]) / paper["with_any_label"]
                           + abs(b - paper["with_2plus_labels"]) / paper["with_2plus_labels"], 3),
    }


def paper_subset_candidates(slices: Sequence[int] = (3, 4, 5, 6)) -> pd.DataFrame:
    """Compare simple selections with the paper's counts; sorted by ``rel_error``.

    ``rel_error = |any - paper_any| / paper_any + |2plus - paper_2plus| / paper_2plus``.
    Only *simple, a-priori* selections are listed (split, first study of each patient, the 8
    ChestX-ray8 findings; one slice index, one sequence, six labels); searching over all
    category subsets can hit any target and proves nothing.
    """
    rows: list[dict[str, Any]] = []
    d = tables.load_chestxray14()
    first = d["image"].str[9:12].eq("000").to_numpy()
    pops = {"all": np.ones(len(d), bool), "test": d["split"].eq("test").to_numpy(),
            "train_val": d["split"].eq("train_val").to_numpy(), "first study per patient": first}
    for cats, cname in ((tables.CHESTXRAY14_LABELS, "14 findings"), (CHEST8, "8 findings")):
        y = d[list(cats)].to_numpy()
        for pname, m in pops.items():
            rows.append(_row("chestxray14", f"{pname}, {cname}", y[m]))
    u = fastmri_brain_units()
    seq = u["file"].map(fastmri_brain_volumes().set_index("file")["sequence"])
    all_labels = list(fastmri_brain_slice_labels())
    for cats, cname in ((all_labels, "21 labels"), (list(BRAIN6), "6 phantom labels"),
                        (all_labels[:6], "6 most frequent labels")):
        y = u[cats].to_numpy()
        rows.append(_row("fastmri-brain", f"all slices, {cname}", y))
        for s in slices:
            rows.append(_row("fastmri-brain", f"slice {s}, {cname}", y[u["slice"].eq(s).to_numpy()]))
        for sq in sorted(seq.unique()):
            m = (u["slice"].eq(5) & seq.eq(sq)).to_numpy()
            rows.append(_row("fastmri-brain", f"slice 5, {sq} only, {cname}", y[m]))
    df = pd.DataFrame(rows)
    return df.sort_values(["dataset", "rel_error"], kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- CLI

def format_stats(s: dict[str, Any]) -> str:
    """A readable multi-line summary of :func:`cooccurrence_stats`'s output."""
    lines = [
        f"{s['dataset']}: unit = {s['unit']}",
        f"  units: {s['units']:,}   with any label: {s['with_any_label']:,}   "
        f"with >= 2 labels: {s['with_2plus_labels']:,} ({100 * s['share_2plus']:.1f}% of labelled)",
        "  labels per unit: " + ", ".join(f"{k}: {v:,}" for k, v in s["cardinality_histogram"].items()),
        "  label counts:",
    ]
    w = max(len(c) for c in s["label_counts"])
    lines += [f"    {c:<{w}}  {n:>7,}" for c, n in sorted(s["label_counts"].items(), key=lambda kv: -kv[1])]
    if s["top_pairs"]:
        lines.append("  most frequent pairs:")
        lines += [f"    {a} + {b}: {n:,}" for a, b, n in s["top_pairs"]]
    return "\n".join(lines)
