"""Experiments: one run end to end (``sdmad run``) and sweeps of methods × seeds × shots
(``sdmad sweep``) written as one tidy table, a row per run.

A run writes into its own folder: ``config.yaml`` (what it ran), ``split.json`` (the shots it
drew), ``checkpoint.pt`` (the trained adapters; also the resume point), ``history.json`` and
``metrics.json``. An existing run folder is never overwritten without ``overwrite=True``.
A sweep appends each finished run to its CSV at once (atomically), so a killed sweep resumes
where it stopped.
"""
from __future__ import annotations

import copy
import csv
import functools
import json
import os
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from . import engine as E
from .config import ExperimentConfig, _deep_update, get_profile, load_config, save_config
from .models import baselines as B
from .models.backbone import load as load_backbone
from .seeding import seed_everything

#: SD-MAD and its ablations, as config overrides
VARIANTS: dict[str, dict] = {
    "sdmad": {},
    "sdmad-no-ss": {"selection": {"rule": "none"}},
    "sdmad-no-disc": {"loss": {"discrepancy": 0.0}},
    "sdmad-no-ss-no-disc": {"selection": {"rule": "none"}, "loss": {"discrepancy": 0.0}},
}
ALL_METHODS = tuple(VARIANTS) + tuple(m for m in B.METHODS if m != "sdmad")

_TASKS: dict[str, E.Task] = {}
_BACKBONES: dict[str, object] = {}


class RunExistsError(FileExistsError):
    """A run folder already holds results; pass ``overwrite=True`` (``--overwrite``) to replace them."""


def get_backbone(cfg: ExperimentConfig):
    from .config import resolve_device

    device = resolve_device(cfg.model.device)
    key = f"{cfg.model.backbone}|{cfg.model.pretrained}|{device}"
    if key not in _BACKBONES:
        prof = get_profile(cfg.profile)
        if prof.needs_network and cfg.model.pretrained not in (None, "shipped"):
            from .config import require_profile_ready

            require_profile_ready(prof, weights_cached=_weights_cached(cfg))
        _BACKBONES[key] = load_backbone(cfg.model.backbone, "default" if cfg.model.pretrained == "shipped" else cfg.model.pretrained,
                                        device=device)
    return _BACKBONES[key]


def _weights_cached(cfg: ExperimentConfig) -> bool:
    try:
        import open_clip
        from huggingface_hub import try_to_load_from_cache

        pc = open_clip.pretrained.get_pretrained_cfg(cfg.model.backbone, cfg.model.pretrained or "")
        hub = pc.get("hf_hub", "")
        if not hub:
            return False
        repo = "/".join(hub.strip("/").split("/")[:2])  # "timm/vit_base_patch16_clip_224.openai/" -> repo id
        return any(isinstance(try_to_load_from_cache(repo, f), str) for f in ("open_clip_pytorch_model.bin", "open_clip_model.safetensors"))
    except Exception:  # noqa: BLE001
        return False


def get_task(cfg: ExperimentConfig, progress: bool = False) -> E.Task:
    bb = get_backbone(cfg)
    key = json.dumps([cfg.data.__dict__, bb.key, cfg.model.adapter_blocks], sort_keys=True, default=str)
    if key not in _TASKS:
        _TASKS[key] = E.build_task(cfg, bb, progress=progress)
    return _TASKS[key]


def config_for(method: str, base: ExperimentConfig) -> ExperimentConfig:
    """The config of ``method`` (an SD-MAD variant or a baseline) on top of ``base``."""
    if method not in ALL_METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(ALL_METHODS)}")
    d = base.to_dict()
    d = _deep_update(d, VARIANTS.get(method, {}))
    d["method"] = method
    return ExperimentConfig.from_dict(d, where=f"method {method}")


