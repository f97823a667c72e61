"""Sweeps: one row per run, resume after a kill, and the Ray backend gives the rows of the local one."""
from __future__ import annotations

import csv
import math

import pytest

from sdmad_lite import executor as EX
from sdmad_lite import results as RS
from sdmad_lite import sweep as X
from sdmad_lite.cache import config_hash
from sdmad_lite.config import ExperimentConfig


@pytest.fixture(autouse=True)
def _no_result_cache(monkeypatch):
    """The fake runs below must be the ones asked for, never a row of a real run in the cache."""
    monkeypatch.setenv("SDMAD_NO_RESULT_CACHE", "1")


def _csv_rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _key(r: dict) -> tuple:
    return (str(r["method"]), int(r["seed"]), int(r["k_shot"]))


def _row(cfg: ExperimentConfig) -> dict:
    v = 0.1 * cfg.seed + 0.01 * cfg.k_shot
    return {"method": cfg.method, "seed": cfg.seed, "k_shot": cfg.k_shot, "config_hash": config_hash(cfg),
            "data.dataset": cfg.data.dataset,
            "integrated.subset_accuracy": v, "integrated.hamming_score": v, "integrated.macro_auroc": 0.5,
            "wall_time_s": 0.1}


def test_sweep_writes_one_row_per_run_and_resumes(tmp_path, monkeypatch):
    calls: list[tuple] = []

    def fake_run_cached(cfg: ExperimentConfig) -> dict:
        calls.append((cfg.method, cfg.seed, cfg.k_shot))
        if fail_at and len(calls) == fail_at:
            raise KeyboardInterrupt("killed")  # a sweep killed in the middle of a run
        return _row(cfg)

    monkeypatch.setattr(EX, "run_cached", fake_run_cached)
    base = ExperimentConfig()
    methods, seeds, shots = ["sdmad", "sdmad-no-ss"], [0, 1, 2], [1, 2]
    out = tmp_path / "sweep.csv"
    want = {(m, s, k) for m in methods for s in seeds for k in shots}

    fail_at = 4
    with pytest.raises(KeyboardInterrupt):
        X.sweep(base, methods, seeds, shots, out)
    assert len(_csv_rows(out)) == 3  # every finished run was written at once

    fail_at = 0
    calls.clear()
    rows = X.sweep(base, methods, seeds, shots, out)
    assert len(calls) == len(want) - 3  # only the runs that had not finished
    on_disk = _csv_rows(out)
    assert len(on_disk) == len(rows) == len(want)
    assert {_key(r) for r in on_disk} == want  # one row per (method, seed, k), no duplicates
    for r in on_disk:
        assert float(r["integrated.subset_accuracy"]) == pytest.approx(0.1 * int(r["seed"]) + 0.01 * int(r["k_shot"]))

    calls.clear()
    again = X.sweep(base, methods, seeds, shots, out)
    assert calls == []  # a finished sweep runs nothing new
    assert [_key(r) for r in again] == [_key(r) for r in rows]
    assert _csv_rows(out) == on_disk

    calls.clear()
    X.sweep(base, methods, seeds, shots + [4], out)  # a new shot count: only its runs
    assert sorted(calls) == sorted((m, s, 4) for m in methods for s in seeds)
    assert len(_csv_rows(out)) == len(want) + len(methods) * len(seeds)


def tiny_config(weights: str | None = None) -> ExperimentConfig:
    return ExperimentConfig.from_dict({
        "k_shot": 2, "protocols": ["integrated"],
        "model": {"pretrained": weights, "adapter_hidden": 16},
        "data": {"n_test": 40, "n_pool": 400, "image_size": 64},
        "train": {"epochs": 5},
    })


def _same(a: dict, b: dict) -> list[str]:
    diffs = []
    for k in sorted(set(a) | set(b)):
        if k == "wall_time_s":
            continue
        x, y = a.get(k), b.get(k)
        if isinstance(x, float) or isinstance(y, float):
            if x is None or y is None or not (x == pytest.approx(y, rel=1e-9, abs=1e-12) or (math.isnan(x) and math.isnan(y))):
                diffs.append(f"{k}: {x!r} != {y!r}")
        elif x != y:
            diffs.append(f"{k}: {x!r} != {y!r}")
    return diffs


