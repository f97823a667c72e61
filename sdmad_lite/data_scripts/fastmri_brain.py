#!/usr/bin/env python
"""Export fastMRI brain volumes (.h5) to PNG slices for ``FastMRIBrainSlices``.

No download: the fastMRI images need the fastMRI data-sharing agreement
(https://fastmri.med.nyu.edu/). Once you hold the multicoil brain ``.h5`` files:

    sdmad prepare fastmri_brain --h5 /data/fastmri/multicoil_val --out data/fastmri_brain_png

(also ``python -m sdmad_lite.data_scripts.fastmri_brain ...``, or ``python data_scripts/fastmri_brain.py ...``
in a clone) writes ``{file}_{slice:03d}.png`` (e.g. ``file_brain_AXFLAIR_200_6002425_005.png``), 8-bit,
one intensity window per volume (min .. 99.5th percentile). Each slice is **flipped up/down**
(``np.flipud``) by default: fastMRI+ drew its boxes on images flipped up/down when they were
converted to DICOM, so after the flip the fastMRI+ box coordinates apply directly
(``sdmad_lite.data.fastmri_plus.FLIPPED_UD``). Use ``--no-flip`` to keep fastMRI's orientation
(then boxes must be flipped: ``y' = H - y - height``).

Image source: ``reconstruction_rss`` when present (train/val files), else the root sum of
squares of the inverse FFT of ``kspace``, centre-cropped to 320 x 320. Needs ``h5py``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from sdmad_lite.data.fastmri_slices import fastmri_slice_filename
from sdmad_lite.data.images import save_image
from sdmad_lite.data.fastmri_plus import fastmri_brain_volumes

CROP = (320, 320)


def _center_crop(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = a.shape[-2:]
    ch, cw = min(size[0], h), min(size[1], w)
    top, left = (h - ch) // 2, (w - cw) // 2
    return a[..., top:top + ch, left:left + cw]


def rss_from_kspace(kspace: np.ndarray) -> np.ndarray:
    """(S, [coils,] H, W) complex k-space -> (S, H, W) root-sum-of-squares magnitude images."""
    axes = (-2, -1)
    img = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace, axes=axes), norm="ortho"), axes=axes)
    mag = np.abs(img)
    if kspace.ndim == 4:  # multicoil
        mag = np.sqrt((mag ** 2).sum(axis=1))
    return _center_crop(mag, CROP)


def volume_from_h5(path: str | Path) -> np.ndarray:
    """Read one fastMRI ``.h5`` file as a float32 (slices, H, W) magnitude volume."""
    try:
        import h5py
    except ImportError:  # pragma: no cover - depends on the environment
        sys.exit("h5py is needed to read fastMRI .h5 files: pip install h5py")
    with h5py.File(path, "r") as f:
        if "reconstruction_rss" in f:
            return np.asarray(f["reconstruction_rss"], dtype=np.float32)
        if "kspace" in f:
            return rss_from_kspace(np.asarray(f["kspace"])).astype(np.float32)
        raise ValueError(f"{path}: neither 'reconstruction_rss' nor 'kspace' found ({list(f)})")


def write_slices(volume: np.ndarray, file: str, out_dir: str | Path, flip_ud: bool = True,
                 percentile: float = 99.5) -> list[Path]:
    """Write every slice of a (S, H, W) volume as ``{file}_{slice:03d}.png``; return the paths."""
    vol = np.asarray(volume, dtype=np.float64)
    if vol.ndim != 3:
        raise ValueError(f"expected a (slices, H, W) volume, got shape {vol.shape}")
    lo, hi = float(vol.min()), float(np.percentile(vol, percentile))
    scaled = np.zeros(vol.shape, np.uint8) if hi <= lo else \
        np.round(np.clip((vol - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
    out = Path(out_dir)
    paths = []
    for s, img in enumerate(scaled):
        paths.append(save_image(np.flipud(img) if flip_ud else img, out / fastmri_slice_filename(file, s)))
    return paths


def convert(h5_dir: str | Path, out_dir: str | Path, flip_ud: bool = True,
            only_reviewed: bool = False) -> int:
    """Convert every ``*.h5`` under ``h5_dir``; return the number of slices written."""
    files = sorted(Path(h5_dir).rglob("*.h5"))
    if not files:
        raise FileNotFoundError(f"no .h5 files under {h5_dir}")
    reviewed: set[str] | None = None
    if only_reviewed:
        reviewed = set(fastmri_brain_volumes()["file"])
    n = 0
    for f in files:
        if reviewed is not None and f.stem not in reviewed:
            continue
        n += len(write_slices(volume_from_h5(f), f.stem, out_dir, flip_ud=flip_ud))
    return n


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--h5", required=True, help="folder with fastMRI brain .h5 files (searched recursively)")
    p.add_argument("--out", required=True, help="output folder for the PNG slices")
    p.add_argument("--no-flip", action="store_true", help="keep fastMRI's orientation (boxes will not match)")
    p.add_argument("--only-reviewed", action="store_true",
                   help="only the 1,001 volumes that fastMRI+ reviewed")


def run(args: argparse.Namespace) -> int:
    n = convert(args.h5, args.out, flip_ud=not args.no_flip, only_reviewed=args.only_reviewed)
    print(f"wrote {n} slices to {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
