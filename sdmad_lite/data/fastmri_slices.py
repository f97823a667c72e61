"""fastMRI brain slices exported as PNG, with the fastMRI+ labels (:mod:`.fastmri_plus`).

The images are not shipped: ``sdmad_lite/data_scripts/fastmri_brain.py`` exports them from your
own fastMRI ``.h5`` files (fastMRI data-sharing agreement).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from .datasets import DatasetNotFoundError, FileDataset, Transform, check_categories
from .fastmri_plus import (FLIPPED_UD, fastmri_brain_slice_labels, fastmri_brain_study_labels, fastmri_brain_volumes,
                           load_fastmri_brain_boxes)

FASTMRI_SLICE_PATTERN = re.compile(r"^(file_brain_[A-Za-z0-9]+_\d+_\d+)_(\d{3})\.png$")
"""Slice PNG names: ``{file}_{slice:03d}.png``, e.g. ``file_brain_AXFLAIR_200_6002425_005.png``."""


def fastmri_slice_filename(file: str, slice_index: int) -> str:
    """The PNG name :class:`FastMRIBrainSlices` expects for a volume's slice."""
    return f"{file}_{int(slice_index):03d}.png"


class FastMRIBrainSlices(FileDataset):
    """fastMRI brain slices exported as PNG (``sdmad_lite/data_scripts/fastmri_brain.py``) + fastMRI+ labels.

    Convention: a flat folder of ``{file}_{slice:03d}.png`` (:data:`FASTMRI_SLICE_PATTERN`),
    written **flipped up/down** relative to the fastMRI reconstruction, so that the fastMRI+
    boxes (``meta["boxes"]``, x/y/width/height in pixels) apply directly
    (:data:`sdmad_lite.data.fastmri_plus.FLIPPED_UD`). Only volumes that fastMRI+ reviewed are used.
    Slices without boxes are normal at slice level (all-zero labels) unless
    ``include_unboxed=False``; study-level labels are in ``meta["study_labels"]``.
    """

    name = "fastmri-brain"

    def __init__(self, root: str | os.PathLike, categories: Sequence[str] | None = None,
                 include_unboxed: bool = True, drop_other_findings: bool = True,
                 transform: Transform | None = None) -> None:
        super().__init__(transform)
        valid = fastmri_brain_slice_labels()
        self.categories = check_categories(categories, valid, valid, self.name)
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
        reviewed = set(fastmri_brain_volumes()["file"])
        boxes = load_fastmri_brain_boxes()
        study = fastmri_brain_study_labels().groupby("file")["label"].apply(list).to_dict()
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
                               "study_labels": study.get(vol, []), "flipped_ud": FLIPPED_UD})
        if not self._paths:
            raise DatasetNotFoundError(
                f"{root}: {len(matches)} slice PNGs but none usable (volumes not reviewed by fastMRI+: "
                f"{self.skipped_unreviewed}). {hint}")
        self._labels = np.stack(rows).astype(np.int8)
