"""One experiment end to end (``sdmad run``): config → task → support set → method → thresholds →
protocols → one flat row of results.

A run writes into its own folder: ``config.yaml`` (what it ran), ``split.json`` (the shots it
drew), ``checkpoint.pt`` (the trained adapters; also the resume point), ``history.json`` and
``metrics.json``. An existing run folder is never overwritten without ``overwrite=True``.
:func:`run_cached` memoises rows on disk (``cache.py``); many runs at once: ``executor.py``.

The keys of a row are the config's own dotted keys (``k_shot``, ``data.dataset``, ``selection.noise``,
...) and the metrics of the protocols (``integrated.*``, ``per-anomaly.*``, ``open-set.*``).
"""
from __future__ import annotations

import os
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


def _prepare_folder(out: Path, cfg: ExperimentConfig, overwrite: bool) -> None:
    if (out / "metrics.json").exists() and not overwrite:
        raise RunExistsError(f"{out} already holds a finished run (metrics.json); choose another --out or pass --overwrite")
    if (out / "config.yaml").exists() and not overwrite and load_config(out / "config.yaml").to_dict() != cfg.to_dict():
        raise RunExistsError(f"{out} holds an unfinished run of another config; choose another --out or pass --overwrite")
    if overwrite:  # a fresh run: never resume the adapters of the run being replaced
        for name in ("checkpoint.pt", "history.json", "split.json", "metrics.json"):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")


def run(cfg: ExperimentConfig, out_dir: str | os.PathLike | None = None, overwrite: bool = False,
        progress: bool = False) -> dict:
    """Run one experiment end to end; returns a flat dict of results (also ``metrics.json``)."""
    t0 = time.time()
    methods.check(cfg)
    get_backbone(cfg)  # the weights first: a profile that needs downloads fails at once
    task = get_task(cfg, progress, patches=methods.patches_read(cfg))  # checks the shots can be drawn, first
    if "open-set" in cfg.protocols:  # its held-out category and support set, before anything trains
        check_feasible(task.pool, cfg, open_set_columns(task, cfg)[1])
    out = Path(out_dir) if out_dir else None
    if out is not None:
        _prepare_folder(out, cfg, overwrite)
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
        write_json(out / "metrics.json", row)
        if fitted.history is not None:
            write_json(out / "history.json", fitted.history)
    return row


def run_cached(cfg: ExperimentConfig) -> dict:
    """:func:`run` without an output folder, memoised on disk (``cache.py``): any change to the config
    or to the library's code, sign files or checkpoint misses the cache."""
    row = cache.read(cfg)
    return row if row is not None else cache.write(cfg, run(cfg))
