"""Interactive explorers for a live notebook (Colab, Jupyter), each with a static figure for the book.

Two explorers, each a function that draws one figure and an ipywidgets app that redraws it:

- :func:`image_figure` / :func:`image_explorer`: one test image under a trained SD-MAD head —
  its category scores beside the true labels, the chosen category's sign-similarity map, and the
  image's similarity to each of that category's signs (the kept ones marked).
- :func:`phantom_figure` / :func:`phantom_explorer`: render a phantom from chosen categories,
  seed and difficulty, with every drawn sign's ground-truth mask outlined.

A rendered book has no kernel, so widgets would sit dead on its pages (and their saved state would
pull the widget manager from a CDN). The explorers therefore build their widgets only when a
person runs the notebook; when the book is built (``SDMAD_STATIC=1``, which ``scripts/book.sh``,
``scripts/test.sh`` and the benchmarks set) they draw the same figure once, and :func:`show`
displays whichever there is.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from . import settings
from .data.phantoms.catalogue import get_modality
from .data.phantoms.gallery import sign_figure
from .methods.heads import branch_features
from .task import Task
from .train import Predictions, one_thread


def interactive() -> bool:
    """Whether to show widgets: True unless ``SDMAD_STATIC=1`` (the book build)."""
    return not settings.static_figures()


def show(explorer: "Explorer") -> None:
    """Display the explorer's app (a live notebook) or, when it has none (the book), its figure."""
    from IPython.display import Image, display  # the book extra (a notebook has it)

    if explorer.app is not None:
        display(explorer.app)
    else:  # as PNG bytes: a Figure object shows as text where the inline backend is not active
        display(Image(data=_png(explorer.figure)))


# ----------------------------------------------------------------------------- one image under SD-MAD
@dataclass
class ImageView:
    """What :func:`image_figure` shows for test image ``index``: scores (C,), sign similarities of
    ``category`` (K,) and its patch map (grid, grid)."""

    index: int
    category: int
    scores: np.ndarray
    labels: np.ndarray
    sign_ids: list[str]
    sign_sims: np.ndarray
    kept: np.ndarray
    sign_map: np.ndarray


def image_view(task: Task, head, text, pred: Predictions, index: int, category: int | None = None,
               mode: str = "side") -> ImageView:
    """Compute what the explorer shows for test image ``index`` (``category``: default its top score)."""
    n = len(task.test_feats)
    if not 0 <= index < n:
        raise IndexError(f"test image {index} does not exist: the test set has {n} images (0..{n - 1})")
    scores = pred.test_scores[index]
    c = int(np.argmax(scores)) if category is None else int(category)
    if not 0 <= c < len(task.categories):
        raise IndexError(f"category {category} does not exist: {len(task.categories)} categories (0..{len(task.categories) - 1})")
    feats = task.test_feats.subset([index])
    with torch.no_grad(), one_thread(mode != "residual"):
        u = branch_features(head, task, feats, mode)
        sims = head.sign_similarities(u, text)[0, c].numpy()
        pu = branch_features(head, task, feats, mode, tokens="patches")
        g = task.backbone.grid
        smap = head.sign_maps(pu, text)[0, c].reshape(g, g).numpy()
    real = np.asarray(text.sign_mask[c], bool)
    return ImageView(index, c, scores, task.y_test[index], [s for s, r in zip(task.sign_ids[c], real) if r],
                     sims[real], np.asarray(text.active[c], bool)[real], smap)


def image_figure(task: Task, head, text, pred: Predictions, index: int, category: int | None = None,
                 mode: str = "side", view: ImageView | None = None):
    """Image + map, category scores, and sign similarities of one test image (a matplotlib Figure)."""
    v = view or image_view(task, head, text, pred, index, category, mode)
    img = task.test[v.index]["image"]
    up = F.interpolate(torch.as_tensor(v.sign_map)[None, None], size=img.shape, mode="bilinear")[0, 0].numpy()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.9), dpi=80, gridspec_kw={"width_ratios": [1, 1.25, 1.5]})
    ax = axes[0]
    ax.imshow(img, cmap="gray")
    ax.imshow(up, cmap="magma", alpha=0.5)
    ax.set_title(f"test image {v.index}: map of {task.categories[v.category]}", fontsize=9)
    ax.axis("off")
    ax = axes[1]
    cats = task.categories
    colors = ["tab:red" if y else "tab:gray" for y in v.labels]
    ax.barh(range(len(cats)), v.scores, color=colors)
    ax.set_yticks(range(len(cats)), [c.replace("_", " ") for c in cats], fontsize=8)
    ax.invert_yaxis()
    ax.set(xlim=(0, 1), xlabel="category score p_c (probability)")
    ax.set_title("scores (red: true label of the image)", fontsize=9)
    ax = axes[2]
    order = np.argsort(-v.sign_sims)
    ax.barh(range(len(order)), v.sign_sims[order], color=["tab:blue" if v.kept[j] else "lightgray" for j in order])
    ax.set_yticks(range(len(order)), [v.sign_ids[j].replace("_", " ")[:34] for j in order], fontsize=7)
    ax.invert_yaxis()
    ax.set(xlabel="cosine similarity to the adapted image feature")
    ax.set_title(f"signs of {task.categories[v.category]} (blue: kept by selection)", fontsize=9)
    fig.tight_layout()
    return fig


