"""The fair protocol: equal tuning budgets, out-of-fold thresholds, the test split in no choice,
stacked training equal to one model at a time, and reference rows that mean what they say."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from sdmad_lite import methods, tuning
from sdmad_lite.config import ExperimentConfig
from sdmad_lite.features import Features
from sdmad_lite.models.sdmad import SDMADHead
from sdmad_lite.evaluation import evaluate
from sdmad_lite.train import StackedAdamW


def test_every_trained_method_gets_the_same_grid_size():
    sizes = {name: len(tuning.grid_points(m.grid)) for name, m in methods.REGISTRY.items()
             if m.unavailable is None and m.trained}
    assert len(set(sizes.values())) == 1 and set(sizes.values()) == {4}, sizes
    untrained = [n for n, m in methods.REGISTRY.items() if m.unavailable is None and not m.trained]
    assert {"always-normal", "label-prior", "zeroshot-signs", "sdmad-init"} <= set(untrained)


def test_folds_are_stratified_and_seeded():
    rng = np.random.default_rng(0)
    y = np.zeros((30, 4), int)
    for c in range(4):
        y[rng.choice(30, 6, replace=False), c] = 1
    f = tuning.assign_folds(y, 3, seed=5)
    assert np.array_equal(f, tuning.assign_folds(y, 3, seed=5)) and not np.array_equal(f, tuning.assign_folds(y, 3, 6))
    assert sorted(np.bincount(f).tolist()) == [10, 10, 10]
    for c in range(4):  # every category's positives are spread over the folds
        assert len(set(f[y[:, c] == 1])) == 3
    with pytest.raises(ValueError, match="tuning.folds"):
        tuning.assign_folds(y, 1, 0)


def test_grid_points_and_apply():
    pts = tuning.grid_points({"train.lr": [1e-3, 3e-3], "train.weight_decay": [0.0, 0.1]})
    assert len(pts) == 4 and pts[1] == {"train.lr": 1e-3, "train.weight_decay": 0.1}
    cfg = tuning.apply_point(ExperimentConfig(), pts[3])
    assert cfg.train.lr == 3e-3 and cfg.train.weight_decay == 0.1
    with pytest.raises(ValueError):
        tuning.apply_point(ExperimentConfig(), {"train.nope": 1})


def test_stacked_adamw_is_adamw_per_model():
    torch.manual_seed(0)
    w = torch.randn(3, 5, requires_grad=True)  # rows: models 0, 1, 1
    ref = [w[i].detach().clone().requires_grad_(True) for i in range(3)]
    lr, wd = torch.tensor([1e-2, 3e-3]), torch.tensor([0.1, 0.0])
    model_of = torch.tensor([0, 1, 1])
    opt = StackedAdamW([(w, 0, model_of)], lr, wd)
    refs = [torch.optim.AdamW([r], lr=float(lr[m]), weight_decay=float(wd[m])) for r, m in zip(ref, model_of.tolist())]
    for _ in range(5):
        x = torch.randn(5)
        opt.zero_grad()
        (w @ x).pow(2).sum().backward()
        opt.step()
        for r, o in zip(ref, refs):
            o.zero_grad()
            (r @ x).pow(2).backward()
            o.step()
    assert torch.allclose(w, torch.stack(ref), atol=1e-6)


def test_a_stack_of_heads_scores_as_each_head_alone():
    torch.manual_seed(1)
    taps = {b: torch.randn(4, 5, 16) for b in (1, 2)}
    one = [SDMADHead(3, [1, 2], 16, hidden=8, init="default") for _ in range(2)]
    stack = SDMADHead(3, [1, 2], 16, hidden=8, n_models=2, init="default")
    with torch.no_grad():  # model m's branches are branches m·4 .. m·4+3 of the stack
        stack.adapters.down.copy_(torch.cat([h.adapters.down for h in one], 2))
        stack.adapters.up.copy_(torch.cat([h.adapters.up for h in one], 1))
    proj = torch.randn(16, 6)
    to_joint = lambda x: x @ proj  # noqa: E731
    from sdmad_lite.models.sdmad import TextBank

    t = torch.nn.functional.normalize(torch.randn(3, 2, 6), dim=-1)
    text = TextBank(t, torch.ones(3, 2, dtype=torch.bool), torch.nn.functional.normalize(torch.randn(6), dim=0),
                    torch.nn.functional.normalize(torch.randn(6), dim=0))
    cat, anc = stack.logits(stack.per_model(stack.branch_features(taps, to_joint)), text)
    for m, h in enumerate(one):
        c1, a1 = h.logits(h.branch_features(taps, to_joint), text)
        assert torch.allclose(cat[m], c1, atol=1e-5) and torch.allclose(anc[m], a1, atol=1e-5)


def _tiny(tmp_path, **over):
    d = {"seed": 2, "k_shot": 2, "model": {"pretrained": "shipped", "adapter_hidden": 16},
         "data": {"n_test": 30, "n_pool": 300, "image_size": 64}, "protocols": ["integrated", "per-anomaly"],
         "tuning": {"max_epochs": 12, "patience": 4}}
    d.update(over)
    return ExperimentConfig.from_dict(d)


@pytest.fixture()
def tiny_task(tmp_path, monkeypatch):
    from sdmad_lite.task import get_task

    monkeypatch.setenv("SDMAD_CACHE", str(tmp_path / "cache"))
    cfg = _tiny(tmp_path)
    return cfg, get_task(cfg)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sdmad", "linear-probe", "learned-context", "generic-prompt-adapters", "mvfa",
                                  "anomalyclip"])
def test_the_test_split_enters_no_choice(tiny_task, name):
    """Replacing every test image and label changes nothing that was chosen: the grid point, the
    epochs, the kept signs, the out-of-fold support scores and the thresholds."""
    cfg, task = tiny_task
    cfg = methods.config_for(name, cfg)
    sup = task.draw_support(cfg.k_shot, cfg.seed, cfg.train.val_fraction)
    pred, fitted = methods.predict(task, sup, cfg)
    other = copy.copy(task)
    g = torch.Generator().manual_seed(9)
    other.test_feats = Features({b: torch.randn(t.shape, generator=g) for b, t in task.test_feats.taps.items()},
                                torch.nn.functional.normalize(torch.randn(task.test_feats.pooled.shape, generator=g), dim=-1))
    pred2, fitted2 = methods.predict(other, sup, cfg)
    assert fitted.tuned.point == fitted2.tuned.point and fitted.tuned.epochs == fitted2.tuned.epochs
    np.testing.assert_array_equal(pred.support_scores, pred2.support_scores)
    np.testing.assert_array_equal(pred.support_anchor, pred2.support_anchor)
    if pred.kept is not None:
        np.testing.assert_array_equal(pred.kept, pred2.kept)
    e1, e2 = evaluate(task, sup, pred), evaluate(task, sup, pred2)
    np.testing.assert_array_equal(e1["thresholds"], e2["thresholds"])
    assert e1["anchor_threshold"] == e2["anchor_threshold"]
    assert pred.extra["row"]["support_scores"] == "out-of-fold"
    assert (fitted.tuned.epochs or 0) <= cfg.tuning.max_epochs and len(fitted.tuned.records) == 4


@pytest.mark.slow
def test_reference_rows_mean_what_they_say(tiny_task):
    from sdmad_lite.run import run

    cfg, task = tiny_task
    normal = float((task.y_test.sum(1) == 0).mean())
    a = run(methods.config_for("always-normal", cfg))
    assert a["integrated.subset_accuracy"] == pytest.approx(normal) and a["integrated.macro_auroc"] == 0.5
    p = run(methods.config_for("label-prior", cfg))
    assert p["integrated.macro_auroc"] == 0.5 and 0 <= p["integrated.subset_accuracy"] <= 1


@pytest.mark.slow
def test_sdmad_at_initialisation_scores_the_frozen_features(tiny_task):
    """The near-identity head (up-projections × 0.01) scores almost as the head at λ = 1 (no adapter)."""
    from sdmad_lite.methods.heads import head_scores
    from sdmad_lite.methods.heads import make_head

    cfg, task = tiny_task
    init = make_head(task, cfg)
    frozen = make_head(task, cfg, lam=1.0)
    text = task.text_columns(list(range(len(task.categories))))
    a, _ = head_scores(init, task, task.test_feats, text, "side")
    b, _ = head_scores(frozen, task, task.test_feats, text, "side")
    assert np.abs(a - b).max() < 0.02
