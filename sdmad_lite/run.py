"""One experiment end to end (``sdmad run``): config → task → support set → method → thresholds →
protocols → one flat row of results.

A run writes into its own folder: ``config.yaml`` (what it ran), ``split.json`` (the shots it
drew), ``checkpoint.pt`` (the trained adapters; also the resume point), ``history.json`` and
``metrics.json``. An existing run folder is never overwritten without ``overwrite=True``.
:func:`run_cached` memoises rows on disk (the book executes its notebooks more than once);
:func:`run_many` runs a list of configs in parallel processes.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import json
import multiprocessing as mp
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from . import metrics as M
from . import methods, protocols, settings
from .config import ConfigError, ExperimentConfig, load_config, save_config
from .data.build import check_feasible
from .data.fewshot import Support, draw_support
from .features import PATCHES
from .io import PACKAGE_DIR, cache_dir, write_json
from .seeding import seed_everything
from .selection import precision_recall
from .task import Task, get_backbone, get_task, task_key
from .train import Predictions


class RunExistsError(FileExistsError):
    """A run folder already holds results; pass ``overwrite=True`` (``--overwrite``) to replace them."""


def load_experiment(path: str | os.PathLike) -> ExperimentConfig:
    """:func:`~sdmad_lite.config.load_config`, then the method name checked against the registry."""
    return methods.check(load_config(path), where=str(path))


# ----------------------------------------------------------------------------- protocols on one draw
def evaluate(task: Task, support: Support, pred: Predictions, cols: list[int] | None = None) -> dict:
    """Thresholds from the few-shot scores (``pred.support_*``), then the integrated and per-anomaly
    protocols on the test set (never used for any choice)."""
    cols = list(range(len(task.categories))) if cols is None else cols
    ys = task.y_pool[support.all][:, cols]
    yt = task.y_test[:, cols]
    thr = M.choose_thresholds(pred.support_scores, ys, rule="f1")
    athr = M.choose_binary_threshold(pred.support_anchor, (ys.sum(1) > 0).astype(int))
    labels = pred.test_labels
    integ = protocols.evaluate_integrated(pred.test_scores, pred.test_anchor, yt, thr, athr, labels)
    per = protocols.evaluate_per_anomaly(pred.test_scores, yt, thr, None if labels is None else labels[:, 1:])
    return {"integrated": integ, "per-anomaly": per, "thresholds": thr, "anchor_threshold": athr}


def open_set_heldout(task: Task, seed: int, category: str | None = None) -> int:
    """The category held out in the open-set protocol: ``category`` when given (a name of the task's),
    else the one of ``seed`` (cycles through the categories)."""
    if category is None:
        return seed % len(task.categories)
    if category not in task.categories:
        raise ConfigError(f"open_set_category: {category!r} is not a category of {task.dataset}; choose one of "
                          f"{', '.join(task.categories)} (or leave it unset: the seed chooses)")
    return task.categories.index(category)


def evaluate_open_set(task: Task, support: Support, pred: Predictions, held_out: int, cols: list[int]) -> dict:
    """The open-set protocol: the anchor threshold from the support set (held-out category absent)."""
    ys = task.y_pool[support.all][:, cols]
    athr = M.choose_binary_threshold(pred.support_anchor, (ys.sum(1) > 0).astype(int))
    out = protocols.evaluate_open_set(pred.test_anchor, task.y_test, [held_out], athr)
    out["held_out_category"] = task.categories[held_out]
    return out


def _flatten(prefix: str, d: dict, out: dict) -> None:
    for k, v in d.items():
        if isinstance(v, (np.ndarray, list)) or k == "y_pred":
            continue
        if isinstance(v, dict):
            _flatten(f"{prefix}{k}.", v, out)
        elif isinstance(v, (int, float, np.floating, np.integer, str, bool)) or v is None:
            out[f"{prefix}{k}"] = v.item() if hasattr(v, "item") else v


# ----------------------------------------------------------------------------- one run
def run(cfg: ExperimentConfig, out_dir: str | os.PathLike | None = None, overwrite: bool = False,
        progress: bool = False) -> dict:
    """Run one experiment end to end; returns a flat dict of results (also ``metrics.json``)."""
    t0 = time.time()
    methods.check(cfg)
    get_backbone(cfg)  # the weights first: a profile that needs downloads fails at once
    check_feasible(cfg)  # k shots per category drawable? before any feature, before the run folder
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
    task = get_task(cfg, progress, patches=methods.patches_read(cfg))
    support = draw_support(task.y_pool, cfg.k_shot, cfg.seed, cfg.train.val_fraction, names=task.categories,
                           split_file=out / "split.json" if out else None)
    ck = out / "checkpoint.pt" if out else None
    pred, fitted = methods.predict(task, support, cfg, None, ck)
    ev = evaluate(task, support, pred)
    row: dict = {"method": cfg.method, "seed": cfg.seed, "train_seed": cfg.seed if cfg.train_seed is None else cfg.train_seed,
                 "k": cfg.k_shot, "profile": cfg.profile,
                 "dataset": cfg.data.dataset, "scanner_shift": cfg.data.scanner_shift,
                 "conspicuity": cfg.data.conspicuity, "backbone": cfg.model.backbone,
                 "adapter_mode": cfg.model.adapter_mode, "sign_noise": cfg.selection.noise,
                 "sign_noise_kind": cfg.selection.noise_kind if cfg.selection.noise else ""}
    _flatten("integrated.", ev["integrated"], row)
    _flatten("per-anomaly.", ev["per-anomaly"], row)
    for i, name in enumerate(task.categories):  # per-category tables
        row[f"per-anomaly.auroc.{name}"] = float(ev["per-anomaly"]["per_category_auroc"][i])
        row[f"integrated.auroc.{name}"] = float(ev["integrated"]["per_category_auroc"][i + 1])
    row["integrated.auroc.normal"] = float(ev["integrated"]["per_category_auroc"][0])
    row.update(pred.extra.get("row", {}))
    if task.drawn.any():  # phantom: the share of the methods' pool that the renderer draws
        row["signs.pool_drawn"] = float(task.drawn[task.expert].mean())
    if pred.kept is not None and task.drawn.any():
        pool = task.expert if cfg.selection.pool == "expert" else task.text.sign_mask.numpy()
        for truth_name, truth in (("drawn", task.drawn), ("known", task.known)):
            p, r = precision_recall(pred.kept, truth, pool | pred.kept)
            row[f"selection.precision_{truth_name}"], row[f"selection.recall_{truth_name}"] = p, r
        row["selection.kept"] = int(pred.kept.sum())
    if "open-set" in cfg.protocols:
        held = open_set_heldout(task, cfg.seed, cfg.open_set_category)
        cols = [c for c in range(len(task.categories)) if c != held]
        sup_os = draw_support(task.y_pool, cfg.k_shot, cfg.seed, cfg.train.val_fraction, categories=cols,
                              names=task.categories)
        pred_os, _ = methods.predict(task, sup_os, cfg, cols, None)
        _flatten("open-set.", evaluate_open_set(task, sup_os, pred_os, held, cols), row)
    row["wall_time_s"] = round(time.time() - t0, 2)
    trained = getattr(fitted, "trained", None)
    if trained is not None:
        row["best_epoch"] = trained.best_epoch
    if out is not None:
        write_json(out / "metrics.json", row)
        if trained is not None:
            write_json(out / "history.json", trained.history)
    return row


# ----------------------------------------------------------------------------- the result cache
#: parts of the package that only *use* runs (commands, sweeps, reports, explorers): they cannot
#: change a run's row, so they are not part of the code fingerprint
CONSUMERS = ("cli", "data_scripts", "sweep.py", "reports.py", "studies.py", "explore.py", "info.py")


def _code(p: Path) -> bytes:
    """What of a source file can change a result: its syntax tree without docstrings (comments are not
    in it), so that editing documentation leaves the result cache valid. Other files: their bytes."""
    if p.suffix != ".py":
        return p.read_bytes()
    tree = ast.parse(p.read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree).encode()


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """sha256 over the library's code, sign files, registry and shipped checkpoints — every file that
    could alter a run's result (the key of the result cache). ``CONSUMERS`` and the example configs are
    left out, and so are docstrings and comments (``_code``). Once per process."""
    h = hashlib.sha256()
    for p in sorted(PACKAGE_DIR.rglob("*")):
        rel = p.relative_to(PACKAGE_DIR)
        if rel.parts[0] in CONSUMERS or (rel.parts[0] == "configs" and p.name != "methods.yaml"):
            continue
        if p.suffix in (".py", ".yaml", ".json", ".pt") and "__pycache__" not in p.parts:
            h.update(str(rel).encode())
            h.update(_code(p))
    return h.hexdigest()


def result_path(cfg: ExperimentConfig) -> Path:
    """Where :func:`run_cached` keeps the row of ``cfg``: keyed by the config, the code fingerprint and,
    for real data, a fingerprint of the files read (a replaced file is never answered from the cache)."""
    data = "phantom" if cfg.data.dataset.startswith("phantom-") else check_feasible(cfg)  # the files read, not their path
    key = hashlib.sha256(json.dumps([cfg.to_dict(), code_fingerprint(), data], sort_keys=True).encode()).hexdigest()[:32]
    return cache_dir("runs") / f"{key}.json"


def run_cached(cfg: ExperimentConfig) -> dict:
    """:func:`run` without an output folder, memoised on disk by (config, code fingerprint).

    The book re-executes its notebooks several times per CI run (nbval, then the build); this
    cache lets the second execution reuse the runs of the first. Any change to the config or
    to the library's code, sign files or checkpoint misses the cache. ``SDMAD_NO_RESULT_CACHE=1``
    turns it off.
    """
    if not settings.result_cache_enabled():
        return run(cfg)
    path = result_path(cfg)
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            pass
    row = run(cfg)
    write_json(path, row)
    return json.loads(path.read_text())


# ----------------------------------------------------------------------------- many runs
def default_workers() -> int:
    """Worker processes for :func:`run_many`: ``SDMAD_WORKERS`` or the usable cores (at most 8).

    Every run trains on one thread (:class:`~sdmad_lite.train.one_thread`), so runs in parallel
    processes use the cores that one run alone leaves idle.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return settings.workers(max(1, min(8, cores)))


def _exit_with_parent(parent: int, every_s: float = 1.0) -> None:
    """Worker initialiser: end this worker when the process that started the pool is gone (killed,
    or interrupted before the pool could shut down), instead of staying alive with its memory."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes for runs. Spawned, not forked: a forked child of a process
    that has run torch's thread pools can hang. A worker ends when the parent dies."""
    return ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_exit_with_parent,
                               initargs=(os.getpid(),))


