"""Baselines, each producing the same :class:`~sdmad_lite.engine.Predictions` as SD-MAD so that
every method goes through the same thresholds and protocols.

- ``zeroshot-names`` — frozen CLIP, prompts naming the category (two-way softmax vs normal);
- ``zeroshot-signs`` — frozen CLIP, the expert-selected sign descriptions averaged;
- ``linear-probe`` — logistic regression per category (and for the anchor) on the frozen
  image embedding, trained on the support set;
- ``mvfa`` — MVFA-style adapters trained one-vs-rest: the same adapters as SD-MAD, but every
  category is scored against the generic *abnormal* prompts (no signs, no discrepancy term);
- ``coop`` — CoOp-style learnable prompt context (the AnomalyCLIP family): M learnable context
  vectors before the category name and before "normal", trained on the support set with the
  frozen image embedding;
- ``medclip`` — not run: MedCLIP's weights are not distributed through open_clip; the row
  says so instead of showing a number.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F

from ..config import ExperimentConfig
from .sdmad import TextBank
from .zeroshot import two_way_probability

METHODS = ("sdmad", "zeroshot-names", "zeroshot-signs", "linear-probe", "mvfa", "coop")
UNAVAILABLE = {"medclip": "MedCLIP's weights are not distributed through open_clip and cannot be loaded offline; "
                          "not run in this version"}


def _split(task, support, cols):
    return task.pool_feats.pooled[support.all], task.test_feats.pooled, task.y_pool[support.all][:, cols]


def zero_shot(task, support, cfg: ExperimentConfig, cols, source: str):
    from ..engine import Predictions

    if source == "names":
        t_c = task.name_text[cols]
    else:
        t = task.text
        t_c = TextBank(t.signs[cols], t.sign_mask[cols], t.normal, t.abnormal, torch.as_tensor(task.expert[cols])).category_means()
    vs, vt, _ = _split(task, support, cols)
    tn, ta = task.text.normal, task.text.abnormal
    tau = cfg.loss.temperature
    f = lambda v: (two_way_probability(v, t_c, tn, tau).numpy(),  # noqa: E731
                   two_way_probability(v, ta[None], tn, tau)[:, 0].numpy())
    (ss, sa), (ts, ta_) = f(vs), f(vt)
    return Predictions(ss, sa, ts, ta_)


def _fit_logistic(x: torch.Tensor, y: torch.Tensor, wd: float, steps: int = 300) -> torch.nn.Linear:
    lin = torch.nn.Linear(x.shape[1], y.shape[1])
    opt = torch.optim.LBFGS(lin.parameters(), lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")
    pos = y.mean(0).clamp(1e-3, 1 - 1e-3)

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(lin(x), y, pos_weight=(1 - pos) / pos) + wd * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return lin


def linear_probe(task, support, cfg: ExperimentConfig, cols):
    from ..engine import Predictions

    torch.manual_seed(cfg.seed)
    vs, vt, ys = _split(task, support, cols)
    y = torch.as_tensor(np.column_stack([ys, ys.sum(1) > 0])).float()
    lin = _fit_logistic(vs * 10, y, wd=1e-3)
    with torch.no_grad():
        ps, pt = torch.sigmoid(lin(vs * 10)).numpy(), torch.sigmoid(lin(vt * 10)).numpy()
    return Predictions(ps[:, :-1], ps[:, -1], pt[:, :-1], pt[:, -1])


def mvfa(task, support, cfg: ExperimentConfig, cols):
    """SD-MAD's adapters with every category scored against the generic abnormal prompts."""
    from ..engine import Predictions, head_scores, train_head

    t = task.text
    generic = TextBank(t.abnormal.expand(len(cols), 1, -1).clone(), torch.ones(len(cols), 1, dtype=torch.bool),
                       t.normal, t.abnormal)
    c = copy.deepcopy(cfg)
    c.loss.discrepancy = 0.0
    c.loss.intra = 0.0
    res = train_head(task, support, c, text=_padded(generic, task, cols), categories=cols)
    text = _padded(generic, task, cols, full=False)
    ss, sa = head_scores(res.head, task, task.pool_feats.subset(support.all), text, cfg.model.adapter_mode)
    ts, ta = head_scores(res.head, task, task.test_feats, text, cfg.model.adapter_mode)
    return Predictions(ss, sa, ts, ta)


