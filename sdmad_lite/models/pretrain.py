"""PhantomCLIP-tiny: contrastive pretraining of a small CLIP on phantoms and sign captions.

Recipe (``sdmad pretrain-phantomclip``):

1. Render a pool of phantoms of the three modalities (chest, OCT, brain) with the phantom
   world's label sampler (labels from the real tables), keeping their sign ground truth.
2. Each step draws a batch, augments the images (small shifts and scale, contrast/gamma),
   and writes a fresh random caption for each (``captions.caption``: signs and modality,
   never a category name; some signs are never captioned on purpose; normal images are never
   described by a negation).
3. Loss: symmetric InfoNCE with *soft* targets — an image's positives are all captions in the
   batch with the same caption key (same modality and same described signs), so that two
   normals in a batch are not pushed apart.
4. An auxiliary *caption-tag* loss: a linear layer on the image embedding predicts which
   signs the image shows (multi-label BCE; uncaptioned signs are never targets); dropped after
   pretraining (``aux_weight=0``: off).
5. AdamW with cosine decay; float16 weights and a model card (sha256, recipe, versions, wall
   time, the one command that rebuilds it).

What the backbone knows of the sign bank is a knob of the recipe (DESIGN.md, "The regime the
sandbox must be in"); every knob is a field of :class:`PretrainConfig` and an option of
``sdmad pretrain-phantomclip``, and the defaults are the first recipe's with the anchor fix
(no negated caption, normal-anatomy captions):

- ``radiological_share`` (1): share of sign phrases in radiological words; the rest lay (``captions.LAY_PHRASES``);
- ``sign_caption_share`` (1): share of the pool's images (a fixed seeded subset) whose captions say
  what they show (their signs, or that they are normal); the others get the modality alone ("a chest
  x-ray"). The tag loss still reads every image's signs (image-side supervision, no words), so the
  text tower learns the words from a share of the images only;
- ``plain_captions`` (on): the images without sign captions are in the contrastive loss, captioned with
  the modality alone; sharing one caption key, they are pulled together. Off: the tag loss alone;
- ``image_from`` (none): a checkpoint (shipped name or file) whose image tower is kept, frozen, while the
  text tower learns from scratch (locked-image tuning, LiT; Zhai et al. 2022): image features as good as
  that checkpoint's, words learnt only as far as ``steps`` and the captions teach them;
- ``extra_uncaptioned`` (none): signs never described, on top of ``captions.UNCAPTIONED``;
- ``scanner_shift`` / ``scanner_seed`` (0): a source-domain scanner (``data/phantoms/scanner.py``)
  that every pretraining image passes through, so the task's (unshifted) images are another domain;
- ``negated_captions`` (off): the old normal caption "... with no abnormal finding" (the first checkpoints');
- ``normal_anatomy`` (on): half of the normal captions describe the normal anatomy in positive words,
  which fixes the inverted anchor (``captions`` module docstring: the measurement);
- ``steps``, ``pool_per_modality``, ``aux_weight``, ``warmup``, ``lr``: how long and how hard;
  ``stop_after`` N trains only the first N steps of the ``steps``-step schedule: the weights a
  ``--snapshots N`` run writes after step N (one long run calibrates the length).

Same seed, same machine, same thread count -> the same checkpoint.
"""
from __future__ import annotations

