"""Exact counts of the shipped real tables, label_rows, and co-occurrence statistics."""
from __future__ import annotations

import argparse
import gzip
import json

import numpy as np
import pytest

from sdmad_lite.cli.data import add_subcommands
from sdmad_lite.data import fastmri_plus, stats, tables
from sdmad_lite.data.table_files import TableError


# --------------------------------------------------------------------------- ChestX-ray14

def test_chestxray14_counts():
    d = tables.load_chestxray14()
    assert len(d) == 112_120
    assert list(d.columns) == ["image", "patient", "split", *tables.CHESTXRAY14_LABELS]
    assert d["split"].value_counts().to_dict() == {"train_val": 86_524, "test": 25_596}
    assert d["image"].is_unique
    assert d["patient"].nunique() == 30_805
    assert (d["patient"] == d["image"].str[:8]).all()
    assert all(d[c].dtype == np.int8 for c in tables.CHESTXRAY14_LABELS)
    counts = d[list(tables.CHESTXRAY14_LABELS)].sum().to_dict()
    assert counts == {
        "Atelectasis": 11_559, "Cardiomegaly": 2_776, "Effusion": 13_317, "Infiltration": 19_894,
        "Mass": 5_782, "Nodule": 6_331, "Pneumonia": 1_431, "Pneumothorax": 5_302,
        "Consolidation": 4_667, "Edema": 2_303, "Emphysema": 2_516, "Fibrosis": 1_686,
        "Pleural_Thickening": 3_385, "Hernia": 227,
    }
    # official split is patient-disjoint
    assert not set(d.loc[d.split == "test", "patient"]) & set(d.loc[d.split == "train_val", "patient"])


def test_chestxray14_cache_is_not_mutated_by_callers():
    d = tables.load_chestxray14()
    d.loc[0, "Hernia"] = 99
    assert tables.load_chestxray14().loc[0, "Hernia"] in (0, 1)


def test_chestxray14_boxes():
    b = tables.load_chestxray14_boxes()
    assert list(b.columns) == ["image", "label", "x", "y", "w", "h"]
    assert len(b) == 984 and b["image"].nunique() == 880
    assert "Infiltrate" not in set(b["label"]) and (b["label"] == "Infiltration").sum() == 123
    assert set(b["label"]) <= set(tables.CHESTXRAY14_LABELS)
    assert set(b["image"]) <= set(tables.load_chestxray14()["image"])


def test_sample_labels_agree_with_table():
    import pandas as pd
    from sdmad_lite.io import RESOURCES

    s = pd.read_csv(RESOURCES / "samples" / "chestxray14" / "labels.csv")
    d = tables.load_chestxray14().set_index("image")
    for _, row in s.iterrows():
        assert row["official_split"] == d.loc[row["image"], "split"]
        for c in tables.CHESTXRAY14_LABELS:
            assert row[c] == d.loc[row["image"], c], (row["image"], c)


def test_chestxray14_list_errors(tmp_path):
    bad = tmp_path / "list.txt.gz"
    with gzip.open(bad, "wt") as fh:
        fh.write("00000001_000.png 0 1 0\n")
    with pytest.raises(TableError, match=r"list\.txt\.gz.*Effusion|Effusion.*list\.txt\.gz") as e:
        tables.read_chestxray14_list(bad, "test")
    assert str(bad) in str(e.value)
    with pytest.raises(TableError, match="not found"):
        tables.read_chestxray14_list(tmp_path / "nope.txt", "test")


# --------------------------------------------------------------------------- fastMRI+

