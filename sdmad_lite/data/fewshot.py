"""Seeded multi-label few-shot sampling (the *k*-shot support set of the paper's setting).

**How shots are counted.** A multi-label image counts once *for each* of its labels: an image
with {Effusion, Atelectasis} is one Effusion shot and one Atelectasis shot. The sampler is
greedy over the categories in a seeded random order; for each category it first counts the
images already drawn (for earlier categories) that carry it, then draws only the missing
``k - already`` images from that category's pool. So every category ends with **at least**
``k`` positive shots (more if later draws carry it too); ``support[c]`` lists *all* drawn
abnormal images that carry ``c``, and the number of distinct abnormal images is at most
``k * C``. Normal shots are rows with no label at all (``n_normal``, default ``k``).

Everything is drawn from rows not in ``exclude`` (the evaluation set), so support and
evaluation never overlap. Same labels, ``k``, ``seed`` -> same split.

:func:`validation_rows` turns a draw into the :class:`Support` of an experiment, a seeded share per
stratum held out for early stopping; an experiment draws it with ``Task.draw_support``.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..io import atomic_write
from ..errors import SdmadError

SPLIT_FORMAT = "sdmad-lite/fewshot-split/v1"


class PoolTooSmallError(SdmadError, ValueError):
    """A category (or the normal class) has fewer images to draw from than the shots asked for."""


@dataclass
class FewShotSplit:
    """A drawn support set: row indices into the label matrix it was drawn from."""

    support: dict[str, list[int]]  # category -> all drawn abnormal rows carrying it (>= k)
    normal: list[int]
    k: int
    seed: int
    categories: list[str]
    order: list[str] = field(default_factory=list)  # the seeded category order used
    n_rows: int = 0  # rows of the label matrix (a guard when reloading)

    @property
    def abnormal(self) -> list[int]:
        """Distinct abnormal rows, sorted."""
        return sorted({i for rows in self.support.values() for i in rows})

    @property
    def indices(self) -> list[int]:
        """All support rows (abnormal and normal), sorted."""
        return sorted(set(self.abnormal) | set(self.normal))

    def shots(self) -> dict[str, int]:
        """Positive shots per category (each >= k)."""
        return {c: len(v) for c, v in self.support.items()}


def sample_few_shot(labels: np.ndarray, k: int, seed: int, n_normal: int | None = None,
                    exclude: Sequence[int] | np.ndarray | None = None,
                    categories: Sequence[str] | None = None) -> FewShotSplit:
    """Draw a ``k``-shot multi-label support set from a binary (N, C) label matrix.

    ``exclude``: rows that may not be drawn (the evaluation set). ``categories`` names the
    columns (default ``"0"``, ``"1"``, ...). Raises :class:`PoolTooSmallError` (a ``ValueError``)
    when a category's pool (rows outside ``exclude`` that carry it) is smaller than ``k``, or
    there are fewer than ``n_normal`` normal rows.
    """
    y = np.asarray(labels)
    if y.ndim != 2:
        raise ValueError(f"labels must be a 2-D (N, C) array, got shape {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be binary (0/1)")
    y = y.astype(bool)
    n, c = y.shape
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    cats = [str(j) for j in range(c)] if categories is None else [str(x) for x in categories]
    if len(cats) != c:
        raise ValueError(f"{len(cats)} category names for {c} label columns")
    n_normal = int(k if n_normal is None else n_normal)
    if n_normal < 0:
        raise ValueError(f"n_normal must be >= 0, got {n_normal}")
    available = np.ones(n, bool)
    if exclude is not None:
        ex = np.asarray(exclude, dtype=int).reshape(-1)
        if ex.size and (ex.min() < 0 or ex.max() >= n):
            raise ValueError(f"exclude holds indices outside 0..{n - 1}")
        available[ex] = False
    n_excluded = int(n - available.sum())

    rng = np.random.default_rng(seed)
    for j, name in enumerate(cats):
        pool = int((available & y[:, j]).sum())
        if pool < k:
            raise PoolTooSmallError(
                f"category {name!r}: only {pool} available positive rows (after excluding "
                f"{n_excluded} evaluation rows), fewer than k={k}; use a smaller k, or a larger pool "
                f"(more images outside the evaluation set, e.g. data.n_pool)")
    order = [int(j) for j in rng.permutation(c)]
    drawn = np.zeros(n, bool)
    for j in order:
        have = int((drawn & y[:, j]).sum())
        need = k - have
        if need > 0:
            pool = np.flatnonzero(available & y[:, j] & ~drawn)
            drawn[rng.choice(pool, size=need, replace=False)] = True
    support = {cats[j]: [int(i) for i in np.flatnonzero(drawn & y[:, j])] for j in range(c)}

    normal_pool = np.flatnonzero(available & ~y.any(axis=1))
    if len(normal_pool) < n_normal:
        raise PoolTooSmallError(f"only {len(normal_pool)} available normal rows (no label), fewer than "
                                f"n_normal={n_normal}; use a smaller n_normal (or k), or a pool with more normal images")
    normal = sorted(int(i) for i in rng.choice(normal_pool, size=n_normal, replace=False))
    return FewShotSplit(support=support, normal=normal, k=int(k), seed=int(seed),
                        categories=cats, order=[cats[j] for j in order], n_rows=n)


def split_train_eval(n: int, eval_fraction: float | None = None, eval_size: int | None = None,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded disjoint (pool, evaluation) row indices over ``range(n)``, both sorted.

    Give exactly one of ``eval_fraction`` (0 < f < 1) or ``eval_size``. Pass the evaluation
    indices as ``exclude`` to :func:`sample_few_shot`.
    """
    if (eval_fraction is None) == (eval_size is None):
        raise ValueError("give exactly one of eval_fraction or eval_size")
    if eval_fraction is not None:
        if not 0 < eval_fraction < 1:
            raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
        eval_size = int(round(n * eval_fraction))
    assert eval_size is not None
    if not 0 <= eval_size <= n:
        raise ValueError(f"eval_size must be in 0..{n}, got {eval_size}")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[eval_size:]), np.sort(perm[:eval_size])


