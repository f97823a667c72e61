"""A target-domain shift: a seeded "scanner" the backbone never saw in pretraining.

PhantomCLIP-tiny was pretrained on images of the same renderers at the same style as the few-shot
task's images. A :class:`Scanner` moves the task's images (its pool and its test set, never the
pretraining images) away from that style, as a new scanner or protocol moves real images away from
a VLM's pretraining data. One ``strength`` in [0, 1] scales every part at once (0: the identity):

- **intensity curve** — a gamma and a tighter display window;
- **resolution** — the image is resampled down and up again (a coarser detector, softer edges);
- **noise texture** — correlated (not white) noise, a new realisation per image;
- **bias field** — a smooth multiplicative shading, one per scanner;
- **field of view** — a zoom into the centre (the masks of the signs follow it).

The scanner's settings are drawn once from ``seed`` (one scanner for all images of a task); only
the noise realisation changes from image to image, from the image's own seed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ...seeding import rng as derive

from .primitives import F32, smooth_noise, to_uint8


@dataclass(frozen=True)
class Scanner:
    """One scanner at ``strength`` (0 … 1) with settings drawn from ``seed``."""

    strength: float
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.strength) <= 1.0:
            raise ValueError(f"scanner strength must be in [0, 1], got {self.strength}")

    def settings(self) -> dict:
        """The scanner's parameters at its strength (at 0: the identity)."""
        s, r = float(self.strength), derive(int(self.seed), "scanner")
        return {
            "gamma": float(np.exp(s * r.choice([-1.0, 1.0]) * r.uniform(0.45, 0.7))),
            "window": (s * float(r.uniform(0.08, 0.16)), 1.0 - s * float(r.uniform(0.08, 0.16))),
            "downsample": 1.0 + s * float(r.uniform(1.5, 2.2)),
            "noise": s * float(r.uniform(0.05, 0.08)),
            "noise_cells": int(r.integers(24, 40)),
            "bias": s * float(r.uniform(0.3, 0.4)),
            "zoom": 1.0 + s * float(r.uniform(0.06, 0.12)),
            "bias_seed": int(r.integers(2**31)),
        }

    def __call__(self, image: np.ndarray, image_seed: int, masks: dict[str, np.ndarray] | None = None):
        """The image (uint8, square) as this scanner shows it, and the masks moved with it."""
        if self.strength == 0:
            return image, masks
        p, n = self.settings(), image.shape[0]
        x = np.asarray(image, dtype=F32) / F32(255.0)
        x, masks = _zoom(x, p["zoom"]), ({k: _zoom_mask(m, p["zoom"]) for k, m in masks.items()} if masks else masks)
        low = max(8, int(round(n / p["downsample"])))
        x = _resize(_resize(x, low), n)
        lo, hi = p["window"]
        x = np.clip((x - F32(lo)) / F32(hi - lo), 0.0, 1.0) ** F32(p["gamma"])
        x = x * (F32(1.0) + F32(p["bias"]) * smooth_noise(derive(p["bias_seed"], "bias"), (n, n), 2))
        x = x + F32(p["noise"]) * smooth_noise(derive(int(image_seed), "scanner-noise"), (n, n), p["noise_cells"])
        return to_uint8(x), masks


def _resize(x: np.ndarray, size: int) -> np.ndarray:
    im = Image.fromarray(np.ascontiguousarray(x, dtype=F32), mode="F")
    return np.asarray(im.resize((size, size), Image.BILINEAR), dtype=F32)


def _crop(n: int, zoom: float) -> tuple[int, int]:
    m = max(4, int(round(n / zoom)))
    o = (n - m) // 2
    return o, o + m


def _zoom(x: np.ndarray, zoom: float) -> np.ndarray:
    a, b = _crop(x.shape[0], zoom)
    return _resize(x[a:b, a:b], x.shape[0])


def _zoom_mask(m: np.ndarray, zoom: float) -> np.ndarray:
    a, b = _crop(m.shape[0], zoom)
    im = Image.fromarray(np.ascontiguousarray(m[a:b, a:b], dtype=np.uint8) * 255)
    return np.asarray(im.resize((m.shape[1], m.shape[0]), Image.NEAREST)) > 127
