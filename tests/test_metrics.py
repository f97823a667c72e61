"""Tests of sdmad_lite.metrics: hand-computed cases, agreement with scikit-learn, properties.

scikit-learn (and scipy, which it depends on) are test-only dependencies used as references.
"""
from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sdmad_lite import metrics as M
from sdmad_lite import protocols as P

sk = pytest.importorskip("sklearn.metrics")

FAST = settings(max_examples=40, deadline=None)

# ----------------------------------------------------------------------------- fixtures
# The worked example of the integrated and per-anomaly protocols (C = 2 categories, 5 images).
Y5 = np.array([[0, 0], [1, 0], [0, 1], [1, 0], [0, 0]])
ANCHOR5 = np.array([0.1, 0.8, 0.6, 0.9, 0.7])
SCORES5 = np.array([[0.9, 0.1], [0.7, 0.2], [0.45, 0.4], [0.6, 0.8], [0.2, 0.6]])
THR5 = np.array([0.5, 0.5])


def _random_case(rng: np.random.Generator, n: int, c: int, ties: bool = False):
    y_true = rng.integers(0, 2, size=(n, c))
    y_pred = rng.integers(0, 2, size=(n, c))
    scores = rng.integers(0, 4, size=(n, c)) / 4.0 if ties else rng.normal(size=(n, c)) + y_true
    return y_true, y_pred, scores


# ----------------------------------------------------------------------------- hand cases
def test_label_metrics_hand_case():
    y = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 0], [1, 1, 0]])
    p = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0], [0, 1, 1]])
    assert M.subset_accuracy(y, p) == pytest.approx(2 / 4)
    # per image |∩|/|∪|: 1/2, 1, 0/0 := 1, 1/3
    assert M.hamming_score(y, p) == pytest.approx((0.5 + 1 + 1 + 1 / 3) / 4)
    # 3 wrong cells of 12
    assert M.hamming_accuracy(y, p) == pytest.approx(1 - 3 / 12)
    # per category (tp, fp, fn): (1,0,1) (2,0,0) (0,1,1)
    np.testing.assert_allclose(M.per_category_f1(y, p), [2 / 3, 1.0, 0.0])
    assert M.macro_f1(y, p) == pytest.approx((2 / 3 + 1) / 3)
    assert M.micro_f1(y, p) == pytest.approx(2 * 3 / (2 * 3 + 1 + 2))


