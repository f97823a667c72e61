"""Zero-shot scoring with a frozen CLIP: category names, sign descriptions, random words.

For an image embedding ``v`` and a category text embedding ``t_c`` (the mean over its prompts),
the zero-shot probability that category c is present is a two-way softmax against normality:

    p_c = exp(cos(v, t_c)/τ) / (exp(cos(v, t_c)/τ) + exp(cos(v, t_N)/τ))

The three text sources compared (chapter 5):

- **names** — prompts that name the category ("a chest x-ray with pleural effusion");
- **signs** — the expert-selected sign descriptions, averaged (descriptor averaging,
  Menon & Vondrick 2023);
- **random** — random words of the same length as each sign description (the WaffleCLIP
  control, Roth et al. 2023): what averaging many prompts buys without any meaning.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from .backbone import get_tokenizer


def two_way_probability(v: torch.Tensor, t_c: torch.Tensor, t_n: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """p_c for image embeddings ``v`` (N, D), category texts ``t_c`` (C, D), normal text ``t_n`` (D,)."""
    pos = v @ t_c.T / temperature
    neg = (v @ t_n / temperature)[:, None]
    return torch.sigmoid(pos - neg)


@functools.lru_cache(maxsize=1)
def _vocabulary() -> tuple[str, ...]:
    enc = getattr(get_tokenizer(), "encoder", {})
    words = [w[:-4] for w in enc if w.endswith("</w>") and w[:-4].isalpha() and 4 <= len(w) - 4 <= 9]
    return tuple(sorted(words))


def random_descriptor(text: str, rng: np.random.Generator) -> str:
    """Random vocabulary words with as many words as ``text`` (the WaffleCLIP control)."""
    vocab = _vocabulary()
    n = max(1, len(text.split()))
    return " ".join(vocab[i] for i in rng.integers(len(vocab), size=n))


def category_text(backbone, bank, category: str, source: str, rng: np.random.Generator | None = None) -> torch.Tensor:
    """The normalised mean text embedding of ``category`` for ``source`` in names | signs | random."""
    if source == "names":
        texts = bank.category_name_prompts(category)
    elif source == "signs":
        texts = bank.prompts(category)
    elif source == "random":
        if rng is None:
            raise ValueError("source='random' needs rng")
        signs = bank.selected(category)
        fake = {s.id: random_descriptor(s.text, rng) for s in signs}
        texts = [t.format(obj=bank.obj, sign=fake[s.id]) for s in signs for t in bank.templates]
        return F.normalize(backbone.encode_text(texts).mean(0), dim=-1)  # random texts: not cached
    else:
        raise ValueError(f"unknown text source {source!r}; choose names, signs or random")
    return backbone.mean_text(texts)
