"""Phantoms per second at a given size on one core, per modality.

    python benchmarks/bench_phantoms.py [--n 300] [--size 224] [--json out.json]
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

from sdmad_lite.data.phantoms import MODALITIES, PhantomDataset  # noqa: E402


def bench(modality: str, n: int, size: int, seed: int = 0) -> dict:
    ds = PhantomDataset(modality, n, seed=seed, size=size, label_source="uniform")
    ds[0]  # warm caches (grids, noise tile)
    t0 = time.perf_counter()
    for i in range(n):
        ds[i]
    dt = time.perf_counter() - t0
    return {"modality": modality, "n": n, "size": size, "seconds": round(dt, 3),
            "per_second": round(n / dt, 1), "ms_each": round(1000 * dt / n, 2),
            "seconds_per_10k": round(10000 * dt / n, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--json", default=None, help="write the results to this JSON file")
    args = ap.parse_args(argv)
    try:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    except (AttributeError, OSError):
        pass
    rows = [bench(m, args.n, args.size) for m in MODALITIES]
    print(f"{'modality':8s} {'size':>5s} {'n':>5s} {'per s':>8s} {'ms each':>8s} {'s / 10k':>8s}")
    for r in rows:
        print(f"{r['modality']:8s} {r['size']:5d} {r['n']:5d} {r['per_second']:8.1f} {r['ms_each']:8.2f} {r['seconds_per_10k']:8.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": platform.processor() or platform.machine(), "python": platform.python_version(),
                       "results": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
