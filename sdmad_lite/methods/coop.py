"""Learned prompt context (CoOp): M learnable context vectors before the category name, and before
"normal" / "abnormal" for the anchor, trained on the support set with the frozen image embedding
(``config.CoopConfig``), through the one training loop of ``train.py``."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..config import ExperimentConfig
from ..data.fewshot import Support
from ..features import Features
from ..models.zeroshot import two_way_probability
from ..task import Task
from ..train import train


class LearnedContext(torch.nn.Module):
    """The context vectors of the category, normal and abnormal prompts (3, M, width), and their texts."""

    def __init__(self, backbone, names: list[str], obj: str, n_ctx: int):
        super().__init__()
        self.backbone = [backbone]  # not a submodule: the frozen backbone is not trained or saved
        prefix = " ".join(["X"] * n_ctx)
        self.tok_c = backbone.tokenizer([f"{prefix} {obj} with {n}." for n in names])
        self.tok_n = backbone.tokenizer([f"{prefix} normal {obj}."])
        self.tok_a = backbone.tokenizer([f"{prefix} abnormal {obj}."])
        width = backbone.model.token_embedding.weight.shape[1]
        self.ctx = torch.nn.Parameter(torch.randn(3, n_ctx, width) * 0.02)  # category / normal / abnormal contexts

    def texts(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        bb = self.backbone[0]
        return (F.normalize(bb.text_forward_with_context(self.tok_c, self.ctx[0]), dim=-1),
                F.normalize(bb.text_forward_with_context(self.tok_n, self.ctx[1]), dim=-1)[0],
                F.normalize(bb.text_forward_with_context(self.tok_a, self.ctx[2]), dim=-1)[0])


@dataclass
class FittedCoop:
    prompts: LearnedContext
    tau: float
    kept = None

    @property
    def n_parameters(self) -> int:
        return self.prompts.ctx.numel()

    def scores(self, feats: Features) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            tc, tn, ta = self.prompts.texts()
            v = feats.pooled
            return two_way_probability(v, tc, tn, self.tau).numpy(), two_way_probability(v, ta[None], tn, self.tau)[:, 0].numpy()


def fit(task: Task, support: Support, cfg: ExperimentConfig, cols: list[int], checkpoint=None) -> FittedCoop:
    torch.manual_seed(cfg.seed)
    names = [task.bank.category_name(task.categories[c]) for c in cols]
    prompts = LearnedContext(task.backbone, names, task.bank.obj, cfg.coop.n_ctx)
    rows = support.all
    vs = task.pool_feats.pooled[rows]
    ys = task.y_pool[rows][:, cols]
    y = torch.as_tensor(ys).float()
    yab = torch.as_tensor(ys.sum(1) > 0).float()
    opt = torch.optim.AdamW([prompts.ctx], lr=cfg.coop.lr, weight_decay=cfg.coop.weight_decay)
    tau = cfg.loss.temperature

    def step():
        tc, tn, ta = prompts.texts()
        pc = two_way_probability(vs, tc, tn, tau)
        pa = two_way_probability(vs, ta[None], tn, tau)[:, 0]
        loss = F.binary_cross_entropy(pc.clamp(1e-6, 1 - 1e-6), y) + F.binary_cross_entropy(pa.clamp(1e-6, 1 - 1e-6), yab)
        return loss, {}

    train(prompts, opt, step, None, cfg.coop.epochs, patience=None, restore_best=False)
    return FittedCoop(prompts, tau)
