"""Zero-shot baselines: the frozen CLIP, a two-way contrast of each category's text against the
normal prompts (``models/zeroshot.py``); ``names`` prompts name the category, ``signs`` average
the expert-selected sign descriptions."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..config import ExperimentConfig
from ..data.fewshot import Support
from ..features import Features
from ..models.zeroshot import two_way_probability
from ..task import Task
from ..tuning import Fitted


@dataclass
class FittedZeroShot(Fitted):
    t_c: torch.Tensor  # (C, D) category texts
    t_n: torch.Tensor
    t_a: torch.Tensor
    tau: float

    def scores(self, feats: Features) -> tuple[np.ndarray, np.ndarray]:
        v = feats.pooled
        return (two_way_probability(v, self.t_c, self.t_n, self.tau).numpy(),
                two_way_probability(v, self.t_a[None], self.t_n, self.tau)[:, 0].numpy())


def fit_names(task: Task, support: Support, cfg: ExperimentConfig, cols: list[int], checkpoint=None) -> FittedZeroShot:
    return FittedZeroShot(task.name_text[cols], task.text.normal, task.text.abnormal, cfg.loss.temperature)


def fit_signs(task: Task, support: Support, cfg: ExperimentConfig, cols: list[int], checkpoint=None) -> FittedZeroShot:
    return FittedZeroShot(task.text_columns(cols).category_means(), task.text.normal, task.text.abnormal,
                          cfg.loss.temperature)
