"""The SD-MAD head: one feature per anomaly category, scored against that category's signs,
and an anchor feature that decides normal vs abnormal.

For an image, each adapted block ℓ gives tokens; branch ``b`` (a category, or the anchor)
adapts them with its own adapters and maps its class token into the joint image–text space
with the frozen ``ln_post`` and projection:

    u_b^ℓ = normalize(P · LN(A_b^ℓ(f^ℓ)[cls]))

The text side is fixed: ``t_{c,j}`` is the embedding of sign ``k`` of category ``c`` (the mean
of its template prompts), ``t̄_c`` the mean over the category's active signs (those kept by
sign selection), ``t_N`` / ``t_A`` the normal / abnormal anchor prompts. The score of category
``c`` is a two-way contrast between its signs and normality, averaged over blocks:

    ℓ_c = (1/τ) · mean_ℓ [cos(u_c^ℓ, t̄_c) − cos(u_c^ℓ, t_N)],         p_c = σ(ℓ_c)

and the anchor ``ℓ_a = (1/τ) · mean_ℓ [cos(u_a^ℓ, t_A) − cos(u_a^ℓ, t_N)]``. Patch tokens mapped
the same way give sign-similarity maps for localization.

Two placements of the adapters (:meth:`SDMADHead.forward`): *side* (the default) adapts the
frozen taps and does not feed back, so the whole backbone is cached once per image; *residual*
(the paper's MVFA pattern) carries every branch's adapted stream through the following frozen
blocks.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .adapters import BranchAdapters
from .backbone import Backbone

PLACEMENTS = ("side", "residual")
INITS = ("near-identity", "default")


@dataclass
class TextBank:
    """Fixed text embeddings the head scores against (all L2-normalised, joint space).

    ``signs``: (C, K, D) sign embeddings padded to K; ``sign_mask``: (C, K) which are real;
    ``active``: (C, K) which are used now (selection); ``normal``/``abnormal``: (D,).
    """

    signs: torch.Tensor
    sign_mask: torch.Tensor
    normal: torch.Tensor
    abnormal: torch.Tensor
    active: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.active is None:
            self.active = self.sign_mask.clone()
        if torch.isnan(self.signs).any() or torch.isinf(self.signs).any():
            raise ValueError("text embeddings contain NaN or inf: re-encode the sign bank (clear the embedding cache)")

    def with_active(self, active: torch.Tensor) -> "TextBank":
        active = active.bool() & self.sign_mask.bool()
        empty = (~active.any(1)).nonzero().flatten().tolist()
        if empty:
            raise ValueError(f"sign selection left categories {empty} with no sign; keep at least one per category")
        return TextBank(self.signs, self.sign_mask, self.normal, self.abnormal, active)

    def category_means(self) -> torch.Tensor:
        """t̄_c: the normalised mean of each category's active signs, (C, D)."""
        w = self.active.float().unsqueeze(-1)
        return F.normalize((self.signs * w).sum(1) / w.sum(1).clamp(min=1), dim=-1)