def test_f1_zero_division_is_zero():
    y = np.array([[0, 1], [0, 0]])
    np.testing.assert_array_equal(M.per_category_f1(y, y), [0.0, 1.0])  # empty column -> 0
    assert M.micro_f1(np.zeros((2, 2)), np.zeros((2, 2))) == 0.0
    assert M.hamming_score(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0  # 0/0 := 1


def test_auroc_hand_case_with_ties():
    # positives 0.5 (ties a negative: 1/2, beats 0.2: 1) and 0.8 (beats both) -> 3.5 / 4
    assert M.auroc([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.8]) == pytest.approx(0.875)
    assert M.auroc([0, 1], [1.0, 1.0]) == pytest.approx(0.5)


def test_ap_hand_case_with_ties():
    # threshold 0.8: P = 1/2, R = 1/2; threshold 0.5: P = 2/3, R = 1 -> 1/2·1/2 + 1/2·2/3
    assert M.average_precision([1, 0, 1, 0], [0.8, 0.8, 0.5, 0.1]) == pytest.approx(7 / 12)
    assert M.average_precision([0, 1, 1], [0.1, 0.5, 0.9]) == pytest.approx(1.0)


def test_single_class_gives_nan_and_is_counted():
    y = np.array([[0, 1, 1], [1, 1, 0], [0, 1, 1]])  # column 1 has one class
    s = np.array([[0.1, 0.2, 0.3], [0.9, 0.8, 0.1], [0.2, 0.5, 0.7]])
    auc = M.per_category_auroc(y, s)
    assert math.isnan(auc[1]) and not np.isnan(auc[[0, 2]]).any()
    m = M.macro_auroc(y, s)
    assert (m.n_defined, m.n_categories) == (2, 3)
    assert m.value == pytest.approx(np.nanmean(auc)) and float(m) == m.value
    assert M.macro_ap(y, s).n_defined == 2
    # nothing defined: NaN, no warning, no crash
    with np.errstate(all="raise"):
        none = M.macro_auroc(np.zeros((3, 2)), s[:, :2])
    assert math.isnan(none.value) and none.n_defined == 0
    assert math.isnan(M.average_precision([1, 1], [0.1, 0.2]))
    assert math.isnan(M.binary_auroc([1, 1, 1], [0.1, 0.2, 0.3]))


def test_binary_auroc_accepts_label_matrix():
    assert M.binary_auroc(Y5, ANCHOR5) == pytest.approx(5 / 6)
    assert M.binary_auroc(Y5.max(axis=1), ANCHOR5) == pytest.approx(5 / 6)


# ----------------------------------------------------------------------------- vs scikit-learn
@pytest.mark.parametrize("seed", range(15))
def test_agrees_with_sklearn(seed):
    rng = np.random.default_rng(seed)
    n, c = int(rng.integers(3, 40)), int(rng.integers(2, 6))  # sklearn: (N, 1) is binary, not multi-label
    y_true, y_pred, scores = _random_case(rng, n, c, ties=seed % 2 == 0)
    assert M.subset_accuracy(y_true, y_pred) == pytest.approx(sk.accuracy_score(y_true, y_pred))
    assert M.hamming_accuracy(y_true, y_pred) == pytest.approx(1 - sk.hamming_loss(y_true, y_pred))
    assert M.hamming_score(y_true, y_pred) == pytest.approx(
        sk.jaccard_score(y_true, y_pred, average="samples", zero_division=1)
    )
    if (y_true | y_pred).any(axis=1).all():  # where sklearn's default (0/0 -> 0) is defined
        assert M.hamming_score(y_true, y_pred) == pytest.approx(
            sk.jaccard_score(y_true, y_pred, average="samples", zero_division=0)
        )
    for avg, fn in (("micro", M.micro_f1), ("macro", M.macro_f1)):
        assert fn(y_true, y_pred) == pytest.approx(sk.f1_score(y_true, y_pred, average=avg, zero_division=0))
    np.testing.assert_allclose(
        M.per_category_f1(y_true, y_pred), sk.f1_score(y_true, y_pred, average=None, zero_division=0)
    )
    aucs, aps = M.per_category_auroc(y_true, scores), M.per_category_ap(y_true, scores)
    for j in range(c):
        if 0 < y_true[:, j].sum() < n:
            assert aucs[j] == pytest.approx(sk.roc_auc_score(y_true[:, j], scores[:, j]))
            assert aps[j] == pytest.approx(sk.average_precision_score(y_true[:, j], scores[:, j]))
        else:
            assert math.isnan(aucs[j]) and math.isnan(aps[j])


# ----------------------------------------------------------------------------- properties
@st.composite
def cases(draw, min_n: int = 1):
    n = draw(st.integers(min_n, 12))
    c = draw(st.integers(1, 4))
    y_true = draw(hnp.arrays(np.int8, (n, c), elements=st.integers(0, 1)))
    y_pred = draw(hnp.arrays(np.int8, (n, c), elements=st.integers(0, 1)))
    scores = draw(hnp.arrays(np.float64, (n, c), elements=st.integers(0, 6).map(lambda k: k / 6)))
    perm_rows = draw(st.permutations(range(n)))
    perm_cols = draw(st.permutations(range(c)))
    return y_true, y_pred, scores, np.array(perm_rows), np.array(perm_cols)


LABEL_FNS = [M.subset_accuracy, M.hamming_score, M.hamming_accuracy, M.micro_f1, M.macro_f1]
SCORE_FNS = [lambda y, s: M.macro_auroc(y, s).value, lambda y, s: M.macro_ap(y, s).value]


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b)


