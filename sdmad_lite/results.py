"""Result files: a tidy CSV of rows (one per run) and its sidecar, and whether a shipped file is current.

A results CSV keeps beside it ``NAME.meta`` (JSON): the command that wrote it, the library's code
fingerprint, the date and the number of rows. Whether the rows are still what this library computes
is checked by *behaviour*, not by the fingerprint (which changes with any refactor): :func:`check_current`
recomputes a seeded sample of the rows and compares them to the printed precision.
"""
from __future__ import annotations

import csv
import datetime
import json
import math
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from .cache import code_fingerprint, config_hash
from .config import ExperimentConfig
from .errors import SdmadError
from .io import atomic_write

#: columns read as text (the others are parsed as numbers where they can be)
TEXT_COLUMNS = ("config_hash", "method", "profile", "data.dataset", "data.world", "model.backbone",
                "model.pretrained", "model.adapter_mode", "selection.noise_kind")


class ResultsFileError(SdmadError, ValueError):
    """A results CSV or its sidecar cannot be read as one (choose another file, or delete it)."""


def sidecar_path(csv_path: str | os.PathLike) -> Path:
    """The sidecar of a results CSV: ``NAME.meta`` beside ``NAME.csv`` (JSON inside). Not ``.json``: a
    results CSV may ship inside the package, and the library's code fingerprint reads the package's
    ``.json`` files — a sidecar named so would change the fingerprint it holds."""
    p = Path(csv_path)
    if p.suffix == ".meta":
        raise ResultsFileError(f"{p}: a results file cannot end in .meta (its sidecar would be the file itself); "
                               "name it NAME.csv")
    return p.with_suffix(".meta")


def read_meta(csv_path: str | os.PathLike) -> dict:
    """The sidecar of ``csv_path`` as a dict ({} when there is none)."""
    side = sidecar_path(csv_path)
    if not side.is_file():
        return {}
    try:
        meta = json.loads(side.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ResultsFileError(f"{side} is not a readable sidecar ({type(e).__name__}); delete it, or choose another "
                               "--out") from None
    if not isinstance(meta, dict) or (meta and "code" not in meta and "base" not in meta and "command" not in meta):
        raise ResultsFileError(f"{side} is not the sidecar of an sdmad results file (a JSON file of yours?); move it "
                               "away, or choose another --out")
    return meta


def write_meta(csv_path: str | os.PathLike, **fields) -> None:
    """Update the sidecar of ``csv_path`` with ``fields`` (and the library's code fingerprint)."""
    meta = read_meta(csv_path) | fields | {"code": code_fingerprint()}
    atomic_write(sidecar_path(csv_path), json.dumps(meta, indent=1))


def read_rows(path: str | os.PathLike) -> list[dict]:
    p = Path(path)
    if not p.is_file():
        return []
    with open(p, newline="") as f:
        return [{k: (v if k in TEXT_COLUMNS else _parse(v)) for k, v in r.items()} for r in csv.DictReader(f)]


def _parse(v: str):
    for cast in (int, float):
        try:
            return cast(v)
        except (TypeError, ValueError):
            pass
    return None if v == "" else v


def write_rows(path: str | os.PathLike, rows: list[dict]) -> None:
    """Write ``rows`` as a CSV (atomically), the union of their keys as columns in order of appearance."""
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)

    atomic_write(path, write)


def save_results(rows: list[dict], path: str | os.PathLike, command: str) -> None:
    """Write ``rows`` as a results CSV with its sidecar: the command, the date, the number of rows."""
    sidecar_path(path)  # refuses NAME.meta before anything is written
    write_rows(path, rows)
    write_meta(path, command=command, date=datetime.date.today().isoformat(), rows=len(rows))


def read_results(path: str | os.PathLike) -> tuple[pd.DataFrame, dict]:
    """The rows of a results CSV and its sidecar (``meta["code_current"]``: the library that wrote it is
    the one installed now — a hint; :func:`check_current` is the check)."""
    meta = read_meta(path)
    meta["code_current"] = meta.get("code") == code_fingerprint()
    return pd.DataFrame(read_rows(path)), meta


#: the metrics a recomputed row is compared on, and the precision they are printed with (points); the normal
#: column's AUROC is the anchor's, a column of every comparison table
CHECKED = ("integrated.macro_auroc", "integrated.anomaly_macro_auroc", "integrated.binary_auroc", "per-anomaly.mean_auroc",
           "integrated.auroc.normal", "integrated.subset_accuracy", "integrated.hamming_score")


def check_current(df: pd.DataFrame, configs: Sequence[ExperimentConfig], recompute: Callable[[list], list[dict]],
                  n: int = 2, seed: int = 0, metrics: Sequence[str] = CHECKED, precision: float = 0.1) -> dict:
    """Whether a shipped results table is what this library computes: ``n`` of its rows, drawn with ``seed``
    among those whose config is in ``configs`` (matched by ``config_hash``), are recomputed with
    ``recompute`` (e.g. :func:`sdmad_lite.executor.run_many`) and compared on ``metrics`` to ``precision``
    (in points of 100, the precision the book prints: two values agree when they round alike or differ by
    less than half of it). Returns ``{"current", "checked", "agree", "max_diff", "rows"}``; a table none
    of whose rows is among ``configs`` is not current."""
    by_hash = {config_hash(c): c for c in configs}
    have = [i for i, h in enumerate(df.get("config_hash", pd.Series(dtype=str))) if h in by_hash]
    if not have:
        return {"current": False, "checked": 0, "agree": 0, "max_diff": float("nan"), "rows": []}
    pick = sorted(np.random.default_rng([seed, 23]).choice(have, size=min(n, len(have)), replace=False).tolist())
    fresh = recompute([by_hash[df["config_hash"].iloc[i]] for i in pick])
    agree, worst, detail = 0, 0.0, []
    for i, new in zip(pick, fresh):
        old = df.iloc[i]
        diffs = []
        for m in metrics:
            a, b = float(old.get(m, float("nan"))), float(new.get(m, float("nan")))
            d = 0.0 if (math.isnan(a) and math.isnan(b)) else abs(a - b) * 100
            diffs.append(d)
        ok = all(d < precision / 2 or math.isclose(d, 0.0) for d in diffs)
        agree += ok
        worst = max(worst, max(diffs))
        detail.append({"method": old.get("method"), "seed": old.get("seed"), "agrees": ok, "max_diff": max(diffs)})
    return {"current": agree == len(pick), "checked": len(pick), "agree": agree, "max_diff": worst, "rows": detail}