def _predict(method: str, task: E.Task, support: E.Support, cfg: ExperimentConfig, cols: list[int] | None,
             checkpoint: Path | None):
    # few-shot work on cached features: tiny tensors, one thread; the residual variant's frozen blocks use them all
    with E.one_thread(cfg.model.adapter_mode != "residual"):
        return _predict_any(method, task, support, cfg, cols, checkpoint)


def _predict_any(method: str, task: E.Task, support: E.Support, cfg: ExperimentConfig, cols: list[int] | None,
                 checkpoint: Path | None):
    if method in VARIANTS:
        pred, res = E.predict_sdmad(task, support, cfg, categories=cols, checkpoint=checkpoint)
        return pred, res
    c = list(range(len(task.categories))) if cols is None else cols
    return B.run_baseline(method, task, support, cfg, c), None


def _flatten(prefix: str, d: dict, out: dict) -> None:
    for k, v in d.items():
        if isinstance(v, (np.ndarray, list)) or k == "y_pred":
            continue
        if isinstance(v, dict):
            _flatten(f"{prefix}{k}.", v, out)
        elif isinstance(v, (int, float, np.floating, np.integer, str, bool)) or v is None:
            out[f"{prefix}{k}"] = v.item() if hasattr(v, "item") else v


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """sha256 over the library's code, sign files and shipped checkpoint: any change to what
    could alter a result changes it (the key of the result cache). Computed once per process."""
    import hashlib

    from .paths import PACKAGE_DIR

    h = hashlib.sha256()
    for p in sorted(PACKAGE_DIR.rglob("*")):
        if p.suffix in (".py", ".yaml", ".json", ".pt") and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(PACKAGE_DIR)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def _result_path(cfg: ExperimentConfig) -> Path:
    """Where :func:`run_cached` keeps the row of ``cfg`` (keyed by config and code fingerprint)."""
    import hashlib

    from .paths import cache_dir

    key = hashlib.sha256(json.dumps([cfg.to_dict(), code_fingerprint()], sort_keys=True).encode()).hexdigest()[:32]
    return cache_dir() / "runs" / f"{key}.json"


