"""The phantom world: categories -> signs -> a rendered image with sign-level ground truth.

``render`` is the one entry point; :class:`PhantomDataset` gives MONAI-style dict samples
whose label vectors are drawn from the real label tables; ``write_phantoms`` and the
``sdmad phantoms`` subcommand write PNGs with a ``labels.jsonl`` table.
"""
from __future__ import annotations

import json
from pathlib import Path
from importlib import import_module
from types import ModuleType
from typing import Sequence

import numpy as np
from PIL import Image

from ...seeding import rng as derive
from ..tables import label_rows

from .catalogue import ModalitySpec, get_modality
from .primitives import Scene, bbox, to_uint8
from .scanner import Scanner

RENDERERS = ("chest", "oct", "brain")  # one module per modality, same names
P_SIGN = 0.85


def renderer(modality: str) -> ModuleType:
    """The module that draws ``modality`` (``sample_anatomy``, ``draw_anatomy``, ``compose``, ``SIGNS``)."""
    spec = get_modality(modality)
    return import_module(f"{__package__}.{spec.renderer or spec.name}")


# ---------------------------------------------------------------------------------------
# Labels and signs
# ---------------------------------------------------------------------------------------
def label_vector(spec: ModalitySpec, labels) -> np.ndarray:
    """Category names or a 0/1 vector -> ``int8`` vector over ``spec.categories``."""
    if labels is None:
        return np.zeros(len(spec.categories), np.int8)
    if isinstance(labels, str):
        labels = [labels]
    labels = list(labels) if not isinstance(labels, np.ndarray) else labels
    if len(labels) == 0 or all(isinstance(x, str) for x in labels):
        unknown = set(labels) - set(spec.categories) - {"Normal", "NORMAL", "No Finding"}
        if unknown:
            raise ValueError(f"unknown {spec.name} categories {sorted(unknown)}; known: {spec.categories}")
        return np.array([c in labels for c in spec.categories], np.int8)
    arr = np.asarray(labels)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"labels must be category names or a 0/1 vector over {spec.categories}, got {labels!r}")
    vec = arr.reshape(-1)
    if vec.shape != (len(spec.categories),):
        raise ValueError(f"label vector must have {len(spec.categories)} entries for {spec.name}, got {vec.shape}")
    if not np.isin(vec, (0, 1)).all():
        raise ValueError(f"label vector for {spec.name} must hold only 0/1, got {vec.tolist()}")
    return vec.astype(np.int8)


def sample_signs(spec: ModalitySpec, categories: Sequence[str], rng: np.random.Generator,
                 p_sign: float = P_SIGN) -> list[str]:
    """Each present category draws each of its signs with probability ``p_sign``, at least 2
    (all of them if it has fewer). A sign shared by two present categories is drawn once.
    Returned in catalogue order."""
    drawn: set[str] = set()
    for c in categories:
        own = list(spec.category_signs[c])
        keep = [s for s in own if rng.random() < p_sign]
        need = min(2, len(own))
        if len(keep) < need:
            rest = [s for s in own if s not in keep]
            keep += list(rng.choice(rest, size=need - len(keep), replace=False))
        drawn.update(keep)
    return [s for s in spec.signs if s in drawn]


# ---------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------
def render(modality: str, labels=None, *, seed: int, size: int = 224, conspicuity: float = 1.0,
           noise: float = 1.0, signs: set[str] | None = None, p_sign: float = P_SIGN,
           index: int | None = None) -> dict:
    """Render one phantom.

    ``labels``: category names or a 0/1 vector over the catalogue categories. ``signs``: if
    given, draw exactly these sign ids instead of sampling them from the labels (the labels
    are then returned as given). The patient (anatomy, pose, contrast, noise) depends only
    on ``(modality, seed)``; each sign has its own generator, so adding or removing a sign
    changes the pixels only where that sign is.

    Returns ``{"image": uint8 (size, size), "labels": int8 (C,), "signs": {id: bool mask},
    "meta": {...}}``; ``meta["subpixel_signs"]`` lists drawn signs too small to cover a pixel
    centre (only at tiny sizes), which have no mask.
    """
    spec = get_modality(modality)
    mod = renderer(spec.name)
    seed = int(seed)
    lab = label_vector(spec, labels)
    cats = tuple(c for c, x in zip(spec.categories, lab) if x)
    if signs is None:
        drawn = sample_signs(spec, cats, derive(seed, spec.name, "signs"), p_sign)
    else:
        unknown = set(signs) - set(spec.signs)
        if unknown:
            raise ValueError(f"unknown {spec.name} signs {sorted(unknown)}")
        drawn = [s for s in spec.signs if s in signs]
    frame, anat = mod.sample_anatomy(derive(seed, spec.name, "anatomy"), size)
    scene = Scene(frame=frame, anat=anat, seed=seed, categories=cats, drawn=tuple(drawn))
    masks: dict[str, np.ndarray] = {}
    strength = {s: conspicuity * float(derive(seed, spec.name, "strength", s).uniform(0.8, 1.2)) for s in drawn}
    for stage in ("structural", "anatomy", "local"):
        if stage == "anatomy":  # a structural sign's mask may wait for the later ones, which can move it
            masks = {k: m() if callable(m) else m for k, m in masks.items()}
            mod.draw_anatomy(scene)
            continue
        for s in drawn:
            d = mod.SIGNS[s]
            if d.stage == stage:
                masks[s] = d.draw(scene, derive(seed, spec.name, "sign", s), strength[s])
    img = mod.compose(scene, derive(seed, spec.name, "noise"), noise)
    # At very small sizes a sign can fall between pixel centres: it is reported, not masked.
    subpixel = [s for s, m in masks.items() if not m.any()]
    return {
        "image": to_uint8(img),
        "labels": lab,
        "signs": {s: m for s, m in masks.items() if m.any()},
        "meta": {"modality": spec.name, "seed": seed, "categories": list(cats), "index": index,
                 "size": size, "conspicuity": conspicuity, "noise": noise, "subpixel_signs": subpixel},
    }


