#!/usr/bin/env python
"""Download OCT2017 (Kermany et al.) and lay it out as ``ROOT/OCT2017/{train,test}/{CNV,DME,DRUSEN,NORMAL}``.

    sdmad prepare oct2017 --root data/oct2017              # whole set (~5.4 GB archive)
    sdmad prepare oct2017 --root data/oct2017 --test-only  # extract only the 1,000 test images

(also ``python -m sdmad_lite.data_scripts.oct2017 ...``, or ``python data_scripts/oct2017.py ...`` in a
clone). Then ``OCT2017Dataset("data/oct2017/OCT2017", "test")``. The extracted test set is checked
against the shipped listing (``resources/oct2017/OCT2017_test_file_list.csv``: 1,000 names).
Source: Mendeley Data rscbjbr9sj (``OCT2017.tar.gz``), CC BY 4.0; cite Kermany et al., Cell
172(5), 2018. Mendeley sometimes blocks scripted downloads; if so, download the archive in a
browser from https://data.mendeley.com/datasets/rscbjbr9sj and pass ``--archive PATH``.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from sdmad_lite.data.download import download, extract_tar
from sdmad_lite.data.tables import OCT2017_CLASSES, load_oct2017_test_list

URL = ("https://data.mendeley.com/public-files/datasets/rscbjbr9sj/files/"
       "5699a1d8-d1b6-45db-bb92-b61051445347/file_downloaded")


def find_split_root(root: Path) -> Path:
    """The extracted folder holding ``test/`` (the archive's top folder is ``"OCT2017 "``, with a space)."""
    for cand in [root, *sorted(p for p in root.rglob("*") if p.is_dir())]:
        if all((cand / "test" / c).is_dir() for c in OCT2017_CLASSES):
            return cand
    raise FileNotFoundError(f"no folder with test/{{{','.join(OCT2017_CLASSES)}}} under {root}")


def verify_test(split_root: Path) -> list[str]:
    """Names from the shipped test listing that are missing from ``split_root/test``."""
    t = load_oct2017_test_list()
    return [f"{r.label}/{r.filename}" for r in t.itertuples()
            if not (split_root / "test" / r.label / r.filename).is_file()]


def prepare(root: Path, archive: Path | None = None, test_only: bool = False) -> list[str]:
    """Download (unless ``archive`` is given) and extract OCT2017 into ``root/OCT2017``; return the names of
    the shipped test listing that are missing from it (none when the test set is complete)."""
    archive = archive or download(URL, root / "OCT2017.tar.gz", progress=True)
    select = (lambda name: "/test/" in f"/{name}") if test_only else None
    n = extract_tar(archive, root / "_extract", select=select)
    print(f"extracted {n:,} files")
    src = find_split_root(root / "_extract")
    dest = root / "OCT2017"
    if dest.exists():
        shutil.rmtree(dest)
    shutil.move(str(src), dest)
    shutil.rmtree(root / "_extract", ignore_errors=True)
    missing = verify_test(dest)
    print(f"{dest}: test set {'complete' if not missing else f'missing {len(missing)} files, e.g. {missing[:3]}'}")
    return missing


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", required=True, type=Path)
    p.add_argument("--archive", type=Path, default=None, help="an OCT2017.tar.gz you already have")
    p.add_argument("--test-only", action="store_true", help="extract only test/")


def run(args: argparse.Namespace) -> int:
    return 0 if not prepare(args.root, args.archive, args.test_only) else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