def run_cached(cfg: ExperimentConfig) -> dict:
    """:func:`run` without an output folder, memoised on disk by (config, code fingerprint).

    The book re-executes its notebooks several times per CI run (nbval, then the build); this
    cache lets the second execution reuse the runs of the first. Any change to the config or
    to the library's code, sign files or checkpoint misses the cache. ``SDMAD_NO_RESULT_CACHE=1``
    turns it off.
    """
    if os.environ.get("SDMAD_NO_RESULT_CACHE"):
        return run(cfg)
    path = _result_path(cfg)
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            pass
    row = run(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_json(row, path)
    return json.loads(path.read_text())


def run(cfg: ExperimentConfig, out_dir: str | os.PathLike | None = None, overwrite: bool = False,
        progress: bool = False) -> dict:
    """Run one experiment end to end; returns a flat dict of results (also ``metrics.json``)."""
    t0 = time.time()
    out = Path(out_dir) if out_dir else None
    if out is not None:
        if (out / "metrics.json").exists() and not overwrite:
            raise RunExistsError(f"{out} already holds a finished run (metrics.json); choose another --out or pass --overwrite")
        if (out / "config.yaml").exists() and not overwrite and load_config(out / "config.yaml").to_dict() != cfg.to_dict():
            raise RunExistsError(f"{out} holds an unfinished run of another config; choose another --out or pass --overwrite")
        if overwrite:  # a fresh run: never resume the adapters of the run being replaced
            for name in ("checkpoint.pt", "history.json", "split.json", "metrics.json"):
                (out / name).unlink(missing_ok=True)
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
    seed_everything(cfg.seed)
    task = get_task(cfg, progress)
    support = E.draw_support(task, cfg.k_shot, cfg.seed, cfg.train.val_fraction,
                             split_file=out / "split.json" if out else None)
    ck = out / "checkpoint.pt" if out else None
    pred, res = _predict(cfg.method, task, support, cfg, None, ck)
    ev = E.evaluate(task, support, pred)
    row: dict = {"method": cfg.method, "seed": cfg.seed, "train_seed": cfg.seed if cfg.train_seed is None else cfg.train_seed,
                 "k": cfg.k_shot, "profile": cfg.profile,
                 "dataset": cfg.data.dataset, "backbone": cfg.model.backbone, "adapter_mode": cfg.model.adapter_mode}
    _flatten("integrated.", ev["integrated"], row)
    _flatten("per-anomaly.", ev["per-anomaly"], row)
    if pred.kept is not None and task.drawn.any():
        pool = task.expert if cfg.selection.pool == "expert" else task.text.sign_mask.numpy()
        for truth_name, truth in (("drawn", task.drawn), ("known", task.known)):
            p, r = E.S.precision_recall(pred.kept, truth, pool | pred.kept)
            row[f"selection.precision_{truth_name}"], row[f"selection.recall_{truth_name}"] = p, r
        row["selection.kept"] = int(pred.kept.sum())
    if "open-set" in cfg.protocols:
        held = E.open_set_heldout(task, cfg.seed)
        cols = [c for c in range(len(task.categories)) if c != held]
        sup_os = E.draw_support(task, cfg.k_shot, cfg.seed, cfg.train.val_fraction, categories=cols)
        pred_os, _ = _predict(cfg.method, task, sup_os, cfg, cols, None)
        _flatten("open-set.", E.evaluate_open_set(task, sup_os, pred_os, held, cols), row)
    row["wall_time_s"] = round(time.time() - t0, 2)
    if res is not None:
        row["best_epoch"] = res.best_epoch
    if out is not None:
        _atomic_json(row, out / "metrics.json")
        if res is not None:
            _atomic_json(res.history, out / "history.json")
    return row


def _atomic_json(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=float))
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- many runs
def default_workers() -> int:
    """Worker processes for :func:`run_many`: ``SDMAD_WORKERS`` or the usable cores (at most 8).

    Every run trains on one thread (:class:`~sdmad_lite.engine.one_thread`), so runs in parallel
    processes use the cores that one run alone leaves idle.
    """
    env = os.environ.get("SDMAD_WORKERS", "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"SDMAD_WORKERS must be a whole number ≥ 1, got {env!r}")
        return int(env)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


def _process_pool(workers: int):
    """A pool of ``workers`` processes for runs. Spawned, not forked: a forked child of a process
    that has run torch's thread pools can hang."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"))


def run_many(cfgs: Sequence[ExperimentConfig], workers: int | None = None) -> list[dict]:
    """:func:`run_cached` for every config, rows in the order of ``cfgs``.

    Runs already in the result cache are read at once; the others go to a pool of ``workers``
    processes (default :func:`default_workers`; 1 runs them here, one after the other). Each run
    seeds itself and trains on one thread, so the rows do not depend on ``workers``.
    """
    cfgs = list(cfgs)
    workers = default_workers() if workers is None else int(workers)
    rows: list[dict | None] = [None] * len(cfgs)
    todo = []
    for i, c in enumerate(cfgs):
        if not os.environ.get("SDMAD_NO_RESULT_CACHE") and _result_path(c).is_file():
            rows[i] = run_cached(c)
        else:
            todo.append(i)
    if workers <= 1 or len(todo) <= 1:
        for i in todo:
            rows[i] = run_cached(cfgs[i])
    else:
        with _process_pool(min(workers, len(todo))) as ex:
            for i, row in zip(todo, ex.map(_run_job, [(cfgs[i].to_dict(), None) for i in todo])):
                rows[i] = row
    return rows  # type: ignore[return-value]


# ----------------------------------------------------------------------------- sweeps
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
    config_for(methods[0], base)  # validates the method names before anything runs
    for m in methods:
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
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), disable=not progress, desc="runs")
    if backend == "local" and workers <= 1:
        for j in jobs:
            yield _run_job(j)
            bar.update()
    elif backend == "local":
        from concurrent.futures import as_completed

        with _process_pool(workers) as ex:
            for f in as_completed([ex.submit(_run_job, j) for j in jobs]):
                yield f.result()
                bar.update()
    elif backend == "ray":
        try:
            import ray
        except ImportError:
            raise ValueError("backend 'ray' needs Ray: pip install 'sdmad-lite[ray]'") from None
        opts = ray_opts or {}
        _ray_start(ray, workers, opts.get("address"))
        remote = ray.remote(num_cpus=opts.get("num_cpus", 1.0), num_gpus=opts.get("num_gpus", 0.0))(_run_job)
        pending = [remote.remote(j) for j in jobs]
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            yield ray.get(ready[0])
            bar.update()
    else:
        raise ValueError(f"unknown backend {backend!r}; choose local or ray")
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
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def summarize(rows, metrics: Sequence[str], by: Sequence[str] = ("method", "k"), scale: float = 100.0):
    """Mean ± std over seeds of ``metrics`` per group, as a pandas DataFrame of strings and numbers."""
    import pandas as pd

    from .metrics import mean_std

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


# ----------------------------------------------------------------------------- CLI
def _seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-")
            out += list(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    return out


def _cmd_run(args) -> int:
    cfg = load_config(args.config)
    row = run(cfg, args.out, overwrite=args.overwrite, progress=True)
    keys = ["integrated.subset_accuracy", "integrated.hamming_score", "integrated.macro_auroc", "per-anomaly.mean_auroc",
            "open-set.auroc_only_held_out"]
    for k in keys:
        if k in row:
            print(f"{k:32s} {row[k]:.4f}")
    print(f"results in {args.out}")
    return 0


def _cmd_sweep(args) -> int:
    base = load_config(args.config) if args.config else ExperimentConfig()
    methods = args.methods.split(",") if args.methods != "all" else list(ALL_METHODS)
    rows = sweep(base, methods, _seeds(args.seeds), [int(k) for k in args.shots.split(",")], args.out,
                 backend=args.backend, workers=args.workers, progress=True, ray_address=args.ray_address,
                 cpus_per_run=args.cpus_per_run, gpus_per_run=args.gpus_per_run)
    print(f"{len(rows)} rows in {args.out}")
    return 0


def add_subcommand(subparsers) -> None:
    p = subparsers.add_parser("run", help="run one experiment from a YAML config")
    p.add_argument("config", help="experiment YAML (examples in sdmad_lite/configs/)")
    p.add_argument("--out", required=True, help="run folder (metrics.json, config.yaml, split.json, checkpoint.pt)")
    p.add_argument("--overwrite", action="store_true", help="replace the results of an existing run folder")
    p.set_defaults(func=_cmd_run)
    p = subparsers.add_parser("sweep", help="methods × seeds × shots into one CSV (resumable)")
    p.add_argument("--config", default=None, help="base experiment YAML (default: the offline defaults)")
    p.add_argument("--methods", default="all", help=f"comma list or 'all' ({', '.join(ALL_METHODS)})")
    p.add_argument("--seeds", default="0-9", help="e.g. 0-9 or 0,1,2")
    p.add_argument("--shots", default="4", help="e.g. 1,2,4,8,16")
    p.add_argument("--out", required=True, help="CSV file (rows already there are skipped)")
    p.add_argument("--backend", default="local", choices=["local", "ray"])
    p.add_argument("--workers", type=int, default=1, help="local processes, or CPUs of a local Ray instance")
    p.add_argument("--ray-address", default=None,
                   help="join this Ray cluster (e.g. ray://head:10001 or auto; default: $RAY_ADDRESS, else a local instance)")
    p.add_argument("--cpus-per-run", type=float, default=1.0, help="Ray: CPUs reserved per run")
    p.add_argument("--gpus-per-run", type=float, default=0.0, help="Ray: GPUs reserved per run (0.5: two runs share one)")
    p.set_defaults(func=_cmd_sweep)
