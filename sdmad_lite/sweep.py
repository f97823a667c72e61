"""Sweeps of methods × seeds × shots (``sdmad sweep``), written as one tidy CSV, a row per run.

A sweep appends each finished run to its CSV at once (atomically), so a killed sweep resumes
where it stopped. Runs go to the executor (``executor.py``: a local process pool or Ray); the CSV
and its sidecar are ``results.py``'s.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterable, Sequence

from .cache import code_fingerprint, config_hash, is_finished_row
from .config import ExperimentConfig
from .errors import ConfigError
from .executor import iter_runs
from .io import exclusive_lock, stable_hash
from .methods import config_for
from .results import ResultsFileError, read_meta, read_rows, sidecar_path, write_meta, write_rows


class SweepCSVError(ResultsFileError, ConfigError):
    """A sweep CSV cannot be resumed by this sweep (another configuration, or not a sweep CSV)."""


def base_hash(base: ExperimentConfig) -> str:
    """What identifies a sweep: its base config without the settings a sweep varies (method, seed, k)."""
    d = base.to_dict()
    for key in ("method", "seed", "k_shot", "name"):
        d.pop(key, None)
    return stable_hash(d)


def plan(base: ExperimentConfig, methods: Sequence[str], seeds: Iterable[int], shots: Iterable[int]) -> dict[str, ExperimentConfig]:
    """The runs of a sweep: config hash -> config, in the order k, seed, method (a run asked twice once)."""
    wanted: dict[str, ExperimentConfig] = {}
    for k in shots:
        for seed in seeds:
            for m in methods:
                d = base.to_dict()
                d["seed"], d["k_shot"] = int(seed), int(k)
                cfg = config_for(m, ExperimentConfig.from_dict(d))  # validates the method name first
                wanted.setdefault(config_hash(cfg), cfg)
    return wanted


def sweep(base: ExperimentConfig, methods: Sequence[str], seeds: Iterable[int], shots: Iterable[int],
          out_csv: str | os.PathLike, backend: str = "local", workers: int = 1, progress: bool = False,
          ray_address: str | None = None, cpus_per_run: float = 1.0, gpus_per_run: float = 0.0) -> list[dict]:
    """Run methods × seeds × shots; each finished run is appended to ``out_csv`` at once.

    Resuming: every row carries the hash of its run's config and the CSV's sidecar the hash of the sweep's
    base config and the library's code fingerprint; a CSV of another base config or of another version of
    the library is refused (:class:`SweepCSVError`), a row that was cut or holds impossible values is
    recomputed (with a warning), a run asked for twice is run once, and rows of the same sweep that are not
    asked for now are kept. ``backend``: ``local`` (sequential, or a process pool with ``workers`` > 1) or
    ``ray`` (``ray_address`` or ``RAY_ADDRESS`` joins a cluster; each run asks for ``cpus_per_run`` CPUs and
    ``gpus_per_run`` GPUs). The CSV is written by this process only, as rows arrive; ``NAME.lock`` beside it
    keeps a second sweep on the same CSV out (:class:`~sdmad_lite.io.LockedError`) instead of both reporting
    success with one sweep's rows.
    """
    out = Path(out_csv)
    wanted = plan(base, methods, seeds, shots)
    if not wanted:
        raise ConfigError("a sweep of no run: give at least one method, seed and shot count")
    with exclusive_lock(out, "another sweep"):  # two sweeps on one CSV would each keep only their own rows
        done = _resumable_rows(out, base)
        keep = [r for r in done if is_finished_row(r)]
        bad = len(done) - len(keep)
        if bad:
            warnings.warn(f"{out}: {bad} row(s) cut or holding impossible values are recomputed", stacklevel=2)
        have = {r["config_hash"] for r in keep}
        todo = [(h, c) for h, c in wanted.items() if h not in have]
        rows = list(keep)
        write_meta(out, base=base_hash(base))
        if bad:
            write_rows(out, rows)
        opts = {"address": ray_address, "num_cpus": cpus_per_run, "num_gpus": gpus_per_run}
        for _, row in iter_runs([c for _, c in todo], workers, backend, progress, opts):
            rows.append(row)  # its config_hash is the run's (run.run records it)
            write_rows(out, rows)
    return rows


def _resumable_rows(out: Path, base: ExperimentConfig) -> list[dict]:
    """The rows of ``out`` that this sweep may resume from, or an error saying why there are none."""
    if not out.exists():
        return []
    if not out.is_file():
        raise SweepCSVError(f"{out} is not a regular file; give --out the path of a CSV file")
    try:
        done = read_rows(out)
    except (OSError, UnicodeDecodeError, Exception) as e:  # noqa: BLE001 — csv.Error and friends: one message
        raise SweepCSVError(f"{out} is not a readable CSV ({type(e).__name__}); choose another --out or delete it") from None
    if not done:
        return []
    if not {"method", "seed", "k_shot", "config_hash"} <= set(done[0]):
        raise SweepCSVError(f"{out} is not a sweep CSV of this version of sdmad (no method/seed/k_shot/config_hash "
                            "columns); choose another --out, or delete it to start afresh")
    meta = read_meta(out)
    side = sidecar_path(out)
    if meta.get("base") != base_hash(base):
        raise SweepCSVError(f"{out} holds runs of another base configuration than this sweep's (its sidecar "
                            f"{side.name} says {meta.get('base', 'nothing')}, this sweep is {base_hash(base)}): "
                            "resuming would mix them in one table; choose another --out, or delete the CSV")
    if meta.get("code") not in (None, code_fingerprint()):
        raise SweepCSVError(f"{out} holds runs of another version of the library (its sidecar {side.name} records "
                            f"code {meta['code'][:12]}…, this library is {code_fingerprint()[:12]}…): resuming would "
                            "mix their numbers in one table; choose another --out, or delete the CSV to rerun all")
    return done
