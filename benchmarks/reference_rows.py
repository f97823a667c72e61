"""Reference runs for refactors that must change no number.

Runs every registered method on two seeds at k = 4 (all three protocols, no result cache) and writes
their rows as JSON; ``--compare OLD.json`` then reports every key whose value differs (bit for bit:
floats compared with ``==``), ignoring wall times. A refactor that claims to change no number runs
this before and after::

    python benchmarks/reference_rows.py --out /tmp/before.json          # on the old code
    python benchmarks/reference_rows.py --out /tmp/after.json --compare /tmp/before.json

``--methods`` narrows the list (comma-separated); ``--workers`` runs them in parallel processes
(each run is seeded and trains on one thread, so the rows do not depend on it).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

#: keys that measure the machine, not the method
VOLATILE = ("wall_time_s",)
#: row keys renamed to their config keys (issue 22): old name -> new name
RENAMED = {"k": "k_shot", "dataset": "data.dataset", "scanner_shift": "data.scanner_shift",
           "conspicuity": "data.conspicuity", "backbone": "model.backbone", "adapter_mode": "model.adapter_mode",
           "sign_noise": "selection.noise", "sign_noise_kind": "selection.noise_kind"}


def _renamed(row: dict) -> dict:
    return {RENAMED.get(k, k): v for k, v in row.items()}


def compare(old: list[dict], new: list[dict]) -> list[str]:
    """Every difference between two lists of rows (matched by method and seed), as sentences. Old key
    names are read under their new names (:data:`RENAMED`); a column only the new rows have is listed
    apart (``added: ...``), not counted as a difference."""
    old, new = [_renamed(r) for r in old], [_renamed(r) for r in new]
    key = lambda r: (r["method"], r["seed"])  # noqa: E731
    a, b = {key(r): r for r in old}, {key(r): r for r in new}
    out = [f"{k}: only in the old rows" for k in a.keys() - b.keys()]
    out += [f"{k}: only in the new rows" for k in b.keys() - a.keys()]
    added: set[str] = set()
    for k in sorted(a.keys() & b.keys()):
        ra, rb = a[k], b[k]
        for col in sorted(set(ra) | set(rb)):
            if col in VOLATILE:
                continue
            if col not in ra:
                added.add(col)
                continue
            va, vb = ra.get(col, "<absent>"), rb.get(col, "<absent>")
            same = va == vb or (isinstance(va, float) and isinstance(vb, float) and math.isnan(va) and math.isnan(vb))
            if not same:
                out.append(f"{k} {col}: {va!r} -> {vb!r}")
    if added:
        print("added columns (not compared):", ", ".join(sorted(added)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--compare", default=None)
    ap.add_argument("--methods", default=None)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    os.environ["SDMAD_NO_RESULT_CACHE"] = "1"
    from sdmad_lite import studies
    from sdmad_lite.methods import ALL_METHODS
    try:
        from sdmad_lite.executor import run_many
    except ImportError:  # the library before issue 22
        from sdmad_lite.run import run_many

    names = args.methods.split(",") if args.methods else list(ALL_METHODS)
    cfgs = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for c in studies.configs(names, [4], seeds=[seed]):
            c.protocols = ["integrated", "per-anomaly", "open-set"]
            cfgs.append(c)
    t0 = time.time()
    rows = run_many(cfgs, workers=args.workers)
    print(f"{len(rows)} runs in {time.time() - t0:.0f} s", flush=True)
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=1, sort_keys=True)
    if args.compare:
        with open(args.compare) as f:
            diffs = compare(json.load(f), rows)
        print("\n".join(diffs) if diffs else f"identical: {len(rows)} rows, bit for bit (wall times aside)")
        return 1 if diffs else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