class SDMADHead(nn.Module):
    """Adapters for C category branches + 1 anchor branch, and the scoring of the docstring above.

    ``init="near-identity"`` (the default) scales the adapters' up-projections by 0.01 after their
    usual draw, so that at initialisation ``A(f) ≈ λ·f`` and, the final LayerNorm being blind to
    scale, the head scores the frozen features (the "SD-MAD at initialisation" reference);
    ``init="default"`` keeps ``nn.Linear``'s draw (MVFA's). ``n_models`` > 1 stacks that many
    independent heads (a tuning grid × cross-validation folds) in one set of batched adapters:
    :meth:`forward` then returns features whose branch axis holds every model's branches, and
    :meth:`per_model` splits them into a leading model axis that :meth:`logits` and
    :meth:`sign_similarities` accept.
    """

    def __init__(self, n_categories: int, blocks: list[int], width: int, hidden: int = 128, lam: float = 0.8,
                 temperature: float = 0.07, text_adapter: bool = False, embed_dim: int | None = None,
                 n_models: int = 1, init: str = "near-identity"):
        super().__init__()
        if init not in INITS:
            raise ValueError(f"model.adapter_init must be one of {', '.join(INITS)}, got {init!r}")
        self.n_categories = n_categories
        self.n_models = n_models
        self.blocks = list(blocks)
        self.adapters = BranchAdapters(n_models * (n_categories + 1), self.blocks, width, hidden, lam)
        if init == "near-identity":
            with torch.no_grad():
                self.adapters.up.mul_(0.01)
        self.temperature = temperature
        self.text_adapter = None
        if text_adapter:
            if embed_dim is None:
                raise ValueError("text_adapter=True needs embed_dim")
            self.text_adapter = nn.Linear(embed_dim, embed_dim, bias=False)
            nn.init.zeros_(self.text_adapter.weight)

    @property
    def anchor_branch(self) -> int:
        return self.n_categories

    def per_model(self, u: torch.Tensor) -> torch.Tensor:
        """(B, M·(C+1), ...) features of a stack of M heads -> (M, B, C+1, ...); unchanged when M = 1."""
        if self.n_models == 1:
            return u
        b, nb = u.shape[:2]
        return u.reshape(b, self.n_models, nb // self.n_models, *u.shape[2:]).transpose(0, 1)

    def adapt_text(self, t: torch.Tensor) -> torch.Tensor:
        """The optional text-side shift adapter: t + W t (W starts at zero), renormalised."""
        if self.text_adapter is None:
            return t
        return F.normalize(t + self.text_adapter(t), dim=-1)

    def branch_features(self, taps: dict[int, torch.Tensor], to_joint, tokens: str = "cls") -> torch.Tensor:
        """u_b^ℓ for every branch and block: (B, n_branches, n_blocks, D), L2-normalised.

        ``taps``: {block: (B, 1+P, width)}; ``to_joint``: the backbone's ln_post+proj.
        ``tokens="patches"`` returns (B, n_branches, n_blocks, P, D) instead. All branches of a
        block are adapted in one batched product (:meth:`~sdmad_lite.models.adapters.BranchAdapters.all_branches`), and the
        adapted tokens of all blocks go through ``to_joint`` in one call: the same function as
        calling each branch's :class:`~sdmad_lite.models.adapters.Adapter` in turn, without the
        per-module overhead.
        """
        sl = slice(0, 1) if tokens == "cls" else slice(1, None)
        adapted = self.adapters.all_branches(torch.stack([taps[blk][:, sl] for blk in self.blocks]))
        z = F.normalize(to_joint(adapted), dim=-1)  # (B, nb, L, T, D)
        return z[:, :, :, 0] if tokens == "cls" else z

    def forward(self, taps: dict[int, torch.Tensor], backbone: Backbone, placement: str = "side",
                tokens: str = "cls") -> torch.Tensor:
        """Branch features ``u`` (B, branches, blocks, D) of images whose frozen taps are ``taps``.

        ``placement="side"``: :meth:`branch_features` on the taps. ``"residual"``: every branch
        carries its own stream through the frozen blocks after the first adapted one, resumed from
        the cached tap of that block (exact); the branches travel stacked in the batch dimension
        (one pass, not one per branch). ``tokens="patches"`` returns (B, branches, blocks, P, D).
        """
        if placement == "side":
            return self.branch_features(taps, backbone.to_joint, tokens)
        if placement != "residual":
            raise ValueError(f"model.adapter_mode must be one of {', '.join(PLACEMENTS)}, got {placement!r}")
        ads, first = self.adapters, self.blocks[0]
        f0 = taps[first]  # (B, T, W), exact from the cache
        nb, (b, t, w) = ads.n_branches, f0.shape

        def adapt(block: int, x: torch.Tensor) -> torch.Tensor:  # x: (nb·B, T, W), branch-major
            y = ads.per_branch(block, x.reshape(nb, b * t, w).to(ads.down.device))  # where the head is
            return y.reshape(nb * b, t, w).to(x.device)  # back to where the backbone is

        stream = adapt(first, f0.repeat(nb, 1, 1))
        hook = lambda i, x: adapt(i, x) if i in ads.blocks else x  # noqa: E731
        _, out = backbone.forward_image(None, taps=self.blocks[1:], hook=hook, start_block=first, stream=stream)
        out[first] = stream
        sl = slice(0, 1) if tokens == "cls" else slice(1, None)
        z = F.normalize(backbone.to_joint(torch.stack([out[blk][:, sl].to(f0.device) for blk in self.blocks], 1)), dim=-1)
        z = z.reshape(nb, b, *z.shape[1:]).transpose(0, 1)  # (B, nb, L, T', D)
        return z[:, :, :, 0] if tokens == "cls" else z

    def logits(self, u: torch.Tensor, text: TextBank) -> tuple[torch.Tensor, torch.Tensor]:
        """Category logits s_c (..., B, C) and anchor logit s_a (..., B) from branch features ``u``
        (..., B, C+1, L, D); a leading model axis (:meth:`per_model`) is kept."""
        t_c = self.adapt_text(text.category_means())  # (C, D)
        t_n = self.adapt_text(text.normal[None])[0]
        t_a = self.adapt_text(text.abnormal[None])[0]
        uc = u[..., : self.n_categories, :, :]  # (..., B, C, L, D)
        ua = u[..., self.anchor_branch, :, :]  # (..., B, L, D)
        cat = ((uc * t_c[None, :, None]).sum(-1) - (uc @ t_n)).mean(-1) / self.temperature
        anc = ((ua @ t_a) - (ua @ t_n)).mean(-1) / self.temperature
        return cat, anc

    def sign_similarities(self, u: torch.Tensor, text: TextBank) -> torch.Tensor:
        """cos(u_c, t_{c,j}) averaged over blocks: (..., B, C, K) (for selection and the losses)."""
        uc = u[..., : self.n_categories, :, :].mean(-2)  # (..., B, C, D)
        return torch.einsum("...bcd,ckd->...bck", uc, self.adapt_text(text.signs))

    def sign_maps(self, patch_u: torch.Tensor, text: TextBank) -> torch.Tensor:
        """Patch-level similarity to each category's active signs: (B, C, P), block-averaged."""
        t_c = self.adapt_text(text.category_means())
        uc = patch_u[:, : self.n_categories].mean(2)  # (B, C, P, D)
        t_n = self.adapt_text(text.normal[None])[0]
        return (uc * t_c[None, :, None]).sum(-1) - uc @ t_n
