"""Sweeps of methods × seeds × shots (``sdmad sweep``), written as one tidy CSV, a row per run.

A sweep appends each finished run to its CSV at once (atomically), so a killed sweep resumes
where it stopped. Runs go to a local process pool or to Ray (a local instance or a cluster).
"""
from __future__ import annotations

import csv
import datetime
import hashlib
import json
import os
import warnings
from concurrent.futures import as_completed
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd
from tqdm.auto import tqdm

from .config import ConfigError, ExperimentConfig
from .io import atomic_write
from . import metrics as M
from .metrics import mean_std
from .methods import config_for
from .run import code_fingerprint, process_pool, run_cached


def _run_job(job: tuple[dict, str | None]) -> dict:
    """One run in a worker: ``(config dict, method)``; method None runs the config exactly as given.
    The row carries the hash of the run's config (what a resumed sweep matches rows on)."""
    cfg_dict, method = job
    cfg = ExperimentConfig.from_dict(cfg_dict)
    cfg = config_for(method, cfg) if method else cfg
    return dict(run_cached(cfg)) | {"config_hash": config_hash(cfg)}


class SweepCSVError(ConfigError):
    """A sweep CSV cannot be resumed by this sweep (another configuration, or not a sweep CSV)."""


#: columns every finished row has, and the ones that must be numbers in [0, 1]
REQUIRED = ("method", "seed", "k", "config_hash", "integrated.subset_accuracy", "integrated.hamming_score",
            "wall_time_s")
TEXT_COLUMNS = ("config_hash", "method", "profile", "dataset", "backbone", "adapter_mode")
IN_UNIT = ("integrated.subset_accuracy", "integrated.hamming_score", "integrated.macro_auroc", "per-anomaly.mean_auroc")


def config_hash(cfg: ExperimentConfig) -> str:
    """What identifies a run's configuration in a sweep CSV (sha256 of its config, 16 hex digits)."""
    return hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


def base_hash(base: ExperimentConfig) -> str:
    """What identifies a sweep: its base config without the settings a sweep varies (method, seed, k)."""
    d = base.to_dict()
    for key in ("method", "seed", "k_shot", "name"):
        d.pop(key, None)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _finished(row: dict) -> bool:
    """A row that holds a whole run (a row cut by a crash has empty or impossible values)."""
    for key in REQUIRED:
        if row.get(key) is None or row.get(key) == "":
            return False
    for key in IN_UNIT:
        v = row.get(key)
        if v is None:
            continue
        if not isinstance(v, (int, float)) or not (v != v or 0.0 <= v <= 1.0):
            return False
    return True


def sweep(base: ExperimentConfig, methods: Sequence[str], seeds: Iterable[int], shots: Iterable[int],
          out_csv: str | os.PathLike, backend: str = "local", workers: int = 1, progress: bool = False,
          ray_address: str | None = None, cpus_per_run: float = 1.0, gpus_per_run: float = 0.0) -> list[dict]:
    """Run methods × seeds × shots; each finished run is appended to ``out_csv`` at once.

    Resuming: every row carries the hash of its run's config and the CSV's sidecar (:func:`sidecar_path`) the
    hash of the sweep's base config and the library's code fingerprint; a CSV of another base config
    or of another version of the library is refused (:class:`SweepCSVError`),
    a row that was cut or holds impossible values is recomputed (with a warning), a run asked for
    twice is run once, and rows of the same sweep that are not asked for now are kept.
    ``backend``: ``local`` (sequential, or a process pool with ``workers`` > 1) or ``ray``.

    Ray: a Ray instance already initialised in this process is used as it is; otherwise
    ``ray_address`` (or the ``RAY_ADDRESS`` variable, e.g. ``ray://head:10001`` or ``auto``) joins an
    existing cluster, and without either a local instance with ``workers`` CPUs is started. Every
    run asks Ray for ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs (fractions share a GPU). The
    workers receive this process's ``SDMAD_*`` and ``HF_*`` variables; the package and the data
    must be installed on every node. The CSV is written by this process only, as rows arrive.
    """
    out = Path(out_csv)
    wanted: dict[str, tuple[dict, str]] = {}  # config hash -> job, in the order asked (duplicates once)
    for k in shots:
        for seed in seeds:
            for m in methods:
                d = base.to_dict()
                d["seed"], d["k_shot"] = int(seed), int(k)
                cfg = config_for(m, ExperimentConfig.from_dict(d))  # validates the method name first
                wanted.setdefault(config_hash(cfg), (d, m))
    done = _resumable_rows(out, base)
    keep = [r for r in done if _finished(r)]
    bad = len(done) - len(keep)
    if bad:
        warnings.warn(f"{out}: {bad} row(s) cut or holding impossible values are recomputed", stacklevel=2)
    have = {r["config_hash"] for r in keep}
    jobs = [job for h, job in wanted.items() if h not in have]
    rows = list(keep)
    _write_sidecar(out, base)
    if bad:
        _write_rows(out, rows)
    ray_opts = {"address": ray_address, "num_cpus": cpus_per_run, "num_gpus": gpus_per_run}
    for row in _execute(jobs, backend, workers, progress, ray_opts):
        rows.append(row)
        _write_rows(out, rows)
    return rows


