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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import open_clip
import torch
import torch.nn.functional as F

from ..io import sha256_file  # noqa: F401 (API)
from .text import TextTower
from .checkpoints import (MODELS_DIR, PHANTOMCLIP, PHANTOMCLIP_CARD, PHANTOMCLIP_CHECKPOINT,  # noqa: F401 (API)
                          PHANTOMCLIP_CONFIG_FILE, PHANTOMCLIP_ORACLE, PHANTOMCLIP_ORACLE_CARD, SHIPPED, BackboneError,
                          load_state, quiet_random_init, shipped_checkpoint)
from .weights import (WEIGHT_FILES, _card_of, _local_weights, _weights_key, create,  # noqa: F401 (API)
                      missing_weights_message, recipe, weights_cached)

CONTEXT_LENGTH = 77
#: the backbones of the profiles (any other open_clip model name, ``local-dir:`` or ``hf-hub:`` name also loads)
KNOWN = (PHANTOMCLIP, "ViT-B-16", "ViT-B-32", "ViT-L-14", "ViT-L-14-336")
#: weight files open_clip writes in a model folder (``local-dir:`` or a folder given as ``pretrained``)




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
class Backbone(TextTower):
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
        quick = any(isinstance(m, open_clip.transformer.QuickGELU) for m in self.model.modules())
        self.key = _weights_key(self.name, self.pretrained) + ("|quickgelu" if quick else "")
        self.quick_gelu = quick

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


def default_taps(n_blocks: int) -> list[int]:
    """MVFA's adapted blocks 6/12/18/24 of a 24-block ViT-L, scaled to ``n_blocks``."""
    return sorted({max(1, int(b * n_blocks / 24 + 0.5)) for b in (6, 12, 18, 24)})


def vision_geometry(name: str) -> dict:
    """The image tower's shape from open_clip's model config, without building the model: ``width``,
    ``n_blocks``, ``tokens`` (class token + patches at the config's image size), ``embed_dim`` and
    ``taps`` (:func:`default_taps`). What the feature cache of a backbone holds per image follows
    from it (:func:`sdmad_lite.features.cache_bytes`)."""
    _register_custom_configs()
    cfg = open_clip.get_model_config(name)
    if cfg is None or not isinstance(cfg.get("vision_cfg", {}).get("width"), int):
        raise BackboneError(f"no ViT model config for {name!r} in open_clip; choose one of {', '.join(KNOWN)}")
    v = cfg["vision_cfg"]
    side = v["image_size"] // v["patch_size"]
    return {"width": v["width"], "n_blocks": v["layers"], "tokens": 1 + side * side, "embed_dim": cfg["embed_dim"],
            "image_size": v["image_size"], "taps": default_taps(v["layers"])}


def load(name: str = PHANTOMCLIP, pretrained: str | None = "default", device: str = "cpu",
         weights_tag: str | None = None) -> Backbone:
    """Build backbone ``name`` with ``pretrained`` weights.

    ``pretrained="default"``: the shipped checkpoint for ``phantomclip-tiny``, ``openai`` for the
    OpenAI architectures, the hub weights for ``hf-hub:`` names. For ``phantomclip-tiny`` the other shipped
    checkpoint is ``shipped-oracle`` (``checkpoints.SHIPPED``; ``shipped-partial`` names the default). ``None``: random weights, on
    purpose. A file, or a model folder: open_clip weights already on this machine, published under
    ``weights_tag`` (default ``openai`` for OpenAI architectures), whose activation and preprocessing
    they get. Unavailable weights raise :class:`~sdmad_lite.models.checkpoints.BackboneError` saying where to put them.
    """
    remote = name.startswith(("hf-hub:", "local-dir:"))
    if name not in KNOWN and not remote and name not in open_clip.list_models():
        raise BackboneError(f"unknown backbone {name!r}; choose one of {', '.join(KNOWN)}, another open_clip model "
                            "name, or an 'hf-hub:' / 'local-dir:' name")
    _register_custom_configs()
    if name == PHANTOMCLIP:
        shipped = shipped_checkpoint(pretrained)  # shipped (= partial), shipped-oracle
        if shipped is not None:
            pretrained = str(shipped)
        if pretrained is not None and not Path(str(pretrained)).is_file():
            hint = (" Build it with `sdmad pretrain-phantomclip` (its model card says how)."
                    if Path(str(pretrained)) in {pt for pt, _ in SHIPPED.values()}
                    else f" For phantomclip-tiny, pretrained is 'default' (the shipped checkpoint), one of "
                         f"{', '.join(SHIPPED)}, the path of a checkpoint file, or None (random weights, on purpose).")
            raise BackboneError(f"checkpoint not found: {pretrained}.{hint}")
        with quiet_random_init(pretrained is not None):
            model = open_clip.create_model(PHANTOMCLIP, pretrained=None, device=device)
        if pretrained is not None:
            load_state(model, Path(pretrained), name, _card_of(Path(pretrained)))
        mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    else:
        openai_arch = "openai" in open_clip.list_pretrained_tags_by_model(name) if not remote else False
        if pretrained == "default":
            pretrained = None if remote else "openai"
        local = _local_weights(str(pretrained)) if pretrained not in (None, "openai") and not remote else None
        if local is not None:
            tag = weights_tag or ("openai" if openai_arch else None)
            with quiet_random_init(True):
                model, r = create(name, tag, device)
            load_state(model, local, name, _card_of(local))
        else:
            tag = weights_tag or (pretrained if pretrained and not remote else None)
            try:
                model, r = create(name, tag, device, weights=pretrained)
            except Exception as e:  # noqa: BLE001 — turned into one clear message
                raise BackboneError(missing_weights_message(name, tag, f"{type(e).__name__}: {str(e)[:160]}")) from None
        cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
        mean = tuple(cfg.get("mean", r["mean"]))
        std = tuple(cfg.get("std", r["std"]))
    tokenizer = get_tokenizer(name)
    return Backbone(name=name, pretrained=None if pretrained is None else str(pretrained), model=model,
                    tokenizer=tokenizer, mean=mean, std=std)
