"""ChestMNIST and OCTMNIST (MedMNIST+) read straight from their ``.npz`` files, as dict samples.

Get a file with ``python -m sdmad_lite.data_scripts.medmnist`` (see ``sdmad_lite/data_scripts/README.md``).
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from .datasets import DatasetNotFoundError, Sample, Transform, check_categories
from .images import _scale_to_uint8, pil_to_array
from .tables import CHESTXRAY14_LABELS, OCT2017_ANOMALIES, OCT2017_CLASSES

MEDMNIST_CLASSES: dict[str, tuple[str, ...]] = {
    "chestmnist": CHESTXRAY14_LABELS,
    "octmnist": OCT2017_CLASSES,
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
        default = OCT2017_ANOMALIES if flag == "octmnist" else classes
        valid = OCT2017_ANOMALIES if flag == "octmnist" else classes
        self.categories = check_categories(categories, valid, default, flag)
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
