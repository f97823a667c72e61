"""The frozen CLIP backbone — the only module of the library that calls open_clip.

``load(name, pretrained=...)`` returns a :class:`Backbone`: the model, its preprocessing, its
tokenizer, and *taps* on the intermediate transformer blocks of the image encoder that the
adapters read or modify (``models/adapters.py``). Names:

- ``phantomclip-tiny`` — the offline model shipped in this package (pretrained on phantoms by
  ``sdmad pretrain-phantomclip``; config in ``phantomclip-tiny.json``);
- ``ViT-B-16`` / ``ViT-B-32`` / ``ViT-L-14-336`` with ``openai`` weights (colab, paper);
- ``hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224`` (colab; zero-shot only:
  its timm image tower has no taps here).

Asking for pretrained weights that are neither cached nor downloadable fails with a clear
message; it never falls back to random weights. ``pretrained=None`` builds random weights on
purpose (shape tests, timing benchmarks).
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import open_clip
import torch
import torch.nn.functional as F

from ..features import TextEmbeddings
from ..io import sha256_file
from .checkpoints import (MODELS_DIR, PHANTOMCLIP, PHANTOMCLIP_CARD, PHANTOMCLIP_CHECKPOINT,  # noqa: F401 (API)
                          PHANTOMCLIP_CONFIG_FILE, BackboneError, load_state, quiet_random_init)

CONTEXT_LENGTH = 77
KNOWN = (PHANTOMCLIP, "ViT-B-16", "ViT-B-32", "ViT-L-14", "ViT-L-14-336")




@functools.lru_cache(maxsize=None)
def _register_custom_configs() -> None:
    open_clip.add_model_config(PHANTOMCLIP_CONFIG_FILE)


@functools.lru_cache(maxsize=None)
def get_tokenizer(name: str = PHANTOMCLIP) -> Callable[[Sequence[str]], torch.Tensor]:
    """The tokenizer of backbone ``name``: ``tokenizer(texts) -> LongTensor (N, 77)``."""
    if not name.startswith("hf-hub:"):
        # PhantomCLIP-tiny and the OpenAI CLIP architectures share CLIP's BPE tokenizer,
        # which ships inside the open_clip package (no download).
        return open_clip.get_tokenizer("ViT-B-32")
    return open_clip.get_tokenizer(name)


def count_tokens(texts: Sequence[str], name: str = PHANTOMCLIP) -> list[int]:
    """Number of tokens of each text, start and end tokens included (must be <= 77)."""
    tok = get_tokenizer(name)
    enc = getattr(tok, "encode", None)
    if enc is None:  # HF tokenizers: count non-padding ids
        ids = tok(list(texts))
        return [int((row != 0).sum()) for row in ids]
    return [len(enc(t)) + 2 for t in texts]


@dataclass
class Backbone:
    """A frozen CLIP model with taps on its image blocks.

    ``image_size``: input side; ``width``: token width of the image transformer; ``embed_dim``:
    joint image–text space; ``n_blocks``: depth of the image transformer; ``grid``: patches per side.
    """

    name: str
    pretrained: str | None
    model: torch.nn.Module
    tokenizer: Callable[[Sequence[str]], torch.Tensor]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __post_init__(self) -> None:
        self.model.eval().requires_grad_(False)
        v = self.model.visual
        size = v.image_size if hasattr(v, "image_size") else 224
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.has_taps = hasattr(v, "transformer") and hasattr(v, "_embeds")
        self.width = int(v.transformer.width) if self.has_taps else 0
        self.n_blocks = len(v.transformer.resblocks) if self.has_taps else 0
        self.embed_dim = int(self.model.text_projection.shape[1]) if hasattr(self.model, "text_projection") and self.model.text_projection is not None else int(v.output_dim)
        self.grid = self.image_size // int(v.patch_size[0]) if self.has_taps else 0
        self.key = _weights_key(self.name, self.pretrained)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ----------------------------------------------------------------- images
    def prepare(self, images: np.ndarray | torch.Tensor | Sequence[np.ndarray]) -> torch.Tensor:
        """uint8 grayscale images (B, H, W) or a list of (H, W) -> normalised (B, 3, S, S).

        As CLIP's own preprocessing: resize the shorter side to S (bicubic, antialiased),
        centre-crop to S×S, replicate the grey channel, normalise with the model's mean/std.
        """
        if isinstance(images, (list, tuple)):
            batch = [self.prepare(im[None] if np.ndim(im) == 2 else im) for im in images]
            return torch.cat(batch) if batch else torch.empty(0, 3, self.image_size, self.image_size)
        x = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images)
        if x.ndim == 2:
            x = x[None]
        if x.ndim != 3:
            raise ValueError(f"expected grayscale images (B, H, W), got shape {tuple(x.shape)}")
        x = x.to(torch.float32)[:, None] / 255.0
        h, w = x.shape[-2:]
        s = self.image_size
        if (h, w) != (s, s):
            scale = s / min(h, w)
            nh, nw = max(s, round(h * scale)), max(s, round(w * scale))
            x = F.interpolate(x, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False)
            top, left = (nh - s) // 2, (nw - s) // 2
            x = x[..., top : top + s, left : left + s]
        x = x.clamp(0, 1).expand(-1, 3, -1, -1)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return ((x - mean) / std).to(self.device)

    def forward_image(
        self,
        pixels: torch.Tensor,
        taps: Sequence[int] = (),
        hook: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
        start_block: int = 0,
        stream: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Run the image transformer and return ``(pooled embedding, {block: tokens})``.

        ``taps`` are 1-based block indices whose output tokens (B, 1+P, width) are returned.
        ``hook(block, tokens)`` may replace the residual stream after a block (the residual
        adapters of the paper). ``start_block``/``stream`` resume from a cached stream taken
        after block ``start_block`` (the exact feature cache of the residual variant).
        """
        if not self.has_taps:
            raise BackboneError(f"{self.name}: the image tower has no transformer taps (only zero-shot is supported)")
        v = self.model.visual
        x = v._embeds(pixels) if stream is None else stream.to(self.device)
        tr = v.transformer
        x = x if tr.batch_first else x.transpose(0, 1)
        out: dict[int, torch.Tensor] = {}
        for i, block in enumerate(tr.resblocks, start=1):
            if i <= start_block:
                continue
            x = block(x)
            if hook is not None or i in taps:
                nld = x if tr.batch_first else x.transpose(0, 1)
                if hook is not None:
                    nld = hook(i, nld)
                    x = nld if tr.batch_first else nld.transpose(0, 1)
                if i in taps:
                    out[i] = nld
        x = x if tr.batch_first else x.transpose(0, 1)
        pooled, _ = v._pool(x)
        if v.proj is not None:
            pooled = pooled @ v.proj
        return pooled, out

    def to_joint(self, tokens: torch.Tensor) -> torch.Tensor:
        """Map tokens of any block (…, width) into the joint space (…, embed_dim): ln_post, proj.

        Computed where the backbone is; the result goes back to the device of ``tokens`` (the
        head trains on the CPU while a GPU runs the backbone)."""
        v = self.model.visual
        x = v.ln_post(tokens.to(self.device))
        return (x @ v.proj if v.proj is not None else x).to(tokens.device)

    @torch.inference_mode()
    def encode_images(self, images, batch_size: int = 64) -> torch.Tensor:
        """L2-normalised image embeddings (N, embed_dim) of uint8 grayscale images."""
        outs = []
        for i in range(0, len(images), batch_size):
            pix = self.prepare(images[i : i + batch_size])
            outs.append(F.normalize(self.model.encode_image(pix).float(), dim=-1).cpu())
        return torch.cat(outs) if outs else torch.empty(0, self.embed_dim)

    # ----------------------------------------------------------------- text
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


