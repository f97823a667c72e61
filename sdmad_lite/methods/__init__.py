"""The method registry: SD-MAD, its variants and every baseline, by name.

Each entry of ``configs/methods.yaml`` names a *family* (the module that fits it), an optional
config *overlay* (an ablation is SD-MAD with some settings changed) and a description; an entry
with ``unavailable`` is listed in the tables with its reason but not run. A family's ``fit(task,
support, cfg, cols)`` returns a fitted model with ``scores(features) -> (category, anchor)``
probabilities, ``kept`` signs (or None) and ``n_parameters``; :func:`predict` turns it into the
:class:`~sdmad_lite.train.Predictions` every protocol reads. A method's hyper-parameters are its
config section (``probe``, ``coop``; SD-MAD's: ``model``, ``loss``, ``train``, ``selection``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

from ..config import METHODS_FILE, ConfigError, ExperimentConfig, deep_update, method_registry
from ..data.fewshot import Support
from ..task import Task
from ..train import Predictions, one_thread
from . import coop, generic, probe, sdmad, zeroshot

#: family -> fit(task, support, cfg, cols, checkpoint=None)
FAMILIES: dict[str, Callable] = {
    "sdmad": sdmad.fit,
    "generic-prompt": generic.fit,
    "zeroshot-names": zeroshot.fit_names,
    "zeroshot-signs": zeroshot.fit_signs,
    "linear-probe": probe.fit,
    "coop": coop.fit,
}


@dataclass(frozen=True)
class Method:
    """One entry of the registry."""

    name: str
    family: str | None
    description: str = ""
    overrides: dict = field(default_factory=dict)
    unavailable: str | None = None

    @property
    def trained(self) -> bool:
        return self.family not in ("zeroshot-names", "zeroshot-signs", None)


def _load_registry() -> dict[str, Method]:
    out = {}
    for name, e in method_registry().items():
        fam = e.get("family")
        if e.get("unavailable") is None and fam not in FAMILIES:
            raise ConfigError(f"{METHODS_FILE}: method {name!r} has unknown family {fam!r} ({', '.join(FAMILIES)})")
        out[name] = Method(name, fam, e.get("description", ""), e.get("overrides") or {}, e.get("unavailable"))
    return out


REGISTRY: dict[str, Method] = _load_registry()
#: the methods that can run, in the order of the tables
ALL_METHODS: tuple[str, ...] = tuple(n for n, m in REGISTRY.items() if m.unavailable is None)
#: listed but not run: name -> why
UNAVAILABLE: dict[str, str] = {n: m.unavailable for n, m in REGISTRY.items() if m.unavailable}


def get(name: str) -> Method:
    """The registry entry of ``name``; an unknown or unavailable name is a :class:`ConfigError`."""
    if name in UNAVAILABLE:
        raise ConfigError(f"method {name!r} cannot run: {UNAVAILABLE[name]}")
    if name not in REGISTRY:
        raise ConfigError(f"unknown method {name!r}; choose one of {', '.join(ALL_METHODS)}")
    return REGISTRY[name]


def check(cfg: ExperimentConfig, where: str = "config") -> ExperimentConfig:
    """Raise :class:`ConfigError` naming ``method`` when ``cfg.method`` is not a runnable method."""
    try:
        get(cfg.method)
    except ConfigError as e:
        raise ConfigError(f"{where}.method: {e}") from None
    return cfg


def config_for(name: str, base: ExperimentConfig) -> ExperimentConfig:
    """The config of method ``name`` on top of ``base`` (its overlay merged, ``method`` set)."""
    m = get(name)
    d = deep_update(base.to_dict(), m.overrides)
    d["method"] = name
    return ExperimentConfig.from_dict(d, where=f"method {name}")


def fit(task: Task, support: Support, cfg: ExperimentConfig, cols: list[int] | None = None,
        checkpoint: str | os.PathLike | None = None):
    """Fit ``cfg.method`` on the support set (category columns ``cols``; all by default)."""
    m = get(cfg.method)
    cols = list(range(len(task.categories))) if cols is None else list(cols)
    return FAMILIES[m.family](task, support, cfg, cols, checkpoint=checkpoint)


def predict(task: Task, support: Support, cfg: ExperimentConfig, cols: list[int] | None = None,
            checkpoint: str | os.PathLike | None = None):
    """Fit ``cfg.method`` and score the support and the test images: ``(Predictions, fitted)``.

    Few-shot work on cached features runs on one thread (tiny tensors); the residual variant's
    frozen blocks keep every thread.
    """
    with one_thread(cfg.model.adapter_mode != "residual"):
        fitted = fit(task, support, cfg, cols, checkpoint)
        ss, sa = fitted.scores(task.pool_feats.subset(support.all))
        ts, ta = fitted.scores(task.test_feats)
    return Predictions(ss, sa, ts, ta, kept=fitted.kept), fitted
