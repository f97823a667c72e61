"""Configuration: the dataclasses of an experiment, their checks, the three profiles, YAML files.

One place for every setting of a run: ``schema.py`` (the dataclasses and their defaults),
``checks.py`` (what each value may be), ``profiles.py`` (the three scales of the book). The method
registry (``configs/methods.yaml``, :mod:`sdmad_lite.methods`) and the environment variables
(:mod:`sdmad_lite.settings`) are the two other places a run's settings come from.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import yaml

from .. import settings
from ..errors import ConfigError
from ..io import atomic_write
from .checks import CHOICES, RANGES
from .profiles import PROFILE_ENV, PROFILES, Profile, ProfileUnavailableError, get_profile, require_profile_ready
from .schema import (AnomalyCLIPConfig, CoopConfig, DataConfig, ExperimentConfig, LossConfig, ModelConfig,
                     MVFAConfig, ProbeConfig, SelectionConfig, TrainConfig, TuningConfig)

__all__ = ["AnomalyCLIPConfig", "CHOICES", "ConfigError", "CoopConfig", "DataConfig", "ExperimentConfig", "LossConfig",
           "MVFAConfig", "ModelConfig", "PROFILES", "PROFILE_ENV", "ProbeConfig", "Profile", "ProfileUnavailableError",
           "RANGES", "SelectionConfig", "TrainConfig", "TuningConfig", "deep_update", "default_config", "get_profile",
           "load_config", "require_profile_ready", "resolve_device", "save_config"]


def load_config(path: str | os.PathLike, environment: bool = True,
                under: Callable[[dict], dict] | None = None) -> ExperimentConfig:
    """Load an :class:`ExperimentConfig` from YAML; errors name the file and the key.

    ``$SDMAD_PROFILE`` is honoured: a file without ``profile:`` gets that profile's defaults, a
    file that names another profile is refused. ``environment=False`` reads the file alone (to
    show a config of another profile, as the real-data chapter does offline). ``under(raw)``: settings
    placed between the defaults and the file's own (the method's overlay:
    :func:`sdmad_lite.methods.load_experiment`).
    """
    p = Path(path)
    raw = read_yaml(p)
    env = settings.profile_name() if environment else None
    if env is not None:  # $SDMAD_PROFILE: validated here, honoured, never silently overridden
        get_profile()
        if "profile" in raw and str(raw["profile"]).strip().lower() != env:
            raise ConfigError(f"{p}: the file says profile {raw['profile']!r} but {settings.PROFILE}={env}; "
                              f"unset {settings.PROFILE} or remove 'profile' from the file")
    base = (default_config(env) if env is not None and "profile" not in raw else ExperimentConfig()).to_dict()
    if under is not None:  # e.g. the method's settings (its grid...) under the file's
        base = deep_update(base, under(raw))
    return ExperimentConfig.from_dict(deep_update(base, raw), where=str(p))


class _StrictLoader(yaml.SafeLoader):
    """YAML for configs: a key given twice, or an anchor/alias (``&a`` / ``*a``, which can make a small file
    expand without bound), is an error, not a silent choice."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise ConfigError(f"line {mark.line + 1}: anchors and aliases (&name / *name) are not allowed in a config "
                              "file; write the values out")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise ConfigError(f"line {key_node.start_mark.line + 1}: the key {key!r} is given twice; keep one")
            seen.add(key) if isinstance(key, (str, int, float, bool)) else None
        return super().construct_mapping(node, deep=deep)


#: the largest config file read (a config is a few kB; a larger file is not one)
MAX_CONFIG_BYTES = 1 << 20


def read_yaml(path: str | os.PathLike) -> dict:
    """The mapping of a YAML config file, or a :class:`ConfigError` naming the file and the problem (absent,
    not a file, too large, not UTF-8, not YAML, nested too deeply, a duplicate key, an alias)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p} (give the path of a YAML file; examples are in sdmad_lite/configs/)")
    if p.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{p}: {p.stat().st_size} bytes is not a config file (at most {MAX_CONFIG_BYTES} bytes)")
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text (byte {e.start}); save the file as UTF-8") from None
    try:
        raw = yaml.load(text, Loader=_StrictLoader) or {}
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({e})") from None
    except RecursionError:
        raise ConfigError(f"{p}: nested too deeply to be a config file") from None
    except ValueError as e:  # e.g. an integer of thousands of digits (Python's int limit)
        raise ConfigError(f"{p}: a value cannot be read ({str(e)[:80]}); is this a config file?") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of keys, got {type(raw).__name__}")
    return raw


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
