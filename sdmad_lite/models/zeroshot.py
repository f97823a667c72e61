"""Zero-shot scoring with a frozen CLIP: category names, sign descriptions, random words.

For an image embedding ``v`` and a category text embedding ``t_c`` (the mean over its prompts),
the zero-shot probability that category c is present is a two-way softmax against normality:

    p_c = exp(cos(v, t_c)/τ) / (exp(cos(v, t_c)/τ) + exp(cos(v, t_N)/τ))

The three text sources compared (chapter 4):

- **names** — prompts that name the category ("a chest x-ray with pleural effusion");
- **signs** — the expert-selected sign descriptions, averaged (descriptor averaging,
  Menon & Vondrick 2023);
- **random** — random words of the same length as each sign description (the WaffleCLIP
  control, Roth et al. 2023): what averaging many prompts buys without any meaning.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F


def two_way_probability(v: torch.Tensor, t_c: torch.Tensor, t_n: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """p_c for image embeddings ``v`` (N, D), category texts ``t_c`` (C, D), normal text ``t_n`` (D,)."""
    pos = v @ t_c.T / temperature
    neg = (v @ t_n / temperature)[:, None]
    return torch.sigmoid(pos - neg)


@functools.lru_cache(maxsize=1)
def _vocabulary() -> tuple[str, ...]:
    from .backbone import get_tokenizer

    enc = getattr(get_tokenizer(), "encoder", {})
    words = [w[:-4] for w in enc if w.endswith("</w>") and w[:-4].isalpha() and 4 <= len(w) - 4 <= 9]
    return tuple(sorted(words))


def random_descriptor(text: str, rng: np.random.Generator) -> str:
    """Random vocabulary words with as many words as ``text`` (the WaffleCLIP control)."""
    vocab = _vocabulary()
    n = max(1, len(text.split()))
    return " ".join(vocab[i] for i in rng.integers(len(vocab), size=n))


def category_text(backbone, bank, category: str, source: str, rng: np.random.Generator | None = None) -> torch.Tensor:
    """The normalised mean text embedding of ``category`` for ``source`` in names | signs | random."""
    from ..engine import encode_texts

    if source == "names":
        texts = bank.category_name_prompts(category)
    elif source == "signs":
        texts = bank.prompts(category)
    elif source == "random":
        if rng is None:
            raise ValueError("source='random' needs rng")
        signs = bank.selected(category)
        fake = {s.id: random_descriptor(s.text, rng) for s in signs}
        texts = [t.format(obj=bank.obj, sign=fake[s.id]) for s in signs for t in bank.templates]
        return F.normalize(backbone.encode_text(texts).mean(0), dim=-1)  # random texts: not cached
    else:
        raise ValueError(f"unknown text source {source!r}; choose names, signs or random")
    return F.normalize(encode_texts(backbone, texts).mean(0), dim=-1)


# ----------------------------------------------------------------------------- the PhantomCLIP report
def sign_text_embeddings(backbone, bank) -> tuple[list[str], torch.Tensor]:
    """One embedding per renderer sign: the mean of the bank's candidate texts that describe it
    (the sign bank's radiological wording, not PhantomCLIP's caption phrases)."""
    from ..engine import encode_texts

    texts: dict[str, list[str]] = {}
    for c in bank.categories:
        for s in bank.drawn(c):
            sign = bank.renders(c)[s.id]
            texts.setdefault(sign, []).extend(t.format(obj=bank.obj, sign=s.text) for t in bank.templates)
    names = sorted(texts)
    emb = torch.stack([F.normalize(encode_texts(backbone, sorted(set(texts[n]))).mean(0), dim=-1) for n in names])
    return names, emb


def sign_recall_at_k(image_emb: torch.Tensor, drawn: list[list[str]], names: list[str], sign_emb: torch.Tensor,
                     ks=(1, 3), only: set[str] | None = None) -> dict[int, float]:
    """Mean over images with ≥1 drawn sign of ``|drawn ∩ top-k signs| / min(k, |drawn|)``."""
    sims = image_emb @ sign_emb.T
    order = sims.argsort(dim=1, descending=True)
    out = {}
    for k in ks:
        vals = []
        for i, d in enumerate(drawn):
            d = [s for s in d if s in names and (only is None or s in only)]
            if not d:
                continue
            top = {names[j] for j in order[i, :k].tolist()}
            vals.append(len(top & set(d)) / min(k, len(d)))
        out[k] = float(np.mean(vals)) if vals else float("nan")
    return out


def zero_shot_report(backbone, seeds=(0, 1, 2, 3, 4), n: int = 300, size: int = 224) -> "pd.DataFrame":
    """PhantomCLIP's zero-shot knowledge on held-out phantoms, one row per (modality, seed).

    Columns: macro AUROC of zero-shot multi-label classification with category names, with the
    expert-selected sign prompts, and with random-word descriptors (WaffleCLIP control); anchor
    AUROC (normal vs abnormal); sign retrieval recall@1/@3 for captioned and uncaptioned signs.
    Seeds draw different held-out phantom sets (and different random words).
    """
    import pandas as pd

    from .. import metrics as M
    from ..data.phantoms.world import PhantomDataset
    from ..engine import mean_embedding
    from ..signs.bank import SignBank
    from .captions import UNCAPTIONED

    rows = []
    for modality in ("chest", "oct", "brain"):
        bank = SignBank.load(f"phantom_{modality}")
        names, sign_emb = sign_text_embeddings(backbone, bank)
        anchors = bank.anchor_prompts()
        t_n, t_a = mean_embedding(backbone, anchors["normal"]), mean_embedding(backbone, anchors["abnormal"])
        for seed in seeds:
            ds = PhantomDataset(modality, n, seed=50_000 + seed, size=size)
            items = [ds[i] for i in range(n)]
            v = backbone.encode_images([it["image"] for it in items])
            y = ds.labels
            rng = np.random.default_rng(seed)
            row = {"modality": modality, "seed": seed, "n": n}
            for src in ("names", "signs", "random"):
                t = torch.stack([category_text(backbone, bank, c, src, rng) for c in ds.categories])
                row[f"auroc_{src}"] = M.macro_auroc(y, two_way_probability(v, t, t_n).numpy()).value
            row["auroc_anchor"] = M.binary_auroc((y.sum(1) > 0).astype(int), (v @ t_a - v @ t_n).numpy())
            drawn = [sorted(it["signs"]) for it in items]
            known = set(names) - UNCAPTIONED
            for tag, only in (("captioned", known), ("uncaptioned", set(names) & UNCAPTIONED)):
                rec = sign_recall_at_k(v, drawn, names, sign_emb, only=only) if only else {1: float("nan"), 3: float("nan")}
                row[f"recall@1_{tag}"], row[f"recall@3_{tag}"] = rec[1], rec[3]
            row["n_signs"] = len(names)
            rows.append(row)
    return pd.DataFrame(rows)


def summarize_report(df) -> "pd.DataFrame":
    """Mean ± std over seeds per modality (percent), for the book and the results file."""
    import pandas as pd

    from ..metrics import mean_std

    cols = [c for c in df.columns if c.startswith(("auroc_", "recall@"))]
    out = []
    for mod, g in df.groupby("modality", sort=False):
        rec = {"modality": mod, "seeds": int(g["seed"].nunique()), "images per seed": int(g["n"].iloc[0])}
        for c in cols:
            ms = mean_std(g[c].to_numpy(dtype=float))
            rec[c] = f"{100 * ms.mean:.1f} ± {100 * ms.std:.1f}"
        out.append(rec)
    return pd.DataFrame(out).set_index("modality")


def _cmd_report(args) -> int:
    import json
    import os
    from pathlib import Path

    from .backbone import load

    bb = load(args.backbone)
    df = zero_shot_report(bb, seeds=tuple(range(args.seeds)), n=args.n)
    summary = summarize_report(df)
    print(summary.to_string())
    if args.out:
        out = Path(args.out)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps({"backbone": bb.key, "command": f"sdmad zeroshot-report --seeds {args.seeds} --n {args.n}",
                                   "rows": df.to_dict(orient="records"),
                                   "summary": summary.reset_index().to_dict(orient="records")}, indent=1, default=float))
        os.replace(tmp, out)
        print(f"wrote {out}")
    return 0


def add_subcommand(subparsers) -> None:
    p = subparsers.add_parser("zeroshot-report", help="PhantomCLIP's zero-shot table: names vs signs vs random words")
    p.add_argument("--backbone", default="phantomclip-tiny")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--n", type=int, default=300, help="held-out phantoms per modality and seed")
    p.add_argument("--out", default=None, help="JSON file for the rows and the summary")
    p.set_defaults(func=_cmd_report)