@FAST
@given(cases())
def test_bounds(case):
    y, p, s, _, _ = case
    for fn in LABEL_FNS:
        assert 0.0 <= fn(y, p) <= 1.0
    for arr in (M.per_category_auroc(y, s), M.per_category_ap(y, s)):
        ok = arr[~np.isnan(arr)]
        assert ((ok >= 0) & (ok <= 1)).all()


@FAST
@given(cases())
def test_invariant_to_sample_order(case):
    y, p, s, rows, _ = case
    for fn in LABEL_FNS:
        assert fn(y, p) == pytest.approx(fn(y[rows], p[rows]))
    for fn in SCORE_FNS:
        assert _same(fn(y, s), fn(y[rows], s[rows]))


@FAST
@given(cases())
def test_macro_invariant_to_category_order(case):
    y, p, s, _, cols = case
    for fn in LABEL_FNS:
        assert fn(y, p) == pytest.approx(fn(y[:, cols], p[:, cols]))
    for fn in SCORE_FNS:
        assert _same(fn(y, s), fn(y[:, cols], s[:, cols]))


@FAST
@given(cases())
def test_perfect_predictions_score_one(case):
    y, _, s, _, _ = case
    for fn in (M.subset_accuracy, M.hamming_score, M.hamming_accuracy):
        assert fn(y, y) == 1.0
    if y.any():
        assert M.micro_f1(y, y) == 1.0
    if y.any(axis=0).all():  # an empty category has F1 = 0 by the zero_division=0 convention
        assert M.macro_f1(y, y) == 1.0
    perfect = y + 0.5 * s  # every positive above every negative in each column
    for arr in (M.per_category_auroc(y, perfect), M.per_category_ap(y, perfect)):
        assert np.all(np.isnan(arr) | np.isclose(arr, 1.0))


@FAST
@given(cases(min_n=2))
def test_auroc_of_negated_scores(case):
    y, _, s, _, _ = case
    a, b = M.per_category_auroc(y, s), M.per_category_auroc(y, -s)
    np.testing.assert_allclose(b, 1 - a)  # NaN in the same places


# ----------------------------------------------------------------------------- tables
def test_mean_std_hand_case_and_t_quantile():
    r = M.mean_std([1.0, 2.0, 3.0])
    assert (r.mean, r.std, r.n) == (2.0, 1.0, 3)
    half = 4.302652729749464 / math.sqrt(3)  # t_{0.975, 2}
    assert (r.low, r.high) == (pytest.approx(2 - half), pytest.approx(2 + half))
    assert r.format() == "200.0 ± 100.0" and r.format(scale=1, digits=2) == "2.00 ± 1.00"
    stats = pytest.importorskip("scipy.stats")
    v = np.array([0.3, 0.5, 0.4, 0.8, 0.1])
    lo, hi = stats.t.interval(0.9, len(v) - 1, loc=v.mean(), scale=stats.sem(v))
    r = M.mean_std(v, level=0.9)
    assert (r.low, r.high) == (pytest.approx(lo), pytest.approx(hi))


def test_paired_test_against_scipy():
    stats = pytest.importorskip("scipy.stats")
    a = np.array([0.61, 0.70, 0.55, 0.66, 0.72, 0.58, np.nan])
    b = np.array([0.60, 0.64, 0.50, 0.67, 0.65, 0.52, 0.9])
    r = M.paired_test(a, b)
    ok = ~np.isnan(a)
    assert r.n == 6 and r.mean == pytest.approx(float((a[ok] - b[ok]).mean()))
    assert r.p_t == pytest.approx(stats.ttest_rel(a[ok], b[ok]).pvalue)
    assert r.p_wilcoxon == pytest.approx(stats.wilcoxon(a[ok] - b[ok]).pvalue)
    assert r.low < r.mean < r.high
    same = M.paired_test([0.5, 0.5], [0.5, 0.5])
    assert same.mean == 0 and math.isnan(same.p_t)
    with pytest.raises(M.MetricInputError, match="one value per seed"):
        M.paired_test([1, 2], [1])