import json
import math
import os
import platform
import resource
import shlex
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.phantoms.catalogue import MODALITIES
from ..io import atomic_write, sha256_file
from ..seeding import rng as derived_rng, seed_everything
from . import backbone as bb
from .checkpoints import shipped_checkpoint
from .captions import PLAIN_KEY, UNCAPTIONED, CaptionStyle, caption, caption_key, plain_caption
from .pool import augment, render_pool


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
    # --- what the backbone knows of the sign bank (module docstring); defaults: the first recipe's
    radiological_share: float = 1.0
    sign_caption_share: float = 1.0
    extra_uncaptioned: tuple[str, ...] = ()
    scanner_shift: float = 0.0
    scanner_seed: int = 0
    negated_captions: bool = False
    normal_anatomy: bool = True
    plain_captions: bool = True  # images without sign captions: in the contrastive loss, captioned "a chest x-ray"
    image_from: str | None = None  # a checkpoint whose image tower is kept, frozen (locked-image tuning)
    stop_after: int | None = None  # train only the first N steps of the ``steps``-step schedule (None: all)

    def __post_init__(self) -> None:
        self.extra_uncaptioned = tuple(sorted(set(self.extra_uncaptioned)))
        for name in ("radiological_share", "sign_caption_share", "scanner_shift"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        self.style()  # unknown sign ids fail here
        if self.image_from and self.aux_weight:
            raise ValueError("image_from keeps the image tower frozen, so the caption-tag loss would train nothing that "
                             "is kept: set aux_weight 0 (--aux-weight 0)")
        if not self.plain_captions and self.sign_caption_share == 0 and not self.aux_weight:
            raise ValueError("with no sign captions, no plain captions and no tag loss nothing would train: raise "
                             "sign_caption_share, turn plain_captions on or give the tag loss a weight")
        if self.stop_after is not None and not 1 <= int(self.stop_after) <= self.steps:
            raise ValueError(f"stop_after must be in [1, steps={self.steps}], got {self.stop_after}")

    def style(self) -> CaptionStyle:
        """How this recipe writes captions."""
        return CaptionStyle(radiological_share=self.radiological_share,
                            uncaptioned=UNCAPTIONED | frozenset(self.extra_uncaptioned),
                            negated=self.negated_captions, normal_anatomy=self.normal_anatomy)

    def command(self, threads: int | None = None) -> str:
        """The one ``sdmad pretrain-phantomclip`` command that rebuilds this recipe (every knob spelled out)."""
        flag = lambda on, name: f"--{name}" if on else f"--no-{name}"  # noqa: E731
        parts = [f"--steps {self.steps}", f"--batch-size {self.batch_size}", f"--pool {self.pool_per_modality}",
                 f"--seed {self.seed}", f"--lr {self.lr}", f"--warmup {self.warmup}", f"--aux-weight {self.aux_weight}",
                 f"--radiological-share {self.radiological_share}", f"--sign-caption-share {self.sign_caption_share}",
                 f"--uncaptioned {','.join(self.extra_uncaptioned) or 'none'}",
                 f"--scanner-shift {self.scanner_shift}", f"--scanner-seed {self.scanner_seed}",
                 flag(self.negated_captions, "negated-captions"), flag(self.normal_anatomy, "normal-anatomy"),
                 flag(self.plain_captions, "plain-captions")]
        if self.image_from:
            parts.append(f"--image-from {shlex.quote(str(self.image_from))}")
        if self.stop_after is not None:
            parts.append(f"--stop-after {self.stop_after}")
        if threads:
            parts.append(f"--threads {threads}")
        return "sdmad pretrain-phantomclip " + " ".join(parts) + " --out DIR"


def soft_clip_loss(img: torch.Tensor, txt: torch.Tensor, keys: list, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE whose targets spread over all captions with the image's caption key."""
    logits = logit_scale * img @ txt.T
    ids = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    kid = torch.tensor([ids[k] for k in keys])
    same = (kid[:, None] == kid[None, :]).float()
    target = same / same.sum(1, keepdim=True)
    return 0.5 * (-(target * logits.log_softmax(1)).sum(1).mean() - (target * logits.log_softmax(0)).sum(0).mean())


def _cpu_seconds() -> float:
    """CPU seconds used so far by this process and its finished children (the rendering workers)."""
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))


def sign_captioned(cfg: PretrainConfig, n: int) -> np.ndarray:
    """Which of the ``n`` pool images get sign captions: all, or a fixed seeded ``sign_caption_share`` of them."""
    if cfg.sign_caption_share >= 1.0:
        return np.ones(n, bool)
    return derived_rng(cfg.seed, "sign-captioned").random(n) < cfg.sign_caption_share


