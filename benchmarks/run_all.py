"""Run every benchmark, each in its own process, then print every table.

    python benchmarks/run_all.py            # the full set (about 40 minutes on 2 CPU cores)
    python benchmarks/run_all.py --quick    # a short version (a few minutes), into results/quick/
    python benchmarks/run_all.py --only training,inference

Full results go to ``benchmarks/results/<name>.json`` (committed; the book's "What it costs"
page reads them); ``--quick`` writes to ``benchmarks/results/quick/`` (not committed) unless
``--out-dir`` says otherwise.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: name -> (script, full arguments, quick arguments)
BENCHMARKS: dict[str, tuple[str, list[str], list[str]]] = {
    "phantoms": ("bench_phantoms.py", [], ["--n", "50"]),
    "text": ("bench_text.py", [], ["--banks", "phantom_chest", "--repeats", "2", "--cold-repeats", "1"]),
    "inference": ("bench_inference.py", [], ["--batch", "16", "--repeats", "3"]),
    "training": ("bench_training.py", [],
                 ["--epochs", "15", "--vit-epochs", "2", "--n-test", "100", "--n-pool", "400", "--vit-n-test", "40",
                  "--vit-n-pool", "400", "--image-size", "128", "--repeats", "1", "--vit-variants", "mvfa-side,side-cached,side-cached-1t"]),
    "tuning": ("bench_tuning.py", [], ["--epochs", "20", "--repeats", "1"]),
    "book": ("bench_book.py", [], ["--notebooks", "notebooks/00_welcome.ipynb"]),
    "memory": ("bench_memory.py", [], ["--config", "benchmarks/configs/quick_chest.yaml", "--skip-warm", "--skip-book"]),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes: a few minutes in all")
    ap.add_argument("--only", default="", help=f"comma list of {', '.join(BENCHMARKS)}")
    ap.add_argument("--skip", default="", help="comma list of benchmarks to leave out")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads for training, inference and text (0: torch's default); 1 is steadier on a shared machine")
    ap.add_argument("--out-dir", default=None, help="default: benchmarks/results (benchmarks/results/quick with --quick)")
    args = ap.parse_args(argv)
    out = Path(args.out_dir) if args.out_dir else HERE / "results" / ("quick" if args.quick else "")
    out.mkdir(parents=True, exist_ok=True)
    names = [n for n in (args.only.split(",") if args.only else BENCHMARKS) if n]
    unknown = [n for n in names + [s for s in args.skip.split(",") if s] if n not in BENCHMARKS]
    if unknown:
        ap.error(f"unknown benchmarks {unknown}; choose from {', '.join(BENCHMARKS)}")
    names = [n for n in names if n not in args.skip.split(",")]
    status = {}
    for name in names:
        script, full, quick = BENCHMARKS[name]
        cmd = [sys.executable, str(HERE / script)] + (quick if args.quick else full) + ["--json", str(out / f"{name}.json")]
        if args.threads and name in ("training", "inference", "text"):
            cmd += ["--threads", str(args.threads)]
        print(f"\n=== {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call(cmd, cwd=HERE.parent)
        status[name] = (rc, time.perf_counter() - t0)
    print("\n\n################ all tables ################")
    for name in names:
        rc, dt = status[name]
        print(f"\n=== {name} (exit {rc}, {dt:.0f} s)")
        p = out / f"{name}.json"
        if not p.is_file():
            print("  (no results written)")
            continue
        rec = json.loads(p.read_text())
        if rec.get("table"):
            print(rec["table"])
        else:  # bench_phantoms writes rows only
            for r in rec.get("results", []):
                print("  " + "  ".join(f"{k}={v}" for k, v in r.items()))
    failed = [n for n, (rc, _) in status.items() if rc]
    if failed:
        print(f"\nFAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
