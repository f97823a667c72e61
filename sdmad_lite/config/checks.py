"""What a config's keys, types and values may be, checked when a config is built.

:class:`~sdmad_lite.errors.ConfigError` is the error of every configuration problem: an unknown key, a value of the
wrong type, a text setting outside its choices, a number outside its range. It names the key (and
the file), so a bad value fails before any work is done and before a run folder is made.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any

from ..errors import ConfigError
from .profiles import PROFILES


def _check_type(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        if value is None and type(None) in args:
            return None
        errs = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_type(value, a, where)
            except ConfigError as e:
                errs.append(str(e))
        raise ConfigError(errs[0] if errs else f"{where}: bad value {value!r}")
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
        kt, vt = args if args else (str, Any)
        return {_check_type(k, kt, f"{where} key"): _check_type(v, vt, f"{where}.{k}") for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        return [_check_type(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)] if args else value
    if tp is list and not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {type(value).__name__} {_short(value)}")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):  # .inf / .nan would run and give meaningless numbers (every AUROC 0.5)
            raise ConfigError(f"{where}: expected a finite number, got {_short(value)}")
        return number
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {type(value).__name__} {_short(value)}")
        if abs(value) >= 2 ** 63:
            raise ConfigError(f"{where}: {_short(value)} is far too large a number for this setting")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {type(value).__name__} {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected text, got {type(value).__name__} {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
        return build(tp, value, where)
    return value


def _short(value: Any, n: int = 40) -> str:
    """``repr(value)`` cut to ``n`` characters (a 5000-digit number is not printed whole)."""
    try:
        r = repr(value)
    except ValueError:  # an int too long for str()
        return "a number with thousands of digits"
    return r if len(r) <= n else r[: n - 1] + "…"


def build(cls: type, d: dict[str, Any], where: str) -> Any:
    """An instance of the dataclass ``cls`` from the mapping ``d``, every key and type checked."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    bad_keys = [k for k in d if not isinstance(k, str)]
    if bad_keys:
        raise ConfigError(f"{where}: key {_short(bad_keys[0])} is not a name; every key of a config is text "
                          f"(allowed keys: {', '.join(sorted(names))})")
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; allowed keys: {', '.join(sorted(names))}"
        )
    kwargs = {k: _check_type(v, hints[k], f"{where}.{k}") for k, v in d.items()}
    return cls(**kwargs)


#: the values a text setting may take (checked on load, so a typo fails before any work is done)
CHOICES: dict[str, tuple[str, ...]] = {
    "data.dataset": ("phantom-chest", "phantom-oct", "phantom-brain", "phantom-pairs0", "phantom-pairs1",
                     "phantom-pairs2", "phantom-pairs3", "chestmnist", "octmnist", "chestxray14", "oct2017",
                     "fastmri-brain"),
    "data.world": ("evaluation", "development"),
    "model.adapter_mode": ("side", "residual", "shift"),
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
    "seed": (lambda v: 0 <= v < 2 ** 32, "in 0 … 2³² − 1 (larger seeds would alias smaller ones)"),
    "train_seed": (lambda v: v is None or 0 <= v < 2 ** 32, "in 0 … 2³² − 1 (or null)"),
    "k_shot": (lambda v: 1 <= v <= 10_000, "in 1 … 10000 (shots per category)"),
    "data.image_size": (lambda v: 16 <= v <= 4096, "in 16 … 4096 (pixels)"),
    "data.n_test": (lambda v: 0 <= v <= 10_000_000, "in 0 … 10⁷ (0: the whole test split)"),
    "data.n_pool": (lambda v: 0 <= v <= 10_000_000, "in 0 … 10⁷ (0: the whole pool)"),
    "data.scanner_seed": (lambda v: 0 <= v < 2 ** 32, "in 0 … 2³² − 1"),
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
    "tuning.folds": (lambda v: v == 0 or 2 <= v <= 100, "0 (no tuning) or 2 … 100 (and at most the support images)"),
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


#: the sections of the config a tuning grid may vary
TUNABLE = ("train", "loss", "selection", "probe", "coop", "mvfa", "anomalyclip", "model")


def _get(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def check_values(cfg: Any, where: str) -> None:
    """Raise :class:`~sdmad_lite.errors.ConfigError` naming the key when a setting is not one of its allowed values or out of its
    range (``cfg``: an :class:`~sdmad_lite.config.schema.ExperimentConfig`). Method names are the registry's to
    check (:func:`sdmad_lite.methods.check`)."""
    check_ranges(cfg, where)
    if cfg.profile.strip().lower() not in PROFILES:
        raise ConfigError(f"{where}.profile: unknown profile {cfg.profile!r}; choose one of {', '.join(PROFILES)}")
    for key, allowed in CHOICES.items():
        obj = _get(cfg, key)
        for i, value in enumerate(obj if isinstance(obj, list) else [obj]):
            if value not in allowed:
                at = f"{key}[{i}]" if isinstance(obj, list) else key
                raise ConfigError(f"{where}.{at}: unknown value {value!r}; choose one of {', '.join(allowed)}")
    dev = cfg.model.device
    if dev not in ("auto", "cpu", "cuda") and not (dev.startswith("cuda:") and dev[5:].isdigit()):
        raise ConfigError(f"{where}.model.device: unknown device {dev!r}; choose auto, cpu, cuda or cuda:N")


def check_ranges(cfg: Any, where: str) -> None:
    """Raise :class:`~sdmad_lite.errors.ConfigError` naming the key when a number is out of its range."""
    for key, (ok, what) in RANGES.items():
        v = _get(cfg, key)
        if not ok(v):
            raise ConfigError(f"{where}.{key}: {v!r} is out of range; it must be {what}")
    if not cfg.protocols:
        raise ConfigError(f"{where}.protocols: give at least one protocol (integrated, per-anomaly, open-set)")
    if cfg.model.adapter_blocks is not None and not cfg.model.adapter_blocks:
        raise ConfigError(f"{where}.model.adapter_blocks: give at least one block, or null for the default taps")
    if cfg.model.adapter_blocks is not None and (min(cfg.model.adapter_blocks) < 1 or
                                                 len(set(cfg.model.adapter_blocks)) != len(cfg.model.adapter_blocks)):
        raise ConfigError(f"{where}.model.adapter_blocks: {cfg.model.adapter_blocks} must be distinct block numbers ≥ 1 "
                          "(1 is the first transformer block)")
    for key, values in cfg.tuning.grid.items():
        try:
            _get(cfg, key)
        except AttributeError:
            raise ConfigError(f"{where}.tuning.grid: {key!r} is not a setting of the config (a dotted key such as "
                              "train.lr)") from None
        if key.split(".")[0] not in TUNABLE or (key.startswith("model.") and not key.startswith("model.adapter_")):
            raise ConfigError(f"{where}.tuning.grid: {key!r} cannot be tuned (the support set, the data and the "
                              f"backbone are not hyper-parameters); tune settings of {', '.join(TUNABLE[:-1])} or "
                              "model.adapter_*")
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
