"""Property tests (Hypothesis) of the few-shot sampler and of metric invariants that
tests/test_metrics.py does not cover (it has bounds, order invariance, perfect scores, negation
and agreement with scikit-learn)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sdmad_lite import metrics as M
from sdmad_lite import protocols as P
from sdmad_lite.data.fewshot import PoolTooSmallError, sample_few_shot

FAST = settings(max_examples=50, deadline=None)


# =========================================================================== few-shot sampler
@st.composite
def fewshot_cases(draw):
    """A random multi-label matrix (sparse to dense), k, n_normal, an evaluation set and a seed."""
    n = draw(st.integers(1, 60))
    c = draw(st.integers(1, 5))
    density = draw(st.sampled_from([0.05, 0.2, 0.5]))
    bits = draw(hnp.arrays(np.float64, (n, c), elements=st.floats(0, 1, allow_nan=False)))
    y = (bits < density).astype(np.int8)
    k = draw(st.integers(1, 4))
    n_normal = draw(st.none() | st.integers(0, 5))
    exclude = np.array(sorted(draw(st.sets(st.integers(0, n - 1), max_size=n // 2))), dtype=int)
    if draw(st.integers(0, 3)):  # mostly: append enough rows for every pool (the rest may be too small)
        extra = draw(hnp.arrays(np.int8, (k * c, c), elements=st.integers(0, 1)))
        extra[np.arange(k * c), np.repeat(np.arange(c), k)] = 1  # k more positives per category
        normals = np.zeros((k if n_normal is None else max(n_normal, 0), c), np.int8)
        y = np.concatenate([y, extra, normals])
    seed = draw(st.integers(0, 2**32 - 1))
    return y, k, n_normal, exclude, seed


def _pools_suffice(y, k, n_normal, exclude) -> bool:
    free = np.ones(len(y), bool)
    free[exclude] = False
    enough_pos = all(int((free & (y[:, j] == 1)).sum()) >= k for j in range(y.shape[1]))
    n_norm = k if n_normal is None else n_normal
    return enough_pos and int((free & (y.sum(1) == 0)).sum()) >= n_norm


@FAST
@given(fewshot_cases())
def test_sampler_properties(case):
    y, k, n_normal, exclude, seed = case
    names = [f"c{j}" for j in range(y.shape[1])]
    if not _pools_suffice(y, k, n_normal, exclude):  # too small a pool: one clear error, never a short draw
        with pytest.raises(PoolTooSmallError, match=r"fewer than (k|n_normal)="):
            sample_few_shot(y, k, seed, n_normal=n_normal, exclude=exclude, categories=names)
        return
    s = sample_few_shot(y, k, seed, n_normal=n_normal, exclude=exclude, categories=names)
    drawn = set(s.indices)
    # disjoint from the evaluation rows, within range, no row twice
    assert drawn.isdisjoint(exclude.tolist())
    assert all(0 <= i < len(y) for i in drawn) and len(s.indices) == len(drawn)
    # >= k positives per category; support[c] lists exactly the drawn abnormal rows carrying c
    assert all(v >= k for v in s.shots().values()) and set(s.support) == set(names)
    for j, name in enumerate(names):
        assert set(s.support[name]) == {i for i in s.abnormal if y[i, j] == 1}
    assert len(s.abnormal) <= k * y.shape[1] and all(y[i].any() for i in s.abnormal)
    # exactly n_normal normals (default k), none with a label, distinct from the abnormal rows
    assert len(s.normal) == (k if n_normal is None else n_normal) == len(set(s.normal))
    assert not y[s.normal].any() and set(s.normal).isdisjoint(s.abnormal)
    # same seed, same draw
    assert sample_few_shot(y, k, seed, n_normal=n_normal, exclude=exclude, categories=names) == s


@FAST
@given(fewshot_cases(), st.integers(0, 2**32 - 1))
def test_sampler_depends_only_on_its_inputs(case, other_seed):
    """Same inputs -> same draw even after other draws (no hidden global state); the label
    matrix is not modified."""
    y, k, n_normal, exclude, seed = case
    if not _pools_suffice(y, k, n_normal, exclude):
        return
    y0 = y.copy()
    a = sample_few_shot(y, k, seed, n_normal=n_normal, exclude=exclude)
    np.random.seed(other_seed % 2**32)  # the global numpy state must not matter
    sample_few_shot(y, k, other_seed, n_normal=n_normal, exclude=exclude)
    assert sample_few_shot(y, k, seed, n_normal=n_normal, exclude=exclude) == a
    assert np.array_equal(y, y0)


# =========================================================================== metrics
@st.composite
def label_cases(draw, min_n: int = 1):
    n = draw(st.integers(min_n, 12))
    c = draw(st.integers(1, 4))
    y_true = draw(hnp.arrays(np.int8, (n, c), elements=st.integers(0, 1)))
    y_pred = draw(hnp.arrays(np.int8, (n, c), elements=st.integers(0, 1)))
    scores = draw(hnp.arrays(np.float64, (n, c), elements=st.integers(-6, 6).map(lambda v: v / 6)))
    return y_true, y_pred, scores


@FAST
@given(label_cases())
def test_label_metrics_are_ordered(case):
    """Exact match <= Jaccard <= per-label accuracy, image by image, hence on average."""
    y, p, _ = case
    assert M.subset_accuracy(y, p) <= M.hamming_score(y, p) + 1e-12 <= M.hamming_accuracy(y, p) + 2e-12


@FAST
@given(label_cases())
def test_score_metrics_invariant_to_increasing_transforms(case):
    """AUROC and AP depend only on the order of the scores (ties included)."""
    y, _, s = case
    t = np.exp(3 * s) + s**3  # strictly increasing
    for fn in (M.per_category_auroc, M.per_category_ap):
        np.testing.assert_allclose(fn(y, t), fn(y, s))  # NaN in the same places


@FAST
@given(label_cases())
def test_metrics_invariant_to_replicating_the_data(case):
    """Evaluating every image twice changes no metric (they are means and rank statistics)."""
    y, p, s = case
    y2, p2, s2 = np.concatenate([y, y]), np.concatenate([p, p]), np.concatenate([s, s])
    for fn in (M.subset_accuracy, M.hamming_score, M.hamming_accuracy, M.micro_f1, M.macro_f1):
        assert fn(y2, p2) == pytest.approx(fn(y, p))
    for fn in (M.per_category_auroc, M.per_category_ap):
        np.testing.assert_allclose(fn(y2, s2), fn(y, s))


@FAST
@given(label_cases(), st.integers(-6, 6), st.integers(-6, 6))
def test_protocols_are_nan_safe_and_count_defined_categories(case, t, a):
    """Any label matrix (categories without positives, no normals, all normals): no exception,
    no warning; NaN exactly where a task is undefined, and the counts say how many are defined;
    every integrated prediction is either 'normal' alone or at least one anomaly."""
    y, _, s = case
    anchor = s.mean(axis=1)
    th = np.full(y.shape[1], t / 6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        per = P.evaluate_per_anomaly(s, y, th)
        integ = P.evaluate_integrated(s, anchor, y, th, a / 6)
    normal = y.sum(1) == 0
    defined = np.array([(y[:, c] == 1).any() and normal.any() for c in range(y.shape[1])])
    assert np.array_equal(~np.isnan(per["per_category_auroc"]), defined)
    assert per["n_auroc_defined"] == defined.sum() and per["n_positive"].tolist() == y.sum(0).tolist()
    assert np.isnan(per["mean_auroc"]) == (not defined.any())
    y_full = np.column_stack([normal, y])
    both = np.array([0 < y_full[:, c].sum() < len(y) for c in range(y_full.shape[1])])
    assert np.array_equal(~np.isnan(integ["per_category_auroc"]), both) and integ["n_auroc_defined"] == both.sum()
    pred = integ["y_pred"]
    assert np.array_equal(pred[:, 0] == 1, pred[:, 1:].sum(1) == 0)
