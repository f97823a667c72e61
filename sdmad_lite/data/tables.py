"""The real label tables shipped with the package (see ``resources/SOURCES.md``), and the label rows
of all three datasets.

Three public annotation sets, read offline from ``sdmad_lite/resources``:

* **NIH ChestX-ray14** — 112,120 frontal radiographs, 14 findings, multi-label; the official
  patient-disjoint split is the file a row comes from (``train_val`` or ``test``).
* **fastMRI+ brain** — bounding boxes with pathology labels on slices of 1,001 reviewed
  fastMRI brain volumes, plus study-level labels: read by :mod:`.fastmri_plus`.
* **OCT2017** — the 1,000-image test list (250 per class) and the MVFA few-shot lists.

Parsed tables are cached; public functions hand out copies, so callers may modify them.
:func:`label_rows` is the entry point the phantom generator uses to sample real label
vectors (real cardinality and co-occurrence).
"""
from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..io import RESOURCES
from .fastmri_plus import fastmri_brain_slice_labels, fastmri_brain_units
from .table_files import TableError, no_conflicting_duplicates, read_csv, require_file

CHESTXRAY14_LABELS: tuple[str, ...] = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening",
    "Hernia",
)
"""ChestX-ray14 findings, in the column order of the shipped lists (and of ChestMNIST)."""

OCT2017_CLASSES: tuple[str, ...] = ("CNV", "DME", "DRUSEN", "NORMAL")
"""OCT2017 classes (one per image); also the OCTMNIST label order 0..3."""
OCT2017_ANOMALIES: tuple[str, ...] = ("CNV", "DME", "DRUSEN")
"""The three OCT2017 anomaly categories (NORMAL is the normal class)."""

DATASETS: tuple[str, ...] = ("chestxray14", "oct2017", "fastmri-brain")
"""Dataset names accepted by :func:`label_rows` and :mod:`sdmad_lite.data.stats`."""

CHESTXRAY14_DIR = RESOURCES / "chestxray14"
OCT2017_DIR = RESOURCES / "oct2017"


# --------------------------------------------------------------------------- ChestX-ray14

def read_chestxray14_list(path: Path | str, split: str) -> pd.DataFrame:
    """Parse one labelled list (``image`` + 14 space-separated 0/1 columns) into a frame."""
    path = require_file(Path(path))
    names = ["image", *CHESTXRAY14_LABELS]
    try:
        df = pd.read_csv(path, sep=r"\s+", header=None, dtype=str, engine="python")
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise TableError(f"{path}: cannot parse the ChestX-ray14 list ({e})") from e
    if df.shape[1] != len(names):
        col = names[df.shape[1]] if df.shape[1] < len(names) else f"extra column {df.shape[1]}"
        raise TableError(
            f"{path}: expected {len(names)} columns (image + {len(CHESTXRAY14_LABELS)} labels in "
            f"the order {list(CHESTXRAY14_LABELS)}), got {df.shape[1]}; first missing: {col}"
        )
    df.columns = names
    labels = df[list(CHESTXRAY14_LABELS)]
    bad = ~labels.isin(["0", "1"])
    if bad.to_numpy().any():
        r, c = np.argwhere(bad.to_numpy())[0]
        raise TableError(f"{path}: row {r + 1}, column {CHESTXRAY14_LABELS[c]}: expected 0/1, "
                         f"got {labels.iat[r, c]!r}")
    out = pd.DataFrame({
        "image": df["image"].astype(str),
        "patient": df["image"].str[:8].astype(str),
        "split": split,
    })
    for name in CHESTXRAY14_LABELS:
        out[name] = labels[name].astype(np.int8).to_numpy()
    return no_conflicting_duplicates(out, "image", path)


@functools.lru_cache(maxsize=None)
def _chestxray14() -> pd.DataFrame:
    parts = [
        read_chestxray14_list(CHESTXRAY14_DIR / "labeled_train_val_list.txt.gz", "train_val"),
        read_chestxray14_list(CHESTXRAY14_DIR / "labeled_test_list.txt.gz", "test"),
    ]
    return pd.concat(parts, ignore_index=True)


def load_chestxray14() -> pd.DataFrame:
    """All 112,120 ChestX-ray14 images: ``image, patient, split`` + the 14 labels (int8).

    ``patient`` is the first 8 digits of the file name; ``split`` is ``train_val`` or ``test``
    (the official patient-disjoint split). A row of zeros is "No Finding".
    """
    return _chestxray14().copy()


@functools.lru_cache(maxsize=None)
def _chestxray14_boxes() -> pd.DataFrame:
    path = CHESTXRAY14_DIR / "BBox_List_2017.csv.gz"
    # The header reads "Image Index,Finding Label,Bbox [x,y,w,h],,," (9 fields for 6 values).
    df = read_csv(path, ["Image Index", "Finding Label"], header=0, usecols=range(6))
    df.columns = ["image", "label", "x", "y", "w", "h"]
    df["label"] = df["label"].replace({"Infiltrate": "Infiltration"}).astype(str)
    unknown = sorted(set(df["label"]) - set(CHESTXRAY14_LABELS))
    if unknown:
        raise TableError(f"{path}: unknown finding label(s) {unknown}")
    df["image"] = df["image"].astype(str)
    return df


