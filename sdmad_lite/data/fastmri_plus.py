"""The fastMRI+ brain label tables shipped with the package (see ``resources/SOURCES.md``).

Bounding boxes with pathology labels on slices of 1,001 reviewed fastMRI brain volumes, plus
study-level labels. Boxes refer to images **flipped up/down** (:data:`FLIPPED_UD`), as upstream
warns. Parsed tables are cached; public functions hand out copies, so callers may modify them.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import RESOURCES
from .table_files import TableError, read_csv, require_file

FLIPPED_UD = True
"""fastMRI+ boxes refer to the image flipped up/down (``np.flipud`` of the fastMRI
reconstruction): upstream flipped the pixel arrays when converting to DICOM for labelling."""

FASTMRI_DIR = RESOURCES / "fastmri_plus"

FASTMRI_BRAIN_LABELS: tuple[str, ...] = (
    "Absent septum pellucidum", "Colpocephaly", "Craniectomy", "Craniectomy with Cranioplasty", "Craniotomy",
    "Dural thickening", "Edema", "Encephalomalacia", "Enlarged ventricles", "Extra-axial collection",
    "Extra-axial mass", "Global Ischemia", "Global label: Small vessel chronic white matter ischemic change",
    "Global white matter disease", "Innumerable bilateral focal brain lesions", "Intraventricular substance",
    "Lacunar infarct", "Likely cysts", "Mass", "Motion artifact", "Nonspecific lesion",
    "Nonspecific white matter lesion", "Normal for age", "Normal variant", "Paranasal sinus opacification",
    "Pineal cyst", "Possible artifact", "Possible demyelinating disease", "Posttreatment change",
    "Resection cavity",
)
"""Every label of the fastMRI+ ``brain.csv`` (slice and study level); a table with another is refused."""

_BRAIN_COLUMNS = ["file", "slice", "study_level", "x", "y", "width", "height", "label"]


def read_fastmri_brain_csv(path: Path | str) -> pd.DataFrame:
    """Parse a fastMRI+ ``brain.csv``; ``study_level`` becomes a bool. A slice that is not a whole number
    ≥ 0, or a label not among :data:`FASTMRI_BRAIN_LABELS`, is a :class:`~sdmad_lite.data.table_files.TableError` naming the row."""
    path = Path(path)
    df = read_csv(path, _BRAIN_COLUMNS)
    df = df[_BRAIN_COLUMNS].copy()
    sl = df["study_level"].astype(str).str.strip()
    if not sl.isin(["Yes", "No"]).all():
        raise TableError(f"{path}: column study_level must be Yes/No, got {sorted(set(sl))[:5]}")
    df["study_level"] = sl.eq("Yes")
    df["file"] = df["file"].astype(str)
    df["label"] = df["label"].astype(str)
    sliced = pd.to_numeric(df["slice"], errors="coerce")
    bad = sliced.isna() | (sliced < 0) | (sliced != sliced.round())
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise TableError(f"{path}: row {i + 2}: slice {df['slice'].iat[i]!r} is not a slice index (a whole number "
                         "≥ 0); correct the row or restore the file")
    df["slice"] = sliced.astype(int)
    unknown = sorted(set(df["label"]) - set(FASTMRI_BRAIN_LABELS))
    if unknown:
        i = int(np.flatnonzero(~df["label"].isin(FASTMRI_BRAIN_LABELS).to_numpy())[0])
        raise TableError(f"{path}: row {i + 2}: unknown label(s) {unknown[:3]}; fastMRI+ brain labels are "
                         f"{', '.join(FASTMRI_BRAIN_LABELS)} (correct the spelling or restore the file)")
    return df


@functools.lru_cache(maxsize=None)
def _fastmri_boxes() -> pd.DataFrame:
    return read_fastmri_brain_csv(FASTMRI_DIR / "brain.csv.gz")


def load_fastmri_brain_boxes() -> pd.DataFrame:
    """All 8,213 rows of fastMRI+ ``brain.csv`` (7,570 boxes, 643 study-level labels).

    Columns ``file, slice, study_level (bool), x, y, width, height, label``. Box coordinates
    refer to the image **flipped up/down** (:data:`FLIPPED_UD`); study-level rows have no box.
    """
    return _fastmri_boxes().copy()


@functools.lru_cache(maxsize=None)
def _fastmri_slice_labels() -> tuple[str, ...]:
    b = _fastmri_boxes()
    counts = b.loc[~b["study_level"], "label"].value_counts()
    # most frequent first; ties by name (stable across pandas versions)
    return tuple(sorted(counts.index, key=lambda s: (-int(counts[s]), s)))


def fastmri_brain_slice_labels() -> tuple[str, ...]:
    """The 21 slice-level (boxed) fastMRI+ brain labels, most frequent box count first."""
    return _fastmri_slice_labels()


@functools.lru_cache(maxsize=None)
def _fastmri_units() -> pd.DataFrame:
    b = _fastmri_boxes()
    boxes = b[~b["study_level"]]
    labels = _fastmri_slice_labels()
    g = boxes.groupby(["file", "slice"], sort=True)
    units = g.size().rename("n_boxes").reset_index()
    present = boxes.assign(v=1).pivot_table(
        index=["file", "slice"], columns="label", values="v", aggfunc="max", fill_value=0
    )
    present = present.reindex(columns=list(labels), fill_value=0)
    present = present.reindex(pd.MultiIndex.from_frame(units[["file", "slice"]]))
    for name in labels:
        units[name] = present[name].to_numpy().astype(np.int8)
    return units


def fastmri_brain_units() -> pd.DataFrame:
    """One row per (volume ``file``, ``slice``) with at least one box: 3,621 units.

    Columns ``file, slice, n_boxes`` and one int8 multi-hot column per slice-level label
    (:func:`fastmri_brain_slice_labels` order). Study-level labels are kept apart
    (:func:`fastmri_brain_study_labels`). Boxes refer to up/down-flipped images.
    """
    return _fastmri_units().copy()


def fastmri_brain_study_labels() -> pd.DataFrame:
    """The 643 study-level labels (no box, not tied to a slice): ``file, label``."""
    b = _fastmri_boxes()
    return b.loc[b["study_level"], ["file", "label"]].reset_index(drop=True)


@functools.lru_cache(maxsize=None)
def _fastmri_volumes() -> pd.DataFrame:
    path = require_file(FASTMRI_DIR / "brain_file_list.csv.gz")
    files = pd.read_csv(path, header=None, names=["file"], dtype=str)["file"].str.strip()
    b = _fastmri_boxes()
    unknown = sorted(set(b["file"]) - set(files))
    if unknown:
        raise TableError(f"{path}: brain.csv names volumes not in the reviewed list: {unknown[:3]}")
    boxes = b[~b["study_level"]]
    n_boxes = boxes.groupby("file").size()
    n_slices = boxes.groupby("file")["slice"].nunique()
    n_study = b[b["study_level"]].groupby("file").size()
    m = re.compile(r"^file_brain_([A-Z0-9]+)_(\d+)_(\d+)$")
    parsed = files.str.extract(m)
    out = pd.DataFrame({
        "file": files,
        "sequence": parsed[0],
        "code": parsed[1],
        "n_boxes": files.map(n_boxes).fillna(0).astype(int),
        "n_slices_with_boxes": files.map(n_slices).fillna(0).astype(int),
        "n_study_labels": files.map(n_study).fillna(0).astype(int),
    })
    out["in_brain_csv"] = out["file"].isin(set(b["file"]))
    return out


def fastmri_brain_volumes() -> pd.DataFrame:
    """The 1,001 volumes reviewed by fastMRI+ radiologists.

    Columns ``file, sequence`` (e.g. ``AXFLAIR``), ``code`` (the number after it in fastMRI's file name),
    ``n_boxes, n_slices_with_boxes, n_study_labels, in_brain_csv``. A volume absent from
    ``brain.csv`` was reviewed and had no findings.
    """
    return _fastmri_volumes().copy()
