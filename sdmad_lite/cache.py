"""The result cache: what keys a finished run's row, and where the row is kept.

A row is keyed by the run's config (:func:`config_hash`, the one config hash of the library), the
code that computes it (:func:`code_fingerprint`: an AST fingerprint of the library, docstrings and
comments left out) and, for real data, a fingerprint of the files it reads. The book executes its
notebooks more than once per CI run (nbval, then the build); the cache lets the second execution
reuse the runs of the first. ``SDMAD_NO_RESULT_CACHE=1`` turns it off. The shipped result CSVs are
*not* trusted by this fingerprint: a chapter recomputes a sample of their rows
(:func:`sdmad_lite.results.check_current`).
"""
from __future__ import annotations

import ast
import functools
import hashlib
import json
import math
from pathlib import Path

from . import settings
from .config import ExperimentConfig
from .data.build import fingerprint as data_fingerprint
from .io import PACKAGE_DIR, cache_dir, stable_hash, write_json

#: parts of the package that only *use* runs (commands, sweeps, result files, analysis, reports,
#: explorers): they cannot change a run's row, so they are not part of the code fingerprint
CONSUMERS = ("cli", "data_scripts", "sweep.py", "results.py", "analysis.py", "reports.py", "studies.py",
             "explore.py", "info.py", "plots.py")


def config_hash(cfg: ExperimentConfig, n: int = 16) -> str:
    """What identifies a run's configuration (its sweep row, its cache entry): a hash of the whole config."""
    return stable_hash(cfg.to_dict(), n)


def _code(p: Path) -> bytes:
    """What of a source file can change a result: its syntax tree without docstrings (comments are not
    in it), so that editing documentation leaves the result cache valid; a YAML file's data (not its
    comments or layout). Other files: their bytes."""
    if p.suffix == ".yaml":
        import json

        import yaml

        return json.dumps(yaml.safe_load(p.read_text()), sort_keys=True, default=str).encode()
    if p.suffix != ".py":
        return p.read_bytes()
    tree = ast.parse(p.read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree).encode()


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """sha256 over the library's code, sign files, registry and shipped checkpoints — every file that
    could alter a run's result (the key of the result cache). ``CONSUMERS``, the example configs and the shipped results are
    left out, and so are docstrings and comments (``_code``). Once per process."""
    h = hashlib.sha256()
    for p in sorted(PACKAGE_DIR.rglob("*")):
        rel = p.relative_to(PACKAGE_DIR)
        if rel.parts[0] in CONSUMERS or (rel.parts[0] == "configs" and p.name != "methods.yaml") \
                or rel.parts[:2] == ("resources", "results"):  # the shipped results: what runs wrote, not code
            continue
        if p.suffix in (".py", ".yaml", ".json", ".pt") and "__pycache__" not in p.parts:
            h.update(str(rel).encode())
            h.update(_code(p))
    return h.hexdigest()


def result_path(cfg: ExperimentConfig) -> Path:
    """Where the row of ``cfg`` is kept: keyed by the config, the code fingerprint and, for real data, a
    fingerprint of the files read (a replaced file is never answered from the cache)."""
    return cache_dir("runs") / f"{stable_hash([cfg.to_dict(), code_fingerprint(), data_fingerprint(cfg)], 32)}.json"


def enabled() -> bool:
    """The result cache is used unless ``SDMAD_NO_RESULT_CACHE=1``."""
    return settings.result_cache_enabled()


def read(cfg: ExperimentConfig) -> dict | None:
    """The cached row of ``cfg``, or None (absent, unreadable, edited since it was written, or not a finished
    row of ``cfg``: recomputed). An entry holds the row and a digest of it: a value edited by hand no longer
    matches (made-up metrics are never reported as measured)."""
    path = result_path(cfg)
    if not enabled() or not path.is_file():
        return None
    try:
        entry = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("format") != FORMAT or not isinstance(entry.get("row"), dict):
        return None
    row = entry["row"]
    if entry.get("digest") != stable_hash(row, 64):
        return None
    return row if is_finished_row(row, cfg) else None


def write(cfg: ExperimentConfig, row: dict) -> dict:
    """Keep ``row`` as the result of ``cfg`` (with its digest); returns it as read back (JSON types)."""
    clean = json.loads(json.dumps(row, default=float))
    if not enabled():
        return row
    write_json(result_path(cfg), {"format": FORMAT, "digest": stable_hash(clean, 64), "row": clean})
    return clean


#: the layout of a result-cache entry, ``{"format", "digest", "row"}``
FORMAT = 2


#: what every finished row holds, and the metrics that must be numbers in [0, 1] (or NaN)
REQUIRED = ("method", "seed", "k_shot", "config_hash", "integrated.subset_accuracy", "integrated.hamming_score",
            "wall_time_s")
IN_UNIT = ("integrated.subset_accuracy", "integrated.hamming_score", "integrated.macro_auroc", "per-anomaly.mean_auroc")
#: of those, the metrics that are never NaN (an AUROC is, when no category has both labels)
DEFINED = ("integrated.subset_accuracy", "integrated.hamming_score")


def is_finished_row(row, cfg: ExperimentConfig | None = None) -> bool:
    """A row that holds a whole run (of ``cfg`` when given): every required key, metrics in [0, 1] (the
    AUROCs may be NaN, the accuracies never; a row cut by a crash, or edited by hand into something
    impossible, is not one)."""
    if not isinstance(row, dict):
        return False
    for key in REQUIRED:
        if row.get(key) is None or row.get(key) == "":
            return False
    for key in IN_UNIT:
        v = row.get(key)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isnan(v) or 0.0 <= v <= 1.0):
            return False
        if key in DEFINED and math.isnan(v):  # a mean over the test images: defined whenever there are any
            return False
    if cfg is not None and row.get("config_hash") != config_hash(cfg):
        return False
    return True
