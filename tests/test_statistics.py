"""The book's inference (issue 23): Holm-adjusted families, paired differences against a reference row,
thresholds that cut the scores of the models that fitted them, test-sample variance in every row."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sdmad_lite import analysis as A
from sdmad_lite import protocols


@pytest.mark.parametrize("p", [
    [0.01, 0.04, 0.03, 0.005],
    [0.5, 0.5, 0.5],
    [0.001],
    [0.2, 0.01, 0.9, 0.04, 0.03, 0.049, 0.0001],
    [0.03, 0.03, 0.03, 0.03],
])
def test_holm_equals_statsmodels(p):
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    want = multipletests(p, method="holm")[1]
    assert np.allclose(A.holm(p), want)


def test_holm_leaves_nan_out_of_the_family():
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    got = A.holm([0.01, np.nan, 0.04])
    assert np.isnan(got[1]) and np.allclose(got[[0, 2]], multipletests([0.01, 0.04], method="holm")[1])


def _rows(effect_a: float, effect_b: float, seeds: int = 10, noise: float = 0.01) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    out = []
    for s in range(seeds):
        base = 0.7 + rng.normal(0, 0.05)  # the seed's difficulty, shared by every method (paired)
        for m, eff in (("ref", 0.0), ("a", effect_a), ("b", effect_b)):
            out.append({"method": m, "seed": s, "k_shot": 4, "auc": base + eff + rng.normal(0, noise)})
    return pd.DataFrame(out)


def test_a_family_reads_the_adjusted_p_values():
    df = _rows(0.05, 0.004)
    fam = A.family(df, [{"metric": "auc", "a": "a", "b": "ref"}, {"metric": "auc", "a": "b", "b": "ref"}])
    assert list(fam.verdict) == [A.BEATS, A.NOT_CLEAR]
    assert (fam.p_holm >= fam.p).all() and "Holm-adjusted p" in fam.sentence[0]
    alone = A.family(df, [{"metric": "auc", "a": "a", "b": "ref"}])  # a family of one: nothing to adjust
    assert alone.p_holm[0] == pytest.approx(alone.p[0]) and alone.p_holm[0] < fam.p_holm[0] * 1.0001


@pytest.mark.parametrize("p", [
    [0.01, 0.04, 0.03, 0.005],
    [0.2, 0.01, 0.9, 0.04, 0.03, 0.049, 0.0001],
    [0.001, 0.02, 0.02],
    [0.5, np.nan, 0.001],
])
def test_holm_levels_are_the_steps_that_decide(p):
    """A hypothesis is rejected by Holm exactly when its p is below 1 − its level; the levels follow the steps."""
    p = np.asarray(p, float)
    lv, adj = A.holm_levels(p), A.holm(p)
    ok = ~np.isnan(p)
    assert np.isnan(lv[~ok]).all()
    assert ((p[ok] < 1 - lv[ok]) == (adj[ok] < 0.05)).all()
    m = ok.sum()
    assert lv[np.nanargmin(p)] == pytest.approx(1 - 0.05 / m)  # the smallest p is tested at Bonferroni's level
    assert (lv[ok] >= 0.95 - 1e-12).all() and (lv[ok] <= 1 - 0.05 / m + 1e-12).all()


def test_a_familys_interval_agrees_with_its_verdict():
    """The interval a family prints excludes 0 exactly when the adjusted verdict says beats or trails; the
    unadjusted 95 % interval can exclude 0 where the adjusted one does not (that is what the adjustment is for)."""
    rng = np.random.default_rng(1)
    rows = []
    effects = {"ref": 0.0, **{f"m{i}": e for i, e in enumerate([0.0, 0.004, 0.006, 0.008, 0.012, 0.03, -0.007, -0.02])}}
    for s in range(10):
        base = 0.7 + rng.normal(0, 0.05)
        rows += [{"method": m, "seed": s, "auc": base + e + rng.normal(0, 0.01)} for m, e in effects.items()]
    fam = A.family(pd.DataFrame(rows), [{"metric": "auc", "a": m, "b": "ref"} for m in effects if m != "ref"])
    clear = fam.verdict != A.NOT_CLEAR
    assert ((fam.low > 0) | (fam.high < 0)).tolist() == clear.tolist()
    assert clear.any() and (~clear).any()
    assert ((fam.high - fam.low) >= (fam.high_95 - fam.low_95) - 1e-9).all()  # never narrower than unadjusted
    unadj_clear = (fam.low_95 > 0) | (fam.high_95 < 0)
    assert (unadj_clear & ~clear).any(), "the example should have a comparison only the unadjusted interval calls"
    i = int(np.flatnonzero(clear)[0])
    assert A.level_text(fam.level[i]) in fam.sentence[i] and f"[{fam.low[i]:+.1f}, {fam.high[i]:+.1f}]" in fam.sentence[i]
    assert A.level_text(95.0) == "95 %" and A.level_text(100 * (1 - 0.05 / 16)) == "99.7 %"
    assert A.interval(99.0, -9.7, -0.034) == "99 % interval [-9.7, -0.03]"  # excludes 0, and reads so
    assert A.bound(0.0) == "+0.0" and A.bound(-0.0004) == "-4.0e-04" and A.bound(1.26) == "+1.3"


def test_a_familys_sentences_name_methods_as_prose():
    """``names=plots.prose``: a sentence names a method as prose does, from its registry id or its table label."""
    from sdmad_lite import plots

    assert plots.prose("zeroshot-signs") == plots.prose(plots.label("zeroshot-signs")) == "the frozen sign prompts"
    assert plots.prose("sdmad") == "SD-MAD" and plots.prose("the others") == "the others"
    df = _rows(0.05, 0.0).replace({"method": {"ref": plots.label("linear-probe")}})
    fam = A.family(df, [{"metric": "auc", "a": "a", "b": plots.label("linear-probe")}], names=plots.prose)
    assert fam.sentence[0].startswith(f"{A.BEATS} the linear probe (") and fam.b[0] == plots.label("linear-probe")
    assert A.family(df, [{"metric": "auc", "a": "a", "b": plots.label("linear-probe")}]).sentence[0].startswith(
        f"{A.BEATS} {plots.label('linear-probe')} (")


def test_minus_reference_is_paired_by_seed():
    df = _rows(0.03, -0.02)
    t = A.minus_reference(df, ["auc"], reference="ref").set_index("method")
    assert t.loc["a", "auc (mean)"] == pytest.approx(3.0, abs=0.7) and t.loc["a", "auc (low)"] > 0
    assert t.loc["b", "auc (high)"] < 0


def test_the_vote_of_fold_models():
    thr, athr = np.array([0.5, 0.5]), 0.5
    # three models, two images; image 0: two say abnormal with category 0; image 1: two say normal
    scores = np.array([[[0.9, 0.1], [0.2, 0.9]], [[0.8, 0.2], [0.1, 0.1]], [[0.1, 0.9], [0.9, 0.9]]])
    anchor = np.array([[0.9, 0.9], [0.9, 0.1], [0.1, 0.2]])
    integ, per = protocols.vote(scores, anchor, thr, athr)
    assert integ.tolist() == [[0, 1, 0], [1, 0, 0]]
    assert per.tolist() == [[1, 0], [0, 1]]
    with pytest.raises(ValueError, match=r"\(F, N, C\)"):
        protocols.vote(scores[0], anchor[0], thr, athr)


def test_no_study_of_the_book_uses_a_development_seed():
    from sdmad_lite import studies

    assert not set(studies.EVALUATION_SEEDS) & set(studies.DEVELOPMENT_SEEDS)
    for name, build in studies.STUDIES.items():
        cfgs = build()
        assert cfgs, name
        bad = [(c.method, c.seed, c.data.world) for c in cfgs
               if c.seed not in studies.EVALUATION_SEEDS or c.data.world != "evaluation"]
        assert not bad, f"study {name} uses development seeds or the development world: {bad[:3]}"
        assert all(c.data.test_resample for c in cfgs), f"study {name}: every seed must draw its own test sample"


def test_each_seed_draws_its_own_test_sample(tmp_path, monkeypatch):
    """A zero-shot row (no fitting at all) still varies over seeds: the test sample is the seed's."""
    monkeypatch.setenv("SDMAD_CACHE", str(tmp_path))
    from sdmad_lite.config import ExperimentConfig
    from sdmad_lite.task import get_task

    base = ExperimentConfig.from_dict({"k_shot": 1, "data": {"n_test": 40, "n_pool": 60, "image_size": 32},
                                       "model": {"adapter_hidden": 8}})
    tasks = [get_task(ExperimentConfig.from_dict({**base.to_dict(), "seed": s})) for s in (0, 1)]
    a, b = (t.y_test for t in tasks)
    assert a.shape == b.shape == (40, len(tasks[0].categories))
    assert not np.array_equal(a, b) or not np.array_equal(tasks[0].test_feats.pooled, tasks[1].test_feats.pooled)
    fixed = get_task(ExperimentConfig.from_dict({**base.to_dict(), "data": {**base.to_dict()["data"], "test_resample": False}}))
    assert len(fixed.test) == 40


