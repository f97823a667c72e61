"""Phantom world: determinism, sign locality, label/sign consistency, files and CLI."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from sdmad_lite.cli.data import add_subcommands
from sdmad_lite.data.phantoms import MODALITIES, PhantomDataset, render, write_phantoms
from sdmad_lite.data.phantoms.primitives import dilate
from sdmad_lite.data.phantoms.world import sample_signs

SIZE = 80
ALL_SIGNS = [(m, s) for m, spec in MODALITIES.items() for s in spec.signs]


@pytest.mark.parametrize("modality", list(MODALITIES))
def test_same_seed_same_bytes_different_seed_differs(modality):
    cats = [MODALITIES[modality].categories[0]]
    a = render(modality, cats, seed=7, size=SIZE)
    b = render(modality, cats, seed=7, size=SIZE)
    c = render(modality, cats, seed=8, size=SIZE)
    assert a["image"].dtype == np.uint8 and a["image"].shape == (SIZE, SIZE)
    assert a["image"].tobytes() == b["image"].tobytes()
    assert set(a["signs"]) == set(b["signs"])
    assert all((a["signs"][k] == b["signs"][k]).all() for k in a["signs"])
    assert a["image"].tobytes() != c["image"].tobytes()


@pytest.mark.parametrize("modality,sign", ALL_SIGNS)
def test_each_sign_changes_pixels_mostly_inside_its_mask(modality, sign):
    """At least 80 % of what a sign changes lies in (a dilation of) its mask on patients 1 and 2; over eight
    patients at least 85 % on average and 75 % for each (a tall detachment lifts a little of the inner retina
    above its mask: 0.79 on one patient)."""
    rad = max(2, SIZE // 32)
    shares = []
    for seed in range(1, 9):
        base = render(modality, [], seed=seed, size=SIZE, signs=set())["image"].astype(float)
        out = render(modality, [], seed=seed, size=SIZE, signs={sign})
        mask = out["signs"][sign]
        assert mask.dtype == bool and mask.shape == (SIZE, SIZE)
        assert mask.any(), f"{sign}: empty mask"
        diff = np.abs(out["image"].astype(float) - base)
        assert diff.sum() > 0, f"{sign}: drawing it changed nothing"
        shares.append(diff[dilate(mask, rad)].sum() / diff.sum())
        least = 0.8 if seed <= 2 else 0.75
        assert shares[-1] >= least, f"{sign} seed {seed}: only {shares[-1]:.2f} of the change is inside its mask"
    assert np.mean(shares) >= 0.85, f"{sign}: on average only {np.mean(shares):.2f} of the change is inside its mask"


@pytest.mark.parametrize("modality", list(MODALITIES))
def test_labels_consistent_with_drawn_signs(modality):
    spec = MODALITIES[modality]
    ds = PhantomDataset(modality, 12, seed=3, size=48, label_source="uniform")
    for i in range(len(ds)):
        s = ds[i]
        cats = [c for c, x in zip(spec.categories, s["labels"]) if x]
        assert cats == s["meta"]["categories"]
        allowed = {g for c in cats for g in spec.category_signs[c]}
        assert set(s["signs"]) <= allowed
        for c in cats:  # each present category shows at least 2 of its signs (all if fewer)
            own = set(spec.category_signs[c])
            assert len(own & set(s["signs"])) >= min(2, len(own))
        if not cats:
            assert s["signs"] == {}
        assert all(m.any() for m in s["signs"].values())
        if not spec.multi_label:
            assert s["labels"].sum() <= 1


def test_sample_signs_rules():
    spec = MODALITIES["chest"]
    rng = np.random.default_rng(0)
    for _ in range(200):
        drawn = sample_signs(spec, ["Effusion", "Pneumothorax"], rng, p_sign=0.0)
        assert len(set(drawn) & set(spec.category_signs["Effusion"])) >= 2
        assert len(set(drawn) & set(spec.category_signs["Pneumothorax"])) >= 2
        assert len(drawn) == len(set(drawn))  # shared mediastinal_shift drawn once
    assert set(sample_signs(spec, ["Mass"], rng, p_sign=1.0)) == set(spec.category_signs["Mass"])


def test_dataset_is_deterministic_and_labels_precomputed():
    a = PhantomDataset("chest", 6, seed=5, size=48, label_source="uniform")
    b = PhantomDataset("chest", 6, seed=5, size=48, label_source="uniform")
    assert a.labels.shape == (6, len(a.categories)) and a.labels.dtype == np.int8
    assert (a.labels == b.labels).all()
    assert a[4]["image"].tobytes() == b[4]["image"].tobytes()
    assert a[4]["meta"]["index"] == 4
    with pytest.raises(IndexError):
        a[6]


def test_real_label_source():
    pytest.importorskip("sdmad_lite.data.tables")
    for modality in MODALITIES:
        ds = PhantomDataset(modality, 200, seed=0, size=32, normal_fraction=0.3)
        normal = (ds.labels.sum(1) == 0).mean()
        assert 0.15 < normal < 0.45
        if not MODALITIES[modality].multi_label:
            assert ds.labels.sum(1).max() == 1
    chest = PhantomDataset("chest", 400, seed=0, size=32)
    assert (chest.labels.sum(1) >= 2).any()  # real co-occurrence survives


def test_conspicuity_scales_sign_contrast():
    base = render("chest", [], seed=4, size=SIZE, signs=set())["image"].astype(float)
    lo = render("chest", [], seed=4, size=SIZE, signs={"large_round_opacity"}, conspicuity=0.5)["image"]
    hi = render("chest", [], seed=4, size=SIZE, signs={"large_round_opacity"}, conspicuity=1.5)["image"]
    assert np.abs(hi - base).sum() > 1.5 * np.abs(lo - base).sum()


def test_label_arguments():
    spec = MODALITIES["oct"]
    r = render("oct", np.array([0, 1, 0]), seed=1, size=32)
    assert r["labels"].tolist() == [0, 1, 0] and r["meta"]["categories"] == ["DME"]
    with pytest.raises(ValueError):
        render("oct", ["Cardiomegaly"], seed=1, size=32)
    with pytest.raises(ValueError):
        render("oct", [], seed=1, size=32, signs={"no_such_sign"})
    assert len(spec.categories) == 3


def test_write_phantoms_is_byte_reproducible(tmp_path):
    a = write_phantoms("brain", 4, 11, tmp_path / "a", size=48, label_source="uniform")
    b = write_phantoms("brain", 4, 11, tmp_path / "b", size=48, label_source="uniform")
    pngs = sorted(p.name for p in a.glob("*.png"))
    assert len(pngs) == 4
    for name in pngs + ["labels.jsonl"]:
        assert (a / name).read_bytes() == (b / name).read_bytes()
    rows = [json.loads(line) for line in (a / "labels.jsonl").read_text().splitlines()]
    assert [r["file"] for r in rows] == pngs
    for r in rows:
        for box in r["signs"].values():
            x0, y0, x1, y1 = box
            assert 0 <= x0 <= x1 < 48 and 0 <= y0 <= y1 < 48


def test_cli_subcommand(tmp_path):
    parser = argparse.ArgumentParser(prog="sdmad")
    add_subcommands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["phantoms", "--modality", "oct", "--n", "3", "--seed", "2", "--out",
                              str(tmp_path), "--size", "40", "--label-source", "uniform"])
    assert args.func(args) == 0
    assert len(list(tmp_path.glob("oct_*.png"))) == 3
    assert len((tmp_path / "labels.jsonl").read_text().splitlines()) == 3


def test_a_structural_signs_mask_follows_the_signs_drawn_after_it():
    """Subretinal material is drawn before a pigment-epithelium detachment, which then lifts it: its mask is
    computed once both are drawn, so it still covers what it changes."""
    rad = max(2, SIZE // 32)
    for seed in (5, 8):
        ped = render("oct", [], seed=seed, size=SIZE, signs={"fibrovascular_ped"})
        both = render("oct", [], seed=seed, size=SIZE, signs={"fibrovascular_ped", "subretinal_hyperreflective_material"})
        diff = np.abs(both["image"].astype(float) - ped["image"].astype(float))
        mask = both["signs"]["subretinal_hyperreflective_material"]
        assert mask.dtype == bool and diff[dilate(mask, rad)].sum() / diff.sum() >= 0.8


@pytest.mark.parametrize("sign,least", [("fibrovascular_ped", 250), ("sub_rpe_deposits", 180),
                                        ("intraretinal_cysts", 130), ("retinal_thickening", 700)])
def test_oct_lesions_are_drawn_at_oct2017s_scale(sign, least):
    """At the backbone's 128-pixel input, OCT2017's lesions are several times taller relative to the frame than
    the book's first OCT phantoms drew them (one patch); a lesion now changes at least ``least`` pixels by more
    than an eighth of the grey range (median over eight patients, speckle off). The first phantoms changed
    169, 111, 74 and 455."""
    changed = []
    for seed in range(1, 9):
        base = render("oct", [], seed=seed, size=128, signs=set(), noise=0.0)["image"].astype(int)
        out = render("oct", [], seed=seed, size=128, signs={sign}, noise=0.0)["image"].astype(int)
        changed.append(int((np.abs(out - base) > 32).sum()))
    assert np.median(changed) >= least, f"{sign}: changes {np.median(changed):.0f} pixels, fewer than {least}"