def load_chestxray14_boxes() -> pd.DataFrame:
    """The 984 NIH boxes on 880 images: ``image, label, x, y, w, h`` (pixels of 1024x1024).

    Upstream's ``Infiltrate`` is renamed ``Infiltration`` to match the label lists.
    """
    return _chestxray14_boxes().copy()


# --------------------------------------------------------------------------- OCT2017

@functools.lru_cache(maxsize=None)
def _oct2017_test_list() -> pd.DataFrame:
    path = OCT2017_DIR / "OCT2017_test_file_list.csv"
    df = read_csv(path, ["filename", "label"])
    bad = sorted(set(df["label"]) - set(OCT2017_CLASSES))
    if bad:
        raise TableError(f"{path}: unknown label(s) {bad}; expected {list(OCT2017_CLASSES)}")
    return df


def load_oct2017_test_list() -> pd.DataFrame:
    """The OCT2017 test set (1,000 images, 250 per class): ``filename, label, bytes, git_blob``."""
    return _oct2017_test_list().copy()


MVFA_SHOTS: tuple[int, ...] = (2, 4, 8, 16)


def load_oct2017_mvfa_fewshot(k: int) -> dict[str, list[str]]:
    """MVFA's OCT2017 few-shot list for ``k`` in (2, 4, 8, 16): ``{"normal": [...], "abnormal": [...]}``.

    MVFA draws ``k`` normal and ``k`` abnormal images (any of CNV/DME/DRUSEN) from the test
    set; these are its published lists (lines ``n-0:`` and ``a-0:``).
    """
    if k not in MVFA_SHOTS:
        raise ValueError(f"no MVFA few-shot list for k={k!r}; available: {list(MVFA_SHOTS)}")
    path = require_file(OCT2017_DIR / "mvfa_fewshot" / f"{k}-shot.txt")
    text = path.read_text()
    found = dict(re.findall(r"(?m)^\s*([na])-0:\s*(.*?)\s*$", text))
    for key in ("n", "a"):
        if key not in found:
            raise TableError(f"{path}: missing the '{key}-0:' line")
    return {"normal": found["n"].split(), "abnormal": found["a"].split()}


# --------------------------------------------------------------------------- label rows

def dataset_categories(dataset: str) -> tuple[str, ...]:
    """The categories :func:`label_rows` accepts for ``dataset``."""
    if dataset == "chestxray14":
        return CHESTXRAY14_LABELS
    if dataset == "oct2017":
        return OCT2017_CLASSES
    if dataset == "fastmri-brain":
        return fastmri_brain_slice_labels()
    raise ValueError(f"unknown dataset {dataset!r}; valid: {list(DATASETS)}")


def label_matrix(dataset: str, categories: Sequence[str] | None = None) -> np.ndarray:
    """int8 (N, C): **every** real unit (images / boxed slices / OCT test images), in table order."""
    valid = dataset_categories(dataset)
    cats = list(valid if categories is None else categories)
    unknown = [c for c in cats if c not in valid]
    if unknown:
        raise ValueError(f"unknown categor{'y' if len(unknown) == 1 else 'ies'} {unknown} for "
                         f"dataset {dataset!r}; valid: {list(valid)}")
    if len(set(cats)) != len(cats):
        raise ValueError(f"duplicate categories in {cats}")
    return _label_matrix(dataset, tuple(cats)).copy()


@functools.lru_cache(maxsize=32)
def _label_matrix(dataset: str, cats: tuple[str, ...]) -> np.ndarray:
    if dataset == "chestxray14":
        return _chestxray14()[list(cats)].to_numpy(dtype=np.int8)
    if dataset == "fastmri-brain":
        return fastmri_brain_units()[list(cats)].to_numpy(dtype=np.int8)
    lab = _oct2017_test_list()["label"].to_numpy()
    return np.stack([lab == c for c in cats], axis=1).astype(np.int8).reshape(len(lab), len(cats))


def label_rows(dataset: str, categories: list[str]) -> np.ndarray:
    """int8 (N, C): one row per real unit that has at least one of ``categories`` (columns in order).

    Units: ChestX-ray14 images (both official lists), fastMRI+ brain (volume, slice) pairs with
    boxes, OCT2017 test images (one-hot). Raises ``ValueError`` naming an unknown dataset or
    category and listing the valid ones. Rows come in table order; sample from them freely.
    """
    if categories is None or len(categories) == 0:
        raise ValueError(f"categories must be a non-empty list; valid for {dataset!r}: "
                         f"{list(dataset_categories(dataset))}")
    m = label_matrix(dataset, categories)
    return m[m.any(axis=1)]