@pytest.mark.slow
def test_ray_backend_gives_the_rows_of_the_local_backend(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'sdmad-lite[ray]')")
    import torch

    # Random weights, but the same in every process: with ``pretrained: null`` each process would draw
    # its own (the backbone is built after the first run's seed_everything), so the runs of a Ray
    # worker and those of this process would use different backbones. A saved random state dict is
    # loaded identically everywhere.
    import open_clip

    from sdmad_lite.models.backbone import PHANTOMCLIP, _register_custom_configs

    _register_custom_configs()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        weights = tmp_path / "random-phantomclip.pt"
        torch.save(open_clip.create_model(PHANTOMCLIP, pretrained=None).state_dict(), weights)
    base, methods, seeds, shots = tiny_config(str(weights)), ["sdmad"], [0, 1], [2]
    # The two backends must compute, not read each other's results: one cache folder each.
    local_cache, ray_cache = tmp_path / "cache-local", tmp_path / "cache-ray"
    threads = torch.get_num_threads()
    monkeypatch.setenv("SDMAD_CACHE", str(local_cache))
    torch.set_num_threads(1)  # as in a Ray worker (one CPU each): the same float reductions
    try:
        local = X.sweep(base, methods, seeds, shots, tmp_path / "local.csv", backend="local")
    finally:
        torch.set_num_threads(threads)
    assert len(local) == len(seeds)

    # A local Ray instance with two workers; Ray workers are separate processes, so the cache
    # folder reaches them through the runtime environment. sweep() uses an instance already started.
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"SDMAD_CACHE": str(ray_cache), "OMP_NUM_THREADS": "1",
                                       "SDMAD_PROFILE": "offline"}})
    try:
        remote = X.sweep(base, methods, seeds, shots, tmp_path / "ray.csv", backend="ray", workers=2)
    finally:
        ray.shutdown()
    assert (ray_cache / "runs").is_dir(), "the Ray workers did not use the cache folder they were given"
    assert len(remote) == len(_csv_rows(tmp_path / "ray.csv")) == len(seeds)
    by_local = {_key(r): r for r in local}
    by_remote = {_key(r): r for r in remote}
    assert set(by_local) == set(by_remote)
    for k in by_local:
        assert not _same(by_local[k], by_remote[k]), (k, _same(by_local[k], by_remote[k]))
    # and the CSV files agree too (rows in completion order on Ray: compare by key)
    csv_local = {_key(r): {c: v for c, v in r.items() if c != "wall_time_s"} for r in _csv_rows(tmp_path / "local.csv")}
    csv_remote = {_key(r): {c: v for c, v in r.items() if c != "wall_time_s"} for r in _csv_rows(tmp_path / "ray.csv")}
    assert csv_local == csv_remote


def test_ray_joins_the_cluster_it_is_given_and_forwards_the_environment(monkeypatch):
    """No cluster here: a stand-in for the ray module records how it is started and what runs ask for."""
    calls: dict = {}

    class FakeRay:
        def is_initialized(self):
            return False

        def init(self, **kw):
            calls["init"] = kw

        def remote(self, **opts):
            calls["remote"] = opts
            return lambda f: type("R", (), {"remote": staticmethod(lambda job: ("ref", job["method"], job["seed"],
                                                                                 job["k_shot"]))})

        def wait(self, pending, num_returns):
            return pending[:1], pending[1:]

        def get(self, ref):
            return {"method": ref[1], "seed": ref[2], "k_shot": ref[3]}

    import sys

    monkeypatch.setitem(sys.modules, "ray", FakeRay())
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    monkeypatch.setenv("SDMAD_PROFILE", "offline")
    jobs = [ExperimentConfig.from_dict({"seed": 0, "k_shot": 4})]
    rows = list(EX.iter_runs(jobs, 2, "ray", False, {"address": None, "num_cpus": 2.0, "num_gpus": 0.5}))
    assert rows == [(0, {"method": "sdmad", "seed": 0, "k_shot": 4})]
    assert calls["init"]["address"] == "ray://head:10001"
    assert calls["init"]["runtime_env"]["env_vars"]["SDMAD_PROFILE"] == "offline"
    assert calls["remote"] == {"num_cpus": 2.0, "num_gpus": 0.5}
    # an explicit address wins over the variable; without either, a local instance of `workers` CPUs
    list(EX.iter_runs(jobs, 2, "ray", False, {"address": "auto"}))
    assert calls["init"]["address"] == "auto"
    monkeypatch.delenv("RAY_ADDRESS")
    list(EX.iter_runs(jobs, 3, "ray", False, {}))
    assert "address" not in calls["init"] and calls["init"]["num_cpus"] == 3