def test_fastmri_boxes_and_units():
    b = fastmri_plus.load_fastmri_brain_boxes()
    assert len(b) == 8_213
    assert (~b.study_level).sum() == 7_570 and b.study_level.sum() == 643
    assert b.loc[b.study_level, "x"].isna().all() and b.loc[~b.study_level, "x"].notna().all()
    assert fastmri_plus.FLIPPED_UD is True
    assert "flipped up/down" in fastmri_plus.load_fastmri_brain_boxes.__doc__

    labels = fastmri_plus.fastmri_brain_slice_labels()
    assert len(labels) == 21 and labels[0] == "Nonspecific white matter lesion"
    u = fastmri_plus.fastmri_brain_units()
    assert len(u) == 3_621
    assert u["n_boxes"].sum() == 7_570
    y = u[list(labels)].to_numpy()
    assert y.dtype == np.int8 and (y.sum(1) >= 1).all()
    assert (y.sum(1) >= 2).sum() == 1_109
    assert u[["file", "slice"]].duplicated().sum() == 0
    assert {k: int(v) for k, v in u[["Mass", "Edema", "Craniotomy"]].sum().items()} == {
        "Mass": 260, "Edema": 320, "Craniotomy": 799}
    st = fastmri_plus.fastmri_brain_study_labels()
    assert len(st) == 643 and list(st.columns) == ["file", "label"]
    assert not set(st["label"]) & set(labels)


def test_fastmri_volumes():
    v = fastmri_plus.fastmri_brain_volumes()
    assert len(v) == 1_001 and v["file"].is_unique
    assert v["in_brain_csv"].sum() == 997
    assert (v["n_boxes"] > 0).sum() == 476
    assert v["n_boxes"].sum() == 7_570
    assert v["sequence"].value_counts().to_dict() == {"AXFLAIR": 451, "AXT1": 340, "AXT1POST": 210}


def test_fastmri_csv_missing_column(tmp_path):
    p = tmp_path / "brain.csv"
    p.write_text("file,slice,study_level,x,y,width,height\nf,1,No,1,2,3,4\n")
    with pytest.raises(TableError) as e:
        fastmri_plus.read_fastmri_brain_csv(p)
    assert "brain.csv" in str(e.value) and "label" in str(e.value)


# --------------------------------------------------------------------------- OCT2017

def test_oct2017_lists():
    t = tables.load_oct2017_test_list()
    assert len(t) == 1_000
    assert t["label"].value_counts().to_dict() == {"CNV": 250, "DME": 250, "DRUSEN": 250, "NORMAL": 250}
    names = set(t["filename"])
    for k in (2, 4, 8, 16):
        fs = tables.load_oct2017_mvfa_fewshot(k)
        assert len(fs["normal"]) == k and len(fs["abnormal"]) == k
        assert all(n.startswith("NORMAL-") for n in fs["normal"])
        assert not any(a.startswith("NORMAL-") for a in fs["abnormal"])
    # MVFA draws its shots from elsewhere than the test list (the train set)
    assert not set(tables.load_oct2017_mvfa_fewshot(16)["normal"]) <= names
    with pytest.raises(ValueError, match="available"):
        tables.load_oct2017_mvfa_fewshot(3)


# --------------------------------------------------------------------------- label_rows

def test_label_rows():
    r = tables.label_rows("chestxray14", ["Hernia", "Pneumonia"])
    assert r.dtype == np.int8 and r.shape == (1_655, 2)
    assert r.sum(0).tolist() == [227, 1_431]
    assert tables.label_rows("chestxray14", list(tables.CHESTXRAY14_LABELS)).shape == (51_759, 14)
    o = tables.label_rows("oct2017", ["CNV", "DME", "DRUSEN"])
    assert o.shape == (750, 3) and (o.sum(1) == 1).all()
    f = tables.label_rows("fastmri-brain", ["Mass", "Edema"])
    assert f.shape == (451, 2) and f.sum(0).tolist() == [260, 320]
    # column order follows the request
    f2 = tables.label_rows("fastmri-brain", ["Edema", "Mass"])
    assert (f2 == f[:, ::-1]).all()
    f2[:] = 7  # returned arrays are copies
    assert tables.label_rows("fastmri-brain", ["Edema", "Mass"]).max() == 1


