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
import socket
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import settings
from .io import PACKAGE_DIR, atomic_write

PROFILE_ENV = settings.PROFILE


class ConfigError(ValueError):
    """A configuration problem the user can fix (unknown key, wrong type, unknown profile)."""


class ProfileUnavailableError(RuntimeError):
    """A profile needs something (network, weights, data) that this machine does not have."""


# --------------------------------------------------------------------------- profiles
@dataclass(frozen=True)
class Profile:
    """One scale of the book: which backbone, which weights, which data."""

    name: str
    backbone: str
    pretrained: str | None
    data: str
    needs_network: bool
    description: str


PROFILES: dict[str, Profile] = {
    "offline": Profile(
        name="offline",
        backbone="phantomclip-tiny",
        pretrained="shipped",
        data="phantom",
        needs_network=False,
        description="PhantomCLIP-tiny shipped in the package + the phantom world; any CPU, no network",
    ),
    "colab": Profile(
        name="colab",
        backbone="ViT-B-16",
        pretrained="openai",
        data="medmnist",
        needs_network=True,
        description="open_clip ViT-B-16 (openai weights) + MedMNIST+ 224 px (ChestMNIST, OCTMNIST); a Colab GPU",
    ),
    "paper": Profile(
        name="paper",
        backbone="ViT-L-14-336",
        pretrained="openai",
        data="original",
        needs_network=True,
        description="ViT-L-14-336 (openai weights) + ChestX-ray14, OCT2017, fastMRI+ brain; a GPU machine",
    ),
}


def get_profile(name: str | None = None) -> Profile:
    """Return the profile named by ``name``, else by ``$SDMAD_PROFILE``, else ``offline``."""
    chosen = name or settings.profile_name() or "offline"
    chosen = chosen.strip().lower()
    if chosen not in PROFILES:
        raise ConfigError(
            f"unknown profile {chosen!r} (from {'argument' if name else '$' + PROFILE_ENV}); "
            f"choose one of {', '.join(PROFILES)}"
        )
    return PROFILES[chosen]


def network_available(host: str = "huggingface.co", port: int = 443, timeout: float = 3.0) -> bool:
    """True when a TCP connection to ``host`` can be opened (used to fail fast, not to download)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_profile_ready(profile: Profile, weights_cached: bool = False) -> None:
    """Fail at once, with the fix, when ``profile`` needs a network that is not there.

    ``weights_cached`` says that the pretrained files are already on disk (then no network is
    needed). The offline profile is always ready. This never falls back to random weights.
    """
    if not profile.needs_network or weights_cached:
        return
    if not network_available():
        raise ProfileUnavailableError(
            f"profile {profile.name!r} needs {profile.backbone} weights ({profile.pretrained}) and "
            f"{profile.data} data, which must be downloaded, but there is no network and no cached copy. "
            f"Run it where the network is reachable (for example on Colab), or use the offline profile: "
            f"unset {PROFILE_ENV} or set {PROFILE_ENV}=offline."
        )


# --------------------------------------------------------------------------- experiment config
@dataclass
class DataConfig:
    """Which data, at which size, and the phantom world's difficulty knobs."""

    dataset: str = "phantom-chest"  # phantom-{chest,oct,brain}, chestmnist, octmnist, chestxray14, oct2017, fastmri-brain
    root: str | None = None  # folder of a real dataset (colab / paper profiles)
    image_size: int = 224
    n_test: int = 600  # evaluation images (phantoms) or a cap on a real test split (0 = all)
    n_pool: int = 1000  # phantoms the few-shot support sets are drawn from (disjoint from the test set)
    normal_fraction: float = 0.3  # share of normal images in the phantom world
    conspicuity: float = 1.0  # phantom sign contrast multiplier (1 = default difficulty)
    noise: float = 1.0  # phantom noise multiplier


@dataclass
class ModelConfig:
    """Backbone and adapters (paper: f_out = λ·f + (1−λ)·σ(W2 σ(W1 f)))."""

    backbone: str = "phantomclip-tiny"
    pretrained: str | None = "shipped"
    adapter_mode: str = "side"  # "side" (reads taps, cacheable) or "residual" (paper-faithful)
    adapter_blocks: list[int] | None = None  # None: MVFA's 6/12/18/24 of 24 scaled to the depth
    adapter_lambda: float = 0.8
    adapter_hidden: int = 128
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
    epochs: int = 100
    lr: float = 1e-3
    weight_decay: float = 1e-2
    batch_size: int = 32
    val_fraction: float = 0.25
    patience: int = 15
    augment: bool = True


@dataclass
class SelectionConfig:
    """Sign selection at inference (see selection.py)."""

    rule: str = "auto"  # auto | none | expert | all | topk
    pool: str = "expert"  # the signs selection chooses from: expert (the recorded 3-5) | all (every candidate)
    features: str = "frozen"  # frozen (what the VLM sees) | adapted (the trained category features)
    top_k: int = 3
    z_threshold: float = 1.0


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
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    coop: CoopConfig = field(default_factory=CoopConfig)

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
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        return [_check_type(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)] if args else value
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


#: the values a text setting may take (checked on load, so a typo fails before any work is done)
CHOICES: dict[str, tuple[str, ...]] = {
    "data.dataset": ("phantom-chest", "phantom-oct", "phantom-brain", "chestmnist", "octmnist", "chestxray14",
                     "oct2017", "fastmri-brain"),
    "model.adapter_mode": ("side", "residual"),
    "selection.rule": ("auto", "none", "expert", "all", "topk"),
    "selection.pool": ("expert", "all"),
    "selection.features": ("frozen", "adapted"),
    "protocols": ("integrated", "per-anomaly", "open-set"),
}


#: the registry of methods (names, families, overlays): read here to check names at load, and by
#: ``sdmad_lite.methods``, which binds each family to its code
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


def _check_choices(cfg: "ExperimentConfig", where: str) -> None:
    """Raise :class:`ConfigError` naming the key when a setting is not one of its allowed values."""
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


def load_config(path: str | os.PathLike) -> ExperimentConfig:
    """Load an :class:`ExperimentConfig` from YAML; errors name the file and the key."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p} (give the path of a YAML file; examples are in sdmad_lite/configs/)")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({e})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of keys, got {type(raw).__name__}")
    return ExperimentConfig.from_dict(raw, where=str(p))


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
        if isinstance(v, dict) and isinstance(out.get(k), dict):
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
