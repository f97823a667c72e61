"""The methods: SD-MAD, its variants, every baseline and the reference rows, by name.

The names, families, overlays and tuning grids are the registry's (``configs/methods.yaml``,
:mod:`~sdmad_lite.methods.registry`); this module binds each family to the code that fits it. A
family's ``fit(task, support, cfg, cols, checkpoint=None)`` returns a :class:`~sdmad_lite.tuning.Fitted`;
:func:`predict` turns it into the :class:`~sdmad_lite.train.Predictions` every protocol reads, with
the *out-of-fold* scores of the support set for the thresholds of a tuned method.
"""
from __future__ import annotations

import os
from typing import Callable

from ..config import ExperimentConfig
from ..data.fewshot import Support
from ..errors import ConfigError
from ..task import Task
from ..train import Predictions, one_thread
from ..tuning import Fitted, FoldEnsemble
from . import anomalyclip, coop, generic, mvfa, probe, reference, sdmad, zeroshot
from . import registry as R
from .registry import METHODS_FILE, UNTRAINED, Method  # noqa: F401  (the registry's public names, here too)

#: family -> fit(task, support, cfg, cols, checkpoint=None)
FAMILIES: dict[str, Callable[..., Fitted]] = {
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

REGISTRY: dict[str, Method] = R.load_registry(FAMILIES)
#: the methods that can run, in the order of the tables
ALL_METHODS: tuple[str, ...] = tuple(n for n, m in REGISTRY.items() if m.unavailable is None)
#: The methods listed but not run, each with the reason.
UNAVAILABLE: dict[str, str] = {n: m.unavailable for n, m in REGISTRY.items() if m.unavailable}


def get(name: str) -> Method:
    """The registry entry of ``name``; an unknown or unavailable name is a :class:`~sdmad_lite.errors.ConfigError`."""
    return R.get(REGISTRY, name)


def check(cfg: ExperimentConfig, where: str = "config") -> ExperimentConfig:
    """The one check of a method name: :class:`~sdmad_lite.errors.ConfigError` naming ``method`` when
    ``cfg.method`` is not a runnable method of the registry."""
    try:
        get(cfg.method)
    except ConfigError as e:
        raise ConfigError(f"{where}.method: {e}") from None
    return cfg


def config_for(name: str, base: ExperimentConfig) -> ExperimentConfig:
    """The config of method ``name`` on top of ``base`` (its overlay merged, ``method`` set)."""
    return R.config_for(REGISTRY, name, base)


def load_experiment(path: str | os.PathLike) -> ExperimentConfig:
    """A config file (``sdmad_lite.config.load_config``) with its method's overlay (its grid...) under
    the file's own settings, the method checked against the registry."""
    return R.load_experiment(REGISTRY, path)


def patches_read(cfg: ExperimentConfig) -> str:
    """The patch tokens ``cfg.method`` reads, the features its task must keep (:data:`~sdmad_lite.features.PATCHES`):
    ``"none"`` for the class tokens only, ``"first"`` for the residual placement (in the config or its
    tuning grid), ``"all"`` for the patch-level baselines."""
    reads = READS_PATCHES.get(get(cfg.method).family, "all")
    if reads != "placement":
        return reads
    modes = {cfg.model.adapter_mode, *cfg.tuning.grid.get("model.adapter_mode", [])}
    return "first" if "residual" in modes else "none"


def fit(task: Task, support: Support, cfg: ExperimentConfig, cols: list[int] | None = None,
        checkpoint: str | os.PathLike | None = None) -> Fitted:
    """Fit ``cfg.method`` on the support set (category columns ``cols``; all by default)."""
    m = get(cfg.method)
    cols = list(range(len(task.categories))) if cols is None else list(cols)
    return FAMILIES[m.family](task, support, cfg, cols, checkpoint=checkpoint)


def predict(task: Task, support: Support, cfg: ExperimentConfig, cols: list[int] | None = None,
            checkpoint: str | os.PathLike | None = None) -> tuple[Predictions, Fitted]:
    """Fit ``cfg.method`` and score the support and the test images: ``(Predictions, fitted)``.

    The support scores are out-of-fold when the method was cross-validated (its thresholds then
    never see scores of images the scoring model was fitted on); the reference rows predict labels
    directly. Few-shot work on cached features runs on one thread (tiny tensors); the residual
    variant's frozen blocks keep every thread.
    """
    per_model = (None, None)
    with one_thread(cfg.model.adapter_mode != "residual"):
        fitted = fit(task, support, cfg, cols, checkpoint)
        ss, sa = fitted.scores(task.pool_feats.subset(support.all))
        if isinstance(fitted, FoldEnsemble):  # the fold models' own test scores: the thresholds cut each
            per_model = fitted.scores_per_model(task.test_feats)
            ts, ta = per_model[0].mean(0), per_model[1].mean(0)
        else:
            ts, ta = fitted.scores(task.test_feats)
    tuned = fitted.tuned
    extra: dict = {"row": {"support_scores": "in-sample" if get(cfg.method).trained and tuned is None else
                           ("out-of-fold" if tuned is not None else "no fitting"),
                           "predictor": "fold models" if tuned is not None else "one model"}}
    if tuned is not None:
        ss, sa = tuned.oof_cat, tuned.oof_anchor
        extra["tuning"] = tuned
        extra["row"].update(tuned.as_row())
    return Predictions(ss, sa, ts, ta, kept=fitted.kept, extra=extra, test_labels=fitted.labels(len(ts)),
                       test_scores_per_model=per_model[0], test_anchor_per_model=per_model[1]), fitted
