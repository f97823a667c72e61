"""One experiment end to end (``sdmad run``): config → task → support set → method → thresholds →
protocols → one flat row of results.

A run writes into its own folder: ``config.yaml`` (what it ran), ``split.json`` (the shots it
drew), ``checkpoint.pt`` (the trained adapters; also the resume point), ``history.json`` and
``metrics.json``. An existing run folder is never overwritten without ``overwrite=True``, and with it the
old run's files are replaced only once the new run has finished (it runs in ``.NAME.overwrite`` beside).
:func:`run_cached` memoises rows on disk (``cache.py``); many runs at once: ``executor.py``.

The keys of a row are the config's own dotted keys (``k_shot``, ``data.dataset``, ``selection.noise``,
...) and the metrics of the protocols (``integrated.*``, ``per-anomaly.*``, ``open-set.*``).
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from . import cache, methods
from .config import ExperimentConfig, load_config, save_config
from .errors import SdmadError
from .evaluation import evaluate, flatten, open_set, open_set_columns
from .data.build import check_feasible
from .seeding import seed_everything
from .selection import precision_recall
from .task import get_backbone, get_task
from .io import write_json

#: the settings every row records, under their config keys
ROW_SETTINGS = ("method", "seed", "train_seed", "k_shot", "profile", "data.dataset", "data.world", "data.scanner_shift",
                "data.conspicuity", "model.backbone", "model.pretrained", "model.adapter_mode", "selection.noise",
                "selection.noise_kind")


class RunExistsError(SdmadError, FileExistsError):
    """A run folder already holds results; pass ``overwrite=True`` (``--overwrite``) to replace them."""


def settings_of(cfg: ExperimentConfig) -> dict:
    """The :data:`ROW_SETTINGS` of ``cfg`` (``train_seed``: the seed that trained; ``selection.noise_kind``
    empty without noise)."""
    row: dict = {}
    for key in ROW_SETTINGS:
        v = cfg
        for part in key.split("."):
            v = getattr(v, part)
        row[key] = v
    row["train_seed"] = cfg.seed if cfg.train_seed is None else cfg.train_seed
    row["selection.noise_kind"] = cfg.selection.noise_kind if cfg.selection.noise else ""
    return row


#: the files of a run folder (the user's other files there are never touched)
RUN_FILES = ("config.yaml", "split.json", "checkpoint.pt", "history.json", "metrics.json")


def _prepare_folder(out: Path, cfg: ExperimentConfig, overwrite: bool) -> Path:
    """The folder the run writes into: ``out`` itself, or, with ``overwrite``, a fresh ``.NAME.overwrite``
    beside it whose files replace the old run's only once the new run has finished (:func:`_finish_folder`):
    a failing or interrupted new run leaves the old results as they were."""
    if (out / "metrics.json").exists() and not overwrite:
        raise RunExistsError(f"{out} already holds a finished run (metrics.json); choose another --out or pass --overwrite")
    if (out / "config.yaml").exists() and not overwrite and load_config(out / "config.yaml").to_dict() != cfg.to_dict():
        raise RunExistsError(f"{out} holds an unfinished run of another config; choose another --out or pass --overwrite")
    work = out.parent / f".{out.name}.overwrite" if overwrite and out.is_dir() else out
    if work != out:  # a fresh run: never resume the adapters of the run being replaced, nor of an earlier try
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    save_config(cfg, work / "config.yaml")
    return work


def _finish_folder(work: Path, out: Path) -> None:
    """Move a finished run from ``work`` into ``out`` (nothing to do when they are the same folder): the old
    ``metrics.json`` goes first (a folder caught half-way is never a finished run), the new one last; the old
    run's files that the new run did not write are removed; other files in ``out`` stay."""
    if work == out:
        return
    (out / "metrics.json").unlink(missing_ok=True)
    for name in RUN_FILES:
        if name != "metrics.json" and not (work / name).exists():
            (out / name).unlink(missing_ok=True)
    for name in RUN_FILES:
        if (work / name).exists():
            os.replace(work / name, out / name)
    shutil.rmtree(work, ignore_errors=True)


def run(cfg: ExperimentConfig, out_dir: str | os.PathLike | None = None, overwrite: bool = False,
        progress: bool = False) -> dict:
    """Run one experiment end to end; returns a flat dict of results (also ``metrics.json``)."""
    t0 = time.time()
    methods.check(cfg)
    get_backbone(cfg)  # the weights first: a profile that needs downloads fails at once
    task = get_task(cfg, progress, patches=methods.patches_read(cfg))  # checks the shots can be drawn, first
    if "open-set" in cfg.protocols:  # its held-out category and support set, before anything trains
        check_feasible(task.pool, cfg, open_set_columns(task, cfg)[1])
    final = Path(out_dir) if out_dir else None
    out = _prepare_folder(final, cfg, overwrite) if final is not None else None
    seed_everything(cfg.seed)
    support = task.draw_support(cfg.k_shot, cfg.seed, cfg.train.val_fraction,
                                split_file=out / "split.json" if out else None)
    pred, fitted = methods.predict(task, support, cfg, None, out / "checkpoint.pt" if out else None)
    ev = evaluate(task, support, pred)
    row = settings_of(cfg) | {"config_hash": cache.config_hash(cfg)}
    flatten("integrated.", ev["integrated"], row)
    flatten("per-anomaly.", ev["per-anomaly"], row)
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
        flatten("open-set.", open_set(task, cfg), row)
    row["wall_time_s"] = round(time.time() - t0, 2)
    if fitted.best_epoch is not None:
        row["best_epoch"] = fitted.best_epoch
    if out is not None:
        if fitted.history is not None:
            write_json(out / "history.json", fitted.history)
        write_json(out / "metrics.json", row)
        _finish_folder(out, final)
    return row


def run_cached(cfg: ExperimentConfig) -> dict:
    """:func:`run` without an output folder, memoised on disk (``cache.py``): any change to the config
    or to the library's code, sign files or checkpoint misses the cache."""
    row = cache.read(cfg)
    return row if row is not None else cache.write(cfg, run(cfg))
