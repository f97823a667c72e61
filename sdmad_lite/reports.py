"""The PhantomCLIP zero-shot report (chapter 5, ``sdmad zeroshot-report``): what the frozen model
knows of each phantom world — category names vs sign descriptions vs random words, the anchor,
and whether it retrieves the signs actually drawn in an image."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from . import metrics as M
from .data.phantoms.catalogue import MODALITIES
from .data.phantoms.world import PhantomDataset
from .methods.heads import branch_features
from .metrics import mean_std
from .models.captions import UNCAPTIONED
from .models.zeroshot import category_text, two_way_probability
from .signs.bank import SignBank


@dataclass(frozen=True)
class Band:
    """A range of the published regime, in percent (chapter 5's calibration): ``low < x`` when only
    ``low`` is given, ``x <= high`` when only ``high`` is, ``low <= x <= high`` when both are."""

    low: float | None = None
    high: float | None = None

    def __str__(self) -> str:
        """``"[50, 60]"``, ``"<= 65"`` or ``"> 50"`` (as ``calibration.meta`` records it)."""
        f = "{:g}".format
        if self.low is not None and self.high is not None:
            return f"[{f(self.low)}, {f(self.high)}]"
        return f"<= {f(self.high)}" if self.low is None else f"> {f(self.low)}"

    def contains(self, x: float) -> bool:
        if self.low is not None and self.high is not None:
            return self.low <= x <= self.high
        return x <= self.high if self.low is None else x > self.low

    def outside_by(self, x: float) -> float:
        """How far ``x`` lies outside the band, in its units (0 inside): the distance to the nearest edge."""
        if self.contains(x):
            return 0.0
        return min(abs(x - e) for e in (self.low, self.high) if e is not None)


#: the published regime (``PAPER.md``) that the default backbone is calibrated to, in percent — the zero-shot
#: macro AUROC of category names, of sign prompts and of the anchor, by modality (``benchmarks/calibrate_regime.py``)
BANDS = {
    "chest": {"names": Band(50, 60), "signs": Band(60, 72), "anchor": Band(60, 78)},
    "oct": {"names": Band(None, 65), "signs": Band(None, 80), "anchor": Band(50, None)},
    "brain": {"names": Band(None, 65), "signs": Band(None, 80), "anchor": Band(50, None)},
}


def sign_text_embeddings(backbone, bank) -> tuple[list[str], torch.Tensor]:
    """One embedding per renderer sign: the mean of the bank's candidate texts that describe it
    (the sign bank's radiological wording, not PhantomCLIP's caption phrases)."""
    texts: dict[str, list[str]] = {}
    for c in bank.categories:
        for s in bank.drawn(c):
            sign = bank.renders(c)[s.id]
            texts.setdefault(sign, []).extend(t.format(obj=bank.obj, sign=s.text) for t in bank.templates)
    names = sorted(texts)
    emb = torch.stack([backbone.mean_text(sorted(set(texts[n]))) for n in names])
    return names, emb


def sign_recall_at_k(image_emb: torch.Tensor, drawn: list[list[str]], names: list[str], sign_emb: torch.Tensor,
                     ks=(1, 3), only: set[str] | None = None) -> dict[int, float]:
    """Mean over images with ≥1 drawn sign of ``|drawn ∩ top-k signs| / min(k, |drawn|)``."""
    sims = image_emb @ sign_emb.T
    order = sims.argsort(dim=1, descending=True)
    out = {}
    for k in ks:
        vals = []
        for i, d in enumerate(drawn):
            d = [s for s in d if s in names and (only is None or s in only)]
            if not d:
                continue
            top = {names[j] for j in order[i, :k].tolist()}
            vals.append(len(top & set(d)) / min(k, len(d)))
        out[k] = float(np.mean(vals)) if vals else float("nan")
    return out


#: the phantom seeds of the zero-shot report's held-out sets (``seed`` + base); ``evaluation`` is chapter 4's
#: table; ``development`` holds calibration phantoms that no table of the book uses (disjoint from the
#: evaluation sets 900_001 / 900_002, the development task sets 700_001 / 700_002 and chapter 4's 50_000 + seed)
REPORT_SEED_BASE = {"evaluation": 50_000, "development": 720_000}


@functools.lru_cache(maxsize=16)
def report_phantoms(modality: str, n: int, seed: int, size: int = 224) -> tuple[np.ndarray, np.ndarray, tuple]:
    """The held-out phantoms of one report row: images (n, size, size), labels (n, C) and drawn signs per
    image; kept in memory, so that several backbones are reported on the same images without rendering again."""
    ds = PhantomDataset(modality, n, seed=seed, size=size)
    items = [ds[i] for i in range(n)]
    return np.stack([it["image"] for it in items]), ds.labels, tuple(tuple(sorted(it["signs"])) for it in items)


def zero_shot_report(backbone, seeds=(0, 1, 2, 3, 4), n: int = 300, size: int = 224, world: str = "evaluation",
                     uncaptioned=UNCAPTIONED) -> pd.DataFrame:
    """PhantomCLIP's zero-shot knowledge on held-out phantoms, one row per (modality, seed).

    Columns: macro AUROC of zero-shot multi-label classification with category names, with the
    expert-selected sign prompts, and with random-word descriptors (WaffleCLIP control); anchor
    AUROC (normal vs abnormal); sign retrieval recall@1/@3 for captioned and uncaptioned signs
    (``uncaptioned``: the signs the checkpoint's captions never described, its card's ``uncaptioned_signs``).
    Seeds draw different held-out phantom sets (and different random words); ``world`` says which
    (:data:`REPORT_SEED_BASE`: ``development`` for calibration, never a table of the book).
    """
    if world not in REPORT_SEED_BASE:
        raise ValueError(f"world must be one of {list(REPORT_SEED_BASE)}, got {world!r}")
    uncaptioned = frozenset(uncaptioned)
    rows = []
    for modality in ("chest", "oct", "brain"):
        bank = SignBank.load(f"phantom_{modality}")
        names, sign_emb = sign_text_embeddings(backbone, bank)
        anchors = bank.anchor_prompts()
        t_n, t_a = backbone.mean_text(anchors["normal"]), backbone.mean_text(anchors["abnormal"])
        categories = list(MODALITIES[modality].categories)
        for seed in seeds:
            images, y, drawn = report_phantoms(modality, n, REPORT_SEED_BASE[world] + seed, size)
            v = backbone.encode_images(images)
            rng = np.random.default_rng(seed)
            row = {"modality": modality, "seed": seed, "n": n}
            for src in ("names", "signs", "random"):
                t = torch.stack([category_text(backbone, bank, c, src, rng) for c in categories])
                row[f"auroc_{src}"] = M.macro_auroc(y, two_way_probability(v, t, t_n).numpy()).value
            row["auroc_anchor"] = M.binary_auroc((y.sum(1) > 0).astype(int), (v @ t_a - v @ t_n).numpy())
            known = set(names) - uncaptioned
            for tag, only in (("captioned", known), ("uncaptioned", set(names) & uncaptioned)):
                rec = sign_recall_at_k(v, [list(d) for d in drawn], names, sign_emb, only=only) if only else {1: float("nan"), 3: float("nan")}
                row[f"recall@1_{tag}"], row[f"recall@3_{tag}"] = rec[1], rec[3]
            row["n_signs"] = len(names)
            rows.append(row)
    return pd.DataFrame(rows)


def summarize_report(df) -> pd.DataFrame:
    """Mean ± std over seeds per modality (percent), for the book and the results file."""
    cols = [c for c in df.columns if c.startswith(("auroc_", "recall@"))]
    out = []
    for mod, g in df.groupby("modality", sort=False):
        rec = {"modality": mod, "seeds": int(g["seed"].nunique()), "images per seed": int(g["n"].iloc[0])}
        for c in cols:
            ms = mean_std(g[c].to_numpy(dtype=float))
            rec[c] = f"{100 * ms.mean:.1f} ± {100 * ms.std:.1f}"
        out.append(rec)
    return pd.DataFrame(out).set_index("modality")


# ----------------------------------------------------------------------------- localization (chapter 10)
def sign_mask(task, item: dict, c: int) -> np.ndarray:
    """The union of the drawn-sign masks of category ``c`` in a phantom ``item`` (its ground truth)."""
    signs = MODALITIES[task.dataset.removeprefix("phantom-")].category_signs[task.categories[c]]
    m = np.zeros_like(item["image"], bool)
    for s in signs:
        if s in item["signs"]:
            m |= item["signs"][s]
    return m


def sign_maps(task, head, text, n: int) -> torch.Tensor:
    """Patch-level sign-similarity maps (n, C, grid, grid) of the first ``n`` test images."""
    feats = task.test_feats.subset(range(n))
    with torch.no_grad():
        pu = branch_features(head, task, feats, "side", tokens="patches")
        maps = head.sign_maps(pu, text)  # (n, C, P)
    g = task.backbone.grid
    return maps.reshape(n, len(task.categories), g, g)


def localization(task, maps: torch.Tensor) -> pd.DataFrame:
    """For every (test image, present category) of ``maps``: the pixel AUROC of the upsampled map against
    the category's drawn-sign masks, the pointing game (map maximum inside a mask) and the mask's share."""
    rows = []
    for i in range(len(maps)):
        item = task.test[i]
        for c in np.flatnonzero(task.y_test[i]):
            m = sign_mask(task, item, c)
            if not m.any():
                continue
            up = torch.nn.functional.interpolate(maps[i, c][None, None], size=m.shape, mode="bilinear")[0, 0].numpy()
            rows.append({"category": task.categories[c], "pixel AUROC": M.auroc(m.ravel().astype(int), up.ravel()),
                         "pointing hit": bool(m.ravel()[up.argmax()]), "mask share": float(m.mean())})
    return pd.DataFrame(rows)