def _weights_key(name: str, pretrained: str | None) -> str:
    """What identifies these weights in the caches: the checkpoint's sha256 for a file, the
    name for hub weights; random weights get a key of their own that is never reused."""
    if pretrained is None:
        import uuid

        return f"{name}|random-{uuid.uuid4().hex}"
    p = Path(str(pretrained))
    if p.is_file():
        if p == PHANTOMCLIP_CHECKPOINT and PHANTOMCLIP_CARD.is_file():
            return f"{name}|sha256:{json.loads(PHANTOMCLIP_CARD.read_text())['sha256']}"
        return f"{name}|sha256:{sha256_file(p)}"
    return f"{name}|{pretrained}"


def weights_cached(name: str, pretrained: str | None) -> bool:
    """True when the hub weights ``pretrained`` of ``name`` are in the local Hugging Face cache."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # the colab extra is not installed: nothing can be cached
        return False
    try:
        pc = open_clip.pretrained.get_pretrained_cfg(name, pretrained or "")
    except Exception:  # noqa: BLE001 — an unknown tag has no cached copy
        return False
    hub = pc.get("hf_hub", "")
    if not hub:
        return False
    repo = "/".join(hub.strip("/").split("/")[:2])  # "timm/vit_base_patch16_clip_224.openai/" -> repo id
    return any(isinstance(try_to_load_from_cache(repo, f), str)
               for f in ("open_clip_pytorch_model.bin", "open_clip_model.safetensors"))


def _card_of(path: Path) -> Path | None:
    """The model card a checkpoint must match: the shipped one's, else none."""
    return PHANTOMCLIP_CARD if path == PHANTOMCLIP_CHECKPOINT else None