def save_split(split: FewShotSplit, path: str | os.PathLike) -> Path:
    """Write a split as JSON atomically (temporary file, then ``os.replace``)."""
    return atomic_write(path, json.dumps({"format": SPLIT_FORMAT, **asdict(split)}, indent=1))


def load_split(path: str | os.PathLike) -> FewShotSplit:
    """Read a split written by :func:`save_split`."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"few-shot split file not found: {p}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: not a valid few-shot split JSON ({e})") from e
    if data.pop("format", None) != SPLIT_FORMAT:
        raise ValueError(f"{p}: not a few-shot split file (expected format {SPLIT_FORMAT!r})")
    try:
        return FewShotSplit(**data)
    except TypeError as e:
        raise ValueError(f"{p}: unexpected fields in few-shot split ({e})") from e


@dataclass
class Support:
    """A few-shot draw of an experiment: rows of the pool, split into train and validation."""

    split: FewShotSplit
    train: np.ndarray
    val: np.ndarray

    @property
    def all(self) -> np.ndarray:
        return np.concatenate([self.train, self.val])


def validation_rows(split: FewShotSplit, seed: int, val_fraction: float = 0.25) -> Support:
    """The support set of a draw, a seeded share of each stratum (each category's shots, the normals) to
    validation, so that, when k ≥ 2, every category has a shot in both parts."""
    rng = np.random.default_rng([seed, 7])
    val: set[int] = set()
    strata = [sorted(v) for v in split.support.values()] + [sorted(split.normal)]
    for rows in strata:
        free = [r for r in rows if r not in val]
        n_val = int(np.floor(len(rows) * val_fraction)) if len(rows) >= 2 else 0
        if n_val and free:
            val.update(rng.choice(free, size=min(n_val, len(free)), replace=False).tolist())
    allrows = np.array(split.indices)
    va = np.array(sorted(val), dtype=int)
    tr = np.array([r for r in allrows if r not in val], dtype=int)
    return Support(split, tr, va)
