"""stats.max_cardinality and stats.pair_table (chapter 2's tables of the real label tables)."""
from __future__ import annotations

import numpy as np

from sdmad_lite.data import stats


def test_max_cardinality():
    assert [stats.max_cardinality(stats.cooccurrence_stats(d)) for d in ("chestxray14", "fastmri-brain", "oct2017")] \
        == [9, 5, 1]
    y = np.array([[1, 1, 0], [0, 0, 0], [1, 0, 0]])
    assert stats.max_cardinality(stats.stats_from_matrix(y, ["a", "b", "c"])) == 2
    assert stats.max_cardinality(stats.stats_from_matrix(np.zeros((3, 2)), ["a", "b"])) == 0


def test_pair_table():
    t = stats.pair_table("chestxray14")
    assert list(t.columns) == ["dataset", "a", "b", "both", "P(b|a)", "P(a|b)"]
    assert len(t) == 8 and t["both"].is_monotonic_decreasing
    first = t.iloc[0]
    assert (first["dataset"], first["a"], first["b"], first["both"]) == ("chestxray14", "Effusion", "Infiltration", 4000)
    assert (first["P(b|a)"], first["P(a|b)"]) == (round(4000 / 13_317, 3), round(4000 / 19_894, 3))
    assert len(stats.pair_table("chestxray14", top=12)) == 12  # not capped at cooccurrence_stats' ten pairs
    brain = stats.pair_table("fastmri-brain", ["Craniotomy", "Posttreatment change"])
    assert brain[["a", "b"]].values.tolist() == [["Craniotomy", "Posttreatment change"]]
    oct_ = stats.pair_table("oct2017")  # one label per image: no pair
    assert oct_.empty and list(oct_.columns) == list(t.columns)