def run_job(cfg_dict: dict) -> dict:
    """One run in a worker process: the config as a dict, run exactly as given (cached)."""
    return run_cached(ExperimentConfig.from_dict(cfg_dict))


def warm_task(cfg_dict: dict, patches: str = "all") -> None:
    """Build the task of a config in a worker process: its frozen features land in the disk cache."""
    get_task(ExperimentConfig.from_dict(cfg_dict), patches=patches)


def run_many(cfgs: Sequence[ExperimentConfig], workers: int | None = None) -> list[dict]:
    """:func:`run_cached` for every config, rows in the order of ``cfgs``.

    Runs already in the result cache are read at once; the others go to a pool of ``workers``
    processes (default :func:`default_workers`; 1 runs them here, one after the other), which first
    build the distinct tasks among them (their features, into the disk cache) one per worker. Each run
    seeds itself and trains on one thread, so the rows do not depend on ``workers``.
    """
    cfgs = list(cfgs)
    workers = default_workers() if workers is None else int(workers)
    rows: list[dict | None] = [None] * len(cfgs)
    todo = []
    for i, c in enumerate(cfgs):
        if settings.result_cache_enabled() and result_path(c).is_file():
            rows[i] = run_cached(c)
        else:
            todo.append(i)
    if workers <= 1 or len(todo) <= 1:
        for i in todo:
            rows[i] = run_cached(cfgs[i])
    else:
        with process_pool(min(workers, len(todo))) as ex:
            # first the distinct tasks, one per worker at a time (no two workers extract the same features)
            # (with the most patches any of their runs reads: the others read their class tokens from those files)
            tasks, patches = {}, {}
            for i in todo:
                key, p = task_key(cfgs[i]), methods.patches_read(cfgs[i])
                tasks.setdefault(key, cfgs[i].to_dict())
                patches[key] = max(patches.get(key, p), p, key=PATCHES.index)
            list(ex.map(warm_task, list(tasks.values()), [patches[k] for k in tasks]))
            for i, row in zip(todo, ex.map(run_job, [cfgs[i].to_dict() for i in todo])):
                rows[i] = row
    return rows  # type: ignore[return-value]
