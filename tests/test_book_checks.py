"""The checks themselves must fail when something breaks: a failing cell fails the book build,
and a broken link or a missing image fails the browser check."""
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _mini_book(tmp_path: Path, code: str, after: str | None = None) -> Path:
    book = tmp_path / "book"
    book.mkdir(parents=True)
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    cfg.pop("bibtex_bibfiles", None)
    (book / "book" / "_static").mkdir(parents=True)
    shutil.copy(ROOT / "book" / "_static" / "favicon.png", book / "book" / "_static" / "favicon.png")
    cfg["sphinx"]["local_extensions"] = {"no_thebe": str(ROOT / "book" / "_ext")}
    cfg["exclude_patterns"] = []
    (book / "_config.yml").write_text(yaml.safe_dump(cfg))
    (book / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: nb\n")
    (book / "intro.md").write_text("# Intro\n\nA [link](nb.ipynb).\n")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# NB"), nbformat.v4.new_code_cell(code)]
    if after is not None:
        nb.cells.append(nbformat.v4.new_markdown_cell(after))
    nbformat.write(nb, book / "nb.ipynb")
    return book


def _build(book: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    e = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"} | (env or {})
    return subprocess.run([str(BIN / "jupyter-book"), "build", str(book), "-W", "-n", "--keep-going"],
                          capture_output=True, text=True, timeout=300, env=e)


@pytest.mark.slow
def test_failing_cell_fails_the_build(tmp_path):
    ok = _build(_mini_book(tmp_path / "a", "print(1 + 1)"))
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]
    bad = _build(_mini_book(tmp_path / "b", "raise RuntimeError('boom in a cell')"))
    assert bad.returncode != 0
    assert "boom in a cell" in bad.stdout + bad.stderr


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("chromedriver") or Path("/usr/bin/chromedriver").exists()),
                    reason="chromium-driver is not installed (.ci/run installs it)")
def test_browser_check_catches_broken_link_and_image(tmp_path, monkeypatch, capsys):
    sys.path.insert(0, str(ROOT / "scripts"))
    import check_book_html as chk

    book = _mini_book(tmp_path, "print('fine')")
    assert _build(book).returncode == 0
    html = book / "_build" / "html"
    monkeypatch.setattr(chk, "ROOT", book)
    assert chk.check(html, tmp_path / "shots") == 0
    page = html / "nb.html"
    text = page.read_text()
    page.write_text(text.replace("</article>", '<a href="missing.html">x</a><img src="nope.png"></article>', 1))
    assert chk.check(html, tmp_path / "shots2") == 1
    # what MyST's linkify makes of a bare file name in prose ("see PAPER.md") is a link to a web host
    page.write_text(text.replace("</article>", '<a href="http://PAPER.md">PAPER.md</a></article>', 1))
    capsys.readouterr()
    assert chk.check(html, tmp_path / "shots3") == 1
    assert "linkify" in capsys.readouterr().out
    # a table wider than the text column scrolls sideways (and is cut off in print and screenshots)
    wide = "<table><thead><tr>" + "".join(f"<th>category_number_{i}</th>" for i in range(20)) + "</tr></thead></table>"
    page.write_text(text.replace("</article>", wide + "</article>", 1))
    assert chk.check(html, tmp_path / "shots4") == 1
    assert "wider than the text column" in capsys.readouterr().out


FIGURE = "import matplotlib.pyplot as plt\nfig, ax = plt.subplots(figsize=(2, 2), dpi=40)\nax.plot([0, 1], [1, 0])"


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("chromedriver") or Path("/usr/bin/chromedriver").exists()),
                    reason="chromium-driver is not installed (.ci/run installs it)")