@pytest.fixture()
def fake_runs(monkeypatch):
    calls: list[tuple] = []

    def fake(cfg):
        calls.append((cfg.method, cfg.seed, cfg.k_shot))
        return _row(cfg)

    monkeypatch.setattr(EX, "run_cached", fake)
    return calls


def test_resuming_with_another_config_is_refused(tmp_path, fake_runs):
    out = tmp_path / "s.csv"
    X.sweep(ExperimentConfig(), ["sdmad"], [0, 1], [4], out)
    oct_ = ExperimentConfig.from_dict({"data": {"dataset": "phantom-oct"}})
    with pytest.raises(X.SweepCSVError, match="another base configuration.*choose another --out"):
        X.sweep(oct_, ["sdmad"], [0, 1], [4], out)
    assert len(_csv_rows(out)) == 2  # nothing lost


def test_resuming_rows_of_another_library_version_is_refused(tmp_path, fake_runs, monkeypatch):
    out = tmp_path / "s.csv"
    X.sweep(ExperimentConfig(), ["sdmad"], [0], [4], out)
    monkeypatch.setattr(X, "code_fingerprint", lambda: "f" * 64)  # the library changed since
    with pytest.raises(X.SweepCSVError, match="another version of the library.*delete the CSV"):
        X.sweep(ExperimentConfig(), ["sdmad"], [0, 1], [4], out)
    assert len(_csv_rows(out)) == 1 and fake_runs == [("sdmad", 0, 4)]  # nothing lost, nothing mixed


def test_a_cut_row_is_recomputed_and_duplicates_run_once(tmp_path, fake_runs):
    out = tmp_path / "s.csv"
    X.sweep(ExperimentConfig(), ["sdmad", "sdmad"], [5, 5], [4], out)  # asked twice: run once
    assert fake_runs == [("sdmad", 5, 4)] and len(_csv_rows(out)) == 1
    X.sweep(ExperimentConfig(), ["sdmad"], [0, 1], [4], out)
    text = out.read_text().splitlines()
    out.write_text("\n".join(text[:-1] + [text[-1].rsplit(",", 3)[0]]) + "\n")  # the last row cut mid-way
    fake_runs.clear()
    with pytest.warns(UserWarning, match="1 row.*recomputed"):
        rows = X.sweep(ExperimentConfig(), ["sdmad"], [0, 1], [4], out)
    assert fake_runs == [("sdmad", 1, 4)]
    assert sorted((r["method"], r["seed"]) for r in rows) == [("sdmad", 0), ("sdmad", 1), ("sdmad", 5)]


def test_an_impossible_value_is_recomputed(tmp_path, fake_runs):
    out = tmp_path / "s.csv"
    X.sweep(ExperimentConfig(), ["sdmad"], [0], [4], out)
    out.write_text(out.read_text().replace(",0.5,", ",7.0,"))  # a macro AUROC of 7
    fake_runs.clear()
    with pytest.warns(UserWarning, match="recomputed"):
        X.sweep(ExperimentConfig(), ["sdmad"], [0], [4], out)
    assert fake_runs == [("sdmad", 0, 4)]


