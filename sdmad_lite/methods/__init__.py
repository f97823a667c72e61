"""The method registry: SD-MAD, its variants, every baseline and the reference rows, by name.

Each entry of ``configs/methods.yaml`` names a *family* (the module that fits it), an optional
config *overlay* (an ablation is SD-MAD with some settings changed; ``base`` inherits another
entry's overlay) with the method's tuning grid, and a description; an entry with ``unavailable``
is listed in the tables with its reason but not run. A family's ``fit(task, support, cfg, cols)``
returns a fitted model with ``scores(features) -> (category, anchor)`` probabilities, ``kept`` signs
(or None), ``n_parameters`` and, when it was cross-validated, ``tuned`` (``tuning.Tuned``);
:func:`predict` turns it into the :class:`~sdmad_lite.train.Predictions` every protocol reads, with
the *out-of-fold* scores of the support set for the thresholds of a tuned method.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

from ..config import METHODS_FILE, ConfigError, ExperimentConfig, deep_update, method_entry, method_registry
from ..data.fewshot import Support
from ..task import Task
from ..train import Predictions, one_thread
from . import anomalyclip, coop, generic, mvfa, probe, reference, sdmad, zeroshot

#: family -> fit(task, support, cfg, cols, checkpoint=None)
FAMILIES: dict[str, Callable] = {
    "always-normal": reference.fit_always_normal,
    "label-prior": reference.fit_label_prior,
    "zeroshot-names": zeroshot.fit_names,
    "zeroshot-signs": zeroshot.fit_signs,
    "sdmad": sdmad.fit,
    "generic-prompt": generic.fit,
    "linear-probe": probe.fit,
    "coop": coop.fit,
    "mvfa": mvfa.fit,
    "anomalyclip": anomalyclip.fit,
}
#: which patch tokens each family reads (:data:`~sdmad_lite.features.PATCHES`); the SD-MAD families
#: read the first tap's patches under the residual placement (:func:`patches_read`)
READS_PATCHES: dict[str, str] = {
    "always-normal": "none", "label-prior": "none", "zeroshot-names": "none", "zeroshot-signs": "none",
    "linear-probe": "none", "coop": "none", "sdmad": "placement", "generic-prompt": "placement",
    "mvfa": "all", "anomalyclip": "all",
}
#: families that fit nothing (their rows need no tuning)
UNTRAINED = ("always-normal", "label-prior", "zeroshot-names", "zeroshot-signs")


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
        """Fitted on the support set (and therefore tuned by cross-validation)."""
        epochs = self.overrides.get("train", {}).get("epochs")
        return self.family is not None and self.family not in UNTRAINED and epochs != 0

    @property
    def grid(self) -> dict:
        return self.overrides.get("tuning", {}).get("grid", {})


def _load_registry() -> dict[str, Method]:
    out: dict[str, Method] = {}
    for name in method_registry():
        e = method_entry(name)  # with the base entry's family and overlay (the entry's own settings win)
        if e["unavailable"] is None and e["family"] not in FAMILIES:
            raise ConfigError(f"{METHODS_FILE}: method {name!r} has unknown family {e['family']!r} ({', '.join(FAMILIES)})")
        out[name] = Method(name, e["family"], e["description"], e["overrides"], e["unavailable"])
    return out


REGISTRY: dict[str, Method] = _load_registry()
#: the methods that can run, in the order of the tables
ALL_METHODS: tuple[str, ...] = tuple(n for n, m in REGISTRY.items() if m.unavailable is None)
#: The methods listed but not run, each with the reason.
UNAVAILABLE: dict[str, str] = {n: m.unavailable for n, m in REGISTRY.items() if m.unavailable}


def get(name: str) -> Method:
    """The registry entry of ``name``; an unknown or unavailable name is a :class:`~sdmad_lite.profiles.ConfigError`."""
    if name in UNAVAILABLE:
        raise ConfigError(f"method {name!r} cannot run: {UNAVAILABLE[name]}")
    if name not in REGISTRY:
        raise ConfigError(f"unknown method {name!r}; choose one of {', '.join(ALL_METHODS)}")
    return REGISTRY[name]


def check(cfg: ExperimentConfig, where: str = "config") -> ExperimentConfig:
    """Raise :class:`~sdmad_lite.profiles.ConfigError` naming ``method`` when ``cfg.method`` is not a runnable method."""
    try:
        get(cfg.method)
    except ConfigError as e:
        raise ConfigError(f"{where}.method: {e}") from None
    return cfg


def patches_read(cfg: ExperimentConfig) -> str:
    """The patch tokens ``cfg.method`` reads, the features its task must keep (:data:`~sdmad_lite.features.PATCHES`):
    ``"none"`` for the class tokens only, ``"first"`` for the residual placement (in the config or its
    tuning grid), ``"all"`` for the patch-level baselines."""
    reads = READS_PATCHES.get(get(cfg.method).family, "all")
    if reads != "placement":
        return reads
    modes = {cfg.model.adapter_mode, *cfg.tuning.grid.get("model.adapter_mode", [])}
    return "first" if "residual" in modes else "none"


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

    The support scores are out-of-fold when the method was cross-validated (its thresholds then
    never see scores of images the scoring model was fitted on); the reference rows predict labels
    directly. Few-shot work on cached features runs on one thread (tiny tensors); the residual
    variant's frozen blocks keep every thread.
    """
    with one_thread(cfg.model.adapter_mode != "residual"):
        fitted = fit(task, support, cfg, cols, checkpoint)
        ss, sa = fitted.scores(task.pool_feats.subset(support.all))
        ts, ta = fitted.scores(task.test_feats)
    tuned = getattr(fitted, "tuned", None)
    extra: dict = {"row": {"support_scores": "in-sample" if get(cfg.method).trained and tuned is None else
                           ("out-of-fold" if tuned is not None else "no fitting")}}
    if tuned is not None:
        ss, sa = tuned.oof_cat, tuned.oof_anchor
        extra["tuning"] = tuned
        extra["row"].update(tuned.as_row())
    labels = fitted.labels(len(ts)) if hasattr(fitted, "labels") else None
    return Predictions(ss, sa, ts, ta, kept=fitted.kept, extra=extra, test_labels=labels), fitted
