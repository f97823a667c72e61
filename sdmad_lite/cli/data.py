"""``sdmad phantoms`` and ``sdmad stats``."""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from ..data import tables
from ..data.phantoms.world import LABEL_SOURCES, RENDERERS, write_phantoms
from ..data.stats import PAPER_COUNTS, cooccurrence_stats, format_stats, paper_subset_candidates
from . import checks


#: what ``sdmad phantoms`` writes: ``MODALITY_00000.png`` … and ``labels.jsonl``
_PHANTOM_PNG = re.compile(r"^[a-z0-9]+_\d{5,}\.png$")
_PHANTOM_KEYS = {"file", "categories", "labels", "seed", "signs"}


def _ours(folder: Path) -> str | None:
    """None when ``folder`` is absent, empty, or holds only what ``sdmad phantoms`` writes; else the first file
    that it did not write (a ``labels.jsonl`` of the user's included), which must not be overwritten."""
    if not folder.is_dir():
        return None
    for f in sorted(folder.iterdir()):
        if f.name == "labels.jsonl" and f.is_file() and not f.is_symlink():
            try:
                with open(f, encoding="utf-8") as fh:
                    first = json.loads(fh.readline() or "{}")
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                return f.name
            if not isinstance(first, dict) or set(first) != _PHANTOM_KEYS:
                return f.name
        elif not (_PHANTOM_PNG.match(f.name) and f.is_file() and not f.is_symlink()):
            return f.name
    return None


def _phantoms(args: argparse.Namespace) -> int:
    checks.output_dir(args.out, "--out")
    foreign = _ours(Path(args.out).expanduser())
    if foreign is not None:
        raise checks.ArgumentError(f"--out {args.out} holds {foreign}, which sdmad phantoms did not write; it writes "
                                   "labels.jsonl and MODALITY_NNNNN.png and would overwrite yours: give a new or empty "
                                   "folder")
    if len(args.seed) != 1:
        raise checks.ArgumentError(f"--seed takes one seed, got {len(args.seed)}")
    out = write_phantoms(args.modality, args.n, args.seed[0], args.out, size=args.size,
                         conspicuity=args.conspicuity, noise=args.noise,
                         normal_fraction=args.normal_fraction, label_source=args.label_source)
    print(f"wrote {args.n} {args.modality} phantoms to {out}")
    return 0


def _stats(args: argparse.Namespace) -> int:
    if getattr(args, "paper_subsets", False):
        df = paper_subset_candidates()
        df = df[df["dataset"] == args.dataset] if args.dataset in PAPER_COUNTS else df
        print(df.to_json(orient="records", indent=2) if args.json else df.to_string(index=False))
        return 0
    cats = [c.strip() for c in args.categories.split(",")] if args.categories else None
    try:
        s = cooccurrence_stats(args.dataset, cats)
    except ValueError as e:
        print(f"sdmad stats: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(s, indent=2) if args.json else format_stats(s))
    return 0


def add_subcommands(sub) -> None:
    p = sub.add_parser("phantoms", help="write procedural phantom images with sign-level labels",
                       description="Render seeded phantoms to PNG files plus labels.jsonl.")
    p.add_argument("--modality", required=True, choices=sorted(RENDERERS))
    p.add_argument("--n", type=checks.positive_int, required=True, help="number of images (≥ 1)")
    p.add_argument("--seed", type=checks.seeds, default=[0], help="a seed ≥ 0")
    p.add_argument("--out", required=True, help="output directory: new, empty, or one that sdmad phantoms wrote before")
    p.add_argument("--size", type=checks.image_side, default=224, help="image side in pixels (16 … 4096)")
    p.add_argument("--conspicuity", type=checks.positive, default=1.0, help="sign contrast multiplier (> 0)")
    p.add_argument("--noise", type=checks.non_negative, default=1.0, help="noise multiplier (≥ 0)")
    p.add_argument("--normal-fraction", type=checks.fraction, default=0.3, help="share of normal phantoms, in [0, 1]")
    p.add_argument("--label-source", choices=sorted(LABEL_SOURCES), default="real")
    p.set_defaults(func=_phantoms)

    p = sub.add_parser("stats", help="label co-occurrence statistics of a real table",
                       description="Label co-occurrence statistics of the real label tables.")
    p.add_argument("dataset", choices=list(tables.DATASETS))
    p.add_argument("--json", action="store_true", help="print JSON instead of a summary")
    p.add_argument("--categories", default=None, help="comma-separated categories (default: all labels of the dataset)")
    p.add_argument("--paper-subsets", action="store_true", help="compare simple selections with the counts the paper reports")
    p.set_defaults(func=_stats)
