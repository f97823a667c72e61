"""MVFA (Huang et al., CVPR 2024; MediaBrain-SJTU/MVFA-AD), its few-shot design on cached taps, one-vs-rest.

What it keeps of MVFA's design (``CLIP/adapter.py``, ``train_few.py``, ``test_few.py``, ``utils.py``):
after each tapped block a *detection adapter* whose bottleneck maps the block's patch tokens into the
joint image–text space (``Linear(width → embed_dim)`` + LeakyReLU: the bottleneck itself is the
feature compared with text, no final LayerNorm or projection); a **zero-shot branch** — every patch
against the normal and abnormal prompt ensembles (MVFA's state words × CLIP's templates), softmax at
temperature 1/100, averaged over patches and summed over blocks; a **few-shot branch** — each patch's
distance ``1 − cos`` to its nearest patch in a memory bank of the support images' adapted patches,
averaged over patches and summed over blocks; the two branches min–max normalised and fused
0.5 / 0.5; a BCE per block on the patch-averaged abnormal probability; Adam, betas (0.5, 0.999).

What it changes (the departures page lists it): MVFA is binary; here the anchor is MVFA's own binary
score (generic abnormal prompts, a bank of normal support patches), and each category c is scored
one-vs-rest (its abnormal text is the category's expert signs, the text knowledge SD-MAD reads —
not the category-name prompts, which a backbone that never saw the names cannot use; its memory bank holds the
patches of the support images *without* c); the adapters read the frozen taps in parallel (MVFA
mixes ``0.8·x + 0.1·seg + 0.1·det`` into the residual stream, so its adapters also change later
blocks: that needs the frozen blocks in the training loop), so the up-projection and the
segmentation adapters, which only act through that mixing, are left out; no ×11 augmentation of the
support images; the min–max statistics of the fusion come from the support set (MVFA takes them
over the test set); the epochs are chosen on held-out folds (MVFA picks its best epoch on the test set).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .. import tuning as T
from ..config import ExperimentConfig
from ..data.fewshot import Support
from ..features import Features
from ..task import Task
from ..train import StackedAdamW, one_thread, train_stack

#: MVFA's state words (``utils.py``) and CLIP's 35 templates of its prompt ensemble (a subset of 7 here)
NORMAL_STATES = ("{}", "flawless {}", "perfect {}", "unblemished {}", "{} without flaw", "{} without defect",
                 "{} without damage")
ABNORMAL_STATES = ("damaged {}", "broken {}", "{} with flaw", "{} with defect", "{} with damage")
TEMPLATES = ("a photo of a {}.", "a bad photo of a {}.", "a cropped photo of the {}.", "a close-up photo of a {}.",
             "a photo of the {}.", "a good photo of the {}.", "this is a {}.")


def ensemble(backbone, states: tuple[str, ...], obj: str) -> torch.Tensor:
    """MVFA's prompt ensemble: every state word × every template, normalised mean (D,)."""
    return backbone.mean_text([t.format(s.format(obj)) for s in states for t in TEMPLATES])


class DetectionAdapters(torch.nn.Module):
    """One bottleneck ``W: width → embed_dim`` per tapped block, for M models: (L, M, width, D)."""

    def __init__(self, n_blocks: int, width: int, embed_dim: int, n_models: int = 1):
        super().__init__()
        w = torch.empty(n_blocks, n_models, width, embed_dim)
        for i in range(n_blocks):
            for m in range(n_models):
                lin = torch.nn.Linear(width, embed_dim, bias=False)  # MVFA: nn.Linear's default init
                w[i, m] = lin.weight.T
        self.w = torch.nn.Parameter(w)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """(N, L, P, width) patch tokens -> (M, N, L, P, D) normalised adapted patches (one product per block)."""
        n, nl, p, w = patches.shape
        _, m, _, d = self.w.shape
        x = patches.transpose(0, 1).reshape(nl, n * p, w)
        z = torch.bmm(x, self.w.permute(0, 2, 1, 3).reshape(nl, w, m * d))  # (L, N·P, M·D)
        z = z.reshape(nl, n, p, m, d).permute(3, 1, 0, 2, 4)
        return F.normalize(F.leaky_relu(z), dim=-1)