def _resumable_rows(out: Path, base: ExperimentConfig) -> list[dict]:
    """The rows of ``out`` that this sweep may resume from, or an error saying why there are none."""
    if not out.exists():
        return []
    try:
        done = _read_rows(out)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise SweepCSVError(f"{out} is not a readable CSV ({e}); choose another --out or delete it") from None
    if not done:
        return []
    if not {"method", "seed", "k", "config_hash"} <= set(done[0]):
        raise SweepCSVError(f"{out} is not a sweep CSV of this version of sdmad (no method/seed/k/config_hash "
                            "columns); choose another --out, or delete it to start afresh")
    side = sidecar_path(out)
    meta = json.loads(side.read_text()) if side.is_file() else {}
    if meta.get("base") != base_hash(base):
        raise SweepCSVError(f"{out} holds runs of another base configuration than this sweep's (its sidecar "
                            f"{side.name} says {meta.get('base', 'nothing')}, this sweep is {base_hash(base)}): "
                            "resuming would mix them in one table; choose another --out, or delete the CSV")
    if meta.get("code") not in (None, code_fingerprint()):
        raise SweepCSVError(f"{out} holds runs of another version of the library (its sidecar {side.name} records "
                            f"code {meta['code'][:12]}…, this library is {code_fingerprint()[:12]}…): resuming would "
                            "mix their numbers in one table; choose another --out, or delete the CSV to rerun all")
    return done


def sidecar_path(csv_path: str | os.PathLike) -> Path:
    """The sidecar of a sweep CSV: ``NAME.meta`` beside ``NAME.csv`` (JSON inside). Not ``.json``: a
    results CSV may ship inside the package, and the library's code fingerprint, which the sidecar
    records, reads the package's ``.json`` files — a sidecar named so would change the fingerprint it
    holds (``tests/test_sweep_backends.py`` checks it does not)."""
    return Path(csv_path).with_suffix(".meta")


def _write_sidecar(out: Path, base: ExperimentConfig, **extra) -> None:
    side = sidecar_path(out)
    meta = json.loads(side.read_text()) if side.is_file() else {}
    meta.update({"base": base_hash(base), "code": code_fingerprint()} | extra)
    atomic_write(side, json.dumps(meta, indent=1))


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
        return [{k: (v if k in TEXT_COLUMNS else _parse(v)) for k, v in r.items()} for r in csv.DictReader(f)]


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


def versus(df, metric: str, a, b, scale: float = 100.0, by: str = "method", **where) -> tuple[M.PairedTest, str]:
    """Method ``a`` against method ``b`` on ``metric``, paired by seed over the rows of ``df`` that
    match ``where`` (column = value): the paired test and one sentence saying which way it falls
    ("beats" / "trails" only when the 95 % interval of the difference excludes 0). ``by`` names the
    column that ``a`` and ``b`` are values of (default: the method; e.g. ``by="sign_noise"`` compares
    two noise levels of one method)."""
    d = pd.DataFrame(df)
    for col, value in where.items():
        d = d[d[col] == value]
    x = d[d[by] == a].set_index("seed")[metric]
    y = d[d[by] == b].set_index("seed")[metric].reindex(x.index)
    if x.index.has_duplicates:
        raise ValueError(f"versus: several rows per seed for {by} = {a!r}; narrow them with column=value filters")
    t = M.paired_test(scale * x.to_numpy(float), scale * y.to_numpy(float))
    word = "beats" if t.low > 0 else ("trails" if t.high < 0 else "is not clearly different from")
    return t, (f"{word} {b} ({t.mean:+.1f} points paired over {t.n} seeds, 95 % interval [{t.low:+.1f}, "
               f"{t.high:+.1f}], paired t-test p = {t.p_t:.2g})")


def write_results(rows: list[dict], path: str | os.PathLike, command: str) -> None:
    """Record in a sweep CSV's sidecar (:func:`sidecar_path`) the command that wrote it, the library's code
    fingerprint and the date (what a chapter that reads it prints)."""
    p = Path(path)
    side = sidecar_path(p)
    meta = json.loads(side.read_text()) if side.is_file() else {}
    meta.update({"command": command, "code": code_fingerprint(), "date": datetime.date.today().isoformat(),
                 "rows": len(rows)})
    atomic_write(side, json.dumps(meta, indent=1))


def save_results(rows: list[dict], path: str | os.PathLike, command: str) -> None:
    """Write ``rows`` as a results CSV with its sidecar (the rows of a study, ``sdmad study``)."""
    _write_rows(Path(path), rows)
    write_results(rows, path, command)


def read_results(path: str | os.PathLike) -> tuple[pd.DataFrame, dict]:
    """The rows of a results CSV and its sidecar (see :func:`write_results`); ``meta["current"]``
    says whether the library that wrote it is the one installed now."""
    p = Path(path)
    meta = json.loads(sidecar_path(p).read_text())
    meta["current"] = meta.get("code") == code_fingerprint()
    return pd.DataFrame(_read_rows(p)), meta
