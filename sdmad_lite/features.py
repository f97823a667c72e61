"""Frozen features and their cache.

The backbone is frozen, so what it computes for an image never changes: the taps (tokens
after the adapted blocks) and the final image embedding are computed once per (backbone,
dataset) and kept on disk under ``cache_dir()/features``. The side adapters read the taps
directly; the residual adapters resume the frozen forward pass from the first adapted block
(``Backbone.forward_image(start_block=..., stream=...)``), so for them the cache is exact up
to that block.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .paths import cache_dir


class NonFiniteFeaturesError(ValueError):
    """Features hold NaN or inf values (a broken backbone or checkpoint, or corrupt images)."""


@dataclass
class Features:
    """Frozen features of N images: ``taps[block]`` (N, 1+P, width) and ``pooled`` (N, D)."""

    taps: dict[int, torch.Tensor]
    pooled: torch.Tensor

    def __len__(self) -> int:
        return len(self.pooled)

    def subset(self, idx: Sequence[int] | np.ndarray | torch.Tensor) -> "Features":
        idx = torch.as_tensor(np.asarray(idx, dtype=np.int64))
        return Features({b: t[idx] for b, t in self.taps.items()}, self.pooled[idx])

    def float(self) -> "Features":
        return Features({b: t.float() for b, t in self.taps.items()}, self.pooled.float())

    def check_finite(self, where: str) -> None:
        for name, t in [("pooled", self.pooled)] + [(f"block {b}", t) for b, t in self.taps.items()]:
            nonfinite = ~torch.isfinite(t.float())
            bad = int(nonfinite.sum())
            if bad:
                rows = torch.nonzero(nonfinite.reshape(len(t), -1).any(1)).flatten().tolist()
                raise NonFiniteFeaturesError(
                    f"{where}: {bad} NaN/inf values in the {name} features of {len(rows)} of {len(t)} images "
                    f"(e.g. image {rows[0]}) — the backbone or its checkpoint is broken (rebuild or reinstall it), "
                    "or the images are corrupt")


@torch.inference_mode()
def extract(backbone, get_image: Callable[[int], np.ndarray], n: int, taps: Sequence[int], batch_size: int = 64,
            progress: bool = False) -> Features:
    """Run the frozen backbone over images ``get_image(0..n-1)`` and keep taps + pooled embedding."""
    from tqdm.auto import tqdm

    taps = sorted(taps)
    out_taps: dict[int, list[torch.Tensor]] = {b: [] for b in taps}
    pooled = []
    for lo in tqdm(range(0, n, batch_size), disable=not progress, desc="features", leave=False):
        imgs = [get_image(i) for i in range(lo, min(n, lo + batch_size))]
        pix = backbone.prepare(imgs)
        p, t = backbone.forward_image(pix, taps=taps)
        pooled.append(torch.nn.functional.normalize(p.float(), dim=-1).half().cpu())
        for b in taps:
            out_taps[b].append(t[b].half().cpu())
    feats = Features({b: torch.cat(v) for b, v in out_taps.items()}, torch.cat(pooled))
    return feats


def cache_key(backbone_key: str, dataset_key: dict, taps: Sequence[int]) -> str:
    blob = json.dumps({"backbone": backbone_key, "data": dataset_key, "taps": sorted(taps), "v": 1}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def cached_features(backbone, dataset_key: dict, get_image: Callable[[int], np.ndarray], n: int,
                    taps: Sequence[int], use_cache: bool = True, progress: bool = False) -> Features:
    """:func:`extract`, memoised on disk by (backbone, dataset, taps); written atomically."""
    path = cache_dir() / "features" / f"{cache_key(backbone.key, dataset_key, taps)}.pt"
    if use_cache and path.is_file():
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
            feats = Features({int(b): t for b, t in d["taps"].items()}, d["pooled"])
            if len(feats) == n:
                feats.check_finite(str(path))  # a NaN entry is recomputed below, like a damaged file
                return feats
        except Exception:  # noqa: BLE001 — a damaged cache entry is recomputed, never trusted
            pass
    feats = extract(backbone, get_image, n, taps, progress=progress)
    feats.check_finite(f"features of {dataset_key}")
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save({"taps": {str(b): t for b, t in feats.taps.items()}, "pooled": feats.pooled}, tmp)
        os.replace(tmp, path)
    return feats