def _padded(text: TextBank, task, cols, full: bool = True) -> TextBank:
    """``train_head`` indexes the text bank by category columns: give it a full-size bank."""
    if not full:
        return text
    n = len(task.categories)
    signs = torch.zeros(n, 1, text.signs.shape[-1])
    signs[cols] = text.signs
    mask = torch.zeros(n, 1, dtype=torch.bool)
    mask[cols] = True
    mask[[i for i in range(n) if i not in cols]] = True  # never used, but keeps the bank valid
    return TextBank(signs, mask, text.normal, text.abnormal)


def coop(task, support, cfg: ExperimentConfig, cols, n_ctx: int = 4, epochs: int = 100):
    """Learnable context vectors (shared by the categories) + a learnable normal context."""
    from ..engine import Predictions

    bb = task.backbone
    torch.manual_seed(cfg.seed)
    names = [task.bank.category_name(task.categories[c]) for c in cols]
    obj = task.bank.obj
    prefix = " ".join(["X"] * n_ctx)
    tok_c = bb.tokenizer([f"{prefix} {obj} with {n}." for n in names])
    tok_n = bb.tokenizer([f"{prefix} normal {obj}."])
    tok_a = bb.tokenizer([f"{prefix} abnormal {obj}."])
    width = bb.model.token_embedding.weight.shape[1]
    ctx = torch.nn.Parameter(torch.randn(3, n_ctx, width) * 0.02)  # category / normal / abnormal contexts
    vs, vt, ys = _split(task, support, cols)
    y = torch.as_tensor(ys).float()
    yab = torch.as_tensor(ys.sum(1) > 0).float()
    opt = torch.optim.AdamW([ctx], lr=2e-3, weight_decay=0.0)
    tau = cfg.loss.temperature

    def texts():
        return (F.normalize(bb.text_forward_with_context(tok_c, ctx[0]), dim=-1),
                F.normalize(bb.text_forward_with_context(tok_n, ctx[1]), dim=-1)[0],
                F.normalize(bb.text_forward_with_context(tok_a, ctx[2]), dim=-1)[0])

    for _ in range(epochs):
        tc, tn, ta = texts()
        pc = two_way_probability(vs, tc, tn, tau)
        pa = two_way_probability(vs, ta[None], tn, tau)[:, 0]
        loss = F.binary_cross_entropy(pc.clamp(1e-6, 1 - 1e-6), y) + F.binary_cross_entropy(pa.clamp(1e-6, 1 - 1e-6), yab)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        tc, tn, ta = texts()
        f = lambda v: (two_way_probability(v, tc, tn, tau).numpy(), two_way_probability(v, ta[None], tn, tau)[:, 0].numpy())  # noqa: E731
        (ss, sa), (ts, tta) = f(vs), f(vt)
    return Predictions(ss, sa, ts, tta)


def run_baseline(method: str, task, support, cfg: ExperimentConfig, cols):
    if method == "zeroshot-names":
        return zero_shot(task, support, cfg, cols, "names")
    if method == "zeroshot-signs":
        return zero_shot(task, support, cfg, cols, "signs")
    if method == "linear-probe":
        return linear_probe(task, support, cfg, cols)
    if method == "mvfa":
        return mvfa(task, support, cfg, cols)
    if method == "coop":
        return coop(task, support, cfg, cols)
    if method in UNAVAILABLE:
        raise ValueError(f"{method}: {UNAVAILABLE[method]}")
    raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
