"""Configuration: dataclass configs and the three profiles of the design.

This module is the only place where defaults live. A *profile* fixes the scale of a run
(backbone, weights, data); an :class:`ExperimentConfig` fixes everything else. Configs load
from and save to YAML; an unknown key or a value of the wrong type is an error that names
the key (never silently ignored).
"""
from __future__ import annotations

import dataclasses
import functools
import os
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import settings
from .io import PACKAGE_DIR, atomic_write
from .validation import CHOICES, check_ranges
from .profiles import PROFILES, ConfigError, get_profile


# --------------------------------------------------------------------------- experiment config
@dataclass
class DataConfig:
    """Which data, at which size, and the phantom world's difficulty knobs."""

    dataset: str = "phantom-chest"  # phantom-{chest,oct,brain}, chestmnist, octmnist, chestxray14, oct2017, fastmri-brain
    root: str | None = None  # folder of a real dataset (colab / paper profiles)
    skip_missing: bool = False  # ChestX-ray14: use the images present (one archive is enough to try) instead of failing
    pool_from_test: bool = False  # real data with no training split (oct2017 --test-only): pool = a seeded half of the test split, the other half evaluated
    image_size: int = 224
    n_test: int = 600  # evaluation images (phantoms) or a cap on a real test split (0 = all)
    n_pool: int = 1000  # phantoms the few-shot support sets are drawn from (disjoint from the test set)
    normal_fraction: float = 0.3  # share of normal images in the phantom world
    conspicuity: float = 1.0  # phantom sign contrast multiplier (1 = default difficulty)
    noise: float = 1.0  # phantom noise multiplier
    scanner_shift: float = 0.0  # phantom target-domain shift, 0 (none) … 1 (data/phantoms/scanner.py)
    scanner_seed: int = 0  # which scanner (its settings are drawn from this seed)
    world: str = "evaluation"  # phantom images: evaluation (the book's tables) | development (design choices, calibration; disjoint images)


@dataclass
class ModelConfig:
    """Backbone and adapters (paper: f_out = λ·f + (1−λ)·σ(W2 σ(W1 f)))."""

    backbone: str = "phantomclip-tiny"
    pretrained: str | None = "shipped"
    adapter_mode: str = "side"  # "side" (reads taps, cacheable) or "residual" (paper-faithful)
    adapter_blocks: list[int] | None = None  # None: MVFA's 6/12/18/24 of 24 scaled to the depth
    adapter_lambda: float = 0.8
    adapter_hidden: int | None = None  # None: width / 4 (CLIP-Adapter's reduction); 32 for PhantomCLIP-tiny
    weights_tag: str | None = None  # the open_clip tag a local weight file was published under (default: openai)
    adapter_init: str = "near-identity"  # near-identity (the head starts at the frozen features) | default (nn.Linear's)
    text_adapter: bool = False
    device: str = "auto"  # where the frozen backbone runs: auto (cuda when there is one), cpu, cuda, cuda:N


@dataclass
class LossConfig:
    """Loss weights; a weight of 0 turns the term off (the ablations)."""

    align: float = 1.0
    discrepancy: float = 1.0
    discrepancy_margin: float = 0.1
    intra: float = 0.1
    anchor: float = 1.0
    temperature: float = 0.07


@dataclass
class TrainConfig:
    """SD-MAD's optimiser (AdamW, full batch). ``epochs``/``patience``/``val_fraction`` apply only
    without tuning (``tuning.folds`` 0); with it, the epochs come from cross-validation."""

    epochs: int = 100
    lr: float = 1e-3
    weight_decay: float = 1e-2
    val_fraction: float = 0.25
    patience: int = 15


@dataclass
class SelectionConfig:
    """Sign selection at inference (see selection.py)."""

    rule: str = "auto"  # auto | none | expert | all | topk
    when: str = "after"  # after training (the paper) | before training | per-image (each image's top_k signs)
    pool: str = "expert"  # the signs selection chooses from: expert (the recorded 3-5) | all (every candidate)
    noise: float = 0.0  # phantom: the fraction of each category's expert signs replaced (signs/noise.py)
    noise_kind: str = "undrawn"  # what replaces them: undrawn | uncaptioned | other-category
    features: str = "frozen"  # frozen (what the VLM sees) | adapted (the trained category features)
    top_k: int = 3
    z_threshold: float = 1.0


