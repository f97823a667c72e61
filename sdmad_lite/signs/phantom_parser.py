"""A phantom sign file: the candidates of its real file restricted to the phantom catalogue's categories,
with the renderer sign each one describes (``renders``) -- the sign-level ground truth."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

from ..data.phantoms.catalogue import MODALITIES
from .entries import parse_selection
from .schema import BankData, Templates
from .yamlio import Problems, YamlDoc

def parse_phantom(doc: YamlDoc, probs: Problems, tmpl: Templates, load_real: Callable[[str, Path], BankData]) -> BankData:
    """A phantom sign file: the real file's candidates restricted to the catalogue, with ``renders``."""
    bank = BankData()
    bank.path, bank.name, bank.templates_file = doc.path, doc.path.stem, tmpl
    data = doc.data
    if not probs.check_mapping(doc, (), data, ["phantom", "dataset", "categories"], ["shared_renders"]):
        return bank
    spec = MODALITIES.get(data["phantom"])
    if spec is None:
        probs.error(doc, ("phantom",), f"unknown phantom modality {data['phantom']!r} "
                    f"(catalogue: {', '.join(MODALITIES)})")
        return bank
    bank.phantom = spec.name
    try:
        real = load_real(str(data["dataset"]), doc.path.parent)
    except FileNotFoundError as e:
        probs.error(doc, ("dataset",), str(e))
        return bank
    if real.phantom is not None:
        probs.error(doc, ("dataset",), f"dataset {data['dataset']!r} must be a real sign file, not a phantom one")
        return bank
    if real.dataset.replace("-", "_") != spec.dataset.replace("-", "_"):
        probs.error(doc, ("dataset",), f"the catalogue samples {spec.name!r} labels from {spec.dataset!r}, "
                    f"not {real.dataset!r}")
    bank.dataset, bank.modality = real.dataset, real.modality
    bank.title = f"phantom {spec.name}: {spec.title} (signs of {real.name})"

    cats = data["categories"]
    if not probs.check_mapping(doc, ("categories",), cats, [], cats.keys() if isinstance(cats, dict) else []):
        return bank
    for c in cats:
        if c not in spec.categories:
            probs.error(doc, ("categories", c), f"unknown category {c!r}: not in the catalogue of phantom "
                        f"modality {spec.name!r} ({', '.join(spec.categories)})")
        elif c not in real.categories:
            probs.error(doc, ("categories", c), f"category {c!r} is not in {real.path.name}")
    for c in spec.categories:
        if c not in cats:
            probs.error(doc, ("categories",), f"catalogue category {c!r} is missing")
    bank.categories = tuple(c for c in spec.categories if c in cats and c in real.categories)
    keep = set(bank.categories)
    for c in bank.categories:
        bank._names[c] = real._names[c]
        bank._cat_where[c] = doc.where("categories", c)
        bank._cands[c] = {
            i: replace(s, categories=tuple(x for x in s.categories if x in keep)) for i, s in real._cands[c].items()
        }
        bank._where.update({(c, i): real._where[(c, i)] for i in real._cands[c]})
        bank._renders[c] = {}

    # shared renders: written once, applied to every category that draws the sign
    shared_ids = {i for c in real.categories for i, s in real._cands[c].items() if s.shared}
    sr = data.get("shared_renders") or {}
    if not isinstance(sr, dict):
        probs.error(doc, ("shared_renders",), "shared_renders must be a mapping candidate id -> renderer sign id")
        sr = {}
    for cid, sign in sr.items():
        p = ("shared_renders", cid)
        if cid not in shared_ids:
            probs.error(doc, p, f"{cid!r} is not a shared sign of {real.path.name}")
            continue
        if sign not in spec.signs:
            probs.error(doc, p, f"unknown renderer sign id {sign!r} (catalogue {spec.name!r}: "
                        f"{', '.join(spec.signs)})")
            continue
        users = [c for c in bank.categories if cid in bank._cands[c]]
        drawn = [c for c in users if sign in spec.category_signs[c]]
        if not drawn:
            probs.error(doc, p, f"renderer sign {sign!r} is drawn for none of the categories of {cid!r} "
                        f"({', '.join(users) or 'none in this phantom'})")
        for c in drawn:
            bank._renders[c][cid] = sign

    for c in bank.categories:
        spec_c = cats[c]
        p = ("categories", c)
        if not probs.check_mapping(doc, p, spec_c, ["renders", "selection"], []):
            continue
        r = spec_c.get("renders")
        if not isinstance(r, dict):
            probs.error(doc, p + ("renders",), "renders must be a mapping candidate id -> renderer sign id")
            r = {}
        for cid, sign in r.items():
            q = p + ("renders", cid)
            if cid not in bank._cands[c]:
                probs.error(doc, q, f"{cid!r} is not a candidate of {c!r} in {real.path.name}")
            elif bank._cands[c][cid].shared or cid in shared_ids:
                probs.error(doc, q, f"{cid!r} is a shared sign: map it once under shared_renders")
            elif sign not in spec.signs:
                probs.error(doc, q, f"unknown renderer sign id {sign!r} (catalogue {spec.name!r}: "
                            f"{', '.join(spec.signs)})")
            elif sign not in spec.category_signs[c]:
                probs.error(doc, q, f"renderer sign {sign!r} is not drawn for {c!r} (it draws "
                            f"{', '.join(spec.category_signs[c])})")
            else:
                bank._renders[c][cid] = sign
        covered = set(bank._renders[c].values())
        for sign in spec.category_signs[c]:
            if sign not in covered:
                probs.error(doc, p + ("renders",), f"renderer sign {sign!r} of {c!r} is described by no candidate")
        parse_selection(bank, doc, probs, p + ("selection",), spec_c.get("selection"), c)
    return bank