def default_taps(n_blocks: int) -> list[int]:
    """MVFA's adapted blocks 6/12/18/24 of a 24-block ViT-L, scaled to ``n_blocks``."""
    return sorted({max(1, int(b * n_blocks / 24 + 0.5)) for b in (6, 12, 18, 24)})


def load(name: str = PHANTOMCLIP, pretrained: str | None = "default", device: str = "cpu") -> Backbone:
    """Build backbone ``name`` with ``pretrained`` weights.

    ``pretrained="default"``: the shipped checkpoint for ``phantomclip-tiny``, ``openai`` for the
    OpenAI architectures, the hub weights for ``hf-hub:`` names. ``None``: random weights, on
    purpose. A path: an open_clip state dict. Unavailable weights raise :class:`BackboneError`.
    """
    if name not in KNOWN and not name.startswith("hf-hub:"):
        raise BackboneError(f"unknown backbone {name!r}; choose one of {', '.join(KNOWN)} or an 'hf-hub:' name")
    _register_custom_configs()
    if name == PHANTOMCLIP:
        if pretrained in ("default", "shipped"):
            pretrained = str(PHANTOMCLIP_CHECKPOINT)
        if pretrained is not None and not Path(str(pretrained)).is_file():
            hint = (" Build it with `sdmad pretrain-phantomclip`." if Path(str(pretrained)) == PHANTOMCLIP_CHECKPOINT
                    else " For phantomclip-tiny, pretrained is 'default' (the shipped checkpoint), the path of a "
                         "checkpoint file, or None (random weights, on purpose).")
            raise BackboneError(f"checkpoint not found: {pretrained}.{hint}")
        with quiet_random_init(pretrained is not None):
            model = open_clip.create_model(PHANTOMCLIP, pretrained=None, device=device)
        if pretrained is not None:
            load_state(model, Path(pretrained), name, _card_of(Path(pretrained)))
        mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    else:
        if pretrained == "default":
            pretrained = None if name.startswith("hf-hub:") else "openai"
        if pretrained is not None and Path(str(pretrained)).suffix in (".pt", ".bin", ".safetensors"):
            with quiet_random_init(True):
                model = open_clip.create_model(name, pretrained=None, device=device)
            load_state(model, Path(pretrained), name, _card_of(Path(pretrained)))
        else:
            try:
                model = open_clip.create_model(name, pretrained=pretrained, device=device)
            except Exception as e:  # noqa: BLE001 — turned into one clear message
                raise BackboneError(
                    f"could not get the {pretrained or 'hub'} weights of {name}: {type(e).__name__}: {str(e)[:200]}. "
                    "They are downloaded on first use and cached; this needs a network "
                    "(HF_HUB_OFFLINE must not be set) or a cached copy. Use the offline profile "
                    f"(backbone {PHANTOMCLIP!r}) where there is no network."
                ) from None
        cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
        mean = tuple(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN))
        std = tuple(cfg.get("std", open_clip.OPENAI_DATASET_STD))
    tokenizer = get_tokenizer(name)
    return Backbone(name=name, pretrained=None if pretrained is None else str(pretrained), model=model,
                    tokenizer=tokenizer, mean=mean, std=std)
