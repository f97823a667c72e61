"""Every study of the book ships its results table, and the table holds exactly the study's runs.

A chapter reads ``resources/results/NAME.csv`` through ``studies.shipped`` and recomputes a sample of its
rows; this test catches, without any compute, a study whose definition changed (seeds, grid, methods) while
its table was not rewritten, and a table written by another command."""
from __future__ import annotations

import pytest

from sdmad_lite import studies
from sdmad_lite.cache import config_hash
from sdmad_lite.results import read_results


@pytest.mark.parametrize("name", sorted(studies.STUDIES))
def test_the_shipped_table_holds_exactly_the_runs_of_its_study(name):
    path = studies.RESULTS / f"{name.replace('-', '_')}.csv"
    assert path.is_file(), f"{path.name} missing: sdmad study {name} --workers 2 --out {path}"
    df, meta = read_results(path)
    assert meta["command"].startswith(f"sdmad study {name} "), meta["command"]
    want = {config_hash(c) for c in studies.STUDIES[name]()}
    have = set(df["config_hash"])
    assert len(df) == len(want), f"{name}: {len(df)} rows for {len(want)} runs"
    assert have == want, f"{name}: {len(want - have)} runs of the study missing, {len(have - want)} rows of no run"


def test_a_missing_table_names_the_command_that_writes_it(monkeypatch, tmp_path):
    from sdmad_lite.results import ResultsFileError

    monkeypatch.setattr(studies, "RESULTS", tmp_path / "sdmad_lite" / "resources" / "results")
    with pytest.raises(ResultsFileError, match="sdmad study sign-noise --workers 2 --out sdmad_lite/resources/results/sign_noise.csv"):
        studies.shipped("sign_noise", studies.sign_noise(seeds=(0,)))


@pytest.mark.parametrize("name", ["calibration.csv", "recipe_search.csv"])
def test_the_calibration_margin_is_read_on_the_anomaly_columns(name):
    """The k = 4 band of the regime is the best trained method minus the frozen sign prompts on the anomaly
    columns; the shipped table's margin and verdict follow that definition, with the per-anomaly margin beside."""
    import pandas as pd

    from sdmad_lite.results import read_meta

    df = pd.read_csv(studies.RESULTS / name)
    meta = read_meta(studies.RESULTS / name)
    assert meta["k4_margin_band"] == ">= 5" and "anomaly columns" in meta["table"]
    assert "shipped" in set(df.checkpoint) and set(df.modality) == {"chest", "oct", "brain"}
    best = df[["k4_sdmad", "k4_linear-probe"]].max(axis=1)
    assert (df.k4_margin - (best - df["k4_zeroshot-signs"])).abs().max() <= 0.11
    assert (df.k4_margin_ok == (df.k4_margin >= 5)).all()
    best_pa = df[["k4pa_sdmad", "k4pa_linear-probe"]].max(axis=1)
    assert (df.k4pa_margin - (best_pa - df["k4pa_zeroshot-signs"])).abs().max() <= 0.11


def test_the_recipe_seed_table_is_of_the_shipped_default_recipe():
    """``recipe_seeds.csv`` (chapter 5): the default card's recipe at each seed, the card's own seed among them,
    three modalities each, its band verdicts those of ``reports.BANDS``. A changed card makes it stale."""
    import json

    import pandas as pd

    from sdmad_lite.models.checkpoints import SHIPPED
    from sdmad_lite.reports import BANDS
    from sdmad_lite.results import read_meta

    df = pd.read_csv(studies.RESULTS / "recipe_seeds.csv")
    meta = read_meta(studies.RESULTS / "recipe_seeds.csv")
    card = json.loads(SHIPPED["shipped"][1].read_text())
    assert "--recipe-seeds" in meta["command"] and meta["recipe"] == card["recipe"], "rerun: " + meta["command"]
    seeds = set(df.recipe_seed)
    assert card["recipe"]["seed"] in seeds and len(seeds) >= 5 and len(df) == 3 * len(seeds)
    assert set(meta["sha256"]) == {str(s) for s in seeds}
    for r in df.itertuples():
        b = BANDS[r.modality]
        assert r.zs_in_bands == all(b[src].contains(getattr(r, f"zs_{src}")) for src in b)
    assert meta["card_seed_vs_shipped"]["max_abs_diff"] <= 1e-3