def test_thresholds_cut_the_scores_of_the_models_that_fitted_them(tmp_path, monkeypatch):
    """A tuned method predicts with its fold models: the support scores the thresholds are fitted on are
    each image's score under the fold model that held it out, and the test labels are those same models'
    test scores cut at those thresholds (their vote). A model refitted on the whole support set (the
    scheme before issue 23) would make the test scores come from a model whose scores fitted nothing."""
    monkeypatch.setenv("SDMAD_CACHE", str(tmp_path))
    from sdmad_lite import methods
    from sdmad_lite import metrics as M
    from sdmad_lite.config import ExperimentConfig
    from sdmad_lite.evaluation import evaluate
    from sdmad_lite.task import get_task
    from sdmad_lite.tuning import CV, FoldEnsemble

    cfg = methods.config_for("linear-probe", ExperimentConfig.from_dict(
        {"k_shot": 3, "seed": 2, "data": {"n_test": 50, "n_pool": 200, "image_size": 32}, "probe": {"steps": 30}}))
    task = get_task(cfg)
    support = task.draw_support(cfg.k_shot, cfg.seed, cfg.train.val_fraction)
    pred, fitted = methods.predict(task, support, cfg)
    assert isinstance(fitted, FoldEnsemble) and pred.extra["row"]["predictor"] == "fold models"
    rows = support.all
    cv_folds = CV.of(cfg, task.y_pool[rows]).folds
    models = fitted.folds.models
    for f, model in enumerate(models):  # the support scores: each image under the model that held it out
        held = np.flatnonzero(cv_folds == f)
        c, a = model.scores(task.pool_feats.subset(rows[held]))
        assert np.allclose(pred.support_scores[held], c) and np.allclose(pred.support_anchor[held], a)
        tc, ta = model.scores(task.test_feats)  # the test scores: the same model's
        assert np.allclose(pred.test_scores_per_model[f], tc) and np.allclose(pred.test_anchor_per_model[f], ta)
    ev = evaluate(task, support, pred)
    thr = M.choose_thresholds(pred.support_scores, task.y_pool[rows], rule="f1")
    athr = M.choose_binary_threshold(pred.support_anchor, (task.y_pool[rows].sum(1) > 0).astype(int))
    labels, _ = protocols.vote(pred.test_scores_per_model, pred.test_anchor_per_model, thr, athr)
    assert np.array_equal(ev["integrated"]["y_pred"], labels)


def test_listing_joins_the_items_of_a_sentence():
    from sdmad_lite.analysis import listing

    assert listing([]) == "" and listing(["chest"]) == "chest"
    assert listing(["chest", "oct"]) == "chest and oct"
    assert listing(["chest", "oct", "brain"]) == "chest, oct and brain"
    assert listing(["zero-shot, expert signs", "linear probe", "x"], sep="; ") == "zero-shot, expert signs; linear probe; and x"
