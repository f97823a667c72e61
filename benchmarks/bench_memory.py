"""Peak resident memory of a training run and of executing the book, each in a child process.

    python benchmarks/bench_memory.py [--config sdmad_lite/configs/offline_chest.yaml] [--skip-book] [--json PATH]

Measured, each in its own child process (a fresh interpreter, so nothing is shared with this one):

- ``sdmad run <config>``, cold: an empty ``SDMAD_CACHE`` (phantoms rendered, frozen features
  extracted for the test set and the pool, text bank encoded, SD-MAD trained, open-set run too);
- ``sdmad run <config>``, warm: the same cache, now filled (features and text embeddings read);
- executing the book: every notebook of ``notebooks/`` executed with nbclient into a temporary
  copy (``bench_book.py --execute-only``), with an empty cache. This is what dominates
  ``jupyter-book build`` (which executes the same notebooks in kernels of its own); the Sphinx
  process itself is not measured here.

Two numbers per case:

- ``peak_process_mb``: the largest peak resident set of any single process of the run (the
  kernel's ``VmHWM`` high-water mark, read from ``/proc/<pid>/status`` while the process lives,
  and ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` once it has been waited for);
- ``peak_tree_mb``: the largest *sum* of resident sets over the whole process tree (the notebook
  runner plus its kernels), sampled every 50 ms — what the machine must hold at once.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

NAME = "memory"


def _status(pid: int) -> dict[str, int]:
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                k, v = line.split(":", 1)
                out[k] = int(v.split()[0])  # kB
    except (OSError, ValueError):
        pass
    return out


def _children(pid: int) -> list[int]:
    kids = []
    for t in Path(f"/proc/{pid}/task").glob("*") if Path(f"/proc/{pid}/task").exists() else []:
        try:
            kids += [int(x) for x in (t / "children").read_text().split()]
        except OSError:
            pass
    return kids


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += _children(p)
    return out


def measure(cmd: list[str], env: dict, interval: float = 0.05) -> dict:
    """Run ``cmd`` in a child, sample its process tree; return peaks (MB) and wall time.

    Runs in a wrapper interpreter (``--_wrap``) so that ``RUSAGE_CHILDREN`` covers this command only."""
    wrap = [sys.executable, str(Path(__file__).resolve()), "--_wrap", json.dumps(cmd)]
    t0 = time.perf_counter()
    p = subprocess.run(wrap, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    last = [line for line in p.stdout.splitlines() if line.startswith("MEMORY ")]
    if p.returncode or not last:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}")
    out = json.loads(last[-1][len("MEMORY "):])
    out["wall_s"] = wall
    return out


def _wrap(cmd: list[str], interval: float = 0.05) -> int:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    peak_tree = 0
    peak_hwm = 0
    n_procs = 1
    while proc.poll() is None:
        pids = _tree(proc.pid)
        n_procs = max(n_procs, len(pids))
        st = [_status(p) for p in pids]
        peak_tree = max(peak_tree, sum(s.get("VmRSS", 0) for s in st))
        peak_hwm = max([peak_hwm] + [s.get("VmHWM", 0) for s in st])
        time.sleep(interval)
    ru = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # kB on Linux
    print("MEMORY " + json.dumps({"exit": proc.returncode, "peak_process_mb": max(peak_hwm, ru) / 1024,
                                  "ru_maxrss_mb": ru / 1024, "peak_tree_mb": peak_tree / 1024, "max_processes": n_procs}))
    return proc.returncode


def sdmad_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "sdmad"
    return [str(exe)] if exe.exists() else [sys.executable, "-c", "from sdmad_lite.cli import main; raise SystemExit(main())"]


def main(argv=None) -> int:
    if argv is None and len(sys.argv) > 2 and sys.argv[1] == "--_wrap":
        return _wrap(json.loads(sys.argv[2]))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="sdmad_lite/configs/offline_chest.yaml", help="relative to the repository root")
    ap.add_argument("--notebooks", default="notebooks/*.ipynb")
    ap.add_argument("--skip-book", action="store_true")
    ap.add_argument("--skip-warm", action="store_true")
    ap.add_argument("--json", default=str(C.default_json(NAME)))
    args = ap.parse_args(argv)
    rec = C.envelope(NAME, "Peak resident memory (child processes): a training run and the book's execution", args)
    rec["notes"] += ["peak_process_mb: the largest single process (VmHWM / ru_maxrss); peak_tree_mb: the largest sum "
                     "over the process tree, sampled every 50 ms.",
                     "the book case executes every notebook with nbclient (bench_book.py --execute-only) into a "
                     "temporary copy with an empty cache; jupyter-book build runs the same notebooks, plus Sphinx.",
                     "PhantomCLIP-tiny: %s." % ("the shipped checkpoint" if C.phantomclip_weights() else "NO shipped checkpoint")]
    cfg = str(C.ROOT / args.config)
    rows = []
    with tempfile.TemporaryDirectory(prefix="sdmad-bench-mem-") as tmp:
        tmp = Path(tmp)
        env = dict(os.environ, SDMAD_CACHE=str(tmp / "cache"))
        cases = [("sdmad run (cold cache)", sdmad_cmd() + ["run", cfg, "--out", str(tmp / "run1")])]
        if not args.skip_warm:
            cases.append(("sdmad run (warm cache)", sdmad_cmd() + ["run", cfg, "--out", str(tmp / "run2")]))
        if not args.skip_book:
            book_env_cache = tmp / "book-cache"
            cases.append(("execute the book (cold cache)",
                          [sys.executable, str(C.HERE / "bench_book.py"), "--notebooks", args.notebooks,
                           "--execute-only", str(tmp / "book")], {"SDMAD_CACHE": str(book_env_cache)}))
        for case in cases:
            label, cmd = case[0], case[1]
            e = dict(env, **(case[2] if len(case) > 2 else {}))
            m = measure(cmd, e)
            rows.append({"case": label} | {k: m[k] for k in ("peak_process_mb", "peak_tree_mb", "max_processes", "wall_s")})
            print(f"{label:34s} peak process {m['peak_process_mb']:8.1f} MB  tree {m['peak_tree_mb']:8.1f} MB  "
                  f"{m['wall_s']:.1f} s", flush=True)
    rec["results"] = rows
    rec["ratios"] = {r["case"]: {"peak_process_mb": r["peak_process_mb"], "peak_tree_mb": r["peak_tree_mb"]} for r in rows}
    C.print_record(rec, C.table(rows, ["case", "peak_process_mb", "peak_tree_mb", "max_processes", "wall_s"],
                                "peak resident memory (MB)"))
    print("wrote", C.write_json(rec, args.json))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
