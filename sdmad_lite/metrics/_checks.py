"""Input checks shared by the metrics: shapes, binary labels, finite scores (one clear error each)."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from ..errors import SdmadError

class MetricInputError(SdmadError, ValueError):
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




def _is_abnormal(y: Any, name: str) -> np.ndarray:
    """Accept a ``(N,)`` abnormal flag or an ``(N, C)`` label matrix (abnormal = any label)."""
    a = np.asarray(y)
    if a.ndim == 2:
        return _as_labels(a, name).max(axis=1)
    return _as_labels(a, name, ndim=1)
