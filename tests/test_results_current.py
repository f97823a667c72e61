"""A shipped results file is checked by behaviour, not by the code fingerprint (issue 22 item 5): a change
that computes the same numbers (a docstring, a rename) keeps it current; a change of a loss's weight does not."""
from __future__ import annotations

import pytest

from sdmad_lite import cache, losses
from sdmad_lite.config import ExperimentConfig
from sdmad_lite.methods import config_for
from sdmad_lite.results import check_current, read_results, save_results
from sdmad_lite.run import run_cached


def _configs():
    base = ExperimentConfig.from_dict({"k_shot": 2, "protocols": ["integrated", "per-anomaly"],
                                       "data": {"n_test": 30, "n_pool": 150, "image_size": 32},
                                       "model": {"adapter_hidden": 8}, "tuning": {"folds": 0},
                                       "train": {"epochs": 40, "lr": 0.03, "patience": 40}})
    out = []
    for seed in (0, 1):
        c = config_for("sdmad", base)
        c.seed = seed
        out.append(c)
    return out


@pytest.fixture()
def shipped(tmp_path, monkeypatch):
    monkeypatch.setenv("SDMAD_CACHE", str(tmp_path / "cache"))
    cfgs = _configs()
    path = tmp_path / "table.csv"
    save_results([run_cached(c) for c in cfgs], path, "test")
    return cfgs, read_results(path)[0]


def _here(cfgs):  # recompute in this process, so that the monkeypatched code is the code that runs
    return [run_cached(c) for c in cfgs]


def test_a_change_that_computes_the_same_numbers_keeps_a_file_current(shipped, monkeypatch):
    cfgs, df = shipped
    monkeypatch.setattr(cache, "code_fingerprint", lambda: "e" * 64)  # another version: the cache misses
    check = check_current(df, cfgs, _here, n=2)
    assert check["current"] and check["checked"] == 2 and check["max_diff"] < 1e-9


def test_a_change_of_a_loss_weight_makes_a_file_stale(shipped, monkeypatch):
    cfgs, df = shipped
    monkeypatch.setattr(cache, "code_fingerprint", lambda: "f" * 64)
    total = losses.total_loss

    def heavier_alignment(terms, weights):  # as if someone changed the alignment loss's weight in the code
        return total(terms, weights) + 4.0 * terms["align"].sum()

    # (a heavier anchor loss alone changes no printed metric of these 30-image tests on the shipped checkpoint:
    # the anchor ranks them alike either way, AUROC 98.5)
    monkeypatch.setattr(losses, "total_loss", heavier_alignment)
    check = check_current(df, cfgs, _here, n=2)
    assert not check["current"] and check["max_diff"] >= 0.05


def test_a_table_of_other_configs_is_not_current(shipped):
    cfgs, df = shipped
    other = [config_for("linear-probe", c) for c in cfgs]
    assert check_current(df, other, _here)["current"] is False
