#!/usr/bin/env python
"""Download the NIH ChestX-ray14 images (12 archives, ~42 GB) into ``ROOT/images/``.

    sdmad prepare chestxray14 --root data/chestxray14            # all 12 parts
    sdmad prepare chestxray14 --root data/chestxray14 --parts 1  # first ~5k images

(also ``python -m sdmad_lite.data_scripts.chestxray14 ...``, or ``python data_scripts/chestxray14.py ...``
in a clone). The labels are shipped with sdmad_lite (official v2020 lists); only the PNGs are fetched.
Then ``ChestXray14Dataset("data/chestxray14", "test", skip_missing=True)``.
Source: NIH Clinical Center, https://nihcc.app.box.com/v/ChestXray-NIHCC — no restriction on
use; cite Wang et al., CVPR 2017 and acknowledge the NIH Clinical Center.
The links are NIH's own ``batch_download_zips.py`` links; NIH publishes no checksums, so
none are verified (each download is still resumable and renamed only when complete).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from sdmad_lite.data.download import download, extract_tar

NIH_LINKS: tuple[str, ...] = (
    "https://nihcc.box.com/shared/static/vfk49d74nhbxq3nqjg0900w5nvkorp5c.gz",
    "https://nihcc.box.com/shared/static/i28rlmbvmfjbl8p2n3ril0pptcmcu9d1.gz",
    "https://nihcc.box.com/shared/static/f1t00wrtdk94satdfb9olcolqx20z2jp.gz",
    "https://nihcc.box.com/shared/static/0aowwzs5lhjrceb3qp67ahp0rd1l1etg.gz",
    "https://nihcc.box.com/shared/static/v5e3goj22zr6h8tzualxfsqlqaygfbsn.gz",
    "https://nihcc.box.com/shared/static/asi7ikud9jwnkrnkj99jnpfkjdes7l6l.gz",
    "https://nihcc.box.com/shared/static/jn1b4mw4n6lnh74ovmcjb8y48h8xj07n.gz",
    "https://nihcc.box.com/shared/static/tvpxmn7qyrgl0w8wfh9kqfjskv6nmm1j.gz",
    "https://nihcc.box.com/shared/static/upyy3ml7qdumlgk2rfcvlb9k6gvqq2pj.gz",
    "https://nihcc.box.com/shared/static/l6nilvfa9cg3s28tqv1qc1olm3gnz54p.gz",
    "https://nihcc.box.com/shared/static/hhq8fkdgvcari67vfhs7ppg2w6ni4jze.gz",
    "https://nihcc.box.com/shared/static/ioqwiy20ihqwyr8pf4c24eazhh281pbu.gz",
)
"""images_001.tar.gz .. images_012.tar.gz; each extracts to ``images/*.png``."""


def _part(text: str) -> int:
    """One archive number, 1..12 (an argparse type)."""
    try:
        i = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"parts are numbers 1..12, got {text!r}") from None
    if not 1 <= i <= len(NIH_LINKS):
        raise argparse.ArgumentTypeError(f"parts must be in 1..12, got {i}")
    return i


def fetch(root: Path, parts: list[int], keep_archives: bool = False) -> int:
    """Download and extract the archives ``parts`` (1..12) into ``root/images``; return the PNGs extracted."""
    total = 0
    for i in parts:
        archive = root / "archives" / f"images_{i:03d}.tar.gz"
        print(f"[{i}/12] {archive.name}")
        download(NIH_LINKS[i - 1], archive, progress=True)
        n = extract_tar(archive, root, select=lambda name: name.startswith("images/"))
        print(f"  extracted {n:,} PNGs into {root / 'images'}")
        total += n
        if not keep_archives:
            archive.unlink()
    return total


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", required=True, type=Path)
    p.add_argument("--parts", type=_part, nargs="*", default=list(range(1, 13)),
                   help="which of the 12 archives (1..12); default all")
    p.add_argument("--keep-archives", action="store_true")


def run(args: argparse.Namespace) -> int:
    fetch(args.root, args.parts, args.keep_archives)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