@pytest.mark.parametrize("dataset,cats,needle", [
    ("mimic", ["Mass"], "chestxray14"),
    ("chestxray14", ["Masses"], "Pleural_Thickening"),
    ("oct2017", ["AMD"], "DRUSEN"),
    ("fastmri-brain", ["Tumour"], "Craniotomy"),
])
def test_label_rows_errors(dataset, cats, needle):
    with pytest.raises(ValueError) as e:
        tables.label_rows(dataset, cats)
    assert cats[0] in str(e.value) or dataset in str(e.value)
    assert needle in str(e.value)


# --------------------------------------------------------------------------- stats

KEYS = {"dataset", "unit", "units", "with_any_label", "with_2plus_labels", "share_2plus",
        "label_counts", "cardinality_histogram", "top_pairs", "conditional"}


@pytest.mark.parametrize("dataset,units,any_,two", [
    ("chestxray14", 112_120, 51_759, 20_796),
    ("fastmri-brain", 3_621, 3_621, 1_109),
    ("oct2017", 1_000, 750, 0),
])
def test_cooccurrence_stats(dataset, units, any_, two):
    s = stats.cooccurrence_stats(dataset)
    assert KEYS <= set(s)
    assert (s["units"], s["with_any_label"], s["with_2plus_labels"]) == (units, any_, two)
    assert sum(s["cardinality_histogram"].values()) == units
    assert len(s["top_pairs"]) <= 10
    json.dumps(s)  # serialisable
    p = np.array(s["conditional"]["p_b_given_a"])
    assert np.allclose(np.diag(p), 1.0)


def test_stats_details():
    s = stats.cooccurrence_stats("chestxray14")
    assert s["top_pairs"][0] == ["Effusion", "Infiltration", 4_000]
    assert s["cardinality_histogram"]["0"] == 60_361
    s8 = stats.cooccurrence_stats("chestxray14", list(stats.CHEST8))
    assert (s8["with_any_label"], s8["with_2plus_labels"]) == (46_649, 15_497)
    b6 = stats.cooccurrence_stats("fastmri-brain", list(stats.BRAIN6))
    assert (b6["with_any_label"], b6["with_2plus_labels"]) == (2_623, 553)
    m = stats.cooccurrence_matrix("fastmri-brain", ["Mass", "Edema"])
    assert m.loc["Mass", "Edema"] == 129 and m.loc["Mass", "Mass"] == 260
    c = stats.cooccurrence_matrix("fastmri-brain", ["Mass", "Edema"], normalize="conditional")
    assert c.loc["Mass", "Edema"] == pytest.approx(129 / 260)
    j = stats.cooccurrence_matrix("fastmri-brain", ["Mass", "Edema"], normalize="jaccard")
    assert j.loc["Edema", "Mass"] == pytest.approx(129 / (260 + 320 - 129))


def test_paper_subset_candidates():
    df = stats.paper_subset_candidates(slices=(5,))
    assert {"dataset", "selection", "with_any_label", "with_2plus_labels", "rel_error"} <= set(df.columns)
    row = df[(df.dataset == "fastmri-brain") & (df.selection == "slice 5, 21 labels")].iloc[0]
    assert (row.units, row.with_any_label, row.with_2plus_labels) == (288, 288, 105)
    row = df[(df.dataset == "chestxray14") & (df.selection == "test, 14 findings")].iloc[0]
    assert (row.with_any_label, row.with_2plus_labels) == (15_735, 7_743)


def test_stats_cli(capsys):
    parser = argparse.ArgumentParser(prog="sdmad")
    add_subcommands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["stats", "oct2017", "--json"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["with_any_label"] == 750
    args = parser.parse_args(["stats", "fastmri-brain"])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "3,621" in text and "1,109" in text
    args = parser.parse_args(["stats", "chestxray14", "--categories", "Mass,Nope"])
    assert args.func(args) == 2
    with pytest.raises(SystemExit):
        parser.parse_args(["stats", "mimic"])
