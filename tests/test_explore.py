"""The explorers: the figure shows the chosen image and category, the widgets redraw it, the book gets
the static figure."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from sdmad_lite import explore as X  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    import os

    from sdmad_lite import methods
    from sdmad_lite.config import ExperimentConfig
    from sdmad_lite.task import get_task

    os.environ["SDMAD_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    cfg = ExperimentConfig.from_dict({"seed": 1, "k_shot": 2, "model": {"adapter_hidden": 16},
                                      "data": {"n_test": 12, "n_pool": 300, "image_size": 64},
                                      "train": {"epochs": 3}, "tuning": {"folds": 0}})  # one head: the explorer shows its maps
    task = get_task(cfg)
    sup = task.draw_support(cfg.k_shot, cfg.seed, cfg.train.val_fraction)
    pred, res = methods.predict(task, sup, cfg)
    text = task.text.with_active(torch.as_tensor(pred.kept))
    yield task, res.head, text, pred
    os.environ.pop("SDMAD_CACHE")


@pytest.mark.slow
def test_image_view_matches_the_predictions(trained):
    task, head, text, pred = trained
    v = X.image_view(task, head, text, pred, 5)
    assert v.category == int(np.argmax(pred.test_scores[5]))  # default: the top-scored category
    np.testing.assert_array_equal(v.labels, task.y_test[5])
    n_real = int(text.sign_mask[v.category].sum())
    assert len(v.sign_ids) == len(v.sign_sims) == len(v.kept) == n_real and "" not in v.sign_ids
    assert v.kept.sum() == int(text.active[v.category].sum())
    assert v.sign_map.shape == (task.backbone.grid, task.backbone.grid) and np.isfinite(v.sign_map).all()
    assert X.image_view(task, head, text, pred, 5, category=2).category == 2


@pytest.mark.slow
def test_image_view_rejects_what_does_not_exist(trained):
    task, head, text, pred = trained
    with pytest.raises(IndexError, match="0..11"):
        X.image_view(task, head, text, pred, 12)
    with pytest.raises(IndexError, match="categories"):
        X.image_view(task, head, text, pred, 0, category=99)


@pytest.mark.slow
def test_image_explorer_redraws_on_a_new_choice(trained):
    task, head, text, pred = trained
    ex = X.image_explorer(task, head, text, pred, index=0, widgets=True)
    assert "test image 0" in ex.figure.axes[0].get_title()
    ex.controls["image"].value = 7
    assert "test image 7" in ex.figure.axes[0].get_title()
    ex.controls["category"].value = 3
    assert task.categories[3] in ex.figure.axes[0].get_title()
    assert len(ex.figure.axes[1].patches) == len(task.categories)  # one score bar per category
    png = ex.app.children[1].value  # what the reader sees: the figure as a PNG image widget
    assert bytes(png[:8]) == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_phantom_explorer_follows_the_modality(trained):
    ex = X.phantom_explorer("chest", ("Effusion",), seed=2, widgets=True)
    assert "Effusion" in ex.figure.axes[0].get_title()
    ex.controls["modality"].value = "oct"
    assert ex.controls["categories"].value == () and "CNV" in ex.controls["categories"].options
    ex.controls["categories"].value = ("CNV",)
    assert ex.figure.axes[0].get_title().startswith("oct, seed 2: CNV")


def test_the_book_gets_a_static_figure_and_no_widgets(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda x: shown.append(x))
    monkeypatch.setenv("SDMAD_STATIC", "1")
    ex = X.phantom_explorer("oct", ("DRUSEN",), seed=1)
    assert ex.app is None and ex.controls == {} and "DRUSEN" in ex.figure.axes[0].get_title()
    X.show(ex)
    assert len(shown) == 1 and shown[0].data[:8] == b"\x89PNG\r\n\x1a\n"  # the figure, as an image
    monkeypatch.setenv("SDMAD_STATIC", "0")
    live = X.phantom_explorer("oct", ("DRUSEN",), seed=1)
    assert live.app is not None
    X.show(live)
    assert shown[-1] is live.app
