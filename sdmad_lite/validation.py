"""What a config's values may be: the choices of every text setting and the range of every number.

:func:`~sdmad_lite.config.load_config` checks them at load, so that a bad value fails before any work
is done (and before a run folder is made), with a message that names the key and the allowed values.
"""
from __future__ import annotations

from typing import Any

from .profiles import ConfigError

#: the values a text setting may take (checked on load, so a typo fails before any work is done)
CHOICES: dict[str, tuple[str, ...]] = {
    "data.dataset": ("phantom-chest", "phantom-oct", "phantom-brain", "phantom-pairs0", "phantom-pairs1",
                     "phantom-pairs2", "phantom-pairs3", "chestmnist", "octmnist", "chestxray14", "oct2017",
                     "fastmri-brain"),
    "data.world": ("evaluation", "development"),
    "model.adapter_mode": ("side", "residual"),
    "model.adapter_init": ("near-identity", "default"),
    "selection.when": ("after", "before", "per-image"),
    "selection.rule": ("auto", "none", "expert", "all", "topk"),
    "selection.pool": ("expert", "all"),
    "selection.noise_kind": ("undrawn", "uncaptioned", "other-category"),
    "selection.features": ("frozen", "adapted"),
    "protocols": ("integrated", "per-anomaly", "open-set"),
}


#: ranges of the numeric settings, key -> (test, what the value must be)
RANGES: dict[str, tuple[Any, str]] = {
    "seed": (lambda v: v >= 0, "≥ 0"),
    "train_seed": (lambda v: v is None or v >= 0, "≥ 0 (or null)"),
    "k_shot": (lambda v: v >= 1, "≥ 1 (shots per category)"),
    "data.image_size": (lambda v: v >= 16, "≥ 16 (pixels)"),
    "data.n_test": (lambda v: v >= 0, "≥ 0 (0: the whole test split)"),
    "data.n_pool": (lambda v: v >= 0, "≥ 0 (0: the whole pool)"),
    "data.normal_fraction": (lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
    "data.conspicuity": (lambda v: v > 0, "> 0"),
    "data.noise": (lambda v: v >= 0, "≥ 0"),
    "data.scanner_shift": (lambda v: 0.0 <= v <= 1.0, "in [0, 1] (0: no shift)"),
    "model.adapter_lambda": (lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
    "model.adapter_hidden": (lambda v: v is None or v >= 1, "≥ 1 (or null: a quarter of the backbone's width)"),
    "loss.align": (lambda v: v >= 0, "≥ 0"),
    "loss.discrepancy": (lambda v: v >= 0, "≥ 0"),
    "loss.discrepancy_margin": (lambda v: v >= 0, "≥ 0"),
    "loss.intra": (lambda v: v >= 0, "≥ 0"),
    "loss.anchor": (lambda v: v >= 0, "≥ 0"),
    "loss.temperature": (lambda v: v > 0, "> 0"),
    "train.epochs": (lambda v: v >= 0, "≥ 0 (0: the head at initialisation)"),
    "train.lr": (lambda v: v > 0, "> 0"),
    "train.weight_decay": (lambda v: v >= 0, "≥ 0"),
    "train.val_fraction": (lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
    "train.patience": (lambda v: v >= 1, "≥ 1"),
    "selection.top_k": (lambda v: v >= 1, "≥ 1"),
    "selection.noise": (lambda v: 0.0 <= v <= 1.0, "in [0, 1] (0: the expert signs as recorded)"),
    "selection.z_threshold": (lambda v: v >= 0, "≥ 0"),
    "tuning.folds": (lambda v: v == 0 or v >= 2, "0 (no tuning) or ≥ 2"),
    "tuning.max_epochs": (lambda v: v >= 1, "≥ 1"),
    "tuning.patience": (lambda v: v >= 1, "≥ 1"),
    "probe.weight_decay": (lambda v: v >= 0, "≥ 0"),
    "probe.steps": (lambda v: v >= 1, "≥ 1"),
    "probe.lr": (lambda v: v > 0, "> 0"),
    "probe.scale": (lambda v: v > 0, "> 0"),
    "coop.n_ctx": (lambda v: 1 <= v <= 32, "in 1..32"),
    "coop.epochs": (lambda v: v >= 1, "≥ 1"),
    "coop.lr": (lambda v: v > 0, "> 0"),
    "coop.weight_decay": (lambda v: v >= 0, "≥ 0"),
    "mvfa.lr": (lambda v: v > 0, "> 0"),
    "mvfa.epochs": (lambda v: v >= 1, "≥ 1"),
    "anomalyclip.n_ctx": (lambda v: 1 <= v <= 32, "in 1..32"),
    "anomalyclip.depth": (lambda v: v >= 1, "≥ 1"),
    "anomalyclip.deep_tokens": (lambda v: v >= 1, "≥ 1"),
    "anomalyclip.lr": (lambda v: v > 0, "> 0"),
    "anomalyclip.epochs": (lambda v: v >= 1, "≥ 1"),
    "anomalyclip.local_weight": (lambda v: v >= 0, "≥ 0"),
}


def _get(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def check_ranges(cfg: Any, where: str) -> None:
    """Raise :class:`~sdmad_lite.profiles.ConfigError` naming the key when a value is out of its range."""
    for key, (ok, what) in RANGES.items():
        v = _get(cfg, key)
        if not ok(v):
            raise ConfigError(f"{where}.{key}: {v!r} is out of range; it must be {what}")
    for key, values in cfg.tuning.grid.items():
        try:
            _get(cfg, key)
        except AttributeError:
            raise ConfigError(f"{where}.tuning.grid: {key!r} is not a setting of the config (a dotted key such as "
                              "train.lr)") from None
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}.tuning.grid.{key}: give a non-empty list of values")
    if cfg.data.n_test and cfg.data.dataset.startswith("phantom-") and cfg.data.n_test < 1:
        raise ConfigError(f"{where}.data.n_test: a phantom world needs at least one test image")
    if cfg.data.scanner_shift and not cfg.data.dataset.startswith("phantom-"):
        raise ConfigError(f"{where}.data.scanner_shift: the scanner shift is a phantom-world knob; real images "
                          f"({cfg.data.dataset}) already come from their own scanners — set it to 0")
    if cfg.data.world != "evaluation" and not cfg.data.dataset.startswith("phantom-"):
        raise ConfigError(f"{where}.data.world: the development world is a phantom-world setting; real data "
                          f"({cfg.data.dataset}) has its own splits — set it to evaluation")
    if cfg.selection.noise and not cfg.data.dataset.startswith("phantom-"):
        raise ConfigError(f"{where}.selection.noise: noisy sign pools need the renderer's ground truth, which real "
                          f"data ({cfg.data.dataset}) lacks — set it to 0, or use a phantom dataset")
    if cfg.selection.noise and cfg.selection.pool != "expert":
        raise ConfigError(f"{where}.selection.noise: the noise replaces signs of the expert pool, but selection.pool "
                          f"is {cfg.selection.pool!r} — set selection.pool to expert, or the noise to 0")