def test_mean_std_small_and_nan():
    one = M.mean_std([0.5, float("nan")])
    assert one.n == 1 and one.mean == 0.5 and math.isnan(one.std) and one.format() == "50.0"
    assert M.mean_std([]).n == 0 and M.mean_std([]).format() == "n/a"


def test_bootstrap_ci():
    rng = np.random.default_rng(0)
    y, p, s = _random_case(rng, 30, 3)
    a = M.bootstrap_ci(M.subset_accuracy, y, p, n=200, seed=1)
    b = M.bootstrap_ci(M.subset_accuracy, y, p, n=200, seed=1)
    assert a == b  # same seed, same interval
    assert a.low <= a.estimate <= a.high and a.n_valid == 200
    assert a.estimate == M.subset_accuracy(y, p)
    # a MacroScore is accepted; constant metric gives a degenerate interval
    m = M.bootstrap_ci(M.macro_auroc, y, s, n=50, seed=0)
    assert 0 <= m.low <= m.high <= 1
    c = M.bootstrap_ci(M.hamming_accuracy, y, y, n=20)
    assert c.low == c.high == 1.0
    # resamples where the metric is undefined are dropped and counted
    yb = np.array([1, 0, 0, 0, 0, 0, 0, 0])
    r = M.bootstrap_ci(M.auroc, yb, np.linspace(0, 1, 8), n=100, seed=0)
    assert 0 < r.n_valid < 100
    with pytest.raises(M.MetricInputError, match="shape"):
        M.bootstrap_ci(M.subset_accuracy, y, p[:5])


# ----------------------------------------------------------------------------- thresholds
def test_choose_thresholds_f1_and_fallback():
    s = np.array([[0.1, 0.2], [0.4, 0.6], [0.35, 0.3], [0.8, 0.1]])
    y = np.array([[0, 0], [1, 0], [0, 0], [1, 0]])  # column 1: negatives only
    t, fell = M.choose_thresholds(s, y, return_fallback=True)
    assert t[0] == pytest.approx(0.375)  # midway between 0.35 (neg) and 0.4 (pos): F1 = 1
    assert t[1] == pytest.approx((0.1 + 0.6) / 2)  # midpoint of the score range
    np.testing.assert_array_equal(fell, [False, True])
    assert M.choose_thresholds(s, y, default=0.5)[1] == 0.5
    assert M.choose_thresholds(s, y, rule="midpoint")[0] == pytest.approx((0.6 + 0.225) / 2)
    assert M.choose_thresholds(s, y, rule="youden")[0] == pytest.approx(0.375)
    with pytest.raises(M.MetricInputError, match="unknown threshold rule"):
        M.choose_thresholds(s, y, rule="best")


def test_chosen_threshold_maximises_validation_f1():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, size=(40, 1))
    s = rng.normal(size=(40, 1)) + y
    t = M.choose_thresholds(s, y)[0]
    best = max(M.per_category_f1(y, (s >= u).astype(int))[0] for u in np.unique(s))
    assert M.per_category_f1(y, (s >= t).astype(int))[0] == pytest.approx(best)


def test_choose_binary_threshold():
    a = np.array([0.1, 0.3, 0.5, 0.9])
    assert M.choose_binary_threshold(a, [0, 0, 1, 1]) == pytest.approx(0.4)
    assert M.choose_binary_threshold(a, np.array([[0, 0], [0, 0], [1, 0], [0, 1]])) == pytest.approx(0.4)
    assert M.choose_binary_threshold(a, [1, 1, 1, 1]) == pytest.approx(0.5)  # fallback: range midpoint


