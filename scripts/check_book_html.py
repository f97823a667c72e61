"""Open every page of the rendered book in headless Chromium and check it as a reader would.

For each page of the table of contents: the page loads, every image on it loads, every
internal link points at a page (and anchor) that exists, and the browser console shows no
error, and no request leaves the book (an offline reader has no network: MathJax, fonts and
scripts must be served from the book itself). Equations must be typeset: a page with math shows
one MathJax element per equation. On a chapter (a notebook), every code cell whose source draws a figure (matplotlib,
seaborn, the library's ``*_figure`` functions and explorers; see :func:`figure_cells`) must show
at least one loaded image in its output, and every "*Figure:*" caption must have an image
between it and the previous caption (a caption never stands under an empty output). A full-page screenshot of each page is written for people to look at. A request to an
outside host is an error (the page would break offline), and so is an image from an outside host, and a
plain-http link (what MyST's linkify makes of a bare name such as ``PAPER.md``; the book's real outside links are https).
No table may be wider than the text column at a 1280 px wide window: it would scroll sideways, and print and
screenshots cut it off.

    python scripts/check_book_html.py [_build/html] [--screenshots DIR]

Exit status: 0 when every page passes, 1 otherwise.
"""
from __future__ import annotations

import argparse
import functools
import html.parser
import http.server
import re
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import yaml

ROOT = Path(__file__).resolve().parents[1]

#: calls that put a figure into a cell's output (comments are ignored). A cell can opt out with
#: the tag ``no-figure`` (it draws into a figure shown by a later cell), or opt in with ``figure``.
DRAWS = re.compile(
    r"\bplt\.(subplots|figure|subplot_mosaic)\(|\bsns\.(\w*plot|heatmap|clustermap)\(|\.(imshow|plot|hist|bar|barh)\("
    r"|\b\w+_figure\(|\bexplore\.show\(|\bdisplay\(\s*fig")


def figure_cells(notebook: Path) -> list[tuple[int, int]]:
    """``(position among rendered code cells, index in the notebook)`` of the cells that draw.

    "Rendered" code cells are those the book shows (tag ``remove-cell`` drops a cell).
    """
    import json

    nb = json.loads(notebook.read_text())
    out, pos = [], 0
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        tags = set(cell.get("metadata", {}).get("tags", []))
        if "remove-cell" in tags:
            continue
        src = "".join(cell["source"])
        code = "\n".join(line.split("#", 1)[0] for line in src.splitlines())
        if "figure" in tags or ("no-figure" not in tags and DRAWS.search(code)):
            out.append((pos, i))
        pos += 1
    return out


