#!/usr/bin/env python
"""Fetch MedMNIST+ ChestMNIST / OCTMNIST at 224 px (``{flag}_224.npz``) for the colab profile.

    sdmad prepare medmnist --flag chestmnist --root data/medmnist
    sdmad prepare medmnist --flag octmnist --root data/medmnist

(also ``python -m sdmad_lite.data_scripts.medmnist ...``, or ``python data_scripts/medmnist.py ...`` in a
clone). Uses the ``medmnist`` package when installed (``pip install medmnist``); otherwise downloads
the file from Zenodo (record 10519652) with sdmad_lite's resumable downloader and checks the
MD5 that MedMNIST publishes. Then ``MedMNISTDataset("data/medmnist/chestmnist_224.npz",
"chestmnist", "test")``. ChestMNIST = ChestX-ray14 (NIH, 14 findings, multi-label, same
order as the shipped tables; official patient split re-divided into train/val/test by
MedMNIST); OCTMNIST = OCT2017 (labels 0..3 = CNV, DME, DRUSEN, NORMAL). Licence: CC BY 4.0
(MedMNIST; cite Yang et al., Scientific Data 2023) on top of the source datasets' terms.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from sdmad_lite.data.download import download

ZENODO_224: dict[str, tuple[str, str]] = {
    "chestmnist": ("https://zenodo.org/records/10519652/files/chestmnist_224.npz?download=1",
                   "45bd33e6f06c3e8cdb481c74a89152aa"),
    "octmnist": ("https://zenodo.org/records/10519652/files/octmnist_224.npz?download=1",
                 "abc493b6d529d5de7569faaef2773ba3"),
}


def checksums(manifest: Path | None) -> dict[str, str]:
    """File name -> MD5: MedMNIST's published ones, or those of ``manifest`` (JSON ``{name: md5}``: a
    mirror's files, or a rehearsal's look-alike files) instead."""
    if manifest is None:
        return {f"{flag}_224.npz": md5 for flag, (_, md5) in ZENODO_224.items()}
    try:
        table = json.loads(Path(manifest).read_text())
    except (OSError, ValueError) as e:
        raise SystemExit(f"--manifest {manifest}: not a readable JSON file of {{file name: md5}} ({e})") from None
    if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
        raise SystemExit(f"--manifest {manifest}: expected a JSON object {{file name: md5}}")
    return table


def _import_medmnist():
    """The ``medmnist`` package, or None when it is not installed. This file, and the thin
    ``data_scripts/medmnist.py`` of a clone, are named medmnist.py too: a script run by its path puts its
    folder first on the import path, where ``import medmnist`` would find the script itself. Folders that
    hold a plain ``medmnist.py`` are left out of the search (the package is a folder, ``medmnist/``)."""
    saved = sys.path[:]
    sys.path[:] = [p for p in saved if not (Path(p or ".") / "medmnist.py").is_file()]
    try:
        return importlib.import_module("medmnist")
    except ImportError:
        return None
    finally:
        sys.path[:] = saved


def fetch(flag: str, root: Path, size: int = 224, manifest: Path | None = None) -> Path:
    """Download ``{flag}_{size}.npz`` into ``root``; return its path. A file already there is kept when
    its MD5 is the expected one (MedMNIST's, or ``manifest``'s) and refused otherwise."""
    root.mkdir(parents=True, exist_ok=True)
    if manifest is not None:  # checksums of our own: the resumable downloader, never the medmnist package
        name = f"{flag}_224.npz"
        table = checksums(manifest)
        if size != 224 or name not in table:
            raise SystemExit(f"--manifest {manifest} has no entry for {name}")
        return download(ZENODO_224[flag][0], root / name, md5=table[name], progress=True)
    medmnist = _import_medmnist()
    if medmnist is not None:
        cls = getattr(medmnist, medmnist.INFO[flag]["python_class"])
        cls(split="test", download=True, size=size, root=str(root))
        return root / (f"{flag}_{size}.npz" if size != 28 else f"{flag}.npz")
    if size != 224:
        raise SystemExit(f"size {size} needs the medmnist package (pip install medmnist)")
    url, md5 = ZENODO_224[flag]
    return download(url, root / f"{flag}_224.npz", md5=md5, progress=True)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--flag", choices=sorted(ZENODO_224), required=True)
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--size", type=int, default=224, choices=[28, 64, 128, 224])
    p.add_argument("--manifest", type=Path, default=None,
                   help="JSON {file name: md5} that replaces MedMNIST's published checksums (a mirror's files)")


def run(args: argparse.Namespace) -> int:
    print(fetch(args.flag, args.root, args.size, args.manifest))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
