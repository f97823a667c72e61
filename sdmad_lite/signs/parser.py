"""Parse and validate the sign files: every problem found, reported as ``file:line: message``.

Errors (one :class:`~sdmad_lite.signs.schema.SignFileError` listing all of them): unknown keys,
wrong types, unknown category (for a phantom file: not in the catalogue), empty or unknown
selection, duplicate id or text within a category, the same text in two categories without being
declared ``shared``, a ``renders`` entry naming an unknown renderer sign or one the renderer does
not draw for that category, a catalogue sign described by no candidate. *Counts* outside the
paper's ranges (15-20 candidates, 3-5 selected) are a :class:`~sdmad_lite.signs.schema.SignFileWarning`,
never an error, so that the book can build deliberately small or degraded banks.

This module: where the sign files are, and a real file; a phantom file is :mod:`.phantom_parser`'s, the
entries both hold :mod:`.entries`', the templates :mod:`.templates`'.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..data import tables
from .entries import parse_selection, parse_sign
from .phantom_parser import parse_phantom
from .schema import N_CANDIDATES, SIGNS_DIR, BankData, Sign, SignFileNotFoundError, Templates
from .yamlio import Problems, YamlDoc, normalized


def available() -> list[str]:
    """Stems of the shipped sign files (``SignBank.load`` accepts them)."""
    return sorted(p.stem for p in SIGNS_DIR.glob("*.yaml") if p.stem != "templates")


def resolve(name: str | Path, near: Path | None = None) -> Path:
    """The path of sign file ``name``: a path, or a stem looked up ``near`` first, then among the shipped files."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.exists():
            raise SignFileNotFoundError(f"sign file {p} does not exist; give the path of a YAML file or a bank name "
                                        f"({', '.join(available())})")
        return p.resolve()
    for d in ([near] if near else []) + [SIGNS_DIR]:
        if (d / f"{name}.yaml").exists():
            return (d / f"{name}.yaml").resolve()
    raise SignFileNotFoundError(f"no sign file {name!r}; available: {', '.join(available())}")


def _dataset_labels(dataset: str) -> tuple[str, ...] | None:
    """The labels of a real dataset the library knows (its categories must be among them), else None."""
    name = dataset.replace("_", "-")
    return tables.dataset_categories(name) if name in tables.DATASETS else None


def parse_file(path: Path, tmpl: Templates, load_real: Callable[[str, Path], BankData]) -> tuple[BankData, Problems]:
    """Parse one sign file (real or phantom); the caller raises or warns with the returned problems.
    ``load_real(name, folder)``: the real file a phantom file names (looked up in ``folder`` first)."""
    doc = YamlDoc(path)
    probs = Problems()
    probs.errors += doc.duplicates
    if isinstance(doc.data, dict) and "phantom" in doc.data:
        bank = parse_phantom(doc, probs, tmpl, load_real)
    else:
        bank = parse_real(doc, probs, tmpl)
    return bank, probs


