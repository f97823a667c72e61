"""The text tower of a frozen CLIP: prompts to embeddings, with learnable contexts (CoOp, AnomalyCLIP)
and through the on-disk cache of text embeddings. A part of :class:`~sdmad_lite.models.backbone.Backbone`."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ..features import TextEmbeddings
from .checkpoints import BackboneError

#: The end-of-text states of every text encoded in this process, (h_in, h_out) by text, one map per backbone
#: key (:meth:`TextTower.eot_states`)
_EOT: dict[str, dict[str, tuple[torch.Tensor, torch.Tensor]]] = {}


class TextTower:
    """The text side of :class:`~sdmad_lite.models.backbone.Backbone` (it needs ``model``, ``tokenizer``,
    ``device``, ``embed_dim`` and ``key``)."""

    def text_forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``model.encode_text`` (unnormalised), computed only up to the longest text of the batch.

        CLIP's text transformer is causal and pools at the end-of-text token, so the padding
        after the longest text cannot change the result: trimming it is exact and 2–4× faster
        for short prompts. Models without that structure use their own ``encode_text``.
        """
        m = self.model
        if getattr(m, "text_pool_type", None) != "argmax" or not hasattr(m, "token_embedding"):
            return m.encode_text(tokens)
        length = int((tokens != 0).sum(1).max())
        t = tokens[:, :length]
        x = m.token_embedding(t) + m.positional_embedding[:length]
        x = m.transformer(x, attn_mask=m.attn_mask[:length, :length])
        x = m.ln_final(x)
        x = x[torch.arange(x.shape[0]), t.argmax(dim=-1)]
        return x @ m.text_projection if not isinstance(m.text_projection, torch.nn.Linear) else m.text_projection(x)

    def text_forward_with_context(self, tokens: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        """Like :meth:`text_forward`, with the token embeddings at positions 1..M replaced by the
        learnable context vectors ``ctx`` (M, width) — CoOp's prompt learning. The result is on
        the device of ``ctx``."""
        m = self.model
        out_device, ctx, tokens = ctx.device, ctx.to(self.device), tokens.to(self.device)
        length = int((tokens != 0).sum(1).max())
        t = tokens[:, :length]
        x = m.token_embedding(t)
        x = torch.cat([x[:, :1], ctx.unsqueeze(0).expand(len(t), -1, -1), x[:, 1 + len(ctx):]], dim=1)
        x = x + m.positional_embedding[:length]
        x = m.transformer(x, attn_mask=m.attn_mask[:length, :length])
        x = m.ln_final(x)
        x = x[torch.arange(x.shape[0]), t.argmax(dim=-1)]
        x = x @ m.text_projection if not isinstance(m.text_projection, torch.nn.Linear) else m.text_projection(x)
        return x.to(out_device)

    def text_forward_with_contexts(self, tokens: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        """:meth:`text_forward_with_context` for M contexts at once: ``ctx`` (M, n_ctx, width) ->
        (M, T, D), every model's prompts encoded in one batch (CoOp's grid × folds)."""
        m = self.model
        out_device, ctx, tokens = ctx.device, ctx.to(self.device), tokens.to(self.device)
        n_models, n_ctx = ctx.shape[:2]
        length = int((tokens != 0).sum(1).max())
        t = tokens[:, :length]
        x = m.token_embedding(t)  # (T, L, W)
        x = x.unsqueeze(0).expand(n_models, -1, -1, -1)
        c = ctx.unsqueeze(1).expand(-1, len(t), -1, -1)
        x = torch.cat([x[:, :, :1], c, x[:, :, 1 + n_ctx:]], dim=2).reshape(n_models * len(t), length, -1)
        x = x + m.positional_embedding[:length]
        x = m.transformer(x, attn_mask=m.attn_mask[:length, :length])
        x = m.ln_final(x)
        eot = t.argmax(dim=-1).repeat(n_models)
        x = x[torch.arange(x.shape[0]), eot]
        x = x @ m.text_projection if not isinstance(m.text_projection, torch.nn.Linear) else m.text_projection(x)
        return x.reshape(n_models, len(t), -1).to(out_device)

    def text_forward_deep(self, tokens: torch.Tensor, ctx: torch.Tensor, deep: torch.Tensor) -> torch.Tensor:
        """Learnable prompts of AnomalyCLIP's kind: ``ctx`` (M, T, n_ctx, width) replaces the token
        embeddings at positions 1..n_ctx of each of the T prompts of each of M models, and ``deep``
        (M, depth, t, width) replaces the hidden states at positions 1..t after text blocks 1..depth
        (shared by a model's prompts). Returns (M, T, D) on the device of ``ctx``."""
        m = self.model
        out_device, ctx, deep, tokens = ctx.device, ctx.to(self.device), deep.to(self.device), tokens.to(self.device)
        n_models, n_prompts, n_ctx = ctx.shape[:3]
        length = int((tokens != 0).sum(1).max())
        t = tokens[:, :length]
        x = m.token_embedding(t).unsqueeze(0).expand(n_models, -1, -1, -1)
        x = torch.cat([x[:, :, :1], ctx, x[:, :, 1 + n_ctx:]], dim=2)
        x = (x + m.positional_embedding[:length]).reshape(n_models * n_prompts, length, -1)
        mask = m.attn_mask[:length, :length]
        depth, tn = deep.shape[1:3]
        for i, block in enumerate(m.transformer.resblocks):
            if 1 <= i <= depth:
                d = deep[:, i - 1].unsqueeze(1).expand(-1, n_prompts, -1, -1).reshape(n_models * n_prompts, tn, -1)
                x = torch.cat([x[:, :1], d, x[:, 1 + tn:]], dim=1)
            x = block(x, attn_mask=mask)
        x = m.ln_final(x)
        eot = t.argmax(dim=-1).repeat(n_models)
        x = x[torch.arange(x.shape[0]), eot]
        x = x @ m.text_projection if not isinstance(m.text_projection, torch.nn.Linear) else m.text_projection(x)
        return x.reshape(n_models, n_prompts, -1).to(out_device)

    @torch.no_grad()
    def eot_states(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(h_in, h_out)``, each (N, width) float32 on the CPU: the end-of-text token's hidden state
        entering and leaving the *last* layer of the text transformer, for each of ``texts``.

        What the text-side Shift Adapter needs (``models/shift.py``): the embedding reads only that
        token after the last layer (``ln_final``, projection: :meth:`text_from_eot`), and the layer is
        causal, so a parallel adapter on the last layer changes the embedding only through it — the
        adapted embedding of a prompt is exact from these two vectors. Encoded one text per call, as
        the text embeddings (a text's states never depend on what else was asked), and kept for the
        process (per backbone key).
        """
        m = self.model
        if getattr(m, "text_pool_type", None) != "argmax" or not hasattr(m, "token_embedding"):
            raise BackboneError(f"{self.key}: the text-side shift adapter needs a CLIP text tower that pools its "
                                "end-of-text token")
        memo = _EOT.setdefault(self.key, {})
        tr = m.transformer
        for text in dict.fromkeys(t for t in texts if t not in memo):
            tok = self.tokenizer([text]).to(self.device)
            length = int((tok != 0).sum(1).max())
            t = tok[:, :length]
            x = m.token_embedding(t) + m.positional_embedding[:length]
            mask = m.attn_mask[:length, :length]
            x = x if tr.batch_first else x.transpose(0, 1)
            for block in tr.resblocks[:-1]:
                x = block(x, attn_mask=mask)
            h_in = x
            x = tr.resblocks[-1](x, attn_mask=mask)
            if not tr.batch_first:
                h_in, x = h_in.transpose(0, 1), x.transpose(0, 1)
            eot = int(t[0].argmax())
            memo[text] = (h_in[0, eot].float().cpu(), x[0, eot].float().cpu())
        if not texts:
            return torch.empty(0, tr.width), torch.empty(0, tr.width)
        return torch.stack([memo[t][0] for t in texts]), torch.stack([memo[t][1] for t in texts])

    def text_from_eot(self, h: torch.Tensor) -> torch.Tensor:
        """The text embedding (…, embed_dim), unnormalised, of end-of-text hidden states ``h`` (…, width)
        leaving the last text layer: ``ln_final`` and the text projection. Differentiable; computed where
        the backbone is, the result back on the device of ``h`` (as ``Backbone.to_joint`` for images)."""
        m = self.model
        x = m.ln_final(h.to(self.device))
        x = x @ m.text_projection if not isinstance(m.text_projection, torch.nn.Linear) else m.text_projection(x)
        return x.to(h.device)

    @property
    def text_embeddings(self) -> TextEmbeddings:
        """This backbone's text embeddings, cached on disk by (weights, text)."""
        return TextEmbeddings.of(self.encode_text, self.key)

    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """L2-normalised embeddings ``(N, D)`` of ``texts`` through the cache."""
        return self.text_embeddings(texts)

    def mean_text(self, texts: Sequence[str]) -> torch.Tensor:
        """The normalised mean embedding ``(D,)`` of a prompt ensemble, through the cache."""
        return self.text_embeddings.mean(texts)

    @torch.inference_mode()
    def encode_text(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        """L2-normalised text embeddings (N, embed_dim), encoded in batches."""
        outs = []
        for i in range(0, len(texts), batch_size):
            tok = self.tokenizer(list(texts[i : i + batch_size])).to(self.device)
            outs.append(F.normalize(self.text_forward(tok).float(), dim=-1).cpu())
        return torch.cat(outs) if outs else torch.empty(0, self.embed_dim)
