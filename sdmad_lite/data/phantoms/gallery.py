"""Figures of the phantom world: real images beside phantoms, and one phantom with its signs."""
from __future__ import annotations

import csv
from pathlib import Path

import matplotlib.pyplot as plt  # no backend is forced here: notebooks keep their inline figures
import numpy as np
from PIL import Image

from ...io import RESOURCES

from .catalogue import get_modality
from .world import render

SAMPLES = RESOURCES / "samples"
CHEST_PICKS = ("00000211_000.png", "00006626_000.png", "00002927_000.png", "00001511_000.png")
OCT_PICKS = ("NORMAL-100980-1.jpeg", "CNV-1032178-1.jpeg", "DME-1029576-1.jpeg", "DRUSEN-1021298-1.jpeg")
BRAIN_PICKS = ((), ("Mass", "Edema"), ("Enlarged ventricles",), ("Posttreatment change", "Craniotomy"))


def _real(dataset: str, name: str, size: int) -> np.ndarray:
    with Image.open(SAMPLES / dataset / name) as im:
        return np.asarray(im.convert("L").resize((size, size), Image.BILINEAR))


def _real_labels(dataset: str) -> dict[str, list[str]]:
    rows = list(csv.DictReader(open(SAMPLES / dataset / "labels.csv", newline="")))
    if dataset == "oct2017":
        return {r["image"]: [] if r["label"] == "NORMAL" else [r["label"]] for r in rows}
    return {r["image"]: [c for c in r["finding_labels"].split("|") if c != "No Finding"] for r in rows}


def _show(ax, img: np.ndarray, title: str) -> None:
    ax.imshow(img, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_title(title, fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])


def gallery_figure(out_path=None, size: int = 224, seed: int = 0):
    """Real samples (ChestX-ray14, OCT2017) above phantoms with the same catalogue labels;
    a row of brain phantoms (no real brain images are shipped)."""
    fig, axes = plt.subplots(5, 4, figsize=(8.4, 11.2))
    for row, (dataset, modality, picks) in enumerate((("chestxray14", "chest", CHEST_PICKS), ("oct2017", "oct", OCT_PICKS))):
        spec, labels = get_modality(modality), _real_labels(dataset)
        for j, name in enumerate(picks):
            real_cats = labels[name]
            cats = [c for c in real_cats if c in spec.categories]
            _show(axes[2 * row, j], _real(dataset, name, size), "real: " + (", ".join(real_cats) or "normal"))
            ph = render(modality, cats, seed=seed * 1000 + 17 * j + row, size=size)
            _show(axes[2 * row + 1, j], ph["image"], "phantom: " + (", ".join(cats) or "normal"))
    for j, cats in enumerate(BRAIN_PICKS):
        ph = render("brain", list(cats), seed=seed * 1000 + 101 + j, size=size)
        _show(axes[4, j], ph["image"], "phantom: " + (", ".join(cats) or "normal"))
    axes[4, 0].set_ylabel("brain (phantoms only:\nno real images shipped)", fontsize=7)
    axes[0, 0].set_ylabel("ChestX-ray14", fontsize=8)
    axes[2, 0].set_ylabel("OCT2017", fontsize=8)
    fig.suptitle("Real images (rows 1, 3) and phantoms with the same labels (rows 2, 4, 5)", fontsize=9)
    fig.tight_layout()
    if out_path is not None:
        fig.savefig(out_path, dpi=110)
    return fig


def sign_figure(modality: str, seed: int, labels=None, signs=None, size: int = 224, ax=None, out_path=None,
                label_size: float = 6, **render_kw):
    """One phantom with each drawn sign's ground-truth mask outlined and labelled.

    ``render_kw`` (``conspicuity``, ``noise``) go to :func:`~sdmad_lite.data.phantoms.world.render`.
    """
    spec = get_modality(modality)
    if labels is None and signs is None:
        labels = [spec.categories[seed % len(spec.categories)]]
    ph = render(modality, labels, seed=seed, size=size, signs=signs, **render_kw)
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 5))
    _show(ax, ph["image"], f"{modality} seed {seed}: " + (", ".join(ph["meta"]["categories"]) or "normal"))
    colours = plt.cm.tab10(np.linspace(0, 1, 10))
    for i, (sid, m) in enumerate(ph["signs"].items()):
        if not m.any():
            continue
        col = colours[i % 10]
        ax.contour(m.astype(float), levels=[0.5], colors=[col], linewidths=0.9)
        ys, xs = np.nonzero(m)
        ax.text(xs.min(), max(ys.min() - 2, 6), sid.replace("_", " "), color=col, fontsize=label_size,
                bbox=dict(facecolor="black", alpha=0.6, pad=0.5, lw=0))
    if fig is not None:
        fig.tight_layout()
        if out_path is not None:
            fig.savefig(out_path, dpi=130)
        return fig
    return ax.figure


def sign_sheet(modality: str, seed: int = 3, size: int = 160, out_path=None):
    """Every sign of a modality drawn alone on the same patient, its mask outlined."""
    spec = get_modality(modality)
    ids = list(spec.signs)
    cols = 4
    rows = -(-len(ids) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols, 2.4 * rows))
    for ax, sid in zip(axes.flat, ids):
        sign_figure(modality, seed, signs={sid}, size=size, ax=ax)
        ax.set_title(sid.replace("_", " "), fontsize=7)
    for ax in list(axes.flat)[len(ids):]:
        ax.axis("off")
    fig.tight_layout()
    if out_path is not None:
        fig.savefig(Path(out_path), dpi=110)
    return fig
