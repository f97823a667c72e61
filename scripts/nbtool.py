"""Maintainer tool: write a notebook from a compact cell list, or execute notebooks in place.

    python scripts/nbtool.py execute notebooks/00_welcome.ipynb [...]

Notebooks are the source of truth; this only (re)executes them so that the committed
outputs (which nbval's golden cells compare against) are current.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


def new_notebook(cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = KERNELSPEC
    nb.metadata["language_info"] = {"name": "python"}
    for kind, src in cells:
        src = src.strip("\n")
        nb.cells.append(nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src))
    return nb


def kernel_environment() -> None:
    """The environment of a kernel that executes a chapter for the book (as ``scripts/_venv.sh``):
    the explorers draw their static figure, and matplotlib uses IPython's inline backend (a
    non-interactive ``MPLBACKEND`` such as Agg would drop every figure from the outputs)."""
    os.environ.setdefault("SDMAD_STATIC", "1")
    os.environ.pop("MPLBACKEND", None)


def execute(path: Path, timeout: int = 900) -> None:
    kernel_environment()  # committed outputs carry the figures and the explorers' static figures
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    for cell in nb.cells:  # keep notebooks free of machine-specific metadata
        cell.metadata.pop("execution", None)
    nbformat.write(nb, path)


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] != "execute":
        sys.exit(__doc__)
    for p in sys.argv[2:]:
        print("executing", p, flush=True)
        execute(Path(p))


REPO_URL = "https://github.com/sdmad-lite/sdmad-lite"  # must equal repository.url in _config.yml (a test checks)


def header(stem: str, title: str, intro: str) -> list[tuple[str, str]]:
    """The cells every notebook starts with: title + Colab badge, guarded install, profile, print_config."""
    slug = REPO_URL.removeprefix("https://github.com/")
    badge = (
        f"[![Open in Colab](../book/_static/colab-badge.svg)]"
        f"(https://colab.research.google.com/github/{slug}/blob/main/notebooks/{stem}.ipynb)"
    )
    return [
        ("md", f"# {title}\n\n{badge}\n\n{intro}"),
        ("code", f'''# Setup: on Colab this installs the library; elsewhere it does nothing.
import importlib.util, subprocess, sys
if "google.colab" in sys.modules and importlib.util.find_spec("sdmad_lite") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "sdmad-lite[colab] @ git+{REPO_URL}"], check=True)'''),
        ("code", '''# The profile: offline (default, this book), colab or paper. On Colab, set it before running:
# import os; os.environ["SDMAD_PROFILE"] = "colab"
import sdmad_lite
sdmad_lite.print_config()'''),
    ]
