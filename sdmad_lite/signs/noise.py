"""Noisy sign pools: the expert selection of each category with a fraction of its signs replaced.

The paper's sign bank is written by an LLM and curated by experts; a reviewer asks how the method
fares when the curation is worse. In the phantom world the renderer's ground truth says which sign
a description refers to, so the quality of a pool can be set exactly. :func:`noisy_selection`
replaces ``round(fraction × n)`` of the ``n`` expert signs of a category (which ones: drawn from
``seed``) with signs of one ``kind``:

``undrawn``
    candidates of the same category that the renderer does not draw (visual ones first, then the
    other kinds: history, symptoms, other modalities) — plausible text, nothing in the image;
``uncaptioned``
    candidates, of any category of the bank, describing a sign the renderer draws but PhantomCLIP's
    captions never describe (:data:`~sdmad_lite.models.captions.UNCAPTIONED`) — the image holds it
    somewhere in the world, the VLM does not know its words. The chest world has two such signs
    (rib crowding, a deep sulcus), so for Atelectasis and Pneumothorax a replacement can be one of
    their own drawn signs; the ground truth (:func:`is_drawn`) says which;
``other-category``
    expert signs of the other categories that the renderer does not draw for this one — what the
    VLM knows well, in the wrong place.

Replacements are never signs already in the pool; when a kind offers fewer than needed (a small
bank), as many are replaced as there are, and :func:`realized_fraction` reports what was done.
"""
from __future__ import annotations

import zlib

import numpy as np

from ..data.phantoms.catalogue import get_modality
from ..models.captions import UNCAPTIONED
from .schema import Sign

KINDS = ("undrawn", "uncaptioned", "other-category")


def renderer_sign(bank, sign_id: str) -> str | None:
    """The renderer sign a candidate id of a phantom ``bank`` describes (in any category), or None."""
    for c in bank.categories:
        r = bank.renders(c).get(sign_id)
        if r:
            return r
    return None


def is_drawn(bank, category: str, sign_id: str) -> bool:
    """Ground truth: the renderer draws the sign ``sign_id`` describes in images of ``category``."""
    return renderer_sign(bank, sign_id) in get_modality(bank.phantom).category_signs[category]


def _replacements(bank, category: str, kind: str, taken: set[str]) -> list[Sign]:
    if kind == "undrawn":
        free = [s for s in bank.candidates(category) if s.id not in taken and not is_drawn(bank, category, s.id)]
        return [s for s in free if s.visual] + [s for s in free if not s.visual]
    out: dict[str, Sign] = {}
    for c in bank.categories:
        if kind == "uncaptioned":
            for s in bank.candidates(c):
                if s.id not in taken and renderer_sign(bank, s.id) in UNCAPTIONED:
                    out.setdefault(s.id, s)
        elif c != category:
            for s in bank.selected(c):
                if s.id not in taken and not is_drawn(bank, category, s.id):
                    out.setdefault(s.id, Sign(s.id, s.text, s.kind, s.categories))
    return list(out.values())


def noisy_selection(bank, category: str, fraction: float, kind: str, seed: int) -> list[Sign]:
    """The expert selection of ``category`` with ``round(fraction × n)`` signs replaced by signs of
    ``kind`` (see the module); ``fraction`` 0 returns the selection itself. Deterministic in
    (``seed``, ``category``, ``kind``)."""
    if kind not in KINDS:
        raise ValueError(f"unknown sign-noise kind {kind!r}; choose one of {', '.join(KINDS)}")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"sign-noise fraction {fraction!r} must be in [0, 1]")
    if not bank.is_phantom:
        raise ValueError(f"sign noise needs the renderer's ground truth; {bank.name!r} is a real bank (use a phantom dataset)")
    pool = bank.selected(category)
    m = int(round(fraction * len(pool)))
    if m == 0:
        return pool
    rng = np.random.default_rng([int(seed), zlib.crc32(f"{category}|{kind}".encode())])
    cands = _replacements(bank, category, kind, {s.id for s in pool})
    m = min(m, len(cands))
    out = list(pool)
    for slot, j in zip(rng.choice(len(pool), size=m, replace=False), rng.choice(len(cands), size=m, replace=False)):
        out[int(slot)] = cands[int(j)]
    return out


def realized_fraction(bank, category: str, pool: list[Sign]) -> float:
    """The fraction of ``pool`` that is not the expert selection of ``category``."""
    expert = {s.id for s in bank.selected(category)}
    return sum(s.id not in expert for s in pool) / max(1, len(pool))
