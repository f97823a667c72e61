"""PhantomCLIP-tiny: contrastive pretraining of a small CLIP on phantoms and sign captions.

Recipe (``sdmad pretrain-phantomclip``):

1. Render a pool of phantoms of the three modalities (chest, OCT, brain) with the phantom
   world's label sampler (labels from the real tables), keeping their sign ground truth.
2. Each step draws a batch, augments the images (small shifts and scale, contrast/gamma),
   and writes a fresh random caption for each (``captions.caption``: signs and modality,
   never a category name; some signs are never captioned on purpose).
3. Loss: symmetric InfoNCE with *soft* targets — an image's positives are all captions in the
   batch with the same caption key (same modality and same described signs), so that two
   normals in a batch are not pushed apart.
4. An auxiliary *caption-tag* loss: a linear layer on the image embedding predicts which
   signs the caption describes (multi-label BCE; uncaptioned signs are never targets). It
   carries the same information as the captions and makes the most of a 30-minute CPU budget;
   the layer is dropped after pretraining (``aux_weight=0`` turns it off).
5. AdamW with cosine decay; weights saved in float16 with a model card (sha256, recipe,
   versions, wall time) next to them.

Same seed, same machine, same thread count -> the same checkpoint.
"""
from __future__ import annotations

import json
import math
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..data.phantoms.catalogue import MODALITIES
from ..data.phantoms.world import PhantomDataset
from ..io import atomic_write, sha256_file
from ..seeding import rng as derived_rng
from ..seeding import seed_everything
from . import backbone as bb
from .captions import UNCAPTIONED, caption, caption_key


@dataclass
class PretrainConfig:
    steps: int = 1200
    batch_size: int = 128
    lr: float = 5e-4
    weight_decay: float = 0.1
    warmup: int = 150
    pool_per_modality: int = 2500
    render_size: int = 224
    normal_fraction: float = 0.3
    seed: int = 1234
    workers: int = 2
    aux_weight: float = 1.0


def render_pool(cfg: PretrainConfig, image_size: int) -> dict:
    """Render ``pool_per_modality`` phantoms of each modality, resized to ``image_size``."""
    jobs = [(m, cfg.pool_per_modality, cfg.seed + k, cfg.render_size, image_size, cfg.normal_fraction)
            for k, m in enumerate(MODALITIES)]
    if cfg.workers > 1:
        chunks = [(m, n, s, rs, im, nf, lo, min(n, lo + 250)) for (m, n, s, rs, im, nf) in jobs for lo in range(0, n, 250)]
        with ProcessPoolExecutor(cfg.workers) as ex:
            parts = list(ex.map(_render_chunk, chunks))
    else:
        parts = [_render_chunk((m, n, s, rs, im, nf, 0, n)) for (m, n, s, rs, im, nf) in jobs]
    return {
        "images": np.concatenate([p["images"] for p in parts]),
        "modality": [m for p in parts for m in p["modality"]],
        "signs": [s for p in parts for s in p["signs"]],
    }


def _render_chunk(job) -> dict:
    modality, n, seed, render_size, image_size, normal_fraction, lo, hi = job
    ds = PhantomDataset(modality, n, seed=seed, size=render_size, normal_fraction=normal_fraction)
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