def contrastive_rows(cfg: PretrainConfig, has: torch.Tensor) -> list[int]:
    """The rows of a batch in the contrastive loss: all (``plain_captions``), or those with sign captions (``has``)."""
    return list(range(len(has))) if cfg.plain_captions else has.nonzero().flatten().tolist()


def encode_pool(model, images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Image embeddings of the pool (uint8, N × S × S) by ``model``'s (frozen) image tower, without augmentation."""
    was = model.training
    model.eval()
    with torch.no_grad():
        out = torch.cat([model.encode_image(((images[i:i + batch].float()[:, None] / 255.0).expand(-1, 3, -1, -1) - mean) / std)
                         for i in range(0, len(images), batch)])
    model.train(was)
    return out


def pretrain(cfg: PretrainConfig, out_dir: str | os.PathLike, log=lambda *a: print(*a, flush=True),
             pool: dict | None = None, snapshots: tuple[int, ...] = ()) -> Path:
    """Pretrain PhantomCLIP-tiny (from scratch, or its text tower on the kept image tower of ``cfg.image_from``)
    and write ``phantomclip-tiny.pt`` + card to ``out_dir``.

    ``pool``: the output of :func:`~sdmad_lite.models.pool.render_pool` for this ``cfg`` when it was rendered already (several
    recipes on one pool); the card then says so and its wall time leaves the rendering out.
    ``snapshots``: steps after which the weights are also written (``phantomclip-tiny-step{N}.pt``, no
    card): the trajectory of one run, for calibration. They do not change the run."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0, c0 = time.time(), _cpu_seconds()
    seed_everything(cfg.seed)
    model_bb = bb.load(bb.PHANTOMCLIP, pretrained=None)
    model = model_bb.model.train().requires_grad_(True)
    if cfg.image_from:  # locked-image tuning: that checkpoint's image tower, frozen; the text tower from scratch
        source_sha = sha256_file(shipped_checkpoint(cfg.image_from) or Path(cfg.image_from))
        source = bb.load(bb.PHANTOMCLIP, pretrained=cfg.image_from).model.state_dict()
        model.load_state_dict({k: v for k, v in source.items() if k.startswith("visual.")}, strict=False)
        model.visual.requires_grad_(False)
    s = model_bb.image_size
    given = pool is not None
    if not given:
        log(f"rendering {cfg.pool_per_modality} phantoms per modality ({len(MODALITIES)} modalities) ...")
        pool = render_pool(cfg, s)
    t_render = time.time() - t0
    images = torch.from_numpy(pool["images"])
    n = len(images)
    log(f"pool: {n} images in {t_render:.0f} s")
    style = cfg.style()
    said = torch.from_numpy(sign_captioned(cfg, n))
    log(f"{int(said.sum())} of {n} images get sign captions; uncaptioned signs: {sorted(style.uncaptioned)}")
    tag_names = sorted({sg for m in MODALITIES.values() for sg in m.signs} - style.uncaptioned)
    tag_index = {t: i for i, t in enumerate(tag_names)}
    tags = torch.zeros(n, len(tag_names))
    for i, sg in enumerate(pool["signs"]):
        for t in sg:
            if t in tag_index:
                tags[i, tag_index[t]] = 1
    tagger = torch.nn.Linear(model_bb.embed_dim, len(tag_names))
    decay, no_decay = list(tagger.parameters()), []
    for name, p in ((name, p) for name, p in model.named_parameters() if p.requires_grad):
        (no_decay if p.ndim < 2 or "embedding" in name or "logit_scale" in name else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / cfg.warmup) * 0.5 * (1 + math.cos(math.pi * min(k, cfg.steps) / cfg.steps)))
    g = torch.Generator().manual_seed(cfg.seed)
    cap_rng = derived_rng(cfg.seed, "captions")
    mean = torch.tensor(model_bb.mean).view(1, 3, 1, 1)
    std = torch.tensor(model_bb.std).view(1, 3, 1, 1)
    locked = encode_pool(model, images, mean, std) if cfg.image_from else None  # the frozen tower's, unaugmented
    history = []
    trained = cfg.steps if cfg.stop_after is None else int(cfg.stop_after)
    for step in range(trained):
        idx = torch.randint(n, (cfg.batch_size,), generator=g)
        mods = [pool["modality"][i] for i in idx.tolist()]
        sgn = [pool["signs"][i] for i in idx.tolist()]
        has = said[idx]
        texts = [caption(m, si, cap_rng, style) if h else plain_caption(m, cap_rng) for m, si, h in zip(mods, sgn, has.tolist())]
        keys = [caption_key(m, si, style.uncaptioned) if h else (m, PLAIN_KEY) for m, si, h in zip(mods, sgn, has.tolist())]
        if locked is None:
            x = augment(images[idx].float()[:, None] / 255.0, g)
            emb = model.encode_image((x.expand(-1, 3, -1, -1) - mean) / std)
        else:
            emb = locked[idx]
        rows = contrastive_rows(cfg, has)
        if len(rows) >= 2:  # all rows (the shipped recipes): emb itself, the first recipes' arithmetic bit for bit
            img = F.normalize(emb if len(rows) == len(texts) else emb[rows], dim=-1)
            txt = F.normalize(model_bb.text_forward(model_bb.tokenizer([texts[i] for i in rows])), dim=-1)
            loss = soft_clip_loss(img, txt, [keys[i] for i in rows], model.logit_scale.exp().clamp(max=100))
        else:  # no image of this batch in the contrastive loss
            loss = emb.new_zeros(())
        if cfg.aux_weight:  # image-side supervision: every image, whatever its caption says
            loss = loss + cfg.aux_weight * F.binary_cross_entropy_with_logits(tagger(emb), tags[idx])
        if loss.requires_grad:  # else nothing in this batch teaches anything: no step, the schedule moves on
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(model.parameters()) + list(tagger.parameters()), 1.0)
            opt.step()
        with warnings.catch_warnings():  # a first batch without a step is meant, not the misuse torch warns of
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
            sched.step()
        if step + 1 in snapshots:
            snap = {k: (v.detach().half() if torch.is_floating_point(v) else v) for k, v in model.state_dict().items()}
            atomic_write(out / f"{bb.PHANTOMCLIP}-step{step + 1}.pt", lambda p, snap=snap: torch.save(snap, p))
        if step % 50 == 0 or step == trained - 1:
            history.append((step, round(loss.detach().item(), 4)))
            log(f"step {step:5d}/{cfg.steps}  loss {loss.detach().item():.3f}  scale {model.logit_scale.detach().exp().item():.1f}  {time.time() - t0:.0f} s")
    state = {k: (v.half() if torch.is_floating_point(v) else v) for k, v in model.state_dict().items()}
    ckpt = out / f"{bb.PHANTOMCLIP}.pt"
    atomic_write(ckpt, lambda p: torch.save(state, p))
    card = {
        "model": bb.PHANTOMCLIP,
        "sha256": sha256_file(ckpt),
        "bytes": ckpt.stat().st_size,
        "config": json.loads(bb.PHANTOMCLIP_CONFIG_FILE.read_text()),
        "recipe": asdict(cfg),
        "uncaptioned_signs": sorted(style.uncaptioned),
        "sign_captioned_images": int(said.sum()),
        "pool_images": n,
        "image_from": None if not cfg.image_from else {
            "checkpoint": cfg.image_from, "sha256": source_sha},
        "loss_history": history,
        "wall_time_s": round(time.time() - t0, 1),
        "cpu_time_s": round(_cpu_seconds() - c0, 1),  # this process and its rendering workers: less sensitive to a busy machine
        "render_time_s": round(t_render, 1) if not given else None,
        "pool_rendered_before": given,
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "processor": platform.machine()},
        "command": cfg.command(torch.get_num_threads()),
    }
    atomic_write(out / f"{bb.PHANTOMCLIP}.card.json", json.dumps(card, indent=1))
    log(f"wrote {ckpt} ({ckpt.stat().st_size / 1e6:.1f} MB) in {time.time() - t0:.0f} s")
    return ckpt
