"""Wall time of executing every notebook of the book offline, with a cold and a warm result cache.

    python benchmarks/bench_book.py [--notebooks 'notebooks/*.ipynb'] [--json PATH]

The notebooks are copied into a temporary folder and executed there with nbclient (as
``scripts/nbtool.py execute`` does, kernel ``python3``, offline profile); the committed notebooks
are never touched. Two passes over all notebooks, in order, in one temporary ``SDMAD_CACHE``:

- ``cold``: the cache folder starts empty (text embeddings, frozen features and runs are computed;
  a later notebook of the pass may reuse what an earlier one cached, as in a real build);
- ``warm``: the same folder, now filled (what a rebuild costs: ``scripts/book.sh`` run again on one machine;
  CI executes each notebook once, in its nbval step, and the book build renders what nbval stored).

Each time includes starting the kernel; the time of an empty notebook (kernel start and shutdown
alone) is reported as its own row.

``--execute-only DIR`` executes the notebooks into DIR once, without timing (``bench_memory`` uses
it to measure the peak memory of the book's execution in a child process).
"""
from __future__ import annotations

import argparse
import glob
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

NAME = "book"


def _kernel_peak_rss_mb(client) -> float:
    """The kernel's peak resident memory so far (Linux ``VmHWM``), MB; NaN where unknown."""
    try:
        pid = client.km.provisioner.pid
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except Exception:  # noqa: BLE001 — not Linux, or no local kernel process
        pass
    return float("nan")


def execute_copy(src: Path, workdir: Path, timeout: int = 900, peak: dict | None = None) -> float:
    """Execute a copy of notebook ``src`` inside ``workdir`` (the copy is written back there).

    ``peak``, when given, receives ``peak[src.name]``: the kernel's peak resident memory (MB),
    read after every cell (the high-water mark only grows).
    """
    import nbformat
    from nbclient import NotebookClient

    dst = workdir / src.name
    shutil.copyfile(src, dst)
    nb = nbformat.read(dst, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(workdir)}})
    if peak is not None:
        def after_cell(**_):
            peak[src.name] = max(peak.get(src.name, 0.0), _kernel_peak_rss_mb(client))
        client.on_cell_executed = after_cell
    t0 = time.perf_counter()
    client.execute()
    dt = time.perf_counter() - t0
    nbformat.write(nb, dst)
    return dt


def empty_notebook(path: Path) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.cells.append(nbformat.v4.new_code_cell("1 + 1"))
    nbformat.write(nb, path)
    return path


