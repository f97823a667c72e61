"""Real-image datasets with dict samples (MONAI style): the folder datasets' common part, ChestX-ray14
and OCT2017 (fastMRI brain slices: :mod:`.fastmri_slices`; MedMNIST: :mod:`.medmnist`).

Each item is ``{"image": uint8 (H, W), "labels": int8 (C,), "signs": None, "meta": {...}}``:
``labels`` follows ``dataset.categories``; an all-zero vector is a normal image; ``signs`` is
``None`` because no real benchmark annotates signs (only the phantoms do). Images are read
with :func:`sdmad_lite.data.images.load_image` (8/16-bit, palette, RGB(A) handled).

**Other findings.** When ``categories`` is a subset of a dataset's labels, an image whose
findings all lie *outside* it is neither normal nor one of the categories; with
``drop_other_findings=True`` (default) such images are left out. Images with at least one
chosen category keep it (their other findings only show in ``meta["findings"]``).

The images themselves are not shipped: see ``sdmad_lite/data_scripts/README.md``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import tables
from .images import DICOM_SUFFIXES, load_image
from ..errors import SdmadError

Sample = dict[str, Any]
Transform = Callable[[Sample], Sample]


class DatasetNotFoundError(SdmadError, FileNotFoundError):
    """A dataset folder or file is missing or laid out differently than expected."""


def check_categories(categories: Sequence[str] | None, valid: Sequence[str],
                     default: Sequence[str], name: str) -> tuple[str, ...]:
    """The chosen categories (``default`` when None): known, not empty, no duplicate."""
    cats = tuple(default if categories is None else categories)
    bad = [c for c in cats if c not in valid]
    if bad or not cats:
        raise ValueError(f"{name}: unknown or empty categories {bad or cats}; valid: {list(valid)}")
    if len(set(cats)) != len(cats):
        raise ValueError(f"{name}: duplicate categories in {list(cats)}")
    return cats


class FileDataset:
    """A dataset of image files: items are (path, labels, meta) triples; images are read on access."""

    name = "real"
    categories: tuple[str, ...] = ()

    def __init__(self, transform: Transform | None = None) -> None:
        self.transform = transform
        self._paths: list[Path] = []
        self._labels = np.zeros((0, 0), np.int8)
        self._meta: list[dict[str, Any]] = []

    def __len__(self) -> int:
        return len(self._paths)

    @property
    def labels(self) -> np.ndarray:
        """int8 (N, C) label matrix, rows in item order (a copy)."""
        return self._labels.copy()

    def __getitem__(self, i: int) -> Sample:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {self.name} of length {len(self)}")
        path = self._paths[i]
        sample = {
            "image": load_image(path),
            "labels": self._labels[i].copy(),
            "signs": None,
            "meta": {**self._meta[i], "path": str(path), "dataset": self.name,
                     "categories": list(self.categories)},
        }
        return self.transform(sample) if self.transform else sample

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={len(self)}, categories={list(self.categories)})"


# --------------------------------------------------------------------------- ChestX-ray14

class ChestXray14Dataset(FileDataset):
    """NIH ChestX-ray14 PNGs in ``root/images_subdir`` with the shipped labels.

    ``split``: ``"train_val"``, ``"test"`` (official, patient-disjoint) or ``"all"``.
    Missing images raise an error unless ``skip_missing=True`` (then only the images present
    are used, e.g. after downloading a few of the 12 archives).
    """

    name = "chestxray14"

    def __init__(self, root: str | os.PathLike, split: str = "test",
                 categories: Sequence[str] | None = None, images_subdir: str | None = "images",
                 skip_missing: bool = False, drop_other_findings: bool = True,
                 transform: Transform | None = None) -> None:
        super().__init__(transform)
        if split not in ("train_val", "test", "all"):
            raise ValueError(f"split must be 'train_val', 'test' or 'all', got {split!r}")
        self.categories = check_categories(categories, tables.CHESTXRAY14_LABELS,
                                           tables.CHESTXRAY14_LABELS, self.name)
        folder = Path(root) / images_subdir if images_subdir else Path(root)
        if not folder.is_dir():
            raise DatasetNotFoundError(
                f"ChestX-ray14 image folder not found: {folder}. Get the images with "
                f"`python -m sdmad_lite.data_scripts.chestxray14 --root {root}` (NIH, 12 archives, ~42 GB; "
                "see sdmad_lite/data_scripts/README.md); the folder should contain PNGs such as "
                "00000001_000.png."
            )
        # a listed name is found as its PNG, or as a DICOM file with the same stem (the paper profile's radiographs)
        files = os.listdir(folder)
        on_disk = {f: f for f in files if f.endswith(".png")}
        on_disk.update({f.rsplit(".", 1)[0] + ".png": f for f in files if f.lower().endswith(DICOM_SUFFIXES)
                        and f.rsplit(".", 1)[0] + ".png" not in on_disk})
        present = set(on_disk)
        table = tables.load_chestxray14()
        if split != "all":
            table = table[table["split"] == split]
        all_labels = table[list(tables.CHESTXRAY14_LABELS)].to_numpy()
        y = table[list(self.categories)].to_numpy(np.int8)
        keep = np.ones(len(table), bool)
        if drop_other_findings:
            keep &= ~((y.sum(1) == 0) & (all_labels.sum(1) > 0))
        names = table["image"].to_numpy()
        have = np.fromiter((n in present for n in names), bool, len(names))
        missing = keep & ~have
        if missing.any() and not skip_missing:
            ex = list(names[missing][:3])
            raise DatasetNotFoundError(
                f"{int(missing.sum()):,} of {int(keep.sum()):,} ChestX-ray14 {split} images are "
                f"missing from {folder} (e.g. {ex}). Download the remaining archives with "
                "`python -m sdmad_lite.data_scripts.chestxray14`, or pass skip_missing=True to use only the images present."
            )
        keep &= have
        if not keep.any():
            raise DatasetNotFoundError(
                f"no ChestX-ray14 {split} image found in {folder} ({len(present)} PNG or DICOM files there); "
                "file names must match the NIH names, e.g. 00000001_000.png or 00000001_000.dcm"
            )
        sel = table[keep]
        self._paths = [folder / on_disk[n] for n in sel["image"]]
        self._labels = y[keep]
        lab = all_labels[keep]
        self._meta = [
            {"image": im, "patient": p, "split": s,
             "findings": [tables.CHESTXRAY14_LABELS[j] for j in np.flatnonzero(row)]}
            for im, p, s, row in zip(sel["image"], sel["patient"], sel["split"], lab)
        ]
        self.n_missing = int(missing.sum())


# --------------------------------------------------------------------------- OCT2017

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".tif", ".tiff", ".bmp") + DICOM_SUFFIXES


class OCT2017Dataset(FileDataset):
    """OCT2017 (Kermany) class-folder tree: ``root/{train,test}/{CNV,DME,DRUSEN,NORMAL}/*.jpeg``.

    ``split=None`` reads the class folders directly under ``root``. One label per image:
    one-hot over ``categories`` (default CNV, DME, DRUSEN); NORMAL is the all-zero vector.
    """

    name = "oct2017"

    def __init__(self, root: str | os.PathLike, split: str | None = "test",
                 categories: Sequence[str] | None = None, drop_other_findings: bool = True,
                 transform: Transform | None = None) -> None:
        super().__init__(transform)
        self.categories = check_categories(categories, tables.OCT2017_ANOMALIES,
                                           tables.OCT2017_ANOMALIES, self.name)
        base = Path(root) if split is None else Path(root) / split
        expected = list(tables.OCT2017_CLASSES)
        if not base.is_dir():
            found = sorted(p.name for p in Path(root).iterdir() if p.is_dir()) if Path(root).is_dir() else []
            raise DatasetNotFoundError(
                f"OCT2017 folder not found: {base} (found subfolders {found} in {root}). Expected "
                f"{root}/<split>/{{{','.join(expected)}}}/ — get it with `python -m sdmad_lite.data_scripts.oct2017 "
                f"--root {Path(root).parent if Path(root).name == 'OCT2017' else root}` (it writes ROOT/OCT2017/; "
                "Mendeley rscbjbr9sj, CC BY 4.0)."
            )
        found = sorted(p.name for p in base.iterdir() if p.is_dir())
        lacking = [c for c in expected if c not in found]
        if lacking:
            loose = sum(1 for p in base.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            flat = (f" It holds {loose} image files directly: OCT2017 takes its labels from the class "
                    "folders, so sort the images into them (the file names start with the class, e.g. "
                    "CNV-1032178-1.jpeg)." if loose else "")
            raise DatasetNotFoundError(
                f"{base}: expected class subfolders {expected}, missing {lacking} (found {found}).{flat} "
                "Point root at the folder that holds train/ and test/, or use split=None for a "
                "folder that holds the class folders directly."
            )
        for cls in expected:
            if cls != "NORMAL" and cls not in self.categories and drop_other_findings:
                continue
            files = sorted(p for p in (base / cls).iterdir()
                           if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            for f in files:
                self._paths.append(f)
                parts = f.stem.split("-")
                self._meta.append({"image": f.name, "class": cls,
                                   "patient": parts[1] if len(parts) >= 3 else None,
                                   "split": split})
        if not self._paths:
            raise DatasetNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {base}/{expected}")
        cls = np.array([m["class"] for m in self._meta])
        self._labels = np.stack([cls == c for c in self.categories], 1).astype(np.int8)
