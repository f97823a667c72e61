"""Real-image datasets with dict samples (MONAI style).

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
import re
import zipfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from . import tables
from .images import DICOM_SUFFIXES, _scale_to_uint8, load_image, pil_to_array
from ..errors import SdmadError

Sample = dict[str, Any]
Transform = Callable[[Sample], Sample]


class DatasetNotFoundError(SdmadError, FileNotFoundError):
    """A dataset folder or file is missing or laid out differently than expected."""


def _check_categories(categories: Sequence[str] | None, valid: Sequence[str],
                      default: Sequence[str], name: str) -> tuple[str, ...]:
    cats = tuple(default if categories is None else categories)
    bad = [c for c in cats if c not in valid]
    if bad or not cats:
        raise ValueError(f"{name}: unknown or empty categories {bad or cats}; valid: {list(valid)}")
    if len(set(cats)) != len(cats):
        raise ValueError(f"{name}: duplicate categories in {list(cats)}")
    return cats


class _FileDataset:
    """Items are (path, labels, meta) triples; images are read on access."""

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

class ChestXray14Dataset(_FileDataset):
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
        self.categories = _check_categories(categories, tables.CHESTXRAY14_LABELS,
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


class OCT2017Dataset(_FileDataset):
    """OCT2017 (Kermany) class-folder tree: ``root/{train,test}/{CNV,DME,DRUSEN,NORMAL}/*.jpeg``.

    ``split=None`` reads the class folders directly under ``root``. One label per image:
    one-hot over ``categories`` (default CNV, DME, DRUSEN); NORMAL is the all-zero vector.
    """

    name = "oct2017"

    def __init__(self, root: str | os.PathLike, split: str | None = "test",
                 categories: Sequence[str] | None = None, drop_other_findings: bool = True,
                 transform: Transform | None = None) -> None:
        super().__init__(transform)
        self.categories = _check_categories(categories, tables.OCT2017_ANOMALIES,
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


# --------------------------------------------------------------------------- fastMRI+ brain

FASTMRI_SLICE_PATTERN = re.compile(r"^(file_brain_[A-Za-z0-9]+_\d+_\d+)_(\d{3})\.png$")
"""Slice PNG names: ``{file}_{slice:03d}.png``, e.g. ``file_brain_AXFLAIR_200_6002425_005.png``."""


def fastmri_slice_filename(file: str, slice_index: int) -> str:
    """The PNG name :class:`FastMRIBrainSlices` expects for a volume's slice."""
    return f"{file}_{int(slice_index):03d}.png"


class FastMRIBrainSlices(_FileDataset):
    """fastMRI brain slices exported as PNG (``sdmad_lite/data_scripts/fastmri_brain.py``) + fastMRI+ labels.

    Convention: a flat folder of ``{file}_{slice:03d}.png`` (:data:`FASTMRI_SLICE_PATTERN`),
    written **flipped up/down** relative to the fastMRI reconstruction, so that the fastMRI+
    boxes (``meta["boxes"]``, x/y/width/height in pixels) apply directly
    (:data:`sdmad_lite.data.tables.FLIPPED_UD`). Only volumes that fastMRI+ reviewed are used.
    Slices without boxes are normal at slice level (all-zero labels) unless
    ``include_unboxed=False``; study-level labels are in ``meta["study_labels"]``.
    """

    name = "fastmri-brain"

    def __init__(self, root: str | os.PathLike, categories: Sequence[str] | None = None,
                 include_unboxed: bool = True, drop_other_findings: bool = True,
                 transform: Transform | None = None) -> None:
        super().__init__(transform)
        valid = tables.fastmri_brain_slice_labels()
        self.categories = _check_categories(categories, valid, valid, self.name)
        root = Path(root)
        hint = ("Export slices from your fastMRI .h5 files (fastMRI data-sharing agreement) with "
                f"`python -m sdmad_lite.data_scripts.fastmri_brain --h5 <dir> --out {root}`; names must look "
                "like file_brain_AXFLAIR_200_6002425_005.png ({file}_{slice:03d}.png).")
        if not root.is_dir():
            raise DatasetNotFoundError(f"fastMRI slice folder not found: {root}. {hint}")
        matches = [(f, FASTMRI_SLICE_PATTERN.match(f)) for f in sorted(os.listdir(root))]
        matches = [(f, m) for f, m in matches if m]
        if not matches:
            raise DatasetNotFoundError(f"no slice PNGs named {{file}}_{{slice:03d}}.png in {root}. {hint}")
        reviewed = set(tables.fastmri_brain_volumes()["file"])
        boxes = tables.load_fastmri_brain_boxes()
        study = tables.fastmri_brain_study_labels().groupby("file")["label"].apply(list).to_dict()
        by_slice = {k: g for k, g in boxes[~boxes["study_level"]].groupby(["file", "slice"])}
        self.skipped_unreviewed = 0
        rows = []
        for fname, m in matches:
            vol, sl = m.group(1), int(m.group(2))
            if vol not in reviewed:
                self.skipped_unreviewed += 1
                continue
            g = by_slice.get((vol, sl))
            found = sorted(set(g["label"])) if g is not None else []
            y = np.array([c in found for c in self.categories], np.int8)
            if g is None and not include_unboxed:
                continue
            if found and not y.any() and drop_other_findings:
                continue
            bx = [] if g is None else [
                {"label": r.label, "x": float(r.x), "y": float(r.y), "width": float(r.width),
                 "height": float(r.height)} for r in g.itertuples()]
            self._paths.append(root / fname)
            rows.append(y)
            self._meta.append({"file": vol, "slice": sl, "findings": found, "boxes": bx,
                               "study_labels": study.get(vol, []), "flipped_ud": tables.FLIPPED_UD})
        if not self._paths:
            raise DatasetNotFoundError(
                f"{root}: {len(matches)} slice PNGs but none usable (volumes not reviewed by fastMRI+: "
                f"{self.skipped_unreviewed}). {hint}")
        self._labels = np.stack(rows).astype(np.int8)


# --------------------------------------------------------------------------- MedMNIST

MEDMNIST_CLASSES: dict[str, tuple[str, ...]] = {
    "chestmnist": tables.CHESTXRAY14_LABELS,
    "octmnist": tables.OCT2017_CLASSES,
}
"""Label order of the MedMNIST flags (medmnist ``INFO[flag]["label"]``):
ChestMNIST columns 0..13 are the 14 ChestX-ray14 findings in the usual order (atelectasis ...
hernia; "pleural" = Pleural_Thickening); OCTMNIST labels 0..3 = choroidal neovascularization
(CNV), diabetic macular edema (DME), drusen (DRUSEN), normal (NORMAL)."""


def _npz_array(path: Path, key: str, mmap: bool = True) -> np.ndarray:
    """One array of an ``.npz``; memory-mapped when the member is stored uncompressed."""
    with zipfile.ZipFile(path) as zf:
        member = key + ".npy"
        if member not in zf.namelist():
            keys = sorted(n[:-4] for n in zf.namelist() if n.endswith(".npy"))
            raise DatasetNotFoundError(f"{path}: no array {key!r}; arrays: {keys}")
        info = zf.getinfo(member)
        if mmap and info.compress_type == zipfile.ZIP_STORED:
            with open(path, "rb") as fh:
                fh.seek(info.header_offset)
                local = fh.read(30)
                n, m = int.from_bytes(local[26:28], "little"), int.from_bytes(local[28:30], "little")
                fh.seek(info.header_offset + 30 + n + m)
                version = np.lib.format.read_magic(fh)
                header = {(1, 0): np.lib.format.read_array_header_1_0,
                          (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                if header is not None:
                    shape, fortran, dtype = header(fh)
                    offset = fh.tell()
            if header is not None and not dtype.hasobject:
                return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                                 order="F" if fortran else "C")
        with zf.open(member) as fh:
            return np.lib.format.read_array(fh, allow_pickle=False)


class MedMNISTDataset:
    """ChestMNIST / OCTMNIST read straight from the MedMNIST ``.npz`` (e.g. ``chestmnist_224.npz``).

    Arrays ``{split}_images`` (N, H, W) uint8 and ``{split}_labels``; ``split`` in
    train/val/test. Uncompressed npz members are memory-mapped (the 224 px files are ~4 GB).
    Default categories: the 14 findings (chestmnist) or CNV, DME, DRUSEN (octmnist).
    """

    def __init__(self, npz_path: str | os.PathLike, flag: str, split: str = "test",
                 categories: Sequence[str] | None = None, drop_other_findings: bool = True,
                 transform: Transform | None = None) -> None:
        if flag not in MEDMNIST_CLASSES:
            raise ValueError(f"flag must be one of {list(MEDMNIST_CLASSES)}, got {flag!r}")
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        self.name, self.flag, self.split, self.transform = flag, flag, split, transform
        self.path = Path(npz_path)
        if not self.path.is_file():
            raise DatasetNotFoundError(
                f"MedMNIST file not found: {self.path}. Get it with `python -m sdmad_lite.data_scripts.medmnist "
                f"--flag {flag} --root {self.path.parent}` (writes {flag}_224.npz).")
        classes = MEDMNIST_CLASSES[flag]
        default = tables.OCT2017_ANOMALIES if flag == "octmnist" else classes
        valid = tables.OCT2017_ANOMALIES if flag == "octmnist" else classes
        self.categories = _check_categories(categories, valid, default, flag)
        try:
            raw = np.asarray(_npz_array(self.path, f"{split}_labels"))
        except zipfile.BadZipFile as e:
            raise DatasetNotFoundError(f"{self.path} is not a valid .npz (zip) file: {e}; "
                                       "delete it and download it again") from e
        if flag == "octmnist":
            cls = raw.reshape(-1).astype(int)
            if cls.size and (cls.min() < 0 or cls.max() > 3):
                raise ValueError(f"{self.path}: OCTMNIST labels must be 0..3, got {cls.min()}..{cls.max()}")
            full = np.eye(4, dtype=np.int8)[cls]
            full[:, 3] = 0  # NORMAL is the normal class, not a finding
        else:
            if raw.ndim != 2 or raw.shape[1] != 14:
                raise ValueError(f"{self.path}: ChestMNIST labels must be (N, 14), got {raw.shape}")
            full = raw.astype(np.int8)
        cols = [classes.index(c) for c in self.categories]
        y = full[:, cols]
        keep = np.ones(len(y), bool)
        if drop_other_findings:
            keep = ~((y.sum(1) == 0) & (full.sum(1) > 0))
        self._index = np.flatnonzero(keep)
        self._labels = y[keep].astype(np.int8)
        self._full = full[keep]
        self._classes = classes
        self._images: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self._index)

    @property
    def labels(self) -> np.ndarray:
        return self._labels.copy()

    def _image_array(self) -> np.ndarray:
        if self._images is None:
            self._images = _npz_array(self.path, f"{self.split}_images")
        return self._images

    def __getitem__(self, i: int) -> Sample:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {self.flag} of length {len(self)}")
        j = int(self._index[i])
        img = np.asarray(self._image_array()[j])
        if img.ndim == 3:  # RGB flags (not chest/oct): luminance
            img = pil_to_array(Image.fromarray(np.ascontiguousarray(img)))
        elif img.dtype != np.uint8:
            img = _scale_to_uint8(img)
        findings = [self._classes[k] for k in np.flatnonzero(self._full[i])]
        sample = {
            "image": np.ascontiguousarray(img),
            "labels": self._labels[i].copy(),
            "signs": None,
            "meta": {"index": j, "split": self.split, "flag": self.flag, "findings": findings,
                     "dataset": self.flag, "categories": list(self.categories)},
        }
        return self.transform(sample) if self.transform else sample

    def __repr__(self) -> str:
        return f"MedMNISTDataset({self.flag}, {self.split}, n={len(self)})"
