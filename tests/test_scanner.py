"""The target-domain shift of the phantom world (data/phantoms/scanner.py)."""
import numpy as np
import pytest

from sdmad_lite import config as C
from sdmad_lite.data.build import dataset_key, phantom_datasets
from sdmad_lite.data.phantoms.scanner import Scanner
from sdmad_lite.data.phantoms.world import PhantomDataset


def test_strength_zero_is_the_identity_and_keeps_the_cache_key():
    a, b = PhantomDataset("chest", 3, seed=1, size=64), PhantomDataset("chest", 3, seed=1, size=64, shift=0.0)
    assert np.array_equal(a[2]["image"], b[2]["image"])
    assert dataset_key(a) == dataset_key(b) and "scanner" not in dataset_key(a)  # old feature caches stay valid


def test_a_shift_moves_the_image_deterministically_and_names_itself_in_the_key():
    plain = PhantomDataset("chest", 3, seed=1, size=96)[0]
    s1 = PhantomDataset("chest", 3, seed=1, size=96, shift=1.0, shift_seed=0)
    x, y = s1[0], s1[0]
    assert np.array_equal(x["image"], y["image"])  # same image, same pixels
    assert x["image"].dtype == np.uint8 and x["image"].shape == plain["image"].shape
    assert np.abs(x["image"].astype(int) - plain["image"].astype(int)).mean() > 5  # it did move
    half = PhantomDataset("chest", 3, seed=1, size=96, shift=0.5, shift_seed=0)[0]["image"].astype(int)
    d_half = np.abs(half - plain["image"].astype(int)).mean()
    assert 0 < d_half < np.abs(x["image"].astype(int) - plain["image"].astype(int)).mean()  # monotone in strength
    other = PhantomDataset("chest", 3, seed=1, size=96, shift=1.0, shift_seed=7)
    assert Scanner(1.0, 0).settings() != Scanner(1.0, 7).settings()
    keys = {str(dataset_key(d)) for d in (s1, other, PhantomDataset("chest", 3, seed=1, size=96, shift=0.5))}
    assert len(keys) == 3 and x["meta"]["scanner"] == {"strength": 1.0, "seed": 0}
    assert x["labels"].tolist() == plain["labels"].tolist()  # labels never change


def test_masks_follow_the_zoom():
    sc = Scanner(1.0, 0)
    img = np.zeros((100, 100), np.uint8)
    m = np.zeros((100, 100), bool)
    m[48:52, 48:52] = True  # a centred sign grows with the zoom
    edge = np.zeros((100, 100), bool)
    edge[0:2, 0:2] = True  # a corner sign leaves the field of view
    _, masks = sc(img, 3, {"c": m, "e": edge})
    assert masks["c"].sum() > m.sum() and masks["c"][50, 50]
    assert not masks["e"].any()


def test_bad_strengths_and_real_data_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"scanner strength must be in \[0, 1\]"):
        Scanner(1.5)
    p = tmp_path / "c.yaml"
    p.write_text("data: {scanner_shift: 2}\n")
    with pytest.raises(C.ConfigError, match=r"data\.scanner_shift.*in \[0, 1\]"):
        C.load_config(p)
    p.write_text(f"data: {{dataset: chestmnist, root: {tmp_path}, scanner_shift: 0.5}}\n")
    with pytest.raises(C.ConfigError, match="phantom-world knob"):
        C.load_config(p)


def test_the_config_reaches_the_datasets():
    cfg = C.ExperimentConfig.from_dict({"data": {"scanner_shift": 0.25, "scanner_seed": 3, "n_test": 2, "n_pool": 2}})
    _, test, pool = phantom_datasets(cfg)
    assert test.scanner == pool.scanner == Scanner(0.25, 3)


@pytest.mark.parametrize("method", ["always-normal", "label-prior"])
def test_the_reference_rows_read_no_image_so_the_scanner_leaves_them_alone(method, tmp_path, monkeypatch):
    """Chapter 11 computes its reference rows once, unshifted, and shows them at every strength: the scanner
    changes the images, never the labels, and these rows read only labels."""
    from sdmad_lite.run import run

    monkeypatch.setenv("SDMAD_CACHE", str(tmp_path))
    rows = []
    for shift in (0.0, 1.0):
        cfg = C.ExperimentConfig.from_dict({"method": method, "k_shot": 2, "seed": 5, "protocols": ["integrated", "per-anomaly"],
                                            "data": {"dataset": "phantom-oct", "n_test": 20, "n_pool": 60,
                                                     "image_size": 32, "scanner_shift": shift}})
        rows.append({k: v for k, v in run(cfg).items() if k not in ("data.scanner_shift", "config_hash", "wall_time_s")})
    assert rows[0] == rows[1] and 0 < rows[0]["integrated.subset_accuracy"] < 1