@dataclass
class TuningConfig:
    """The fair protocol (``tuning.py``): k-fold cross-validation inside the support set over the
    method's ``grid`` (dotted config keys -> values; its registry entry declares it), an epoch
    budget, and early stopping on the held-out folds. ``folds`` 0: no tuning (fit once as configured)."""

    folds: int = 3
    max_epochs: int = 300
    patience: int = 15
    grid: dict[str, list] = field(default_factory=dict)


@dataclass
class MVFAConfig:
    """MVFA's few-shot recipe (``methods/mvfa.py``): Adam (0.5, 0.999) on the detection adapters."""

    lr: float = 1e-3
    epochs: int = 50


@dataclass
class AnomalyCLIPConfig:
    """AnomalyCLIP's prompts (``methods/anomalyclip.py``): context length, deep-token depth and length."""

    n_ctx: int = 12
    depth: int = 3  # text blocks after which deep tokens are inserted (AnomalyCLIP: 8 of 12; here of 4)
    deep_tokens: int = 4
    lr: float = 1e-3
    epochs: int = 15
    local_weight: float = 1.0


@dataclass
class ProbeConfig:
    """The linear probe: logistic regression per category (and the anchor) on the frozen embedding."""

    weight_decay: float = 1e-3
    steps: int = 300  # L-BFGS iterations
    lr: float = 0.5
    scale: float = 10.0  # the normalised embedding is multiplied by this before the linear layer


@dataclass
class CoopConfig:
    """Learned prompt context (CoOp): context vectors before the category name and the anchors."""

    n_ctx: int = 4
    epochs: int = 100
    lr: float = 2e-3
    weight_decay: float = 0.0


@dataclass
class ExperimentConfig:
    """Everything one run needs; ``profile`` is recorded in every result."""

    name: str = "sdmad"
    profile: str = "offline"
    seed: int = 0  # draws the few-shot support set (and trains, unless train_seed is set)
    train_seed: int | None = None  # seeds the adapters' initialisation separately from the shots
    k_shot: int = 4
    method: str = "sdmad"
    protocols: list[str] = field(default_factory=lambda: ["integrated", "per-anomaly", "open-set"])
    open_set_category: str | None = None  # the category the open-set protocol holds out (None: seed % C)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    coop: CoopConfig = field(default_factory=CoopConfig)
    mvfa: MVFAConfig = field(default_factory=MVFAConfig)
    anomalyclip: AnomalyCLIPConfig = field(default_factory=AnomalyCLIPConfig)
    tuning: TuningConfig = field(default_factory=TuningConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "config") -> "ExperimentConfig":
        return _from_dict(cls, d, where)


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
            raise ConfigError(f"{where}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {type(value).__name__} {value!r}")
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
        return _from_dict(tp, value, where)
    return value


def _from_dict(cls: type, d: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; allowed keys: {', '.join(sorted(names))}"
        )
    kwargs = {k: _check_type(v, hints[k], f"{where}.{k}") for k, v in d.items()}
    obj = cls(**kwargs)
    if cls is ExperimentConfig:
        _check_choices(obj, where)
    return obj


#: The registry of methods, with their names, families and overlays. It is read here to check a
#: method name at load, and by ``sdmad_lite.methods``, which binds each family to its code.
METHODS_FILE = PACKAGE_DIR / "configs" / "methods.yaml"


