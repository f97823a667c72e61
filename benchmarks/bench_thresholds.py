"""Do the integrated label metrics say anything? Subset accuracy and Hamming score of SD-MAD and the
linear probe *minus always-normal*, paired by seed, on the development seeds and world (issue 23).

Run on two versions of the library to compare threshold schemes side by side (the same seeds, the
same phantoms), e.g. the refit-then-cut scheme before issue 23 and the fold models' vote after it::

    git worktree add /tmp/old <commit before the change>
    (cd /tmp/old && PYTHONPATH=/tmp/old python /path/to/benchmarks/bench_thresholds.py --json /tmp/old.json)
    python benchmarks/bench_thresholds.py --json /tmp/new.json

It prints, per method, the mean paired difference to always-normal with its 95 % t-interval (seeds are
the unit) and the mean wall time of one run. ``--fixed-test`` evaluates every seed on the same test set
(the scheme before per-seed test samples), so that only the threshold scheme differs between versions.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

METRICS = ("integrated.subset_accuracy", "integrated.hamming_score")
METHODS = ("always-normal", "sdmad", "linear-probe")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="1000-1009")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--fixed-test", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    os.environ["SDMAD_NO_RESULT_CACHE"] = "1"
    from sdmad_lite import studies
    from sdmad_lite.metrics import paired_test
    try:
        from sdmad_lite.executor import run_many
    except ImportError:  # the library before issue 22
        from sdmad_lite.run import run_many

    lo, hi = (int(x) for x in args.seeds.split("-"))
    cfgs = studies.configs(METHODS, [args.k], seeds=range(lo, hi + 1))
    for c in cfgs:
        c.data.world = "development"
        if hasattr(c.data, "test_resample"):
            c.data.test_resample = not args.fixed_test
    t0 = time.time()
    rows = run_many(cfgs, workers=args.workers)
    wall = time.time() - t0
    by = {(r["method"], r["seed"]): r for r in rows}
    seeds = sorted({r["seed"] for r in rows})
    out = {"wall_s": round(wall, 1), "rows": rows, "table": []}
    print(f"{len(rows)} runs in {wall:.0f} s; k = {args.k}, development seeds {seeds[0]}-{seeds[-1]}, "
          f"{'one fixed test set' if args.fixed_test else 'a test sample per seed'}")
    print(f"{'method':14s} " + " ".join(f"{m.split('.')[-1] + ' − always-normal':>34s}" for m in METRICS)
          + "   s per run")
    for m in METHODS[1:]:
        cells = []
        for metric in METRICS:
            a = np.array([100 * by[(m, s)][metric] for s in seeds])
            b = np.array([100 * by[("always-normal", s)][metric] for s in seeds])
            t = paired_test(a, b)
            cells.append(f"{t.mean:+6.1f} [{t.low:+6.1f}, {t.high:+6.1f}]")
            out["table"].append({"method": m, "metric": metric, "mean": t.mean, "low": t.low, "high": t.high, "n": t.n})
        per_run = np.mean([by[(m, s)]["wall_time_s"] for s in seeds])
        print(f"{m:14s} " + " ".join(f"{c:>34s}" for c in cells) + f"   {per_run:8.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, default=float)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
