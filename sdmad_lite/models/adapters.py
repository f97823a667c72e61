"""Adapters in CLIP's image encoder (the MVFA pattern the paper uses).

For the tokens ``f`` after an adapted transformer block, one adapter per *branch* (one branch
per anomaly category, plus the anchor):

    f_ada = σ(W2 σ(W1 f)),        f_out = λ·f + (1 − λ)·f_ada          (paper, λ ≈ 0.8)

σ is LeakyReLU as in MVFA. Two ways to place them:

- **residual** (paper-faithful): a branch's adapted tokens replace the residual stream and are
  carried through the following frozen blocks. Each branch therefore needs its own pass
  through the rest of the backbone; only the part *before the first adapted block* can be
  cached.
- **side**: the adapters read the frozen taps and do not feed back. The whole backbone can
  be cached once per image, which makes few-shot training nearly free (the book compares
  the two).
"""
from __future__ import annotations

import torch
from torch import nn


class Adapter(nn.Module):
    """``f_out = λ·f + (1−λ)·σ(W2 σ(W1 f))`` for tokens ``f`` of width ``width``."""

    def __init__(self, width: int, hidden: int, lam: float = 0.8):
        super().__init__()
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"adapter λ must lie in [0, 1], got {lam}")
        self.lam = lam
        self.fc1 = nn.Linear(width, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, width, bias=False)
        self.act = nn.LeakyReLU(inplace=False)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.lam * f + (1.0 - self.lam) * self.act(self.fc2(self.act(self.fc1(f))))


class BranchAdapters(nn.Module):
    """One :class:`Adapter` per (branch, adapted block): ``self[b][block](tokens)``."""

    def __init__(self, n_branches: int, blocks: list[int], width: int, hidden: int, lam: float):
        super().__init__()
        self.blocks = list(blocks)
        self.n_branches = n_branches
        self.branches = nn.ModuleList(
            nn.ModuleDict({str(b): Adapter(width, hidden, lam) for b in self.blocks}) for _ in range(n_branches)
        )

    def __getitem__(self, branch: int) -> nn.ModuleDict:
        return self.branches[branch]
