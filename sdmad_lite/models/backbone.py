"""The frozen CLIP backbone — the only module of the library that calls open_clip.

``load(name, pretrained=...)`` returns a :class:`Backbone`: the model, its preprocessing, its
tokenizer, and *taps* on the intermediate transformer blocks of the image encoder that the
adapters read (see ``models/adapters.py``). Names:

- ``phantomclip-tiny`` — the offline model shipped in this package (pretrained on phantoms);
- ``ViT-B-16`` / ``ViT-B-32`` / ``ViT-L-14-336`` with ``openai`` weights (colab, paper);
- ``hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224`` (colab).

Asking for pretrained weights that are neither cached nor downloadable fails with a clear
message; it never falls back to random weights. ``pretrained=None`` builds random weights on
purpose (shape tests, timing benchmarks).
"""
from __future__ import annotations

import functools
from typing import Callable, Sequence

import open_clip
import torch

CONTEXT_LENGTH = 77
PHANTOMCLIP = "phantomclip-tiny"

#: open_clip config of PhantomCLIP-tiny: a small ViT (128 px, 8×8 patches of 16 px, 6 blocks)
#: and a small text transformer over CLIP's BPE vocabulary.
PHANTOMCLIP_CONFIG = {
    "embed_dim": 128,
    "vision_cfg": {"image_size": 128, "layers": 6, "width": 192, "head_width": 64, "patch_size": 16},
    "text_cfg": {"context_length": CONTEXT_LENGTH, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 4},
}


def _register_custom_configs() -> None:
    if PHANTOMCLIP not in open_clip.list_models():
        open_clip.add_model_config({PHANTOMCLIP: PHANTOMCLIP_CONFIG}) if hasattr(open_clip, "add_model_config") else None


def _arch(name: str) -> str:
    return name


@functools.lru_cache(maxsize=None)
def get_tokenizer(name: str = PHANTOMCLIP) -> Callable[[Sequence[str]], torch.Tensor]:
    """The tokenizer of backbone ``name``: ``tokenizer(texts) -> LongTensor (N, 77)``."""
    if name == PHANTOMCLIP or not name.startswith("hf-hub:"):
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