def _png(fig) -> bytes:
    """The figure as PNG bytes (for an ``ipywidgets.Image``), then closed."""

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi)
    plt.close(fig)
    return buf.getvalue()


@dataclass
class Explorer:
    """An ipywidgets app (``.app``) and the figure it shows now (``.figure``, for tests)."""

    app: object
    controls: dict = field(default_factory=dict)
    figure: object = None


def _static(figure) -> Explorer:
    plt.close(figure)  # shown once, by show(), not again by pyplot at the end of the cell
    return Explorer(None, {}, figure)


def image_explorer(task: Task, head, text, pred: Predictions, mode: str = "side", index: int = 0,
                   widgets: bool | None = None) -> Explorer:
    """Pick a test image and a category; see the scores, the sign similarities and the map.

    ``widgets``: build the ipywidgets app (default: :func:`interactive`); without, only the figure.
    """
    if not (interactive() if widgets is None else widgets):
        return _static(image_figure(task, head, text, pred, index, None, mode))
    import ipywidgets as W  # the book extra (a notebook has it)

    img = W.BoundedIntText(value=index, min=0, max=len(task.test_feats) - 1, description="test image")
    cat = W.Dropdown(options=[("top-scored", -1)] + [(c, i) for i, c in enumerate(task.categories)], value=-1,
                     description="category")
    view = W.Image(format="png")
    ex = Explorer(W.VBox([W.HBox([img, cat]), view]), {"image": img, "category": cat})

    def redraw(*_):
        ex.figure = image_figure(task, head, text, pred, img.value, None if cat.value < 0 else cat.value, mode)
        view.value = _png(ex.figure)

    img.observe(redraw, "value")
    cat.observe(redraw, "value")
    redraw()
    return ex


# ----------------------------------------------------------------------------- phantoms
def phantom_figure(modality: str = "chest", categories: tuple[str, ...] = (), seed: int = 0, conspicuity: float = 1.0,
                   noise: float = 1.0, size: int = 224):
    """One phantom of the chosen categories, every drawn sign's mask outlined and named."""

    fig, ax = plt.subplots(figsize=(6, 6), dpi=100)
    sign_figure(modality, seed, labels=list(categories), size=size, ax=ax, label_size=9, conspicuity=conspicuity,
                noise=noise)
    ax.set_title(f"{modality}, seed {seed}: " + (", ".join(categories) or "normal")
                 + f"\nconspicuity {conspicuity:.2f}, noise {noise:.2f}", fontsize=9)
    fig.tight_layout()
    return fig


def phantom_explorer(modality: str = "chest", categories: tuple[str, ...] = (), seed: int = 0,
                     widgets: bool | None = None) -> Explorer:
    """Pick a modality, categories, a patient seed and the difficulty; see the phantom and its signs.

    ``widgets``: build the ipywidgets app (default: :func:`interactive`); without, only the figure.
    """
    if not (interactive() if widgets is None else widgets):
        return _static(phantom_figure(modality, tuple(categories), seed))
    import ipywidgets as W  # the book extra (a notebook has it)


    mod = W.Dropdown(options=["chest", "oct", "brain"], value=modality, description="modality")
    cats = W.SelectMultiple(options=get_modality(modality).categories, value=tuple(categories), rows=6,
                            description="categories")
    sd = W.BoundedIntText(value=seed, min=0, max=10**6, description="patient seed")
    con = W.FloatSlider(value=1.0, min=0.2, max=1.5, step=0.05, description="conspicuity")
    noi = W.FloatSlider(value=1.0, min=0.0, max=3.0, step=0.1, description="noise")
    view = W.Image(format="png")
    ex = Explorer(W.HBox([W.VBox([mod, cats, sd, con, noi]), view]),
                  {"modality": mod, "categories": cats, "seed": sd, "conspicuity": con, "noise": noi})

    def on_modality(change):
        cats.value = ()
        cats.options = get_modality(change["new"]).categories

    def redraw(*_):
        ex.figure = phantom_figure(mod.value, tuple(cats.value), sd.value, con.value, noi.value)
        view.value = _png(ex.figure)

    mod.observe(on_modality, "value")
    for w in (mod, cats, sd, con, noi):
        w.observe(redraw, "value")
    redraw()
    return ex
