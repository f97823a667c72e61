"""Shared signs, controlled: the pair worlds and the pairwise separation of the integrated protocol."""
import numpy as np
import pytest

from sdmad_lite import studies
from sdmad_lite.config import ConfigError, ExperimentConfig
from sdmad_lite.data.phantoms.catalogue import PAIR_CATEGORIES, get_modality, pair_modality
from sdmad_lite.data.phantoms.world import PhantomDataset
from sdmad_lite.protocols import evaluate_integrated, pairwise_separation
from sdmad_lite.signs.bank import SignBank
from sdmad_lite.signs.noise import is_drawn


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_a_pair_world_shares_exactly_n_signs(n):
    spec = get_modality(f"pairs{n}")
    a, b = (set(spec.category_signs[c]) for c in PAIR_CATEGORIES)
    assert len(a) == len(b) == 3 and len(a & b) == n
    assert spec.renderer == "chest" and not spec.multi_label and spec.label_source == "uniform"
    bank = SignBank.from_catalogue(f"pairs{n}")
    assert bank.categories == PAIR_CATEGORIES and bank.obj == "chest x-ray"
    assert len(bank.shared_signs()) == n
    for c in PAIR_CATEGORIES:
        assert {s.id for s in bank.selected(c)} == set(spec.category_signs[c])
        assert all(is_drawn(bank, c, s.id) for s in bank.selected(c))
        assert all(bank.prompts(c))


def test_a_pair_world_draws_only_its_categories_signs():
    ds = PhantomDataset("pairs1", 30, seed=2, size=96)
    assert ds.label_source == "uniform" and set(ds.labels.sum(1)) <= {0, 1}  # one finding per abnormal image
    spec = pair_modality(1)
    for item in ds:
        cats = item["meta"]["categories"]
        allowed = set().union(*(spec.category_signs[c] for c in cats)) if cats else set()
        assert set(item["signs"]) <= allowed and (not cats or item["signs"])


def test_bad_pair_worlds_are_refused(tmp_path):
    with pytest.raises(ValueError, match="shares 0 to 3 signs"):
        pair_modality(4)
    with pytest.raises(ValueError, match="pairs0 … pairs3"):
        get_modality("pears")
    p = tmp_path / "c.yaml"
    p.write_text("data: {dataset: phantom-pairs4}\n")
    from sdmad_lite.config import load_config

    with pytest.raises(ConfigError, match="phantom-pairs3"):
        load_config(p)
    assert ExperimentConfig.from_dict({"data": {"dataset": "phantom-pairs2"}}).data.dataset == "phantom-pairs2"


def test_pairwise_separation_by_hand():
    y = np.array([[1, 0], [1, 0], [0, 1], [0, 1], [0, 0], [1, 1]])
    good = np.array([[0.9, 0.1], [0.8, 0.3], [0.2, 0.7], [0.1, 0.9], [0.0, 0.0], [0.5, 0.5]])
    pred = np.array([[1, 0], [1, 1], [0, 1], [0, 1], [0, 0], [1, 1]])
    r = pairwise_separation(good, y, pred)
    assert r["pairwise_auroc"] == 1.0  # images with both labels and normals are left out
    assert r["pairwise_confusion_matrix"][0, 1] == 0.5 and r["pairwise_confusion_matrix"][1, 0] == 0.0
    assert r["pairwise_confusion"] == 0.25
    same = np.repeat(good[:, :1], 2, axis=1)
    assert pairwise_separation(same, y, pred)["pairwise_auroc"] == 0.5  # no way to tell them apart
    flipped = good[:, ::-1]
    assert pairwise_separation(flipped, y, pred)["pairwise_auroc"] == 0.0
    alone = pairwise_separation(good[:, :1], y[:, :1], pred[:, :1])
    assert np.isnan(alone["pairwise_auroc"]) and np.isnan(alone["pairwise_confusion"])  # one category: no pair
    ev = evaluate_integrated(good, good.max(1), y, [0.5, 0.5], 0.4)
    assert ev["pairwise_auroc"] == 1.0


def test_the_study_runs_every_overlap():
    cfgs = studies.shared_signs(seeds=(0,))
    assert sorted({c.data.dataset for c in cfgs}) == [f"phantom-pairs{n}" for n in studies.SHARED]
    assert len(cfgs) == len(studies.SHARED) * len(studies.SHARED_METHODS)
