"""pytest plugin: keep the notebooks that nbval executed, so that the book build renders them.

    python -m pytest notebooks --nbval-lax -p scripts.nbval_cache --nbval-cache _build/nbval-cache

nbval executes every notebook to check it, then throws the outputs away; building the book with
``execute_notebooks: force`` would execute every notebook a second time. With this plugin, each
notebook whose every cell passed is stored, with the outputs this run produced, in a jupyter-cache
folder. ``scripts/test.sh`` then builds the book with ``execute_notebooks: cache`` pointing at it:
jupyter-book matches each notebook to its cached run by the source of its code cells and renders
those outputs. A notebook that is not in the cache (one that failed here, or one whose cells were
edited since) is executed by the build as usual. The cache is keyed by the notebook alone: a change of
the library or of its data between the two steps is not seen, which is why ``test.sh`` runs them back
to back, on a cache this nbval run started empty. A notebook with a cell that nbval lets raise
(``NBVAL_RAISES_EXCEPTION``) is not stored: the book build executes it and fails on the error, as it
would without this plugin.
"""
from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest

_runs: dict = {}  # nbval's notebook collector -> {"ok": bool, "outputs": {cell number: outputs}}


def pytest_addoption(parser):
    parser.addoption("--nbval-cache", default=None, metavar="DIR",
                     help="store each notebook nbval executed without a failure in this jupyter-cache folder "
                          "(emptied first), for a book build with execute_notebooks: cache")


def pytest_configure(config):
    folder = config.getoption("--nbval-cache")
    if not folder:
        return
    if getattr(config, "workerinput", None) is not None or (config.getoption("numprocesses", None) or 0):
        raise pytest.UsageError("--nbval-cache: run nbval in one process (no -n): workers would write one cache at once")
    p = Path(folder)
    if p.exists() and any(p.iterdir()) and not (p / "global.db").is_file():
        raise pytest.UsageError(f"--nbval-cache {folder}: the folder exists and is not a jupyter-cache folder "
                                "(no global.db); nothing was deleted. Give a new or empty folder.")
    shutil.rmtree(p, ignore_errors=True)  # an earlier run's cache would answer for sources it did not run


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    if not item.config.getoption("--nbval-cache") or not hasattr(item, "test_outputs"):
        return
    run = _runs.setdefault(item.parent, {"ok": True, "outputs": {}})
    if report.failed or report.skipped or item.options.get("check_exception"):
        run["ok"] = False
    elif report.when == "call":
        run["outputs"][item.cell_num] = item.test_outputs


def pytest_runtest_teardown(item, nextitem):
    folder = item.config.getoption("--nbval-cache")
    if not folder or item.parent not in _runs or (nextitem is not None and nextitem.parent is item.parent):
        return
    run = _runs.pop(item.parent)
    nb = copy.deepcopy(item.parent.nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    if not run["ok"] or len(run["outputs"]) != len(code):
        return  # not stored: the book build executes this notebook itself
    for i, cell in enumerate(code):
        cell.execution_count = i + 1
        cell.outputs = copy.deepcopy(run["outputs"][i])
        for out in cell.outputs:
            if out.get("output_type") == "execute_result":
                out["execution_count"] = i + 1
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    get_cache(str(Path(folder).resolve())).cache_notebook_bundle(
        CacheBundleIn(nb, str(Path(str(item.parent.fspath)).resolve())), check_validity=False, overwrite=True)


def book_config(source: Path, cache: Path, out: Path) -> Path:
    """Write ``source`` (a book's ``_config.yml``, in the book's source folder) to ``out`` with
    ``execute_notebooks: cache`` reading ``cache``, for ``jupyter-book build SOURCE_FOLDER --config OUT``."""
    import yaml

    cfg = yaml.safe_load(Path(source).read_text())
    cfg.setdefault("execute", {}).update(execute_notebooks="cache", cache=str(Path(cache).resolve()))
    # jupyter-book reads the local extensions' folders relative to the config file, everything else
    # relative to the book's source folder: written elsewhere, they must be absolute
    ext = cfg.get("sphinx", {}).get("local_extensions") or {}
    for name, folder in ext.items():
        ext[name] = str((Path(source).resolve().parent / folder).resolve())
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(yaml.safe_dump(cfg, sort_keys=False))
    return Path(out)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="write a book config that renders the notebooks nbval stored")
    ap.add_argument("config", type=Path, help="the book's _config.yml")
    ap.add_argument("cache", type=Path, help="the folder given to --nbval-cache")
    ap.add_argument("out", type=Path, help="where to write the config for `jupyter-book build --config`")
    a = ap.parse_args()
    print(book_config(a.config, a.cache, a.out))