def notebook_list(pattern: str) -> list[Path]:
    paths = sorted(Path(p) for p in glob.glob(str(C.ROOT / pattern) if not os.path.isabs(pattern) else pattern))
    if not paths:
        raise SystemExit(f"no notebooks match {pattern!r}")
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--notebooks", default="notebooks/*.ipynb", help="glob, relative to the repository root")
    ap.add_argument("--timeout", type=int, default=900, help="per cell, seconds")
    ap.add_argument("--execute-only", metavar="DIR", default=None, help="execute copies into DIR once, no timing")
    ap.add_argument("--cache", default=None, metavar="DIR",
                    help="use DIR (empty or absent) as SDMAD_CACHE and keep it filled afterwards, e.g. the default "
                         "cache folder moved aside first, so that later builds reuse what the cold pass computed")
    ap.add_argument("--json", default=str(C.default_json(NAME)))
    args = ap.parse_args(argv)
    nbs = notebook_list(args.notebooks)
    if args.cache and Path(args.cache).exists() and any(Path(args.cache).iterdir()):
        raise SystemExit(f"--cache {args.cache} is not empty: a cold pass needs an empty folder (move it aside first)")

    if args.execute_only:
        d = Path(args.execute_only)
        d.mkdir(parents=True, exist_ok=True)
        for p in nbs:
            print(f"{p.name}: {execute_copy(p, d, args.timeout):.1f} s", flush=True)
        return 0

    rec = C.envelope(NAME, "Executing every notebook offline: cold vs warm result cache", args)
    rec["notes"] += ["nbclient, kernel python3, copies in a temporary folder; one SDMAD_CACHE for both passes, "
                     "empty at the start of the cold pass.",
                     "PhantomCLIP-tiny: %s." % ("the shipped checkpoint" if C.phantomclip_weights() else
                                                "NO shipped checkpoint yet (notebooks that need it fail or differ)")]
    with tempfile.TemporaryDirectory(prefix="sdmad-bench-book-") as tmp:
        tmp = Path(tmp)
        old_cache = os.environ.get("SDMAD_CACHE")
        os.environ["SDMAD_CACHE"] = args.cache or str(tmp / "cache")  # the kernels inherit this environment
        os.environ["SDMAD_STATIC"] = "1"  # as in the book build: the explorers' static figures
        os.environ.pop("MPLBACKEND", None)  # as in the book build: inline figures (scripts/_venv.sh)
        try:
            times: dict[str, dict[str, float]] = {}
            peaks: dict[str, float] = {}
            errors: dict[str, str] = {}
            empty = empty_notebook(tmp / "empty.ipynb")
            (tmp / "k").mkdir()
            kernel = [execute_copy(empty, tmp / "k", args.timeout) for _ in range(2)]  # the 2nd: OS caches warm
            for phase in ("cold", "warm"):
                work = tmp / phase
                work.mkdir()
                for p in nbs:
                    try:
                        times.setdefault(p.name, {})[phase] = execute_copy(p, work, args.timeout,
                                                                           peaks if phase == "cold" else None)
                    except Exception as e:  # noqa: BLE001 — a failing notebook is reported, the others still run
                        errors[f"{p.name} ({phase})"] = f"{type(e).__name__}: {str(e)[:300]}"
                        times.setdefault(p.name, {})[phase] = float("nan")
                    print(f"{phase:4s} {p.name:36s} {times[p.name][phase]:7.1f} s", flush=True)
        finally:
            if old_cache is None:
                os.environ.pop("SDMAD_CACHE", None)
            else:
                os.environ["SDMAD_CACHE"] = old_cache
    rows = [{"notebook": n, "cold_s": t.get("cold"), "warm_s": t.get("warm"),
             "cold_over_warm": t["cold"] / t["warm"] if t.get("warm") else float("nan"),
             "kernel_peak_rss_mb_cold": peaks.get(n, float("nan"))} for n, t in times.items()]
    ok = [r for r in rows if r["cold_s"] == r["cold_s"] and r["warm_s"] == r["warm_s"]]  # both passes ran
    tot_c = sum(r["cold_s"] for r in ok)
    tot_w = sum(r["warm_s"] for r in ok)
    label = "all notebooks" if len(ok) == len(rows) else f"all that ran ({len(ok)} of {len(rows)})"
    rows.append({"notebook": label, "cold_s": tot_c, "warm_s": tot_w, "cold_over_warm": tot_c / tot_w if tot_w else float("nan"),
                 "kernel_peak_rss_mb_cold": max((peaks[r["notebook"]] for r in ok if r["notebook"] in peaks),
                                                default=float("nan"))})  # the largest of the notebooks'
    rows.append({"notebook": "(empty notebook: kernel start + stop)", "cold_s": kernel[1], "warm_s": kernel[1],
                 "cold_over_warm": 1.0})
    rec["results"] = rows
    rec["errors"] = errors
    rec["ratios"] = {"all_cold_over_warm": tot_c / tot_w if tot_w else float("nan"), "all_cold_s": tot_c, "all_warm_s": tot_w,
                     "kernel_start_s": kernel[1], "max_kernel_peak_rss_mb": max(peaks.values(), default=float("nan"))}
    C.goal(rec, "executing the whole book offline, cold cache (minutes)", tot_c / 60, 15.0, unit="min",
           higher_is_better=False)
    C.goal(rec, "slowest notebook, cold cache (minutes)", max((r["cold_s"] for r in ok), default=float("nan")) / 60, 3.0,
           unit="min", higher_is_better=False)
    parts = [C.table(rows, ["notebook", "cold_s", "warm_s", "cold_over_warm", "kernel_peak_rss_mb_cold"],
                     "executing the notebooks (seconds; peak resident memory of the kernel, MB)")]
    if errors:
        parts.append("ERRORS:\n" + "\n".join(f"  {k}: {v}" for k, v in errors.items()))
    C.print_record(rec, *parts)
    print("wrote", C.write_json(rec, args.json))
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
