"""The Shift Adapter on the text side: the paper's parallel adapter on the last layer of CLIP's text
encoder, exact and cheap from cached end-of-text states.

The paper adds its Shift Adapter to layers of both encoders: a parallel branch reads a layer's input
and is mixed with its output, ``f_out = λ·f_out_orig + (1 − λ)·σ(W2 σ(W1 f_in))``. On the last text
layer L the text embedding reads one token only, the end-of-text token (EOT) after that layer, so

    h'[eot] = λ·layer_L(h)[eot] + (1 − λ)·A_text(h[eot]),        t = normalize(P · LN_final(h'[eot]))

is the whole effect of the adapter, and both ``h[eot]`` (the layer's input) and ``layer_L(h)[eot]``
(its frozen output) are fixed per prompt: :meth:`~sdmad_lite.models.text.TextTower.eot_states`
computes them once, and training runs only the adapter, ``LN_final`` and the projection on them.
A sign's embedding is the normalised mean of its template prompts' embeddings (as the frozen
``TextBank``), the anchors' the same over their prompts.

:class:`PromptStates` holds the states of every prompt a head reads and the slot each pools into;
:class:`TextShift` holds one text adapter per model of a stack (shared by a model's branches) and
returns the adapted sign and anchor embeddings; :class:`TextVectors` is the text a head scores with.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .adapters import _check_lam, _linear_init


def category_means(signs: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """t̄_c: the normalised mean of each category's active signs, (..., C, D) from signs (..., C, K, D)
    and ``active`` (..., C, K) (leading axes broadcast: one text per model of a stack)."""
    w = active.float().unsqueeze(-1)
    return F.normalize((signs * w).sum(-2) / w.sum(-2).clamp(min=1), dim=-1)


@dataclass
class TextVectors:
    """The text a head scores with, L2-normalised: ``signs`` (C, K, D), ``means`` t̄_c (C, D), ``normal`` and
    ``abnormal`` (D,) — each with a leading model axis (M, …) when a stack of heads has a text adapter per model."""

    signs: torch.Tensor
    means: torch.Tensor
    normal: torch.Tensor
    abnormal: torch.Tensor

    @property
    def per_model(self) -> bool:
        return self.means.ndim == 3

    def detach(self) -> "TextVectors":
        return TextVectors(self.signs.detach(), self.means.detach(), self.normal.detach(), self.abnormal.detach())


@dataclass
class PromptStates:
    """The frozen end-of-text states of the prompts of a (C, K) sign layout and the two anchors.

    ``h_in``, ``h_out``: (P, width), one row per (slot, prompt) pair; ``slot``: (P,) the slot each row
    pools into, ``c·K + k`` for sign k of category c, ``C·K`` the normal and ``C·K + 1`` the abnormal
    anchor; ``project``: ``ln_final`` and the text projection (``TextTower.text_from_eot``).
    """

    h_in: torch.Tensor
    h_out: torch.Tensor
    slot: torch.Tensor
    shape: tuple[int, int]
    project: Callable[[torch.Tensor], torch.Tensor]

    @classmethod
    def of(cls, backbone, groups: Sequence[Sequence[str]], shape: tuple[int, int]) -> "PromptStates":
        """The states of ``groups``: the prompts of each slot, C·K sign slots (an empty group: padding)
        then the normal and the abnormal anchor's prompts; ``backbone``: a ``TextTower``."""
        c, k = shape
        if len(groups) != c * k + 2:
            raise ValueError(f"expected {c * k + 2} prompt groups for a ({c}, {k}) layout and two anchors, got {len(groups)}")
        texts = [t for g in groups for t in g]
        slot = torch.tensor([i for i, g in enumerate(groups) for _ in g], dtype=torch.long)
        h_in, h_out = backbone.eot_states(texts)
        return cls(h_in, h_out, slot, (c, k), backbone.text_from_eot)

    @property
    def n_slots(self) -> int:
        return self.shape[0] * self.shape[1] + 2

    def pool(self, emb: torch.Tensor) -> torch.Tensor:
        """Per-prompt embeddings (M, P, D) -> the normalised mean of each slot's (M, slots, D); padding slots 0."""
        m, _, d = emb.shape
        total = emb.new_zeros(m, self.n_slots, d).index_add(1, self.slot, F.normalize(emb, dim=-1))
        count = torch.bincount(self.slot, minlength=self.n_slots).clamp(min=1).to(emb.dtype)
        return F.normalize(total / count[:, None], dim=-1)


class TextShift(nn.Module):
    """One text-side Shift Adapter per model (``n_models`` > 1: a stack), on the states of ``states``.

    ``down``: (M, width, hidden) = W1ᵀ, ``up``: (M, hidden, width) = W2ᵀ, each model's drawn as
    ``nn.Linear`` would (model after model); σ is LeakyReLU as on the image side. Calling it returns the
    adapted sign embeddings (M, C, K, D) and anchors (M, D), (M, D).
    """

    def __init__(self, states: PromptStates, hidden: int, lam: float, n_models: int = 1):
        super().__init__()
        _check_lam(lam)
        self.states, self.lam = states, lam
        width = states.h_in.shape[1]
        draws = [(_linear_init(hidden, width), _linear_init(width, hidden)) for _ in range(n_models)]
        self.down = nn.Parameter(torch.stack([d.T for d, _ in draws]))
        self.up = nn.Parameter(torch.stack([u.T for _, u in draws]))

    def eot(self) -> torch.Tensor:
        """The adapted end-of-text states (M, P, width): ``λ·h_out + (1 − λ)·A(h_in)``."""
        s = self.states
        h = F.leaky_relu(torch.matmul(s.h_in, self.down))  # (M, P, H)
        return self.lam * s.h_out + (1.0 - self.lam) * F.leaky_relu(torch.bmm(h, self.up))

    def forward(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c, k = self.states.shape
        slots = self.states.pool(self.states.project(self.eot()))  # (M, C·K + 2, D)
        return slots[:, : c * k].reshape(len(slots), c, k, -1), slots[:, c * k], slots[:, c * k + 1]
