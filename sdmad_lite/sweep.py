"""Sweeps of methods × seeds × shots (``sdmad sweep``), written as one tidy CSV, a row per run.

A sweep appends each finished run to its CSV at once (atomically), so a killed sweep resumes
where it stopped. Runs go to a local process pool or to Ray (a local instance or a cluster).
"""
from __future__ import annotations

import csv
import os
from concurrent.futures import as_completed
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd
from tqdm.auto import tqdm

from .config import ConfigError, ExperimentConfig
from .io import atomic_write
from .metrics import mean_std
from .methods import config_for
from .run import process_pool, run_cached


def _run_job(job: tuple[dict, str | None]) -> dict:
    """One run in a worker: ``(config dict, method)``; method None runs the config exactly as given."""
    cfg_dict, method = job
    cfg = ExperimentConfig.from_dict(cfg_dict)
    return run_cached(config_for(method, cfg) if method else cfg)


def sweep(base: ExperimentConfig, methods: Sequence[str], seeds: Iterable[int], shots: Iterable[int],
          out_csv: str | os.PathLike, backend: str = "local", workers: int = 1, progress: bool = False,
          ray_address: str | None = None, cpus_per_run: float = 1.0, gpus_per_run: float = 0.0) -> list[dict]:
    """Run methods × seeds × shots; each finished run is appended to ``out_csv`` at once.

    Rows already in ``out_csv`` (same method, seed, k) are skipped: a killed sweep resumes.
    ``backend``: ``local`` (sequential, or a process pool with ``workers`` > 1) or ``ray``.

    Ray: a Ray instance already initialised in this process is used as it is; otherwise
    ``ray_address`` (or the ``RAY_ADDRESS`` variable, e.g. ``ray://head:10001`` or ``auto``) joins an
    existing cluster, and without either a local instance with ``workers`` CPUs is started. Every
    run asks Ray for ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs (fractions share a GPU). The
    workers receive this process's ``SDMAD_*`` and ``HF_*`` variables; the package and the data
    must be installed on every node. The CSV is written by this process only, as rows arrive.
    """
    out = Path(out_csv)
    done = _read_rows(out)
    have = {(r["method"], int(r["seed"]), int(r["k"])) for r in done}
    jobs = []
    for k in shots:
        for seed in seeds:
            for m in methods:
                if (m, seed, k) not in have:
                    d = base.to_dict()
                    d["seed"], d["k_shot"] = int(seed), int(k)
                    jobs.append((d, m))
    for m in methods:  # validates the method names before anything runs
        config_for(m, base)
    rows = list(done)
    ray_opts = {"address": ray_address, "num_cpus": cpus_per_run, "num_gpus": gpus_per_run}
    for row in _execute(jobs, backend, workers, progress, ray_opts):
        rows.append(row)
        _write_rows(out, rows)
    return rows


def _forwarded_env() -> dict[str, str]:
    """The variables a remote worker needs to run as this process would."""
    return {k: v for k, v in os.environ.items() if k.startswith(("SDMAD_", "HF_", "OMP_NUM_THREADS"))}


def _ray_start(ray, workers: int, address: str | None) -> None:
    """Join ``address`` / ``RAY_ADDRESS`` when given, else start a local instance of ``workers`` CPUs."""
    if ray.is_initialized():
        return
    env = {"env_vars": _forwarded_env()}
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        ray.init(address=address, runtime_env=env, ignore_reinit_error=True)
    else:
        ray.init(num_cpus=max(1, workers), include_dashboard=False, ignore_reinit_error=True, runtime_env=env)


def _execute(jobs, backend: str, workers: int, progress: bool, ray_opts: dict | None = None):
    bar = tqdm(total=len(jobs), disable=not progress, desc="runs")
    if backend == "local" and workers <= 1:
        for j in jobs:
            yield _run_job(j)
            bar.update()
    elif backend == "local":
        with process_pool(workers) as ex:
            for f in as_completed([ex.submit(_run_job, j) for j in jobs]):
                yield f.result()
                bar.update()
    elif backend == "ray":
        try:
            import ray  # deferred on purpose: Ray is a heavy optional dependency (the ray extra)
        except ImportError:
            raise ConfigError("backend 'ray' needs Ray: pip install 'sdmad-lite[ray]'") from None
        opts = ray_opts or {}
        _ray_start(ray, workers, opts.get("address"))
        remote = ray.remote(num_cpus=opts.get("num_cpus", 1.0), num_gpus=opts.get("num_gpus", 0.0))(_run_job)
        pending = [remote.remote(j) for j in jobs]
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            yield ray.get(ready[0])
            bar.update()
    else:
        raise ConfigError(f"unknown backend {backend!r}; choose local or ray")
    bar.close()


def _read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{k: _parse(v) for k, v in r.items()} for r in csv.DictReader(f)]


def _parse(v: str):
    for cast in (int, float):
        try:
            return cast(v)
        except (TypeError, ValueError):
            pass
    return None if v == "" else v


def _write_rows(path: Path, rows: list[dict]) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)

    atomic_write(path, write)


def summarize(rows, metrics: Sequence[str], by: Sequence[str] = ("method", "k"), scale: float = 100.0):
    """Mean ± std over seeds of ``metrics`` per group, as a pandas DataFrame of strings and numbers."""
    df = pd.DataFrame(rows)
    out = []
    for key, g in df.groupby(list(by), sort=False):
        rec = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        rec["seeds"] = g["seed"].nunique()
        for m in metrics:
            ms = mean_std(g[m].astype(float).to_numpy())
            rec[m] = f"{ms.mean * scale:.1f} ± {ms.std * scale:.1f}"
            rec[m + " (mean)"] = ms.mean * scale
        out.append(rec)
    return pd.DataFrame(out)
