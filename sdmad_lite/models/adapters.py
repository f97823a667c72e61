"""Adapters in CLIP's image encoder (MVFA's adapter, which the paper's Shift Adapter follows).

For the tokens ``f`` after an adapted transformer block, one adapter per *branch* (one branch
per anomaly category, plus the anchor):

    f_ada = σ(W2 σ(W1 f)),        f_out = λ·f + (1 − λ)·f_ada          (paper, λ ≈ 0.8)

σ is LeakyReLU as in MVFA. Three ways to place them:

- **residual** (MVFA's pattern): a branch's adapted tokens replace the residual stream and are
  carried through the following frozen blocks. Each branch therefore needs its own pass
  through the rest of the backbone; only the part *before the first adapted block* can be
  cached.
- **side**: the adapters read the frozen taps and do not feed back. The whole backbone can
  be cached once per image, which makes few-shot training nearly free (the book compares
  the two).
- **shift** (the paper's Shift Adapter, a parallel branch): the adapter of block ℓ reads the
  block's *input* (the output of block ℓ−1) and is mixed with the block's output,
  ``f_out = λ·f^ℓ + (1 − λ)·σ(W2 σ(W1 f^{ℓ−1}))``; without feed-through, so cacheable like *side*.

:class:`BranchAdapters` keeps the weights of every branch and block stacked in two tensors, so
that all of them are computed in two batched products and the optimiser updates two tensors
instead of two per (branch, block); :class:`Adapter` is the same function for one branch (the
reference the tests compare against).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _check_lam(lam: float) -> None:
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"adapter λ must lie in [0, 1], got {lam}")


class Adapter(nn.Module):
    """``f_out = λ·f + (1−λ)·σ(W2 σ(W1 f))`` for tokens ``f`` of width ``width``."""

    def __init__(self, width: int, hidden: int, lam: float = 0.8):
        super().__init__()
        _check_lam(lam)
        self.lam = lam
        self.fc1 = nn.Linear(width, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, width, bias=False)
        self.act = nn.LeakyReLU(inplace=False)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.lam * f + (1.0 - self.lam) * self.act(self.fc2(self.act(self.fc1(f))))


class _BatchedProduct(torch.autograd.Function):
    """``torch.bmm(x, w)`` whose backward hands bmm contiguous activations.

    The weight gradient is ``xᵀ·g``; with ``xᵀ`` (or ``g``) a strided view, CPU bmm takes a path
    about ten times slower than on a contiguous copy (17.5 vs 1.5 ms for (4, 768, 20)·(4, 20, 1152),
    one thread). ``x`` and ``g`` are activations (small); the weights are never copied.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        return torch.bmm(x, w)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        x, w = ctx.saved_tensors
        g = g.contiguous()  # may arrive as a permuted view from the reshapes that follow
        gx = torch.bmm(g, w.transpose(1, 2)) if ctx.needs_input_grad[0] else None
        gw = torch.bmm(x.transpose(1, 2).contiguous(), g) if ctx.needs_input_grad[1] else None
        return gx, gw


def _bmm(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return _BatchedProduct.apply(x, w)


def _linear_init(out_features: int, in_features: int) -> torch.Tensor:
    """The weight ``nn.Linear(in, out, bias=False)`` would draw (same random stream)."""
    w = torch.empty(out_features, in_features)
    nn.init.kaiming_uniform_(w, a=math.sqrt(5))
    return w


class BranchAdapters(nn.Module):
    """The adapters of every (adapted block, branch), all weights in two stacked tensors.

    ``down``: (n_blocks, width, n_branches, hidden), ``down[l, :, b]`` = W1ᵀ of branch b;
    ``up``: (n_blocks, n_branches, hidden, width), ``up[l, b]`` = W2ᵀ — stored in the layout the
    batched products read, so that their weight gradients come out in the parameters' own layout
    (no transposed copy of a weight-sized tensor per step). Initialised with the same random draws, in the same
    order, as one :class:`Adapter` per (branch, block) would be.
    """

    def __init__(self, n_branches: int, blocks: list[int], width: int, hidden: int, lam: float):
        super().__init__()
        _check_lam(lam)
        self.blocks = list(blocks)
        self.n_branches = n_branches
        self.lam = lam
        draws = [[(_linear_init(hidden, width), _linear_init(width, hidden)) for _ in self.blocks]
                 for _ in range(n_branches)]
        self.down = nn.Parameter(torch.stack([torch.stack([d[j][0].T for d in draws], 1) for j in range(len(self.blocks))]))
        self.up = nn.Parameter(torch.stack([torch.stack([d[j][1].T for d in draws]) for j in range(len(self.blocks))]))

    def all_branches(self, f: torch.Tensor, base: torch.Tensor | None = None) -> torch.Tensor:
        """Every branch's adapter of every block on that block's tokens.

        ``f``: (n_blocks, B, T, W), the tokens each block's adapters read; returns
        (B, n_branches, n_blocks, T, W), ``λ·base + (1−λ)·A(f)`` with ``base`` (same shape as ``f``)
        the tokens they are mixed with: ``f`` itself by default (side), the blocks' outputs when
        ``f`` holds their inputs (shift). Two batched products in all.
        """
        nl, width, nb, hid = self.down.shape
        _, b, t, _ = f.shape
        x = f.reshape(nl, b * t, width)
        h = F.leaky_relu(_bmm(x, self.down.view(nl, width, nb * hid)))  # (L, BT, nb·H)
        h = h.view(nl, b * t, nb, hid).transpose(1, 2).reshape(nl * nb, b * t, hid)
        ada = F.leaky_relu(_bmm(h, self.up.reshape(nl * nb, hid, width)))  # (L·nb, BT, W)
        ada = ada.view(nl, nb, b, t, width).permute(2, 1, 0, 3, 4)
        mix = f if base is None else base
        return self.lam * mix.permute(1, 0, 2, 3).unsqueeze(1) + (1.0 - self.lam) * ada

    def per_branch(self, block: int, f: torch.Tensor) -> torch.Tensor:
        """Each branch's adapter of ``block`` on that branch's own tokens (the residual variant).

        ``f``: (n_branches, N, W), row ``b`` the residual stream of branch ``b``; same shape out.
        """
        j = self.blocks.index(block)
        h = F.leaky_relu(_bmm(f, self.down[j].transpose(0, 1)))
        return self.lam * f + (1.0 - self.lam) * F.leaky_relu(_bmm(h, self.up[j]))

    def as_adapter(self, branch: int, block: int) -> Adapter:
        """A standalone :class:`Adapter` holding a copy of one branch's weights (for inspection)."""
        j = self.blocks.index(block)
        a = Adapter(self.down.shape[1], self.down.shape[3], self.lam)
        with torch.no_grad():
            a.fc1.weight.copy_(self.down[j, :, branch].T)
            a.fc2.weight.copy_(self.up[j, branch].T)
        return a