def test_browser_check_catches_a_missing_figure(tmp_path, monkeypatch, capsys):
    """A drawing cell whose figure is not on the page fails the check: the figure's <img> removed
    from the built page, and a kernel whose matplotlib backend drops figures (MPLBACKEND=Agg)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import check_book_html as chk

    book = _mini_book(tmp_path / "ok", FIGURE, "*Figure: a line.*")
    assert _build(book).returncode == 0
    html = book / "_build" / "html"
    monkeypatch.setattr(chk, "ROOT", book)
    assert chk.check(html, tmp_path / "s1") == 0
    page = html / "nb.html"
    text = page.read_text()
    start = text.index("<img", text.index('class="cell_output'))
    page.write_text(text[:start] + text[text.index(">", start) + 1:])  # the figure's <img> removed
    capsys.readouterr()
    assert chk.check(html, tmp_path / "s2") == 1
    out = capsys.readouterr().out
    assert "code cell 1 draws a figure" in out and "caption with no image above it" in out

    agg = _mini_book(tmp_path / "agg", FIGURE)
    assert _build(agg, {"MPLBACKEND": "Agg"}).returncode == 0
    monkeypatch.setattr(chk, "ROOT", agg)
    assert chk.check(agg / "_build" / "html", tmp_path / "s3") == 1
    assert "MPLBACKEND=Agg" in capsys.readouterr().out


def test_no_doc_comment_of_the_api_page_reads_as_a_type():
    """Napoleon reads a documented attribute's first line ``x: y`` as *type* ``x``, and the book's nitpicky
    build then fails on an unknown type (it happened twice, e.g. ``#: chapter 14 — ... (signs/noise.py): ...``).
    Every ``#:`` doc comment of a module that book/api.md renders with autodoc must parse with no type."""
    import re

    napoleon = pytest.importorskip("sphinx.ext.napoleon")
    from sphinx.pycode import ModuleAnalyzer

    api = (ROOT / "book" / "api.md").read_text()
    modules = re.findall(r"^\.\. automodule:: (\S+)", api, flags=re.M)
    assert len(modules) > 20, "book/api.md lists its modules with '.. automodule::'"
    excluded = set(re.findall(r":exclude-members: (.+)", api))
    excluded = {x.strip() for line in excluded for x in line.split(",")}
    bad = []
    for mod in modules:
        for (cls, name), lines in ModuleAnalyzer.for_module(mod).find_attr_docs().items():
            if name in excluded or name.startswith("_"):
                continue
            parsed = napoleon.GoogleDocstring(list(lines), napoleon.Config(), what="attribute" if cls else "data",
                                              name=f"{mod}.{name}").lines()
            if any(line.startswith(":type:") for line in parsed):
                bad.append(f"{mod}.{cls + '.' if cls else ''}{name}: {lines[0]!r}")
    assert not bad, "doc comments napoleon reads as 'type: text' (reword without 'x: y'):\n" + "\n".join(bad)


@pytest.mark.slow
def test_the_book_renders_the_outputs_nbval_produced_and_executes_what_it_did_not_store(tmp_path):
    """scripts/test.sh executes each notebook once: nbval stores what it ran (scripts/nbval_cache.py) and the book
    build renders those outputs. A notebook nbval failed is not stored, and one edited since is executed anew."""
    import os
    import re

    sys.path.insert(0, str(ROOT / "scripts"))
    import nbval_cache
    from jupyter_cache import get_cache

    code = "import random\nprint('draw', random.random())"
    book = _mini_book(tmp_path / "ok", code)
    shutil.copy(book / "nb.ipynb", book / "bad.ipynb")
    bad = nbformat.read(book / "bad.ipynb", as_version=4)
    bad.cells.append(nbformat.v4.new_code_cell("raise RuntimeError('nbval fails here')"))
    nbformat.write(bad, book / "bad.ipynb")
    cache = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    r = subprocess.run([sys.executable, "-m", "pytest", str(book / "nb.ipynb"), str(book / "bad.ipynb"), "-q",
                        "-p", "no:cacheprovider", "--nbval-lax", "--nbval-current-env", "-p", "nbval_cache",
                        "--nbval-cache", str(cache)], capture_output=True, text=True, timeout=300, env=env,
                       cwd=ROOT / "scripts")
    assert r.returncode == 1 and "nbval fails here" in r.stdout, r.stdout[-2000:]
    records = get_cache(str(cache)).list_cache_records()
    mine = tmp_path / "my results"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    refused = subprocess.run([sys.executable, "-m", "pytest", str(book / "nb.ipynb"), "-q", "-p", "no:cacheprovider",
                              "--nbval-lax", "-p", "nbval_cache", "--nbval-cache", str(mine)],
                             capture_output=True, text=True, timeout=120, env=env, cwd=ROOT / "scripts")
    assert refused.returncode != 0 and "not a jupyter-cache folder" in refused.stdout + refused.stderr
    assert (mine / "notes.txt").read_text() == "keep me"  # a folder that is not a cache is never emptied
    assert [Path(rec.uri).name for rec in records] == ["nb.ipynb"]  # the failed notebook is not stored
    stored = get_cache(str(cache)).get_cache_bundle(records[0].pk).nb.cells[-1].outputs[0]["text"]
    assert stored.startswith("draw ")

    # the book's own config, written elsewhere: its local extensions still resolve (jupyter-book reads them
    # relative to the config file), and nothing but the execution settings changes
    real = yaml.safe_load(nbval_cache.book_config(ROOT / "_config.yml", cache, tmp_path / "real.yml").read_text())
    mine = yaml.safe_load((ROOT / "_config.yml").read_text())
    for name, folder in real["sphinx"]["local_extensions"].items():
        assert Path(folder).is_absolute() and (Path(folder) / f"{name}.py").is_file()
    assert real["execute"]["execute_notebooks"] == "cache" and Path(real["execute"]["cache"]) == cache.resolve()
    for cfg_ in (real, mine):
        cfg_["execute"].pop("execute_notebooks"), cfg_["execute"].pop("cache", None), cfg_["sphinx"].pop("local_extensions")
    assert real == mine
    cfg = nbval_cache.book_config(book / "_config.yml", cache, tmp_path / "ci.yml")
    build = subprocess.run([str(BIN / "jupyter-book"), "build", str(book), "--config", str(cfg), "-W", "-n",
                            "--keep-going"], capture_output=True, text=True, timeout=300, env=env)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    page = (book / "_build" / "html" / "nb.html").read_text()
    assert stored.strip() in page  # the very number nbval printed: the build did not run the cell again

    edited = nbformat.read(book / "nb.ipynb", as_version=4)
    edited.cells[1].source += "\nprint('edited')"
    nbformat.write(edited, book / "nb.ipynb")
    build = subprocess.run([str(BIN / "jupyter-book"), "build", str(book), "--config", str(cfg), "-W", "-n",
                            "--keep-going"], capture_output=True, text=True, timeout=300, env=env)
    page = (book / "_build" / "html" / "nb.html").read_text()
    assert build.returncode == 0 and "edited" in page and stored.strip() not in page
    assert re.search(r"draw 0\.\d+", page)
