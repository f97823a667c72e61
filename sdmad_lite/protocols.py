"""The evaluation protocols of multi-anomaly detection, each defined here before its code.

The paper does not publish its protocol definitions; these are the book's documented choices.
Every function receives thresholds chosen elsewhere (on few-shot data: ``metrics.thresholds``)
and has no way to fit anything on the test images it scores.

**Integrated** (:func:`evaluate_integrated`). One label space of ``C + 1`` columns: *normal*
(true iff an image has no anomaly) and the C categories. An image is predicted normal when its
anchor score is below the anchor threshold; otherwise it gets every category whose score passes
its threshold, or the single category with the largest margin if none passes (the anchor already
said "abnormal"). Label metrics (subset accuracy, both Hamming variants, micro / macro F1) are
computed over the ``C + 1`` columns; score metrics (AUROC, AP) use the raw scores, the normal
column scored by ``−anchor``. ``macro_auroc`` averages the ``C + 1`` columns, ``anomaly_macro_auroc``
the C anomaly columns only (the number to compare with a per-category table). ``pairwise_auroc``
and ``pairwise_confusion`` say how well two categories are told apart (:func:`pairwise_separation`).

**Per-anomaly** (:func:`evaluate_per_anomaly`). Each category as its own detection task: the test
images that are normal or carry c; positives carry c; the category's own score (no anchor).

**Open-set** (:func:`evaluate_open_set`). Categories held out of training must still be flagged
abnormal by the anchor: anchor AUROC and recall of normal vs the images whose labels are all held
out (the strict unseen case), vs any held-out label, and vs seen categories only (the reference).
Which category is held out, and how many seeds per category, is the experiment's choice
(:func:`sdmad_lite.evaluation.open_set_heldout`).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .metrics import (hamming_accuracy, hamming_score, macro_ap, macro_auroc, macro_f1, micro_f1, per_category_f1,
                      subset_accuracy)
from .metrics._checks import (MetricInputError, _as_labels, _as_scores, _as_threshold, _as_thresholds, _same_rows)
from .metrics.labels import _confusion, _f1
from .metrics.scores import _ap, _auroc, _macro, _scores_pair

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


def vote(scores: Any, anchor: Any, thresholds: Any, anchor_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """The labels of F models (a tuned method's fold models), each cut at the same thresholds: their
    majority vote. ``scores`` (F, N, C), ``anchor`` (F, N). Returns the integrated labels (N, C+1) — an
    image is abnormal when most models say so, and then gets every category most models give it (or, if
    none has a majority, the one the most models give, ties to the larger mean margin) — and the
    per-anomaly labels (N, C): category c where most models' ``score ≥ threshold``."""
    sc = np.asarray(scores, dtype=float)
    an = np.asarray(anchor, dtype=float)
    if sc.ndim != 3 or an.shape != sc.shape[:2]:
        raise MetricInputError(f"vote: scores must be (F, N, C) and anchor (F, N), got {sc.shape} and {an.shape}")
    th = _as_thresholds(thresholds, sc.shape[2])
    at = _as_threshold(anchor_threshold, "anchor_threshold")
    each = np.stack([predict_integrated(s, a, th, at) for s, a in zip(sc, an)])  # (F, N, C+1)
    votes, half = each.sum(0), sc.shape[0] / 2
    abnormal = votes[:, 0] < half  # normal only when a majority says normal
    cats = (votes[:, 1:] > half).astype(np.int8)
    none = abnormal & (cats.sum(1) == 0)
    margin = (sc - th).mean(0)
    if none.any():
        key = votes[none, 1:] + 1e-6 * np.tanh(margin[none])  # most votes, ties to the larger mean margin
        cats[none, np.argmax(key, axis=1)] = 1
    cats[~abnormal] = 0
    per = ((sc >= th).sum(0) > half).astype(np.int8)
    return np.column_stack([(~abnormal).astype(np.int8), cats]), per


def evaluate_integrated(
    scores: Any,
    anchor: Any,
    y_true: Any,
    thresholds: Any,
    anchor_threshold: float,
    y_pred: Any | None = None,
) -> dict[str, Any]:
    """Integrated protocol: normal and all C anomaly categories in one label space.

    The paper does not define its protocols; this is the book's documented choice.

    * Label space: ``C+1`` columns; column 0 is *normal* (true iff the image has no anomaly),
      columns 1..C are the anomaly categories of ``y_true`` (shape ``(N, C)``).
    * Predictions: :func:`predict_integrated` (anchor gate, then per-category thresholds).
    * Label metrics (subset accuracy, both Hamming variants, micro/macro F1) are computed over
      the C+1 columns. Since every true and every predicted row has at least one label, the
      0/0 case of :func:`~sdmad_lite.metrics.labels.hamming_score` never occurs here.
    * Score metrics use raw scores, not the gate: column 0 is scored by ``−anchor`` (so its
      AUROC equals ``binary_auroc``), columns 1..C by ``scores`` over all images. Macro AUROC
      and AP average the C+1 columns, ignoring NaN; ``anomaly_macro_auroc`` / ``_ap`` average
      the C anomaly columns only.

    ``y_pred``: predicted labels ``(N, C+1)`` to use instead of the thresholded scores (the reference
    rows, whose predictions are not thresholds of their scores).

    Returns a dict of floats, ``(C+1,)`` per-category arrays (index 0 = normal), the counts
    of defined AUROC/AP columns, ``y_pred`` and ``n_images``.
    """
    sc, yt, th = _protocol_inputs(scores, y_true, thresholds)
    an = _as_scores(anchor, "anchor", ndim=1)
    _same_rows(sc, an, "scores", "anchor")
    y_pred = predict_integrated(sc, an, th, anchor_threshold) if y_pred is None else _as_labels(y_pred, "y_pred")
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
        **pairwise_separation(sc, yt, y_pred[:, 1:]),
        "y_pred": y_pred,
    }


