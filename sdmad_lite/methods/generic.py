"""Generic-prompt adapters: SD-MAD's head, every category scored against the generic *abnormal*
prompts instead of its signs (no signs, no discrepancy or intra term: the overlay of its registry
entry); tuned by the same cross-validation as SD-MAD. It asks what the sign text adds to the same
adapters. (Until this version the book called this row "mvfa"; MVFA's own design is the ``mvfa``
family.)"""
from __future__ import annotations

import torch

from .. import tuning as T
from ..config import ExperimentConfig
from ..data.fewshot import Support
from ..models.sdmad import TextBank
from ..task import Task
from .sdmad import FittedSDMAD, cross_validate, train_head


def generic_bank(task: Task, n: int) -> TextBank:
    """A bank of ``n`` categories whose only "sign" is the abnormal anchor prompt."""
    t = task.text
    return TextBank(t.abnormal.expand(n, 1, -1).clone(), torch.ones(n, 1, dtype=torch.bool), t.normal, t.abnormal)


def fit(task: Task, support: Support, cfg: ExperimentConfig, cols: list[int], checkpoint=None) -> FittedSDMAD:
    text = generic_bank(task, len(cols))
    if cfg.tuning.folds >= 2:
        tuned = cross_validate(task, support, cfg, cols, text, lambda rows: text, T.grid_points(cfg.tuning.grid))
        res = train_head(task, support.all, T.apply_point(cfg, tuned.point), text, cols, tuned.epochs)
        return FittedSDMAD(res, task, text, cfg.model.adapter_mode, None, tuned)
    res = train_head(task, support.train, cfg, text, cols, cfg.train.epochs, held_out=support.val)
    return FittedSDMAD(res, task, text, cfg.model.adapter_mode, None)
