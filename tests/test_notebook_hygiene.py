"""Notebook hygiene: what every committed notebook of the book must keep true."""
import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
ABSOLUTE = re.compile(r"(?<![\w.])/(root|home|tmp|work|Users)/[\w.-]+")


def _load(p):
    return json.loads(p.read_text())


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found"


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.name)
def test_hygiene(nb_path):
    assert nb_path.stat().st_size < 1_000_000, "notebook over 1 MB: use smaller figures or fewer printed lines"
    nb = _load(nb_path)
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    text = nb_path.read_text()
    assert not ABSOLUTE.search(text), f"absolute path of a machine: {ABSOLUTE.search(text).group(0)}"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, "a notebook without code"
    golden = [c for c in code if "# NBVAL_CHECK_OUTPUT" in "".join(c["source"])]
    assert golden, "each notebook needs at least one golden cell (# NBVAL_CHECK_OUTPUT)"
    for c in golden:
        assert c["outputs"], f"golden cell without committed output: {''.join(c['source'])[:80]!r}"
        assert c["execution_count"] is not None, "golden cell without an execution count"
    for c in code:
        assert c["execution_count"] is not None, "notebook not executed top to bottom before commit"
        for out in c["outputs"]:
            assert out.get("output_type") != "error", "committed notebook contains an error output"
            lines = "".join(out.get("text", "")).count("\n")
            lines = max(lines, "".join(out.get("data", {}).get("text/plain", "")).count("\n"))
            assert lines <= 100, f"an output of {lines} lines (max 100)"


def test_every_notebook_is_in_the_toc():
    toc = (ROOT / "_toc.yml").read_text()
    for p in NOTEBOOKS:
        assert f"notebooks/{p.stem}" in toc, f"{p.name} is not in _toc.yml"


def test_colab_badges_follow_the_repository_setting():
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    slug = url.removeprefix("https://github.com/")
    for p in NOTEBOOKS:
        first = "".join(_load(p)["cells"][0]["source"])
        assert f"colab.research.google.com/github/{slug}/blob/main/notebooks/{p.name}" in first, p.name
        sources = "".join("".join(c["source"]) for c in _load(p)["cells"])
        for other in set(re.findall(r"github\.com/([\w.-]+/[\w.-]+)", sources)):
            assert other.removesuffix(".git") == slug, f"{p.name} names the repository {other}, the setting is {slug}"