def pairwise_separation(scores: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """How well each pair of categories (i, j) is told apart, on the images that carry exactly one of
    the two: ``pairwise_auroc`` — the AUROC of ``score_i − score_j`` with the images of i as positives;
    ``pairwise_confusion`` — the share of those images whose predicted labels include the other
    category of the pair. Both averaged over the pairs where they are defined (``(C, C)`` matrices in
    ``pairwise_auroc_matrix`` / ``pairwise_confusion_matrix``; NaN where a pair has no such images)."""
    C = y_true.shape[1]
    auc = np.full((C, C), np.nan)
    conf = np.full((C, C), np.nan)
    for i in range(C):
        for j in range(C):
            if i == j:
                continue
            only_i, only_j = (y_true[:, i] == 1) & (y_true[:, j] == 0), (y_true[:, j] == 1) & (y_true[:, i] == 0)
            m = only_i | only_j
            if i < j:
                auc[i, j] = auc[j, i] = _auroc(only_i[m].astype(np.int8), scores[m, i] - scores[m, j])
            if only_i.any():
                conf[i, j] = float(y_pred[only_i, j].mean())  # images of i (not j) predicted to carry j
    upper = auc[np.triu_indices(C, 1)]
    return {"pairwise_auroc": float(np.nanmean(upper)) if np.isfinite(upper).any() else float("nan"),
            "pairwise_confusion": float(np.nanmean(conf)) if np.isfinite(conf).any() else float("nan"),
            "pairwise_auroc_matrix": auc, "pairwise_confusion_matrix": conf}


def evaluate_per_anomaly(scores: Any, y_true: Any, thresholds: Any, y_pred: Any | None = None) -> dict[str, Any]:
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
            pred = (s >= th[c]) if y_pred is None else np.asarray(y_pred)[keep, c]
            f1s[c] = float(_f1(*_confusion(y[:, None], pred.astype(np.int8)[:, None]))[0])
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
    flagged: Any | None = None,
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
    group sizes. An empty group gives NaN, never an error. ``flagged``: the (N,) abnormal decisions to
    use instead of ``anchor >= threshold`` (a fold ensemble's majority vote).
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
    flagged = an >= at if flagged is None else np.asarray(flagged, dtype=bool)

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
