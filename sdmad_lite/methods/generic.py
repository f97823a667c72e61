"""Generic-prompt adapters: SD-MAD's head, every category scored against the generic *abnormal*
prompts instead of its signs (no signs, no discrepancy or intra term: the overlay of its registry
entry); tuned by the same cross-validation as SD-MAD. It asks what the sign text adds to the same
adapters. (Until this version the book called this row "mvfa"; MVFA's own design is the ``mvfa``
family.)"""
from __future__ import annotations

import torch

from ..config import ExperimentConfig
from ..data.fewshot import Support
from ..models.sdmad import TextBank
from ..task import Task
from ..tuning import Fitted
from .sdmad import fit_heads


def generic_bank(task: Task, n: int) -> TextBank:
    """A bank of ``n`` categories whose only "sign" is the abnormal anchor prompt."""
    t = task.text
    return TextBank(t.abnormal.expand(n, 1, -1).clone(), torch.ones(n, 1, dtype=torch.bool), t.normal, t.abnormal)


def fit(task: Task, support: Support, cfg: ExperimentConfig, cols: list[int], checkpoint=None) -> Fitted:
    text = generic_bank(task, len(cols))
    return fit_heads(task, support, cfg, cols, text, text, lambda rows: text, None)