def parse_real(doc: YamlDoc, probs: Problems, tmpl: Templates) -> BankData:
    """A real sign file (candidates, shared signs, expert selection) into :class:`~sdmad_lite.signs.schema.BankData`."""
    bank = BankData()
    bank.path, bank.name, bank.templates_file = doc.path, doc.path.stem, tmpl
    data = doc.data
    if not probs.check_mapping(doc, (), data, ["modality", "categories"], ["dataset", "title", "shared"]):
        return bank
    bank.dataset = str(data.get("dataset", doc.path.stem))
    bank.title = str(data.get("title", bank.dataset))
    bank.modality = str(data.get("modality"))
    if bank.modality not in tmpl.modalities:
        probs.error(doc, ("modality",), f"unknown modality {bank.modality!r}; {tmpl.path.name} defines "
                    f"{', '.join(tmpl.modalities)}")
    cats = data.get("categories")
    if not probs.check_mapping(doc, ("categories",), cats, [], cats.keys() if isinstance(cats, dict) else []):
        return bank
    if not cats:
        probs.error(doc, ("categories",), "no categories")
    bank.categories = tuple(str(c) for c in cats)
    labels = _dataset_labels(bank.dataset)
    if labels is not None:
        for c in bank.categories:
            if c not in labels:
                probs.error(doc, ("categories", c), f"unknown category {c!r}: not a label of dataset "
                            f"{bank.dataset!r} ({', '.join(labels)})")

    own: dict[str, list[tuple[Sign, tuple]]] = {c: [] for c in bank.categories}
    for c, spec in cats.items():
        p = ("categories", c)
        bank._cat_where[c] = doc.where(*p)
        bank._names[c] = c.replace("_", " ").lower()
        if not probs.check_mapping(doc, p, spec, ["candidates", "selection"], ["name"]):
            continue
        if "name" in spec and probs.check_str(doc, p + ("name",), spec["name"], "name"):
            bank._names[c] = spec["name"]
        if probs.check_list(doc, p + ("candidates",), spec.get("candidates"), "candidates"):
            for i, item in enumerate(spec["candidates"]):
                s = parse_sign(doc, probs, p + ("candidates", i), item, (c,))
                if s is not None:
                    own[c].append((s, p + ("candidates", i)))

    shared: list[tuple[Sign, tuple]] = []
    if "shared" in data:
        items = data["shared"]
        if not isinstance(items, list):
            probs.error(doc, ("shared",), "shared must be a list")
            items = []
        for i, item in enumerate(items):
            p = ("shared", i)
            if not isinstance(item, dict):
                probs.error(doc, p, "a shared sign must be a mapping with id, text, categories")
                continue
            used = item.get("categories")
            ok = isinstance(used, list) and len(set(map(str, used))) >= 2
            if not ok:
                probs.error(doc, p + ("categories",), "a shared sign needs a list of at least two categories")
                used = []
            for c in used:
                if c not in bank.categories:
                    probs.error(doc, p + ("categories",), f"unknown category {c!r} (categories: {', '.join(bank.categories)})")
            used = tuple(c for c in dict.fromkeys(map(str, used)) if c in bank.categories)
            s = parse_sign(doc, probs, p, {k: v for k, v in item.items() if k != "categories"}, used,
                                extra_keys=("categories",))
            if s is not None:
                shared.append((s, p))

    # merge: own candidates first, then the shared signs of the category
    text_owner: dict[str, tuple[str, tuple]] = {}
    for c in bank.categories:
        bank._cands[c] = {}
        seen_text: dict[str, str] = {}
        entries = own[c] + [(s, p) for s, p in shared if c in s.categories]
        for s, p in entries:
            if s.id in bank._cands[c]:
                probs.error(doc, p + ("id",), f"duplicate sign id {s.id!r} in category {c!r} "
                            f"(also at {bank._where[(c, s.id)]})")
                continue
            t = normalized(s.text)
            if t in seen_text:
                probs.error(doc, p + ("text",), f"duplicate sign text {s.text!r} in category {c!r} "
                            f"(also sign {seen_text[t]!r})")
                continue
            seen_text[t] = s.id
            bank._cands[c][s.id] = s
            bank._where[(c, s.id)] = doc.where(*p)
            if not s.shared:
                if t in text_owner and text_owner[t][0] != c:
                    oc, op = text_owner[t]
                    probs.error(doc, p + ("text",), f"text {s.text!r} is also a candidate of {oc!r} "
                                f"(line {doc.line(*op)}): declare it once under 'shared'")
                text_owner.setdefault(t, (c, p))
        n = len(bank._cands[c])
        if n and not (N_CANDIDATES[0] <= n <= N_CANDIDATES[1]):
            probs.warn(doc, ("categories", c), f"category {c!r} has {n} candidates (the paper: "
                       f"{N_CANDIDATES[0]}-{N_CANDIDATES[1]})")
        if isinstance(cats.get(c), dict):
            parse_selection(bank, doc, probs, ("categories", c, "selection"), cats[c].get("selection"), c)
    return bank