# ---------------------------------------------------------------------------------------
# Label sources
# ---------------------------------------------------------------------------------------
def uniform_labels(spec: ModalitySpec, n: int, rng: np.random.Generator, normal_fraction: float = 0.3) -> np.ndarray:
    """Independent sampler: normal with ``normal_fraction``, else 1 category (OCT) or 1–3
    uniformly chosen categories (60/30/10 %)."""
    C = len(spec.categories)
    out = np.zeros((n, C), np.int8)
    for i in range(n):
        if rng.random() < normal_fraction:
            continue
        k = 1 if not spec.multi_label else int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))
        out[i, rng.choice(C, size=min(k, C), replace=False)] = 1
    return out


def real_labels(spec: ModalitySpec, n: int, rng: np.random.Generator, normal_fraction: float = 0.3) -> np.ndarray:
    """Abnormal rows drawn uniformly from the real label table (``sdmad_lite.data.tables``),
    normals with probability ``normal_fraction``; OCT rows keep exactly one label."""
    rows = np.asarray(label_rows(spec.dataset, list(spec.categories)), dtype=np.int8)
    rows = rows[rows.sum(1) > 0]
    if len(rows) == 0:
        raise ValueError(f"no abnormal rows in the {spec.dataset} table")
    out = np.zeros((n, len(spec.categories)), np.int8)
    normal = rng.random(n) < normal_fraction
    pick = rng.integers(0, len(rows), n)
    for i in np.flatnonzero(~normal):
        row = rows[pick[i]].copy()
        if not spec.multi_label and row.sum() > 1:
            keep = rng.choice(np.flatnonzero(row))
            row[:] = 0
            row[keep] = 1
        out[i] = row
    return out


LABEL_SOURCES = {"real": real_labels, "uniform": uniform_labels}


def item_seed(seed: int, i: int) -> int:
    """Seed of dataset item ``i`` (depends only on ``(seed, i)``)."""
    return int(np.random.SeedSequence([int(seed), int(i), 0x5D]).generate_state(1)[0])


class PhantomDataset:
    """MONAI-style dataset of phantoms: ``ds[i]`` is the dict of :func:`render`.

    Deterministic: item ``i`` depends only on ``(seed, i)`` and the constructor arguments.
    ``shift`` > 0 shows every image through a :class:`~sdmad_lite.data.phantoms.scanner.Scanner` of
    that strength (settings from ``shift_seed``): a target domain the backbone never saw.
    ``labels`` (``n x C``, int8) are sampled at construction, without rendering.
    """

    def __init__(self, modality: str, n: int, seed: int = 0, size: int = 224, normal_fraction: float = 0.3,
                 conspicuity: float = 1.0, noise: float = 1.0, label_source: str | None = None, shift: float = 0.0,
                 shift_seed: int = 0):
        self.spec = get_modality(modality)
        self.modality, self.n, self.seed, self.size = self.spec.name, int(n), int(seed), int(size)
        self.conspicuity, self.noise = conspicuity, noise
        self.scanner = Scanner(float(shift), int(shift_seed))  # the target-domain shift (scanner.py); 0: none
        self.categories: list[str] = list(self.spec.categories)
        label_source = self.spec.label_source if label_source is None else label_source  # the world's own
        if label_source not in LABEL_SOURCES:
            raise ValueError(f"label_source must be one of {list(LABEL_SOURCES)}")
        self.label_source = label_source
        self.labels: np.ndarray = LABEL_SOURCES[label_source](
            self.spec, self.n, derive(self.seed, self.modality, "labels", label_source), normal_fraction)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        if not -self.n <= i < self.n:
            raise IndexError(i)
        i = i % self.n
        rec = render(self.modality, self.labels[i], seed=item_seed(self.seed, i), size=self.size,
                     conspicuity=self.conspicuity, noise=self.noise, index=i)
        if self.scanner.strength:
            rec["image"], rec["signs"] = self.scanner(rec["image"], item_seed(self.seed, i), rec["signs"])
            rec["signs"] = {k: m for k, m in rec["signs"].items() if m.any()}  # a sign the zoom cut out has no mask
            rec["meta"]["scanner"] = {"strength": self.scanner.strength, "seed": self.scanner.seed}
        return rec

    def __iter__(self):
        return (self[i] for i in range(self.n))


# ---------------------------------------------------------------------------------------
# Files and CLI
# ---------------------------------------------------------------------------------------
def write_phantoms(modality: str, n: int, seed: int, out_dir, size: int = 224, **kw) -> Path:
    """Write ``n`` PNGs and ``labels.jsonl`` (file, categories, labels, sign bounding boxes
    ``[x0, y0, x1, y1]``) to ``out_dir``; same arguments -> same bytes. Returns ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ds = PhantomDataset(modality, n, seed=seed, size=size, **kw)
    lines = []
    for i in range(len(ds)):
        s = ds[i]
        name = f"{ds.modality}_{i:05d}.png"
        Image.fromarray(s["image"], mode="L").save(out / name, format="PNG", compress_level=6)
        rec = {"file": name, "categories": s["meta"]["categories"], "labels": s["labels"].tolist(),
               "seed": s["meta"]["seed"], "signs": {k: bbox(m) for k, m in s["signs"].items()}}
        lines.append(json.dumps(rec, sort_keys=True))
    (out / "labels.jsonl").write_text("\n".join(lines) + "\n")
    return out