def test_thresholds_only_see_validation_data():
    # the choosers take validation arrays only; the protocols take thresholds, never fit them
    assert list(inspect.signature(M.choose_thresholds).parameters)[:2] == ["scores_val", "y_val"]
    assert list(inspect.signature(M.choose_binary_threshold).parameters)[:2] == ["anchor_val", "y_abnormal_val"]
    # predictions of the integrated protocol do not depend on the test labels
    r1 = P.evaluate_integrated(SCORES5, ANCHOR5, Y5, THR5, 0.5)
    r2 = P.evaluate_integrated(SCORES5, ANCHOR5, 1 - Y5, THR5, 0.5)
    np.testing.assert_array_equal(r1["y_pred"], r2["y_pred"])


# ----------------------------------------------------------------------------- protocols
def test_integrated_protocol_hand_case():
    r = P.evaluate_integrated(SCORES5, ANCHOR5, Y5, THR5, anchor_threshold=0.5)
    # row 0: anchor below -> normal; row 2: nothing passes -> largest margin (cat 0, -0.05);
    # row 3: both pass; row 4: normal image flagged by the anchor -> cat 1
    np.testing.assert_array_equal(r["y_pred"], [[1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 1, 1], [0, 0, 1]])
    assert r["n_images"] == 5 and r["n_categories"] == 3
    assert r["subset_accuracy"] == pytest.approx(2 / 5)
    assert r["hamming_score"] == pytest.approx((1 + 1 + 0 + 1 / 2 + 0) / 5)
    assert r["hamming_accuracy"] == pytest.approx(1 - 5 / 15)
    np.testing.assert_allclose(r["per_category_f1"], [2 / 3, 4 / 5, 0])
    assert r["macro_f1"] == pytest.approx(22 / 45)
    assert r["micro_f1"] == pytest.approx(6 / 11)
    np.testing.assert_allclose(r["per_category_auroc"], [5 / 6, 2 / 3, 1 / 2])
    np.testing.assert_allclose(r["per_category_ap"], [5 / 6, 7 / 12, 1 / 3])
    assert r["macro_auroc"] == pytest.approx(2 / 3) and r["n_auroc_defined"] == 3
    assert r["macro_ap"] == pytest.approx(7 / 12) and r["n_ap_defined"] == 3
    assert r["anomaly_macro_auroc"] == pytest.approx(7 / 12)
    assert r["binary_auroc"] == pytest.approx(5 / 6) == r["per_category_auroc"][0]


def test_integrated_protocol_perfect_and_nan_safe():
    y = np.array([[0, 0], [1, 0], [1, 0]])  # category 1 absent from the test set
    s = np.array([[0.1, 0.1], [0.9, 0.2], [0.8, 0.3]])
    r = P.evaluate_integrated(s, [0.0, 1.0, 1.0], y, [0.5, 0.5], 0.5)
    assert r["subset_accuracy"] == r["hamming_score"] == r["hamming_accuracy"] == 1.0
    assert math.isnan(r["per_category_auroc"][2]) and r["n_auroc_defined"] == 2
    assert r["macro_auroc"] == 1.0
    # a test set with no normal image: normal column and binary AUROC undefined, no crash
    r2 = P.evaluate_integrated(s[1:], [1.0, 1.0], y[1:], [0.5, 0.5], 0.5)
    assert math.isnan(r2["binary_auroc"]) and r2["n_auroc_defined"] == 0 and math.isnan(r2["macro_auroc"])


def test_per_anomaly_protocol_hand_case():
    r = P.evaluate_per_anomaly(SCORES5, Y5, THR5)
    # cat 0: images 0,1,3,4 (labels 0,1,1,0; scores .9,.7,.6,.2); cat 1: images 0,2,4
    np.testing.assert_array_equal(r["n_positive"], [2, 1])
    assert r["n_normal"] == 2
    np.testing.assert_allclose(r["per_category_auroc"], [1 / 2, 1 / 2])
    np.testing.assert_allclose(r["per_category_ap"], [7 / 12, 1 / 2])
    np.testing.assert_allclose(r["per_category_f1"], [4 / 5, 0])
    assert r["mean_auroc"] == pytest.approx(0.5)
    assert r["mean_ap"] == pytest.approx(13 / 24)
    assert r["mean_f1"] == pytest.approx(0.4)


