"""What every benchmark shares: the machine and versions it records, the JSON it writes, the
table it prints, timers, and a torch.profiler summary.

Every benchmark writes one JSON file (default ``benchmarks/results/<name>.json``) with:

- ``machine``: CPU model (``/proc/cpuinfo``), logical cores, cores this process may use, torch
  threads, and the load average before and after (a busy machine makes every number slower;
  the *ratios* measured side by side in one run are what the benchmarks report);
- ``versions``: python, torch, open_clip, numpy, sdmad_lite;
- ``command``: the command line that produced the file;
- ``settings``: the arguments; ``results``: rows; ``ratios``: the side-by-side ratios;
  ``goals``: each goal, the measured value and whether it is met (reported, never asserted);
- ``table``: the text table the script printed.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import statistics
import sys
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"


# ----------------------------------------------------------------------------- machine and versions
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    import torch

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
        "loadavg_start": _loadavg(),
        "cuda": torch.cuda.is_available(),
    }


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def versions() -> dict:
    import sdmad_lite

    return {"python": platform.python_version(), "torch": _version("torch"), "open_clip": _version("open_clip_torch"),
            "numpy": _version("numpy"), "sdmad_lite": sdmad_lite.__version__}


def command_line() -> str:
    return " ".join(shlex.quote(a) for a in [Path(sys.executable).name] + sys.argv)


def default_json(name: str) -> Path:
    return RESULTS / f"{name}.json"


def envelope(name: str, description: str, args) -> dict:
    """The record a benchmark fills in (``results``, ``ratios``, ``goals``, ``table``) and writes."""
    return {"benchmark": name, "description": description,
            "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "command": command_line(), "machine": machine(), "versions": versions(),
            "settings": {k: v for k, v in vars(args).items() if k != "json"}, "notes": [],
            "results": [], "ratios": {}, "goals": [], "profile": {}, "table": ""}


def write_json(rec: dict, path: str | os.PathLike) -> Path:
    rec["machine"]["loadavg_end"] = _loadavg()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(rec, indent=1, default=_jsonable) + "\n")
    os.replace(tmp, p)
    return p


def _jsonable(o):
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    return str(o)


def goal(rec: dict, name: str, measured: float, target: float, unit: str = "×", higher_is_better: bool = True,
         note: str = "") -> dict:
    met = measured >= target if higher_is_better else measured <= target
    g = {"goal": name, "measured": float(f"{float(measured):.4g}"), "target": target, "unit": unit,
         "higher_is_better": higher_is_better, "met": bool(met), "note": note}
    rec["goals"].append(g)
    return g


# ----------------------------------------------------------------------------- tables
def fmt(v: Any, digits: int = 3) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        if v != v:
            return "nan"
        a = abs(v)
        if a >= 1000:
            return f"{v:,.0f}"
        if a >= 100:
            return f"{v:.1f}"
        if a >= 1 or a == 0:
            return f"{v:.{max(0, digits - 1)}f}"
        return f"{v:.{digits}g}"
    return str(v)


def table(rows: Sequence[dict], cols: Sequence[str], title: str = "") -> str:
    """A plain text table of ``rows`` (dicts) on columns ``cols``."""
    cells = [[fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
    line = lambda vals: "  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(vals, widths)))  # noqa: E731
    out = [title] if title else []
    out += [line(cols), line(["-" * w for w in widths])] + [line(r) for r in cells]
    return "\n".join(out)


def goals_table(rec: dict) -> str:
    if not rec["goals"]:
        return ""
    rows = [{"goal": g["goal"], "measured": g["measured"], "target": f"{'≥' if g['higher_is_better'] else '≤'} {g['target']}",
             "met": "yes" if g["met"] else "NO"} for g in rec["goals"]]
    return table(rows, ["goal", "measured", "target", "met"], "goals (reported, not asserted)")


# ----------------------------------------------------------------------------- timing
@contextmanager
def timed(out: dict, key: str):
    t0 = time.perf_counter()
    try:
        yield
    finally:
        out[key] = time.perf_counter() - t0


def repeat(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> list[float]:
    """Wall seconds of ``fn()`` over ``repeats`` runs after ``warmup`` untimed runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def median(xs: Iterable[float]) -> float:
    xs = list(xs)
    return statistics.median(xs) if xs else float("nan")


def spread(xs: Sequence[float]) -> float:
    """(max − min) / median: how noisy the repeats were."""
    m = median(xs)
    return (max(xs) - min(xs)) / m if xs and m else float("nan")


# ----------------------------------------------------------------------------- profiling
def profile_top_ops(fn: Callable[[], Any], top: int = 10) -> dict:
    """Run ``fn`` under torch.profiler (CPU) and return the ops with the most self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
        t0 = time.perf_counter()
        fn()
        wall = time.perf_counter() - t0
    events = prof.key_averages()
    total_self = sum(e.self_cpu_time_total for e in events) or 1.0
    rows = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    ops = [{"op": e.key, "calls": int(e.count), "self_cpu_ms": round(e.self_cpu_time_total / 1000, 2),
            "self_cpu_pct": round(100 * e.self_cpu_time_total / total_self, 1),
            "cpu_total_ms": round(e.cpu_time_total / 1000, 2)} for e in rows]
    return {"wall_s": round(wall, 3), "self_cpu_total_ms": round(total_self / 1000, 1), "top_ops": ops}


def profile_table(name: str, prof: dict, top: int = 6) -> str:
    return table(prof["top_ops"][:top], ["op", "calls", "self_cpu_ms", "self_cpu_pct"],
                 f"profile: {name} (torch.profiler, self CPU time; wall {prof['wall_s']} s)")


# ----------------------------------------------------------------------------- backbones
def phantomclip_weights() -> str | None:
    """'shipped' when the PhantomCLIP-tiny checkpoint exists, else None (random weights)."""
    from sdmad_lite.models.backbone import PHANTOMCLIP_CHECKPOINT

    return "shipped" if PHANTOMCLIP_CHECKPOINT.is_file() else None


def weights_for(backbone: str) -> str | None:
    """The weights a benchmark uses: the shipped ones for PhantomCLIP-tiny (if built), random otherwise
    (no network here; random weights cost the same time)."""
    return phantomclip_weights() if backbone == "phantomclip-tiny" else None


def load_backbone(backbone: str):
    from sdmad_lite.models.backbone import load

    w = weights_for(backbone)
    return load(backbone, "default" if w == "shipped" else None), ("shipped" if w else "random")


def add_threads_arg(ap) -> None:
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default, one per core)")


def apply_threads(n: int) -> None:
    """Set torch's intra-op threads (before anything runs) when ``n`` > 0."""
    import torch

    if n and n > 0:
        torch.set_num_threads(n)


def print_record(rec: dict, *parts: str) -> None:
    text = "\n\n".join(p for p in parts if p)
    rec["table"] = text
    print(text, flush=True)


def run(main: Callable[[], int]) -> None:
    """A benchmark's entry point: run ``main``, print its wall time, exit with its status."""
    t0 = time.perf_counter()
    rc = main()
    print(f"({time.perf_counter() - t0:.0f} s)")
    sys.exit(rc)