def zero_shot_probs(z: torch.Tensor, t_n: torch.Tensor, t_abn: torch.Tensor) -> torch.Tensor:
    """Patch-averaged abnormal probability per block: (M, N, L, K) for K abnormal texts (K, D)."""
    logits = 100.0 * torch.einsum("mnlpd,kd->mnlpk", z, t_abn)
    normal = 100.0 * torch.einsum("mnlpd,d->mnlp", z, t_n)[..., None]
    return torch.sigmoid(logits - normal).mean(3)


def bank_distance(z: torch.Tensor, bank: torch.Tensor, allowed: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """Few-shot branch: ``1 − cos`` to the nearest bank patch, averaged over patches, summed over blocks.

    ``z`` (N, L, P, D) scored images; ``bank`` (B, L, P, D) support images; ``allowed`` (N, K, B):
    which bank images each scored image may use for each of K banks. Returns (N, K)."""
    out = []
    for lo in range(0, len(z), chunk):
        zz = z[lo:lo + chunk]
        sim = torch.einsum("nlpd,blqd->nlbpq", zz, bank).amax(-1)  # best patch of each bank image: (n, L, B, P)
        ok = allowed[lo:lo + chunk]  # (n, K, B)
        s = sim.unsqueeze(1).masked_fill(~ok[:, :, None, :, None], -2.0).amax(3)  # (n, K, L, P)
        out.append((1 - s).mean(-1).sum(-1))
    return torch.cat(out)


@dataclass
class FittedMVFA(T.Fitted):
    adapters: DetectionAdapters
    task: Task
    cols: list[int]
    t_n: torch.Tensor
    t_abn: torch.Tensor  # (1 + C, D): anchor (generic), then one per category
    bank: torch.Tensor  # (B, L, P, D) adapted support patches
    bank_y: np.ndarray  # (B, C)
    bank_rows: np.ndarray  # pool rows of the bank (a support image never uses itself)
    lo: torch.Tensor | None = None  # fusion statistics (2, 1 + C) from the support set
    hi: torch.Tensor | None = None
    tuned: T.Tuned | None = None

    @property
    def n_parameters(self) -> int:
        return self.adapters.w.numel()

    def branches(self, feats: Features, rows: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero-shot (N, 1 + C) and few-shot (N, 1 + C) scores; ``rows``: the pool rows of ``feats``."""
        patches = feats.patch_tokens(self.task.blocks, "MVFA")
        with torch.no_grad():
            z = self.adapters(patches)[0]
            zero = zero_shot_probs(z[None], self.t_n, self.t_abn)[0].sum(1)  # (N, 1 + C)
            normal = self.bank_y.sum(1) == 0
            allow = np.concatenate([normal[None], (self.bank_y == 0).T], 0)  # (1 + C, B)
            allowed = np.broadcast_to(allow, (len(z),) + allow.shape).copy()
            if rows is not None:  # leave-one-out: a support image is never its own neighbour
                allowed &= (np.asarray(rows)[:, None] != self.bank_rows[None, :])[:, None, :]
            few = bank_distance(z, self.bank, torch.as_tensor(allowed))
        return zero, few

    def scores(self, feats: Features, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        zero, few = self.branches(feats, rows)
        if self.lo is None:
            z0, f0 = self.branches(self.task.pool_feats.subset(self.bank_rows), self.bank_rows)
            both = torch.stack([z0, f0])
            self.lo, self.hi = both.amin(1), both.amax(1)
        span = (self.hi - self.lo).clamp(min=1e-6)
        fused = 0.5 * ((zero - self.lo[0]) / span[0]).clamp(0, 1) + 0.5 * ((few - self.lo[1]) / span[1]).clamp(0, 1)
        fused = fused.numpy()
        return fused[:, 1:], fused[:, 0]


def _texts(task: Task, cols: list[int]):
    bb, obj = task.backbone, task.bank.obj
    t_n = ensemble(bb, NORMAL_STATES, obj)
    # the anchor: MVFA's generic abnormal ensemble; each category: its expert signs (SD-MAD's text knowledge)
    t_abn = torch.cat([ensemble(bb, ABNORMAL_STATES, obj)[None], task.text_columns(cols).category_means()])
    return t_n, t_abn


def _train(task, rows, cols, cfg, points, n_folds, w_tr, w_va, epochs, patience):
    torch.manual_seed(cfg.seed)
    m = len(points) * n_folds
    bb = task.backbone
    ad = DetectionAdapters(len(task.blocks), bb.width, bb.embed_dim, m)
    lr = T.per_model(points, n_folds, "mvfa.lr", cfg.mvfa.lr)
    opt = StackedAdamW([(ad.w, 1, torch.arange(m))], lr, torch.zeros(m), betas=(0.5, 0.999))
    feats = task.pool_feats.subset(rows)
    patches = feats.patch_tokens(task.blocks, "MVFA")
    ys = task.y_pool[rows][:, cols]
    y = torch.as_tensor(np.column_stack([ys.sum(1) > 0, ys])).float()  # anchor first
    t_n, t_abn = _texts(task, cols)

    def step():  # one forward pass: training losses, held-out losses and (zero-shot branch) scores
        p = zero_shot_probs(ad(patches), t_n, t_abn)  # (M, N, L, 1 + C), anchor first
        bce = F.binary_cross_entropy(p.clamp(1e-6, 1 - 1e-6), y[None, :, None].expand_as(p), reduction="none").mean((2, 3))
        with torch.no_grad():
            held = (bce * w_va).sum(-1) / w_va.sum(-1).clamp(min=1) if w_va is not None else torch.zeros(m)
            pm = p.mean(2)
            scores = torch.cat([pm[..., 1:], pm[..., :1]], -1)  # categories, then the anchor
        return (bce * w_tr).sum(-1) / w_tr.sum(-1).clamp(min=1), held, scores

    with one_thread():
        record = train_stack(opt, step, epochs, patience)
    return ad, record, t_n, t_abn


def _fitted(task, rows, cols, ad, t_n, t_abn, model: int = 0) -> FittedMVFA:
    feats = task.pool_feats.subset(rows)
    patches = feats.patch_tokens(task.blocks, "MVFA")
    single = DetectionAdapters.__new__(DetectionAdapters)
    torch.nn.Module.__init__(single)
    single.w = torch.nn.Parameter(ad.w[:, model:model + 1].detach().clone())
    with torch.no_grad():
        bank = single(patches)[0]
    return FittedMVFA(single, task, cols, t_n, t_abn, bank, task.y_pool[rows][:, cols], np.asarray(rows))


def fit(task: Task, support: Support, cfg: ExperimentConfig, cols: list[int], checkpoint=None) -> T.Fitted:
    rows = support.all
    ones = torch.ones(1, len(rows))

    def stack(cv: T.CV):  # the zero-shot branch's held-out loss and scores choose the point and the epochs
        return _train(task, rows, cols, cfg, cv.points, cv.n_folds, *cv.masks(), cfg.tuning.max_epochs,
                      cfg.tuning.patience)[1]

    def fit_folds(cv: T.CV, final: ExperimentConfig, tuned: T.Tuned) -> T.ModelList:
        """Both branches at the chosen point: one model per fold, its memory bank its own training folds."""
        fold_ad, _, t_n, t_abn = _train(task, rows, cols, final, [{}], cv.n_folds, cv.masks(1)[0], None,
                                        tuned.epochs, tuned.epochs + 1)
        return T.ModelList([_fitted(task, rows[cv.split(f)[0]], cols, fold_ad, t_n, t_abn, model=f)
                            for f in range(cv.n_folds)])

    def once() -> FittedMVFA:
        ad, _, t_n, t_abn = _train(task, rows, cols, cfg, [{}], 1, ones, None, cfg.mvfa.epochs, cfg.mvfa.epochs + 1)
        return _fitted(task, rows, cols, ad, t_n, t_abn)

    n_par = len(task.blocks) * task.backbone.width * task.backbone.embed_dim
    return T.fit_tuned(cfg, task.y_pool[rows][:, cols], task.pool_feats.subset(rows), once=once, stack=stack,
                       fit_folds=fit_folds, n_parameters=n_par)