def test_per_anomaly_nan_safe():
    y = np.array([[0, 0], [1, 0], [0, 0]])
    r = P.evaluate_per_anomaly(np.array([[0.1, 0.2], [0.9, 0.3], [0.2, 0.1]]), y, 0.5)
    assert r["per_category_auroc"][0] == 1.0
    assert np.isnan(r["per_category_auroc"][1]) and np.isnan(r["per_category_f1"][1])
    assert r["n_auroc_defined"] == r["n_f1_defined"] == 1 and r["mean_auroc"] == 1.0


def test_open_set_protocol_hand_case():
    y = np.array([[0, 0, 0], [0, 0, 0], [0, 0, 1], [1, 0, 1], [1, 0, 0], [0, 1, 0]])
    anchor = np.array([0.2, 0.55, 0.7, 0.4, 0.9, 0.3])
    r = P.evaluate_open_set(anchor, y, held_out=[2], anchor_threshold=0.5)
    assert (r["n_normal"], r["n_only_held_out"], r["n_any_held_out"], r["n_seen"]) == (2, 1, 2, 2)
    assert r["auroc_only_held_out"] == pytest.approx(1.0)  # 0.7 vs 0.2, 0.55
    assert r["auroc_any_held_out"] == pytest.approx(3 / 4)  # 0.7 and 0.4 vs 0.2, 0.55
    assert r["auroc_seen"] == pytest.approx(3 / 4)  # 0.9 and 0.3
    assert r["recall_only_held_out"] == 1.0 and r["recall_any_held_out"] == 0.5
    assert r["false_positive_rate"] == 0.5  # 0.55 >= 0.5
    # no image of the held-out category: NaN, not an error
    r2 = P.evaluate_open_set(anchor[[0, 1, 4]], y[[0, 1, 4]], [2], 0.5)
    assert r2["n_only_held_out"] == 0 and math.isnan(r2["auroc_only_held_out"]) and math.isnan(r2["recall_any_held_out"])
    with pytest.raises(M.MetricInputError, match="held_out"):
        P.evaluate_open_set(anchor, y, [3], 0.5)
    with pytest.raises(M.MetricInputError, match="held_out"):
        P.evaluate_open_set(anchor, y, [], 0.5)


# ----------------------------------------------------------------------------- input validation
def test_shape_mismatch_names_both_shapes():
    with pytest.raises(M.MetricInputError, match=r"\(3, 2\).*\(3, 3\)"):
        M.subset_accuracy(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(M.MetricInputError, match=r"\(5, 2\).*\(4,\)"):
        P.evaluate_integrated(SCORES5, ANCHOR5[:4], Y5, THR5, 0.5)
    with pytest.raises(M.MetricInputError, match="thresholds"):
        P.evaluate_integrated(SCORES5, ANCHOR5, Y5, [0.5, 0.5, 0.5], 0.5)
    with pytest.raises(M.MetricInputError, match="2-D"):
        M.macro_f1([0, 1], [0, 1])


def test_non_binary_labels():
    with pytest.raises(M.MetricInputError, match="only 0 and 1"):
        M.hamming_score(np.array([[0, 2]]), np.array([[0, 1]]))
    with pytest.raises(M.MetricInputError, match="only 0 and 1"):
        M.choose_thresholds(np.zeros((2, 1)), np.array([[0.3], [1.0]]))


def test_nan_scores_are_reported():
    s = SCORES5.copy()
    s[1, 0], s[3, 1] = np.nan, np.inf
    with pytest.raises(M.MetricInputError, match=r"1 NaN and 1 inf .*rows 1, 3.*check the model/checkpoint"):
        P.evaluate_integrated(s, ANCHOR5, Y5, THR5, 0.5)
    with pytest.raises(M.MetricInputError, match="NaN"):
        M.binary_auroc(Y5, [0.1, np.nan, 0.2, 0.3, 0.4])
    with pytest.raises(M.MetricInputError, match="NaN"):
        M.choose_thresholds(s, Y5)
