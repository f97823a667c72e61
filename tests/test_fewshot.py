"""The multi-label few-shot sampler and split files."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdmad_lite.data import tables
from sdmad_lite.data.fewshot import (
    FewShotSplit, load_split, sample_few_shot, save_split, split_train_eval,
)


def _labels(n=400, c=5, seed=0, p=0.15):
    rng = np.random.default_rng(seed)
    return (rng.random((n, c)) < p).astype(np.int8)


def test_basic_properties():
    y = _labels()
    pool, ev = split_train_eval(len(y), eval_fraction=0.5, seed=1)
    s = sample_few_shot(y, k=4, seed=0, exclude=ev, categories=list("abcde"))
    assert set(s.indices).isdisjoint(ev)
    assert all(n >= 4 for n in s.shots().values())
    for c, rows in s.support.items():
        j = "abcde".index(c)
        assert all(y[i, j] == 1 for i in rows)
        # support[c] lists every drawn abnormal row carrying c
        assert set(rows) == {i for i in s.abnormal if y[i, j]}
    assert len(s.normal) == 4 and not y[s.normal].any()
    assert len(s.abnormal) <= 4 * 5
    assert sorted(s.order) == list("abcde")


def test_multilabel_rows_count_for_each_label():
    # rows 0-3 carry both a and b: 4 images give 4 shots to each
    y = np.zeros((20, 2), np.int8)
    y[:4] = 1
    y[4:8, 0] = 1
    y[8:12, 1] = 1
    s = sample_few_shot(y, k=2, seed=3, n_normal=0)
    assert all(v >= 2 for v in s.shots().values())
    assert len(s.abnormal) <= 4
    only_shared = sample_few_shot(np.ones((3, 2), np.int8), k=3, seed=0, n_normal=0)
    assert only_shared.abnormal == [0, 1, 2] and only_shared.shots() == {"0": 3, "1": 3}


def test_seeded():
    y = _labels()
    a = sample_few_shot(y, 3, seed=7)
    b = sample_few_shot(y, 3, seed=7)
    c = sample_few_shot(y, 3, seed=8)
    assert a == b
    assert a.indices != c.indices


def test_pool_too_small_error():
    y = np.zeros((50, 2), np.int8)
    y[:10, 0] = 1
    y[10:13, 1] = 1
    with pytest.raises(ValueError) as e:
        sample_few_shot(y, k=4, seed=0, categories=["Mass", "Hernia"])
    msg = str(e.value)
    assert "Hernia" in msg and "3" in msg and "k=4" in msg
    # excluding the evaluation rows can shrink a pool below k
    with pytest.raises(ValueError, match="'Mass'.*only 2"):
        sample_few_shot(y, k=3, seed=0, exclude=np.arange(2, 10), categories=["Mass", "Hernia"])
    with pytest.raises(ValueError, match="normal"):
        sample_few_shot(y, k=1, seed=0, n_normal=100)


def test_bad_inputs():
    with pytest.raises(ValueError, match="2-D"):
        sample_few_shot(np.zeros(5), 1, 0)
    with pytest.raises(ValueError, match="binary"):
        sample_few_shot(np.full((3, 2), 2), 1, 0)
    with pytest.raises(ValueError, match="k must"):
        sample_few_shot(_labels(), 0, 0)
    with pytest.raises(ValueError, match="category names"):
        sample_few_shot(_labels(), 1, 0, categories=["a"])
    with pytest.raises(ValueError, match="outside"):
        sample_few_shot(_labels(), 1, 0, exclude=[10_000])


def test_real_chest_table():
    cats = ["Atelectasis", "Cardiomegaly", "Effusion", "Hernia"]
    y = tables.label_matrix("chestxray14", cats)
    pool, ev = split_train_eval(len(y), eval_size=1000, seed=0)
    s = sample_few_shot(y, k=16, seed=0, exclude=ev, categories=cats)
    assert min(s.shots().values()) >= 16 and set(s.indices).isdisjoint(ev)


def test_split_train_eval():
    p, e = split_train_eval(100, eval_fraction=0.3, seed=0)
    assert len(e) == 30 and len(p) == 70 and set(p).isdisjoint(e) and set(p) | set(e) == set(range(100))
    assert (split_train_eval(100, eval_size=30, seed=0)[1] == e).all()
    with pytest.raises(ValueError):
        split_train_eval(100)
    with pytest.raises(ValueError):
        split_train_eval(100, eval_fraction=1.5)


def test_save_load_roundtrip(tmp_path):
    s = sample_few_shot(_labels(), 2, seed=1, categories=list("abcde"))
    p = save_split(s, tmp_path / "sub" / "split.json")
    assert load_split(p) == s
    assert json.loads(p.read_text())["format"].startswith("sdmad-lite/fewshot-split")
    assert [f.name for f in p.parent.iterdir()] == ["split.json"]  # no temporary left behind
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="not a few-shot split"):
        load_split(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError):
        load_split(tmp_path / "missing.json")
    assert isinstance(load_split(p), FewShotSplit)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 4), data_seed=st.integers(0, 100))
def test_property_at_least_k_and_disjoint(seed, k, data_seed):
    y = _labels(n=200, c=4, seed=data_seed, p=0.2)
    ev = np.arange(0, 200, 3)
    try:
        s = sample_few_shot(y, k, seed, exclude=ev)
    except ValueError:
        return
    assert min(s.shots().values()) >= k
    assert set(s.indices).isdisjoint(ev.tolist())
    assert len(set(s.abnormal)) == len(s.abnormal)