def test_an_unrelated_csv_is_refused(tmp_path, fake_runs):
    out = tmp_path / "other.csv"
    out.write_text("a,b\n1,2\n")
    with pytest.raises(X.SweepCSVError, match="not a sweep CSV"):
        X.sweep(ExperimentConfig(), ["sdmad"], [0], [4], out)
    assert out.read_text() == "a,b\n1,2\n"


def test_a_sweep_killed_anywhere_resumes_to_the_same_csv(tmp_path, monkeypatch):
    """Property: killed after any number of finished runs, then resumed, a sweep writes the CSV an
    uninterrupted sweep writes (the same rows, in the same order)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    methods, seeds, shots = ["sdmad", "linear-probe"], [0, 1, 2], [2, 4]
    full = tmp_path / "full.csv"
    monkeypatch.setattr(EX, "run_cached", _row)
    X.sweep(ExperimentConfig(), methods, seeds, shots, full)
    want = full.read_text()

    @settings(max_examples=8, deadline=None)
    @given(st.integers(min_value=0, max_value=len(methods) * len(seeds) * len(shots)))
    def killed_at(n):
        out = tmp_path / f"part{n}.csv"
        for p in (out, RS.sidecar_path(out)):
            p.unlink(missing_ok=True)
        done = []

        def dying(cfg):
            if len(done) == n:
                raise KeyboardInterrupt
            done.append(1)
            return _row(cfg)

        monkeypatch.setattr(EX, "run_cached", dying)
        try:
            X.sweep(ExperimentConfig(), methods, seeds, shots, out)
        except KeyboardInterrupt:
            pass
        monkeypatch.setattr(EX, "run_cached", _row)
        X.sweep(ExperimentConfig(), methods, seeds, shots, out)
        assert out.read_text() == want

    killed_at()


def test_a_sidecar_inside_the_package_leaves_the_code_fingerprint_alone(tmp_path, fake_runs, monkeypatch):
    """A results CSV ships in the package; writing its sidecar must not change the fingerprint it records."""
    from sdmad_lite import cache as R
    from sdmad_lite.io import PACKAGE_DIR

    out = PACKAGE_DIR / "resources" / "results" / "_test_sidecar.csv"
    try:
        R.code_fingerprint.cache_clear()
        before = R.code_fingerprint()
        X.sweep(ExperimentConfig(), ["sdmad"], [0], [4], out)
        RS.save_results(_csv_rows(out), out, "test")
        R.code_fingerprint.cache_clear()
        assert RS.sidecar_path(out).is_file() and R.code_fingerprint() == before
        assert RS.read_results(out)[1]["code_current"]
    finally:
        out.unlink(missing_ok=True)
        RS.sidecar_path(out).unlink(missing_ok=True)
        R.code_fingerprint.cache_clear()


def test_sdmad_study_writes_the_rows_of_a_study_and_its_sidecar(tmp_path, monkeypatch, capsys):
    from sdmad_lite import studies
    from sdmad_lite.cli import main
    from sdmad_lite.cli import experiments as E

    asked = []

    def fake_many(cfgs, workers=None):
        asked.append((len(cfgs), workers))
        return [_row(c) | {"selection.noise": c.selection.noise, "selection.noise_kind": c.selection.noise_kind}
                for c in cfgs]

    monkeypatch.setattr(studies, "STUDIES", {**studies.STUDIES, "sign-noise": lambda: studies.sign_noise(seeds=(0,))})
    monkeypatch.setattr(E, "run_many", fake_many)
    out = tmp_path / "noise.csv"
    assert main(["study", "sign-noise", "--out", str(out), "--workers", "3"]) == 0
    n = len(studies.sign_noise(seeds=(0,)))
    assert asked == [(n, 3)] and len(_csv_rows(out)) == n
    df, meta = RS.read_results(out)
    assert meta["code_current"] and meta["rows"] == n and meta["command"].startswith("sdmad study sign-noise")
    assert set(df["selection.noise_kind"]) == set(studies.NOISE_KINDS) and df["selection.noise"].max() == 1.0
    with pytest.raises(SystemExit):
        main(["study", "no-such-study", "--out", str(out)])
    assert "invalid choice: 'no-such-study'" in capsys.readouterr().err  # argparse names the studies
