"""The pretraining pool of PhantomCLIP-tiny: phantoms of the three modalities rendered once, with
their sign ground truth, and the light augmentation each pretraining step applies
(:mod:`sdmad_lite.models.pretrain`)."""
from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..data.phantoms.catalogue import MODALITIES
from ..data.phantoms.world import PhantomDataset


def render_pool(cfg, image_size: int) -> dict:
    """Render ``cfg.pool_per_modality`` phantoms of each modality (a ``PretrainConfig``), resized to ``image_size``."""
    jobs = [(m, cfg.pool_per_modality, cfg.seed + k, cfg.render_size, image_size, cfg.normal_fraction)
            for k, m in enumerate(MODALITIES)]
    shift = (cfg.scanner_shift, cfg.scanner_seed)
    if cfg.workers > 1:
        chunks = [(m, n, s, rs, im, nf, lo, min(n, lo + 250), shift) for (m, n, s, rs, im, nf) in jobs for lo in range(0, n, 250)]
        with ProcessPoolExecutor(cfg.workers) as ex:
            parts = list(ex.map(_render_chunk, chunks))
    else:
        parts = [_render_chunk((m, n, s, rs, im, nf, 0, n, shift)) for (m, n, s, rs, im, nf) in jobs]
    return {
        "images": np.concatenate([p["images"] for p in parts]),
        "modality": [m for p in parts for m in p["modality"]],
        "signs": [s for p in parts for s in p["signs"]],
    }


def _render_chunk(job) -> dict:
    modality, n, seed, render_size, image_size, normal_fraction, lo, hi, (shift, shift_seed) = job
    ds = PhantomDataset(modality, n, seed=seed, size=render_size, normal_fraction=normal_fraction,
                        shift=shift, shift_seed=shift_seed)  # shift 0: the task's own style
    imgs, signs = [], []
    for i in range(lo, hi):
        s = ds[i]
        im = Image.fromarray(s["image"]).resize((image_size, image_size), Image.BICUBIC)
        imgs.append(np.asarray(im, dtype=np.uint8))
        signs.append(sorted(s["signs"]))
    return {"images": np.stack(imgs), "modality": [modality] * len(imgs), "signs": signs}


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Light augmentation of a float batch (B, 1, S, S) in [0, 1]: shift/scale, contrast, gamma."""
    b = x.shape[0]
    scale = 1 + (torch.rand(b, generator=g) - 0.5) * 0.16
    shift = (torch.rand(b, 2, generator=g) - 0.5) * 0.12
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    gamma = torch.exp((torch.rand(b, 1, 1, 1, generator=g) - 0.5) * 0.4)
    contrast = 1 + (torch.rand(b, 1, 1, 1, generator=g) - 0.5) * 0.3
    x = x.clamp(1e-4, 1) ** gamma
    return ((x - 0.5) * contrast + 0.5).clamp(0, 1)