def soft_clip_loss(img: torch.Tensor, txt: torch.Tensor, keys: list, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE whose targets spread over all captions with the image's caption key."""
    logits = logit_scale * img @ txt.T
    ids = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    kid = torch.tensor([ids[k] for k in keys])
    same = (kid[:, None] == kid[None, :]).float()
    target = same / same.sum(1, keepdim=True)
    return 0.5 * (-(target * logits.log_softmax(1)).sum(1).mean() - (target * logits.log_softmax(0)).sum(0).mean())


def pretrain(cfg: PretrainConfig, out_dir: str | os.PathLike, log=lambda *a: print(*a, flush=True)) -> Path:
    """Pretrain PhantomCLIP-tiny from scratch and write ``phantomclip-tiny.pt`` + card to ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    seed_everything(cfg.seed)
    model_bb = bb.load(bb.PHANTOMCLIP, pretrained=None)
    model = model_bb.model.train().requires_grad_(True)
    s = model_bb.image_size
    log(f"rendering {cfg.pool_per_modality} phantoms per modality ({len(MODALITIES)} modalities) ...")
    pool = render_pool(cfg, s)
    t_render = time.time() - t0
    images = torch.from_numpy(pool["images"])
    n = len(images)
    log(f"pool: {n} images in {t_render:.0f} s")
    tag_names = sorted({sg for m in MODALITIES.values() for sg in m.signs} - UNCAPTIONED)
    tag_index = {t: i for i, t in enumerate(tag_names)}
    tags = torch.zeros(n, len(tag_names))
    for i, sg in enumerate(pool["signs"]):
        for t in sg:
            if t in tag_index:
                tags[i, tag_index[t]] = 1
    tagger = torch.nn.Linear(model_bb.embed_dim, len(tag_names))
    decay, no_decay = list(tagger.parameters()), []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "embedding" in name or "logit_scale" in name else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / cfg.warmup) * 0.5 * (1 + math.cos(math.pi * min(k, cfg.steps) / cfg.steps)))
    g = torch.Generator().manual_seed(cfg.seed)
    cap_rng = derived_rng(cfg.seed, "captions")
    mean = torch.tensor(model_bb.mean).view(1, 3, 1, 1)
    std = torch.tensor(model_bb.std).view(1, 3, 1, 1)
    history = []
    for step in range(cfg.steps):
        idx = torch.randint(n, (cfg.batch_size,), generator=g)
        x = augment(images[idx].float()[:, None] / 255.0, g)
        x = (x.expand(-1, 3, -1, -1) - mean) / std
        mods = [pool["modality"][i] for i in idx.tolist()]
        sgn = [pool["signs"][i] for i in idx.tolist()]
        texts = [caption(m, si, cap_rng) for m, si in zip(mods, sgn)]
        keys = [caption_key(m, si) for m, si in zip(mods, sgn)]
        emb = model.encode_image(x)
        img = F.normalize(emb, dim=-1)
        txt = F.normalize(model_bb.text_forward(model_bb.tokenizer(texts)), dim=-1)
        loss = soft_clip_loss(img, txt, keys, model.logit_scale.exp().clamp(max=100))
        if cfg.aux_weight:
            loss = loss + cfg.aux_weight * F.binary_cross_entropy_with_logits(tagger(emb), tags[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(model.parameters()) + list(tagger.parameters()), 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == cfg.steps - 1:
            history.append((step, round(loss.item(), 4)))
            log(f"step {step:5d}/{cfg.steps}  loss {loss.item():.3f}  scale {float(model.logit_scale.exp()):.1f}  {time.time() - t0:.0f} s")
    state = {k: (v.half() if torch.is_floating_point(v) else v) for k, v in model.state_dict().items()}
    ckpt = out / f"{bb.PHANTOMCLIP}.pt"
    atomic_write(ckpt, lambda p: torch.save(state, p))
    card = {
        "model": bb.PHANTOMCLIP,
        "sha256": sha256_file(ckpt),
        "bytes": ckpt.stat().st_size,
        "config": json.loads(bb.PHANTOMCLIP_CONFIG_FILE.read_text()),
        "recipe": asdict(cfg),
        "uncaptioned_signs": sorted(UNCAPTIONED),
        "loss_history": history,
        "wall_time_s": round(time.time() - t0, 1),
        "render_time_s": round(t_render, 1),
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "processor": platform.machine()},
        "command": f"sdmad pretrain-phantomclip --steps {cfg.steps} --batch-size {cfg.batch_size} --pool {cfg.pool_per_modality} --seed {cfg.seed} --lr {cfg.lr} --aux-weight {cfg.aux_weight} --out DIR",
    }
    atomic_write(out / f"{bb.PHANTOMCLIP}.card.json", json.dumps(card, indent=1))
    log(f"wrote {ckpt} ({ckpt.stat().st_size / 1e6:.1f} MB) in {time.time() - t0:.0f} s")
    return ckpt