def toc_pages(toc_file: Path) -> list[str]:
    """Pages of ``_toc.yml`` as paths relative to the HTML root (``book/intro.html``)."""
    toc = yaml.safe_load(toc_file.read_text())
    pages = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                pages.append(node["file"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk({k: v for k, v in toc.items() if k != "root"})
    return [re.sub(r"\.(md|ipynb)$", "", p) + ".html" for p in pages]


class _Ids(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("id", "name") and v:
                self.ids.add(v)


@functools.lru_cache(maxsize=None)
def page_ids(path: Path) -> frozenset[str]:
    p = _Ids()
    p.feed(path.read_text(errors="replace"))
    return frozenset(p.ids)


def serve(directory: Path) -> tuple[str, http.server.ThreadingHTTPServer]:
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/", server


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the report readable
        pass


def make_driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run",
        "--disable-dev-shm-usage", "--window-size=1280,1000", "--hide-scrollbars",
        f"--user-data-dir={tempfile.mkdtemp(prefix='sdmad-chromium-')}",
    ):
        opts.add_argument(flag)
    binary = Path("/usr/bin/chromium")
    if binary.exists():
        opts.binary_location = str(binary)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver_path = "/usr/bin/chromedriver"
    service = Service(executable_path=driver_path) if Path(driver_path).exists() else Service()
    return webdriver.Chrome(options=opts, service=service)


JS_IMAGES = """return Array.from(document.images).map(i => [i.getAttribute('src'), i.currentSrc, i.complete, i.naturalWidth]);"""
JS_LINKS = """return Array.from(document.querySelectorAll('a[href]')).map(a => a.href);"""
# per rendered code cell: [loaded images in its output, images in its output]
JS_CELLS = """return Array.from(document.querySelectorAll('div.cell')).map(c => {
  const imgs = Array.from(c.querySelectorAll('.cell_output img'));
  return [imgs.filter(i => i.complete && i.naturalWidth > 0 && i.naturalHeight > 0).length, imgs.length]; });"""
# math: the equations in the page source, and the ones MathJax typeset
JS_MATH = """return [document.querySelectorAll('article .math').length,
                    document.querySelectorAll('article mjx-container').length];"""
# every resource the page loaded, by URL (the Resource Timing API)
JS_RESOURCES = """return performance.getEntriesByType('resource').map(e => e.name);"""
# captions ("Figure: ..." paragraphs) with no image between them and the previous caption
JS_CAPTIONS = """const out = []; let seen = false;
for (const el of document.querySelectorAll('article img, article p')) {
  if (el.tagName === 'IMG') { if (el.complete && el.naturalWidth > 0) seen = true; continue; }
  const t = el.textContent.trim();
  if (/^Figure[ \u00a0]*[:.]/.test(t)) { if (!seen) out.push(t.slice(0, 80)); seen = false; }
}
return out;"""

# tables wider than the text column (they scroll sideways, or are cut off in print and screenshots):
# [table width, column width, the table's header text]
JS_WIDE = """const col = document.querySelector('article.bd-article') || document.querySelector('article');
if (!col) return [];
const w = col.getBoundingClientRect().width;
return Array.from(col.querySelectorAll('table')).map(t => [t.getBoundingClientRect().width, w,
  (t.querySelector('thead') || t).textContent.replace(/\\s+/g, ' ').trim().slice(0, 70)]).filter(x => x[0] > x[1] + 1);"""


#: the height of one screenshot; a longer page is saved in several, scrolled one under the other
SHOT_HEIGHT = 5000


def save_page_screenshots(driver, stem: Path) -> int:
    """The whole page in screenshots of at most :data:`SHOT_HEIGHT` px: ``stem.png``, ``stem-2.png``, ...
    (the last one scrolled to the page's end, so it may repeat the bottom of the one before). Returns how many."""
    for old in stem.parent.glob(stem.name + "-*.png"):  # parts of an earlier, longer version of the page
        old.unlink()
    driver.set_window_size(1280, SHOT_HEIGHT)
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    if height < SHOT_HEIGHT:
        driver.set_window_size(1280, max(800, height))
    inner = int(driver.execute_script("return window.innerHeight"))  # the browser's frame takes some of the window
    tops = list(range(0, max(1, height - inner + 1), inner))
    if height > inner and (height - inner) % inner:
        tops.append(height - inner)
    for i, top in enumerate(tops):
        driver.execute_script(f"window.scrollTo(0, {top})")
        time.sleep(0.1)
        driver.save_screenshot(str(stem.parent / (stem.name + ("" if i == 0 else f"-{i + 1}") + ".png")))
    driver.execute_script("window.scrollTo(0, 0)")
    driver.set_window_size(1280, 1000)
    return len(tops)


def check(html_dir: Path, shots: Path) -> int:
    pages = toc_pages(ROOT / "_toc.yml")
    base, server = serve(html_dir)
    shots.mkdir(parents=True, exist_ok=True)
    driver = make_driver()
    failures: list[str] = []
    n_images = n_links = n_figures = n_equations = n_shots = 0
    per_page: dict[str, int] = {}
    try:
        for page in pages:
            f = html_dir / page
            if not f.is_file():
                failures.append(f"{page}: page of the table of contents was not built")
                continue
            url = urljoin(base, page)
            driver.get(url)
            driver.execute_script("return document.readyState")
            # images
            for src, cur, complete, width in driver.execute_script(JS_IMAGES):
                n_images += 1
                if not cur.startswith(base):
                    failures.append(f"{page}: image from outside the book: {src}")
                elif not complete or not width:
                    failures.append(f"{page}: image does not load: {src}")
            # figures: one loaded image per drawing cell, an image above every caption
            source = (ROOT / page).with_suffix(".ipynb")
            if source.is_file():
                cells = driver.execute_script(JS_CELLS)
                for pos, idx in figure_cells(source):
                    n_figures += 1
                    if pos >= len(cells):
                        failures.append(f"{page}: code cell {idx} draws a figure but the page has only {len(cells)} code cells")
                    elif cells[pos][0] == 0:
                        failures.append(f"{page}: code cell {idx} draws a figure but its output on the page has no "
                                        f"loaded image ({cells[pos][1]} image(s) there) — was the kernel's matplotlib "
                                        "backend non-interactive (MPLBACKEND=Agg)?")
                per_page[page] = sum(c[0] for c in cells)
            # math typeset (MathJax runs after load: wait for it a little)
            n_math, n_typeset = driver.execute_script(JS_MATH)
            for _ in range(40):
                if n_typeset >= n_math:
                    break
                time.sleep(0.1)
                n_math, n_typeset = driver.execute_script(JS_MATH)
            n_equations += n_math
            if n_typeset < n_math:
                failures.append(f"{page}: {n_math} equations but MathJax typeset {n_typeset} (is MathJax served from _static?)")
            for url in driver.execute_script(JS_RESOURCES):
                if url.startswith(("http://", "https://")) and not url.startswith(base):
                    failures.append(f"{page}: request to an outside host (breaks offline): {url}")
            for width, column, head in driver.execute_script(JS_WIDE):
                failures.append(f"{page}: a table is wider than the text column ({width:.0f} px > {column:.0f} px): "
                                f"{head!r} — split it (one table per k, per metric) or turn it (one row per category)")
            for cap in driver.execute_script(JS_CAPTIONS):
                failures.append(f"{page}: caption with no image above it: {cap!r}")
            # internal links
            for href in set(driver.execute_script(JS_LINKS)):
                if not href.startswith(base):
                    if href.startswith("http://"):  # what MyST's linkify makes of a bare name such as PAPER.md
                        failures.append(f"{page}: link to {href} (a name linkify read as a web address? put it in "
                                        "backticks; a real outside link is https)")
                    continue
                n_links += 1
                u = urlparse(href)
                rel = unquote(u.path[len(urlparse(base).path):]) or "index.html"
                target = html_dir / rel
                if target.is_dir():
                    target = target / "index.html"
                if not target.is_file():
                    failures.append(f"{page}: broken link to {rel}")
                elif u.fragment and target.suffix == ".html" and u.fragment not in page_ids(target):
                    failures.append(f"{page}: link to missing anchor {rel}#{u.fragment}")
            # console
            for entry in driver.get_log("browser"):
                msg = entry.get("message", "")
                if entry.get("level") not in ("SEVERE", "ERROR"):
                    continue
                urls = re.findall(r"https?://[^\s\"')]+", msg)
                if urls and not any(x.startswith(base) for x in urls):
                    failures.append(f"{page}: a request to an outside host failed (breaks offline): {msg}")
                else:
                    failures.append(f"{page}: console error: {msg}")
            # the whole page in screenshots of at most SHOT_HEIGHT px each (name.png, name-2.png, ...)
            n_shots += save_page_screenshots(driver, shots / page.replace("/", "__").removesuffix(".html"))
    finally:
        driver.quit()
        server.shutdown()
    print(f"checked {len(pages)} pages, {n_images} images, {n_links} internal links, {n_figures} drawing cells, "
          f"{n_equations} equations; "
          f"{n_shots} screenshots (every page whole) in {shots}")
    print("images in cell outputs per chapter: " + ", ".join(f"{Path(p).stem} {n}" for p, n in per_page.items()))
    if failures:
        print(f"FAILED: {len(failures)} problem(s):")
        for e in failures:
            print("  -", e)
        return 1
    print("all pages passed")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("html_dir", nargs="?", default=str(ROOT / "_build" / "html"))
    ap.add_argument("--screenshots", default=str(ROOT / "_build" / "screenshots"))
    a = ap.parse_args(argv)
    html_dir = Path(a.html_dir)
    if not (html_dir / "index.html").is_file():
        print(f"no built book at {html_dir}: build it first (bash scripts/book.sh)", file=sys.stderr)
        return 1
    return check(html_dir, Path(a.screenshots))


if __name__ == "__main__":
    sys.exit(main())
