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

Three placements of the adapters (:meth:`SDMADHead.forward`): *side* (the default) adapts the
frozen taps and does not feed back, so the whole backbone is cached once per image; *residual*
(MVFA's pattern) carries every branch's adapted stream through the following frozen blocks;
*shift* (the paper's Shift Adapter, a parallel branch) mixes each adapted block's output with the
adapter of its input, ``λ·f^ℓ + (1−λ)·A_b^ℓ(f^{ℓ−1})``, without feed-through (cacheable like side),
and adds the text-side Shift Adapter on the last text layer (``models/shift.py``): the head then
scores against adapted text (:meth:`SDMADHead.text_vectors`), one text adapter per model, shared by
its branches.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .adapters import BranchAdapters
from .backbone import Backbone
from .shift import PromptStates, TextShift, TextVectors, category_means

PLACEMENTS = ("side", "residual", "shift")
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
        return category_means(self.signs, self.active)


class SDMADHead(nn.Module):
    """Adapters for C category branches + 1 anchor branch, and the scoring of the docstring above.

    ``init="near-identity"`` (the default) scales the adapters' up-projections by 0.01 after their
    usual draw, so that at initialisation ``A(f) ≈ λ·f`` and, the final LayerNorm being blind to
    scale, the head scores the frozen features (the "SD-MAD at initialisation" reference);
    ``init="default"`` keeps ``nn.Linear``'s draw (MVFA's). ``n_models`` > 1 stacks that many
    independent heads (a tuning grid × cross-validation folds) in one set of batched adapters:
    :meth:`forward` then returns features whose branch axis holds every model's branches, and
    :meth:`per_model` splits them into a leading model axis that :meth:`logits` and
    :meth:`sign_similarities` accept. ``text_states`` (the shift placement): the end-of-text states of
    the prompts the head reads, on which a text-side Shift Adapter per model is trained (``models/shift.py``;
    near-identity as the image adapters).
    """

    def __init__(self, n_categories: int, blocks: list[int], width: int, hidden: int = 128, lam: float = 0.8,
                 temperature: float = 0.07, text_adapter: bool = False, embed_dim: int | None = None,
                 n_models: int = 1, init: str = "near-identity", text_states: PromptStates | None = None):
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
        self.shift_text = None
        if text_states is not None:
            if text_adapter:
                raise ValueError("model.text_adapter and the shift placement's text adapter exclude each other")
            self.shift_text = TextShift(text_states, hidden, lam, n_models)
            if init == "near-identity":
                with torch.no_grad():
                    self.shift_text.up.mul_(0.01)

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

    def text_vectors(self, text: TextBank) -> TextVectors:
        """The text the head scores with: ``text`` as it is (through the optional ``text_adapter``), or,
        with a text-side Shift Adapter, the adapted embeddings of the head's prompts, ``text`` giving the
        active signs; a stack's text then has a leading model axis (:class:`~sdmad_lite.models.shift.TextVectors`)."""
        if self.shift_text is None:
            return TextVectors(self.adapt_text(text.signs), self.adapt_text(text.category_means()),
                               self.adapt_text(text.normal[None])[0], self.adapt_text(text.abnormal[None])[0])
        if tuple(text.signs.shape[:2]) != self.shift_text.states.shape:
            raise ValueError(f"the head's text adapter reads prompts of a {self.shift_text.states.shape} sign layout; "
                             f"this text bank is {tuple(text.signs.shape[:2])}")
        signs, normal, abnormal = self.shift_text()
        if self.n_models == 1:
            signs, normal, abnormal = signs[0], normal[0], abnormal[0]
        return TextVectors(signs, category_means(signs, text.active), normal, abnormal)

    def branch_features(self, taps: dict[int, torch.Tensor], to_joint, tokens: str = "cls",
                        shift: bool = False) -> torch.Tensor:
        """u_b^ℓ for every branch and block: (B, n_branches, n_blocks, D), L2-normalised.

        ``taps``: {block: (B, 1+P, width)}; ``to_joint``: the backbone's ln_post+proj.
        ``tokens="patches"`` returns (B, n_branches, n_blocks, P, D) instead. All branches of a
        block are adapted in one batched product (:meth:`~sdmad_lite.models.adapters.BranchAdapters.all_branches`), and the
        adapted tokens of all blocks go through ``to_joint`` in one call: the same function as
        calling each branch's :class:`~sdmad_lite.models.adapters.Adapter` in turn, without the
        per-module overhead. ``shift``: the adapters read each block's input, ``taps[block − 1]``, and are
        mixed with its output (the shift placement).
        """
        sl = slice(0, 1) if tokens == "cls" else slice(1, None)
        f = torch.stack([taps[blk][:, sl] for blk in self.blocks])
        if shift:
            adapted = self.adapters.all_branches(torch.stack([taps[blk - 1][:, sl] for blk in self.blocks]), base=f)
        else:
            adapted = self.adapters.all_branches(f)
        z = F.normalize(to_joint(adapted), dim=-1)  # (B, nb, L, T, D)
        return z[:, :, :, 0] if tokens == "cls" else z

    def forward(self, taps: dict[int, torch.Tensor], backbone: Backbone, placement: str = "side",
                tokens: str = "cls") -> torch.Tensor:
        """Branch features ``u`` (B, branches, blocks, D) of images whose frozen taps are ``taps``.

        ``placement="side"``: :meth:`branch_features` on the taps. ``"residual"``: every branch
        carries its own stream through the frozen blocks after the first adapted one, resumed from
        the cached tap of that block (exact); the branches travel stacked in the batch dimension
        (one pass, not one per branch). ``"shift"``: :meth:`branch_features` with each block's adapters
        on its input ``taps[block − 1]`` (0: the embeddings after ``ln_pre``), mixed with its output.
        ``tokens="patches"`` returns (B, branches, blocks, P, D).
        """
        if placement in ("side", "shift"):
            return self.branch_features(taps, backbone.to_joint, tokens, shift=placement == "shift")
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

    def logits(self, u: torch.Tensor, text: TextBank | TextVectors) -> tuple[torch.Tensor, torch.Tensor]:
        """Category logits s_c (..., B, C) and anchor logit s_a (..., B) from branch features ``u``
        (..., B, C+1, L, D); a leading model axis (:meth:`per_model`) is kept. ``text``: a bank, or the
        :meth:`text_vectors` of one (computed once by a caller that reads the text several times)."""
        tv = text if isinstance(text, TextVectors) else self.text_vectors(text)
        t_c, t_n, t_a = tv.means, tv.normal, tv.abnormal  # (C, D), (D,), (D,)
        uc = u[..., : self.n_categories, :, :]  # (..., B, C, L, D)
        ua = u[..., self.anchor_branch, :, :]  # (..., B, L, D)
        if tv.per_model:  # a stack with a text per model: u (M, B, C+1, L, D), text (M, C, D), (M, D)
            t_n4 = t_n[:, None, None, None]
            cat = ((uc * t_c[:, None, :, None]).sum(-1) - (uc * t_n4).sum(-1)).mean(-1) / self.temperature
            anc = ((ua * t_a[:, None, None]).sum(-1) - (ua * t_n[:, None, None]).sum(-1)).mean(-1) / self.temperature
            return cat, anc
        cat = ((uc * t_c[None, :, None]).sum(-1) - (uc @ t_n)).mean(-1) / self.temperature
        anc = ((ua @ t_a) - (ua @ t_n)).mean(-1) / self.temperature
        return cat, anc

    def sign_similarities(self, u: torch.Tensor, text: TextBank | TextVectors) -> torch.Tensor:
        """cos(u_c, t_{c,j}) averaged over blocks: (..., B, C, K) (for selection and the losses)."""
        tv = text if isinstance(text, TextVectors) else self.text_vectors(text)
        uc = u[..., : self.n_categories, :, :].mean(-2)  # (..., B, C, D)
        if tv.per_model:
            return torch.einsum("mbcd,mckd->mbck", uc, tv.signs)
        return torch.einsum("...bcd,ckd->...bck", uc, tv.signs)

    def sign_maps(self, patch_u: torch.Tensor, text: TextBank) -> torch.Tensor:
        """Patch-level similarity to each category's active signs: (B, C, P), block-averaged (one head)."""
        tv = self.text_vectors(text)
        uc = patch_u[:, : self.n_categories].mean(2)  # (B, C, P, D)
        return (uc * tv.means[None, :, None]).sum(-1) - uc @ tv.normal
