"""The method registry: every method of the book by name, read from ``configs/methods.yaml``.

Each entry names a *family* (the module of ``methods/`` that fits it), an optional config *overlay*
(an ablation is SD-MAD with some settings changed; ``base`` inherits another entry's overlay) with
the method's tuning grid, and a description; an entry with ``unavailable`` is listed in the tables
with its reason but not run. This is the one place a method's name is checked.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Any, Iterable

import yaml

from ..config import ExperimentConfig, deep_update, load_config
from ..errors import ConfigError
from ..io import PACKAGE_DIR

METHODS_FILE = PACKAGE_DIR / "configs" / "methods.yaml"
#: families that fit nothing (their rows need no tuning)
UNTRAINED = ("always-normal", "label-prior", "zeroshot-names", "zeroshot-signs")


@dataclass(frozen=True)
class Method:
    """One entry of the registry."""

    name: str
    family: str | None
    description: str = ""
    label: str = ""  # the readable name tables and figures print
    overrides: dict = field(default_factory=dict)
    unavailable: str | None = None
    prose: str = ""  # its name inside a sentence ("beats the frozen sign prompts"); default: the label

    @property
    def trained(self) -> bool:
        """Fitted on the support set (and therefore tuned by cross-validation)."""
        epochs = self.overrides.get("train", {}).get("epochs")
        return self.family is not None and self.family not in UNTRAINED and epochs != 0

    @property
    def grid(self) -> dict:
        return self.overrides.get("tuning", {}).get("grid", {})


@functools.lru_cache(maxsize=1)
def _raw() -> dict[str, dict[str, Any]]:
    raw = yaml.safe_load(METHODS_FILE.read_text()) or {}
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise ConfigError(f"{METHODS_FILE}: expected a mapping of method name -> settings")
    return raw


def _entry(raw: dict, name: str) -> Method:
    """The entry ``name`` with its ``base`` resolved (the base's overlay under the entry's own)."""
    e = raw[name]
    over, fam, seen, base = dict(e.get("overrides") or {}), e.get("family"), [name], e.get("base")
    while base:
        if base not in raw or base in seen:
            raise ConfigError(f"{METHODS_FILE}: method {name!r} has an unknown or circular base {base!r}")
        seen.append(base)
        over = deep_update(raw[base].get("overrides") or {}, over)
        fam = fam or raw[base].get("family")
        base = raw[base].get("base")
    label = e.get("label") or name
    return Method(name, fam, e.get("description", ""), label, over, e.get("unavailable"), e.get("prose") or label)


def load_registry(families: Iterable[str]) -> dict[str, Method]:
    """Every entry of ``configs/methods.yaml``; a runnable entry's family must be one of ``families``."""
    raw, families = _raw(), set(families)
    out = {name: _entry(raw, name) for name in raw}
    for m in out.values():
        if m.unavailable is None and m.family not in families:
            raise ConfigError(f"{METHODS_FILE}: method {m.name!r} has unknown family {m.family!r} ({', '.join(sorted(families))})")
    return out


def get(registry: dict[str, Method], name: str) -> Method:
    """The entry of ``name``; an unknown or unavailable name is a :class:`~sdmad_lite.errors.ConfigError`."""
    if name in registry and registry[name].unavailable:
        raise ConfigError(f"method {name!r} cannot run: {registry[name].unavailable}")
    if name not in registry:
        runnable = [n for n, m in registry.items() if m.unavailable is None]
        raise ConfigError(f"unknown method {name!r}; choose one of {', '.join(runnable)}")
    return registry[name]


def config_for(registry: dict[str, Method], name: str, base: ExperimentConfig) -> ExperimentConfig:
    """The config of method ``name`` on top of ``base`` (its overlay merged, ``method`` set)."""
    d = deep_update(base.to_dict(), get(registry, name).overrides)
    d["method"] = name
    return ExperimentConfig.from_dict(d, where=f"method {name}")


def load_experiment(registry: dict[str, Method], path: str | os.PathLike) -> ExperimentConfig:
    """A config file with its method's overlay under the file's own settings, the method checked."""
    def overlay(raw: dict) -> dict:
        name = raw.get("method", ExperimentConfig.method)
        return registry[name].overrides if isinstance(name, str) and name in registry else {}

    cfg = load_config(path, under=overlay)
    try:
        get(registry, cfg.method)
    except ConfigError as e:
        raise ConfigError(f"{path}.method: {e}") from None
    return cfg
