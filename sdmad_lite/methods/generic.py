"""Generic-prompt adapters: SD-MAD's head, every category scored against the generic *abnormal*
prompts instead of its signs (no signs, no discrepancy or intra term: the overlay of its registry
entry). What the book called "mvfa" before it had a row that follows MVFA's own design."""
from __future__ import annotations

import torch

from ..config import ExperimentConfig
from ..data.fewshot import Support
from ..models.sdmad import TextBank
from ..task import Task
from .sdmad import FittedSDMAD, train_head


def generic_bank(task: Task, n: int) -> TextBank:
    """A bank of ``n`` categories whose only "sign" is the abnormal anchor prompt."""
    t = task.text
    return TextBank(t.abnormal.expand(n, 1, -1).clone(), torch.ones(n, 1, dtype=torch.bool), t.normal, t.abnormal)


def _padded(text: TextBank, task: Task, cols: list[int]) -> TextBank:
    """``train_head`` indexes the text bank by category columns: give it a full-size bank."""
    n = len(task.categories)
    signs = torch.zeros(n, 1, text.signs.shape[-1])
    signs[cols] = text.signs
    mask = torch.zeros(n, 1, dtype=torch.bool)
    mask[cols] = True
    mask[[i for i in range(n) if i not in cols]] = True  # never used, but keeps the bank valid
    return TextBank(signs, mask, text.normal, text.abnormal)


def fit(task: Task, support: Support, cfg: ExperimentConfig, cols: list[int], checkpoint=None) -> FittedSDMAD:
    generic = generic_bank(task, len(cols))
    res = train_head(task, support, cfg, text=_padded(generic, task, cols), categories=cols)
    return FittedSDMAD(res, task, generic, cfg.model.adapter_mode, None)
