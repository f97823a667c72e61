"""The cold cost of the glance page's checks of the shipped tables, in library trees side by side.

    python benchmarks/bench_shipped_checks.py [--trees .,../OTHER] [--json PATH]

The glance page (``notebooks/01_results_at_a_glance.ipynb``) checks seven shipped results tables with
``studies.shipped(NAME, ...)``: two rows of each are recomputed, which means drawing the phantoms of
their world, extracting their features and training the runs. It is the slowest notebook of a cold
execution of the book. Each tree (a checkout of this repository; default: this one) makes the same
checks, in the same order, in a Python process of its own with that tree first on the path and an
empty ``SDMAD_CACHE``; the trees run one after the other, so compare them in one run. The table gives
the seconds per table and tree, and the ratio of each tree's total to the first tree's.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import ROOT, default_json, envelope, table, write_json

STUDIES = ["comparison", "headline-oracle", "domain-shift", "open-set", "three-modalities", "sign-noise",
           "shared-signs"]

#: run in the child: the glance page's order; no `if __name__` guard is needed, as `-c` code is not re-run by workers
CHILD = """
import json, sys, time
from sdmad_lite import studies
calls = {"comparison": studies.comparison, "headline-oracle": lambda: studies.headline("oracle"),
         "domain-shift": studies.domain_shift, "open-set": studies.open_set_per_category,
         "three-modalities": studies.three_modalities, "sign-noise": studies.sign_noise,
         "shared-signs": studies.shared_signs}
out = {"library": studies.__file__}
for name in json.loads(sys.argv[1]):
    t0 = time.perf_counter()
    s = studies.shipped(name, calls[name]())
    out[name] = {"seconds": time.perf_counter() - t0, "current": bool(s.current)}
print("RESULT " + json.dumps(out))
"""


def run_tree(tree: Path, studies: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="sdmad-bench-checks-") as cache:
        env = {**os.environ, "SDMAD_CACHE": cache, "PYTHONPATH": str(tree), "SDMAD_PROFILE": "offline",
               "HF_HUB_OFFLINE": "1"}
        env.pop("SDMAD_RECOMPUTE", None)
        p = subprocess.run([sys.executable, "-c", CHILD, json.dumps(studies)], env=env, cwd=tree,
                           capture_output=True, text=True)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    if p.returncode or not lines:
        raise SystemExit(f"{tree}: the checks failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
    res = json.loads(lines[-1][len("RESULT "):])
    if not Path(res.pop("library")).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"{tree}: the child imported another sdmad_lite; is {tree} a checkout of this repository?")
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trees", default=".", help="comma-separated checkouts of this repository (default: this one)")
    ap.add_argument("--studies", default=",".join(STUDIES))
    ap.add_argument("--json", default=str(default_json("shipped_checks")))
    args = ap.parse_args(argv)
    trees = [(ROOT / t).resolve() if not Path(t).is_absolute() else Path(t) for t in args.trees.split(",")]
    studies = args.studies.split(",")
    rec = envelope("shipped_checks", "Cold cost of the glance page's shipped-table checks, per library tree", args)
    runs = {}
    for t in trees:
        print(f"[bench] {t}: checking {len(studies)} tables with an empty cache ...", flush=True)
        runs[str(t)] = run_tree(t, studies)
    names = [t.name or str(t) for t in trees]
    rows = [{"table": s, **{n: runs[str(t)][s]["seconds"] for n, t in zip(names, trees)}} for s in studies]
    totals = {n: sum(runs[str(t)][s]["seconds"] for s in studies) for n, t in zip(names, trees)}
    rows.append({"table": "total", **totals})
    rows.append({"table": f"ratio to {names[0]}", **{n: totals[n] / totals[names[0]] for n in names}})
    rec["results"] = [{"tree": str(t), **runs[str(t)]} for t in trees]
    rec["ratios"] = {f"{n}/{names[0]}": totals[n] / totals[names[0]] for n in names[1:]}
    rec["notes"].append("seconds of studies.shipped per table, cold; every table current in every tree: "
                        + str(all(v["current"] for r in runs.values() for v in r.values())))
    rec["table"] = table(rows, ["table"] + names, "seconds, cold result cache")
    print(rec["table"])
    print(f"wrote {write_json(rec, args.json)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