def method_registry() -> dict[str, dict[str, Any]]:
    """``configs/methods.yaml``: method name -> {family, description, overrides, unavailable}."""
    return _read_registry(METHODS_FILE.stat().st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _read_registry(_mtime: int) -> dict[str, dict[str, Any]]:
    raw = yaml.safe_load(METHODS_FILE.read_text()) or {}
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise ConfigError(f"{METHODS_FILE}: expected a mapping of method name -> settings")
    return raw


def method_entry(name: str) -> dict[str, Any]:
    """The registry entry of method ``name`` with its ``base`` resolved: family, description,
    overrides (the base's overlay under the entry's own) and unavailable."""
    raw = method_registry()
    e = raw[name]
    over, fam, seen, base = dict(e.get("overrides") or {}), e.get("family"), [name], e.get("base")
    while base:
        if base not in raw or base in seen:
            raise ConfigError(f"{METHODS_FILE}: method {name!r} has an unknown or circular base {base!r}")
        seen.append(base)
        over = deep_update(raw[base].get("overrides") or {}, over)
        fam = fam or raw[base].get("family")
        base = raw[base].get("base")
    return {"family": fam, "description": e.get("description", ""), "overrides": over,
            "unavailable": e.get("unavailable")}


def _check_choices(cfg: "ExperimentConfig", where: str) -> None:
    """Raise :class:`ConfigError` naming the key when a setting is not one of its allowed values."""
    check_ranges(cfg, where)
    if cfg.profile.strip().lower() not in PROFILES:
        raise ConfigError(f"{where}.profile: unknown profile {cfg.profile!r}; choose one of {', '.join(PROFILES)}")
    for key, allowed in CHOICES.items():
        obj = cfg
        for part in key.split("."):
            obj = getattr(obj, part)
        for i, value in enumerate(obj if isinstance(obj, list) else [obj]):
            if value not in allowed:
                at = f"{key}[{i}]" if isinstance(obj, list) else key
                raise ConfigError(f"{where}.{at}: unknown value {value!r}; choose one of {', '.join(allowed)}")
    registry = method_registry()
    if cfg.method not in registry:
        runnable = [n for n, e in registry.items() if not e.get("unavailable")]
        raise ConfigError(f"{where}.method: unknown method {cfg.method!r}; choose one of {', '.join(runnable)}")
    dev = cfg.model.device
    if dev not in ("auto", "cpu", "cuda") and not (dev.startswith("cuda:") and dev[5:].isdigit()):
        raise ConfigError(f"{where}.model.device: unknown device {dev!r}; choose auto, cpu, cuda or cuda:N")


def load_config(path: str | os.PathLike, environment: bool = True) -> ExperimentConfig:
    """Load an :class:`ExperimentConfig` from YAML; errors name the file and the key.

    ``$SDMAD_PROFILE`` is honoured: a file without ``profile:`` gets that profile's defaults, a
    file that names another profile is refused. ``environment=False`` reads the file alone (to
    show a config of another profile, as chapter 10 does offline).
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p} (give the path of a YAML file; examples are in sdmad_lite/configs/)")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({e})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of keys, got {type(raw).__name__}")
    method = raw.get("method", ExperimentConfig.method)
    env = settings.profile_name() if environment else None
    if env is not None:  # $SDMAD_PROFILE: validated here, honoured, never silently overridden
        get_profile()
        if "profile" in raw and str(raw["profile"]).strip().lower() != env:
            raise ConfigError(f"{p}: the file says profile {raw['profile']!r} but {settings.PROFILE}={env}; "
                              f"unset {settings.PROFILE} or remove 'profile' from the file")
    base = (default_config(env) if env is not None and "profile" not in raw else ExperimentConfig()).to_dict()
    if isinstance(method, str) and method in method_registry():  # the method's settings (its grid...) under the file's
        base = deep_update(base, method_entry(method)["overrides"])
    return ExperimentConfig.from_dict(deep_update(base, raw), where=str(p))


def save_config(cfg: ExperimentConfig, path: str | os.PathLike) -> None:
    """Write ``cfg`` as YAML (atomically: write a temporary file, then rename)."""
    atomic_write(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def default_config(profile: str | None = None, **overrides: Any) -> ExperimentConfig:
    """The default experiment for a profile (backbone and data follow the profile)."""
    prof = get_profile(profile)
    cfg = ExperimentConfig(profile=prof.name)
    cfg.model.backbone = prof.backbone
    cfg.model.pretrained = prof.pretrained
    if prof.data == "medmnist":
        cfg.data.dataset = "chestmnist"
    elif prof.data == "original":
        cfg.data.dataset = "chestxray14"
    merged = deep_update(cfg.to_dict(), overrides)
    return ExperimentConfig.from_dict(merged, where="overrides")


def deep_update(base: dict[str, Any], upd: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in upd.items():
        if isinstance(v, dict) and v and isinstance(out.get(k), dict):  # an empty mapping replaces (an empty grid)
            out[k] = deep_update(out[k], v)
        else:
            out[k] = v
    return out


def resolve_device(name: str = "auto") -> str:
    """The torch device of ``model.device``: ``auto`` is ``cuda`` when PyTorch sees a GPU, else ``cpu``.

    Asking for ``cuda`` where there is none fails here, with the fix, not deep inside a run.
    """
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        idx = int(name[5:]) if name.startswith("cuda:") else 0
        if idx >= n:
            raise ConfigError(f"model.device is {name!r} but PyTorch sees {n} GPU(s) here; use 'auto' or 'cpu' "
                              "(on Colab: Runtime → Change runtime type → GPU)")
    return name
