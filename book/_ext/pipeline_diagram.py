"""Draw the SD-MAD pipeline diagram when the book is built (a Sphinx extension; matplotlib, offline).

The picture is code, so it changes with the method: the tapped blocks come from the library's
``default_taps``, the protocols from ``sdmad_lite.protocols``. It is written to
``book/_static/generated/pipeline.svg`` (ignored by git) before the pages are read, and the intro
and method pages show it as an ordinary image.

    python book/_ext/pipeline_diagram.py OUT.svg     # the same figure, outside a build
"""
from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # a build has no display; this process draws one file and exits

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "_static" / "generated" / "pipeline.svg"

COLOURS = {"frozen": "#dfe7f2", "trained": "#fbe3c8", "text": "#dff0dc", "eval": "#eeeeee"}


def _box(ax, x, y, w, h, text, kind, size=8.5):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                fc=COLOURS[kind], ec="#555555", lw=0.8))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size, wrap=True)
    return (x, y, w, h)


def _arrow(ax, a, b, text=None):
    (x0, y0, w0, h0), (x1, y1, w1, h1) = a, b
    if abs(y0 - y1) < 1e-6:
        p, q = (x0 + w0, y0 + h0 / 2), (x1, y1 + h1 / 2)
    else:
        p, q = (x0 + w0 / 2, y0), (x1 + w1 / 2, y1 + h1)
    ax.add_patch(FancyArrowPatch(p, q, arrowstyle="-|>", mutation_scale=10, lw=0.9, color="#333333"))
    if text:
        ax.text((p[0] + q[0]) / 2, (p[1] + q[1]) / 2 + 0.12, text, ha="center", va="bottom", fontsize=7, color="#333333")


def draw(path: Path = OUT) -> Path:
    from sdmad_lite.models.backbone import default_taps

    taps = default_taps(24)
    fig, ax = plt.subplots(figsize=(11, 4.2), dpi=80)
    ax.set_xlim(0, 11)
    ax.set_ylim(0, 4.2)
    ax.axis("off")
    img = _box(ax, 0.1, 2.7, 1.2, 0.9, "image\n(radiograph,\nOCT, MRI)", "eval")
    bb = _box(ax, 1.7, 2.7, 1.9, 0.9, "frozen CLIP\nimage encoder\n(ViT blocks)", "frozen")
    tp = _box(ax, 4.0, 2.7, 1.5, 0.9, "taps after blocks\n" + "/".join(map(str, taps)) + " of 24", "frozen")
    ad = _box(ax, 5.9, 2.7, 2.1, 0.9, "adapters per branch:\nC categories + anchor\nf' = λf + (1−λ)σ(W₂σ(W₁f))",
              "trained", 8)
    ft = _box(ax, 8.4, 2.7, 2.4, 0.9, "per-category features u_c,\nanchor feature u_a\n(ln_post, projection)", "frozen", 8)
    _arrow(ax, img, bb)
    _arrow(ax, bb, tp)
    _arrow(ax, tp, ad)
    _arrow(ax, ad, ft)
    bank = _box(ax, 0.1, 0.3, 2.6, 1.3, "sign bank: 15–20 candidate\nsigns per category, 3–5 by\nexperts, × templates\n"
                "(frozen text encoder)", "text", 8)
    sel = _box(ax, 3.1, 0.3, 2.0, 1.3, "sign selection\n(support set):\nkeep the signs\nit confirms", "text", 8)
    sc = _box(ax, 5.5, 0.3, 2.0, 1.3, "scores: cos(u_c, t̄_c)\n− cos(u_c, t_N);\nanchor vs normal\nprompts", "eval", 8)
    th = _box(ax, 7.9, 0.3, 1.3, 1.3, "thresholds\n(few-shot,\nout-of-fold)", "eval", 8)
    pr = _box(ax, 9.5, 0.3, 1.4, 1.3, "protocols:\nintegrated,\nper-anomaly,\nopen-set", "eval", 8)
    _arrow(ax, bank, sel)
    _arrow(ax, sel, sc)
    _arrow(ax, sc, th)
    _arrow(ax, th, pr)
    ax.add_patch(FancyArrowPatch((9.6, 2.7), (6.5, 1.6), arrowstyle="-|>", mutation_scale=10, lw=0.9, color="#333333",
                                 connectionstyle="arc3,rad=-0.15"))
    for i, (kind, label) in enumerate([("frozen", "frozen (cached)"), ("trained", "trained on the support set"),
                                       ("text", "text side"), ("eval", "scoring and evaluation")]):
        ax.add_patch(FancyBboxPatch((0.15 + 2.3 * i, 3.85), 0.25, 0.2, boxstyle="round,pad=0.01", fc=COLOURS[kind],
                                    ec="#555555", lw=0.6))
        ax.text(0.48 + 2.3 * i, 3.95, label, va="center", fontsize=7.5)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def _on_init(app) -> None:
    draw()


def setup(app):
    app.connect("builder-inited", _on_init)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__":
    print(draw(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT))
