"""The sign bank: candidate radiological signs, the expert selection, and the prompts.

SD-MAD (sections "sign-driven prompts" and "sign selection") describes each anomaly category
by radiological *signs*: an LLM writes 15-20 candidate descriptions per category, experts keep
3-5 distinct ones, and the signs are inserted into templates such as "an abnormal photo of
{obj} with {sign}". At inference, sign selection (``sdmad_lite.selection``) keeps the signs
that align with the images and drops the others.

This module reads the YAML files next to it:

- one *real* sign file per dataset (``chestxray14.yaml``, ``oct2017.yaml``,
  ``fastmri_brain.yaml``): per category the candidates (``id``, ``text``, ``kind``), the expert
  ``selection`` with reasons, and a top-level ``shared`` list, the single source of truth for
  signs that several categories use;
- one *phantom* sign file per phantom modality (``phantom_chest.yaml``...): it reuses the
  candidates of its real file (no text is repeated), restricts them to the categories of the
  phantom catalogue and says which renderer sign each candidate describes (``renders``); every
  other candidate is "not drawn" -- the sign-level ground truth for sign selection;
- ``templates.yaml``: the sign templates, the category-name templates of the zero-shot
  baseline, and per modality the object word and the normal / abnormal anchor prompts.

Validation. Loading checks everything and raises one :class:`SignFileError` that lists every
problem as ``file:line: message``. Errors: unknown keys, wrong types, unknown category (for a
phantom file: not in the catalogue), empty or unknown selection, duplicate id or text within a
category, the same text in two categories without being declared ``shared``, a prompt over
CLIP's 77 tokens, a ``renders`` entry naming an unknown renderer sign or one the renderer does
not draw for that category, a catalogue sign described by no candidate. *Counts* outside the
paper's ranges (15-20 candidates, 3-5 selected) are a :class:`SignFileWarning`, never an error,
so that the book can build deliberately small or degraded banks; the shipped files respect them
(``tests/test_signs.py``).

Text embeddings of prompts are cached by (model key, text): :meth:`SignBank.embed`.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import os
import re
import string
import tempfile
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch
import yaml

from sdmad_lite.paths import cache_dir

SIGNS_DIR = Path(__file__).resolve().parent
TEMPLATES_FILE = SIGNS_DIR / "templates.yaml"
CONTEXT_LENGTH = 77
#: kinds of candidate: a visual sign of the modality, or what an LLM also writes: history,
#: symptoms, labs or treatment (``non_visual``), a finding of another modality or view
#: (``other_modality``), or something too vague to point at (``nonspecific``).
KINDS = ("visual", "non_visual", "other_modality", "nonspecific")
N_CANDIDATES = (15, 20)
N_SELECTED = (3, 5)
_ID = re.compile(r"^[a-z0-9][a-z0-9_]*$")


class SignFileError(ValueError):
    """A sign or template file is invalid; the message lists ``file:line: problem`` lines."""


class SignFileWarning(UserWarning):
    """A sign file is valid but outside the paper's counts (15-20 candidates, 3-5 selected)."""


@dataclass(frozen=True)
class Sign:
    """One candidate sign of a category.

    ``categories`` lists the categories of the bank that use the sign (more than one for a
    shared sign); ``reason`` is set on the signs returned by :meth:`SignBank.selected`.
    """

    id: str
    text: str
    kind: str = "visual"
    categories: tuple[str, ...] = ()
    reason: str | None = None

    @property
    def shared(self) -> bool:
        return len(self.categories) > 1

    @property
    def visual(self) -> bool:
        return self.kind == "visual"


# ----------------------------------------------------------------------------- YAML + lines
class _Doc:
    """A YAML file parsed into plain Python data, with the line of every key and item."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.lines: dict[tuple, int] = {}
        self.duplicates: list[str] = []  # "file:line: duplicate key ..." 
        loader = yaml.SafeLoader(self.path.read_text(encoding="utf-8"))
        try:
            node = loader.get_single_node()
            self.data = None if node is None else loader.construct_document(node)
            if node is not None:
                self._walk(node, ())
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            line = mark.line + 1 if mark is not None else 1
            raise SignFileError(f"{self.path}:{line}: YAML syntax error: {e.problem or e}") from None
        finally:
            loader.dispose()

    def _walk(self, node: yaml.Node, path: tuple) -> None:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, int] = {}
            for k, v in node.value:
                key = k.value if isinstance(k, yaml.ScalarNode) else None
                line = k.start_mark.line + 1
                if key in first:
                    self.duplicates.append(f"{self.path}:{line}: duplicate key {key!r} (first at line {first[key]})")
                    continue
                first[key] = line
                self.lines[path + (key,)] = line
                self._walk(v, path + (key,))
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                self._walk(v, path + (i,))

    def line(self, *path: Any) -> int:
        p = tuple(path)
        while p and p not in self.lines:
            p = p[:-1]
        return self.lines.get(p, 1)

    def where(self, *path: Any) -> str:
        return f"{self.path}:{self.line(*path)}"


class _Problems:
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def error(self, doc: _Doc, path: tuple, msg: str) -> None:
        self.errors.append(f"{doc.where(*path)}: {msg}")

    def warn(self, doc: _Doc, path: tuple, msg: str) -> None:
        self.warnings.append(f"{doc.where(*path)}: {msg}")

    def check_mapping(self, doc: _Doc, path: tuple, value: Any, required: Iterable[str], allowed: Iterable[str]) -> bool:
        what = "the file" if not path else repr(path[-1])
        if not isinstance(value, dict):
            self.error(doc, path, f"{what} must be a mapping, got {type(value).__name__}")
            return False
        allowed = set(allowed) | set(required)
        for k in value:
            if k not in allowed:
                self.error(doc, path + (k,), f"unknown key {k!r} (allowed: {', '.join(sorted(allowed))})")
        for k in required:
            if k not in value:
                self.error(doc, path, f"missing key {k!r}")
        return True

    def check_str(self, doc: _Doc, path: tuple, value: Any, what: str) -> bool:
        if not isinstance(value, str) or not value.strip():
            self.error(doc, path, f"{what} must be a non-empty string, got {value!r}")
            return False
        return True

    def check_list(self, doc: _Doc, path: tuple, value: Any, what: str) -> bool:
        if not isinstance(value, list) or not value:
            self.error(doc, path, f"{what} must be a non-empty list")
            return False
        return True

    def raise_if_any(self, what: str) -> None:
        if self.errors:
            n = len(self.errors)
            raise SignFileError(f"{n} problem{'s' * (n > 1)} in {what}:\n  " + "\n  ".join(self.errors))

    def emit_warnings(self) -> None:
        for w in self.warnings:
            warnings.warn(w, SignFileWarning, stacklevel=4)


def _dataset_labels(dataset: str) -> tuple[str, ...] | None:
    """The labels of a real dataset the library knows (its categories must be among them), else None."""
    from sdmad_lite.data import tables

    name = dataset.replace("_", "-")
    return tables.dataset_categories(name) if name in tables.DATASETS else None


def _fields(template: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


# ----------------------------------------------------------------------------- templates
@dataclass(frozen=True)
class Templates:
    """``templates.yaml``: sign templates, category-name templates, per-modality obj and anchors."""

    path: Path
    sign: tuple[str, ...]
    category: tuple[str, ...]
    modalities: dict[str, dict[str, Any]]  # name -> {"obj": str, "normal": [...], "abnormal": [...]}
    where: dict[str, str]  # template or anchor text -> "file:line"


_TEMPLATES_CACHE: dict[tuple[str, int], Templates] = {}


def load_templates(path: str | Path = TEMPLATES_FILE) -> Templates:
    path = Path(path).resolve()
    key = (str(path), path.stat().st_mtime_ns)
    if key in _TEMPLATES_CACHE:
        return _TEMPLATES_CACHE[key]
    doc, probs = _Doc(path), _Problems()
    probs.errors += doc.duplicates
    data = doc.data
    where: dict[str, str] = {}
    sign_t: list[str] = []
    cat_t: list[str] = []
    mods: dict[str, dict[str, Any]] = {}

    def templates_list(key: str, required: set[str], allowed: set[str], out: list[str]) -> None:
        if not probs.check_list(doc, (key,), data.get(key), key):
            return
        for i, t in enumerate(data[key]):
            if not probs.check_str(doc, (key, i), t, "a template"):
                continue
            try:
                fields = _fields(t)
            except ValueError as e:
                probs.error(doc, (key, i), f"bad template {t!r}: {e}")
                continue
            if not required <= fields or not fields <= allowed:
                probs.error(doc, (key, i), f"template {t!r} must use {sorted(required)} and only {sorted(allowed)}")
                continue
            out.append(t)
            where[t] = doc.where(key, i)

    if probs.check_mapping(doc, (), data, ["sign_templates", "category_templates", "modalities"], []):
        templates_list("sign_templates", {"sign"}, {"sign", "obj"}, sign_t)
        templates_list("category_templates", {"category"}, {"category", "obj"}, cat_t)
        m = data.get("modalities")
        if probs.check_mapping(doc, ("modalities",), m, [], m.keys() if isinstance(m, dict) else []):
            for name, spec in m.items():
                p = ("modalities", name)
                if not probs.check_mapping(doc, p, spec, ["obj", "normal", "abnormal"], []):
                    continue
                entry: dict[str, Any] = {"obj": spec.get("obj"), "normal": [], "abnormal": []}
                probs.check_str(doc, p + ("obj",), spec.get("obj"), "obj")
                for side in ("normal", "abnormal"):
                    if not probs.check_list(doc, p + (side,), spec.get(side), f"{name}.{side}"):
                        continue
                    for i, t in enumerate(spec[side]):
                        if not probs.check_str(doc, p + (side, i), t, "an anchor prompt"):
                            continue
                        try:
                            ok = _fields(t) <= {"obj"}
                        except ValueError:
                            ok = False
                        if not ok:
                            probs.error(doc, p + (side, i), f"anchor {t!r} may only use the {{obj}} placeholder")
                            continue
                        entry[side].append(t)
                        where[f"{name}:{t}"] = doc.where(*p, side, i)
                mods[name] = entry
    probs.raise_if_any(str(path))
    out = Templates(path, tuple(sign_t), tuple(cat_t), mods, where)
    _TEMPLATES_CACHE[key] = out
    return out


# ----------------------------------------------------------------------------- the bank
class SignBank:
    """The signs and prompts of one dataset (real) or one phantom modality.

    Load with :meth:`SignBank.load`; the bank is read-only. Categories keep the file's order
    (a phantom bank: the catalogue's order).
    """

    # in-memory layer over the on-disk embedding cache: cache file -> {entry key: (text, vector)}
    _MEMORY: dict[str, dict[str, tuple[str, torch.Tensor]]] = {}
    _LOADED: dict[tuple, "SignBank"] = {}

    def __init__(self) -> None:  # use SignBank.load
        self.name: str = ""
        self.path: Path = Path()
        self.dataset: str = ""
        self.modality: str = ""
        self.title: str = ""
        self.phantom: str | None = None
        self.categories: tuple[str, ...] = ()
        self.templates_file: Templates | None = None
        self._names: dict[str, str] = {}
        self._cands: dict[str, dict[str, Sign]] = {}
        self._selection: dict[str, list[tuple[str, str]]] = {}
        self._renders: dict[str, dict[str, str]] = {}
        self._where: dict[tuple[str, str], str] = {}  # (category, id) -> "file:line"
        self._cat_where: dict[str, str] = {}

    # ------------------------------------------------------------------ loading
    @staticmethod
    def available() -> list[str]:
        """Stems of the shipped sign files (``SignBank.load`` accepts them)."""
        return sorted(p.stem for p in SIGNS_DIR.glob("*.yaml") if p.stem != "templates")

    @staticmethod
    def resolve(name: str | Path, near: Path | None = None) -> Path:
        p = Path(name)
        if p.suffix in (".yaml", ".yml") or p.exists():
            if not p.exists():
                raise FileNotFoundError(f"sign file {p} does not exist")
            return p.resolve()
        for d in ([near] if near else []) + [SIGNS_DIR]:
            if (d / f"{name}.yaml").exists():
                return (d / f"{name}.yaml").resolve()
        raise FileNotFoundError(f"no sign file {name!r}; available: {', '.join(SignBank.available())}")

    @classmethod
    def load(cls, name: str | Path, templates: str | Path | None = None, check_tokens: bool = True) -> "SignBank":
        """Load and validate a sign file: a stem of :meth:`available` or a path.

        A phantom file's ``dataset`` is looked up next to it first, then among the shipped
        files. ``check_tokens`` checks every prompt against CLIP's 77-token context.
        """
        path = cls.resolve(name)
        tpath = Path(templates).resolve() if templates else TEMPLATES_FILE
        key = (str(path), path.stat().st_mtime_ns, str(tpath), tpath.stat().st_mtime_ns, check_tokens)
        if key not in cls._LOADED:
            cls._LOADED[key] = cls._load_uncached(path, load_templates(tpath), check_tokens)
        return cls._LOADED[key]

    @classmethod
    def _load_uncached(cls, path: Path, tmpl: Templates, check_tokens: bool) -> "SignBank":
        doc = _Doc(path)
        probs = _Problems()
        probs.errors += doc.duplicates
        if isinstance(doc.data, dict) and "phantom" in doc.data:
            bank = cls._parse_phantom(doc, probs, tmpl, check_tokens)
        else:
            bank = cls._parse_real(doc, probs, tmpl)
        probs.raise_if_any(str(path))
        if check_tokens:
            bank._check_tokens(probs)
            probs.raise_if_any(str(path))
        probs.emit_warnings()
        return bank

    @classmethod
    def _parse_real(cls, doc: _Doc, probs: _Problems, tmpl: Templates) -> "SignBank":
        bank = cls()
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
                    s = cls._parse_sign(doc, probs, p + ("candidates", i), item, (c,))
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
                s = cls._parse_sign(doc, probs, p, {k: v for k, v in item.items() if k != "categories"}, used,
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
                t = _norm(s.text)
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
                bank._parse_selection(doc, probs, ("categories", c, "selection"), cats[c].get("selection"), c)
        return bank

    @staticmethod
    def _parse_sign(doc: _Doc, probs: _Problems, p: tuple, item: Any, cats: tuple[str, ...],
                    extra_keys: tuple[str, ...] = ()) -> Sign | None:
        if not isinstance(item, dict):
            probs.error(doc, p, f"a candidate must be a mapping with id and text, got {item!r}")
            return None
        ok = True
        for k in item:
            if k not in ("id", "text", "kind") + extra_keys:
                probs.error(doc, p + (k,), f"unknown key {k!r} (allowed: id, text, kind{''.join(', ' + e for e in extra_keys)})")
        sid, text, kind = item.get("id"), item.get("text"), item.get("kind", "visual")
        if not isinstance(sid, str) or not _ID.match(sid):
            probs.error(doc, p + ("id",), f"sign id must be lower_snake_case, got {sid!r}")
            ok = False
        if not probs.check_str(doc, p + ("text",), text, "sign text"):
            ok = False
        elif text.rstrip().endswith(".") or "{" in text or "}" in text:
            probs.error(doc, p + ("text",), f"sign text {text!r} must be a noun phrase (no final period, no braces)")
            ok = False
        if kind not in KINDS:
            probs.error(doc, p + ("kind",), f"unknown kind {kind!r} (kinds: {', '.join(KINDS)})")
            ok = False
        return Sign(sid, " ".join(text.split()), kind, cats) if ok else None

    def _parse_selection(self, doc: _Doc, probs: _Problems, p: tuple, sel: Any, c: str) -> None:
        self._selection[c] = []
        if not isinstance(sel, list) or not sel:
            probs.error(doc, p, f"empty selection for category {c!r} (select {N_SELECTED[0]}-{N_SELECTED[1]} candidate ids)")
            return
        for i, item in enumerate(sel):
            q = p + (i,)
            if not probs.check_mapping(doc, q, item, ["id", "reason"], []):
                continue
            sid, reason = item.get("id"), item.get("reason")
            if sid not in self._cands.get(c, {}):
                probs.error(doc, q + ("id",), f"selected id {sid!r} is not a candidate of {c!r}")
                continue
            if not probs.check_str(doc, q + ("reason",), reason, "reason"):
                continue
            if sid in [s for s, _ in self._selection[c]]:
                probs.error(doc, q + ("id",), f"{sid!r} is selected twice in {c!r}")
                continue
            self._selection[c].append((sid, " ".join(reason.split())))
        n = len(sel)
        if not (N_SELECTED[0] <= n <= N_SELECTED[1]):
            probs.warn(doc, p, f"category {c!r} selects {n} signs (the paper: {N_SELECTED[0]}-{N_SELECTED[1]})")

    @classmethod
    def _parse_phantom(cls, doc: _Doc, probs: _Problems, tmpl: Templates, check_tokens: bool) -> "SignBank":
        from sdmad_lite.data.phantoms.catalogue import MODALITIES

        bank = cls()
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
            real = cls.load(cls.resolve(str(data["dataset"]), near=doc.path.parent), templates=tmpl.path,
                            check_tokens=check_tokens)
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
            bank._parse_selection(doc, probs, p + ("selection",), spec_c.get("selection"), c)
        return bank

    def _check_tokens(self, probs: _Problems) -> None:
        from sdmad_lite.models.backbone import count_tokens

        t = self.templates_file
        items: list[tuple[str, str]] = []  # (prompt, where)
        for c in self.categories:
            for sid, prompts in self.sign_prompts(c, "all").items():
                items += [(q, self._where[(c, sid)]) for q in prompts]
            items += [(q, self._cat_where[c]) for q in self.category_name_prompts(c)]
        for side, qs in self.anchor_prompts().items():
            items += [(q, t.where.get(f"{self.modality}:{a}", str(t.path)))
                      for q, a in zip(qs, t.modalities[self.modality][side])]
        counts = count_tokens([q for q, _ in items])
        over: dict[str, list[tuple[int, str]]] = {}  # one error per place, not one per template
        for (q, where), n in zip(items, counts):
            if n > CONTEXT_LENGTH:
                over.setdefault(where, []).append((n, q))
        for where, bad in over.items():
            n, q = max(bad)
            more = f"{len(bad)} prompts" if len(bad) > 1 else "a prompt"
            probs.errors.append(f"{where}: {more} over {CONTEXT_LENGTH} tokens (longest {n}); shorten the text: {q!r}")

    # ------------------------------------------------------------------ queries
    def __repr__(self) -> str:
        kind = f"phantom {self.phantom}" if self.phantom else "real"
        return (f"SignBank({self.name!r}, {kind}, {len(self.categories)} categories, "
                f"{sum(len(v) for v in self._cands.values())} candidates)")

    def _cat(self, cat: str) -> str:
        if cat not in self._cands:
            raise KeyError(f"unknown category {cat!r} in sign bank {self.name!r}; categories: {', '.join(self.categories)}")
        return cat

    @property
    def obj(self) -> str:
        """The modality's object word, e.g. "chest x-ray"."""
        return self.templates_file.modalities[self.modality]["obj"]

    @property
    def templates(self) -> tuple[str, ...]:
        """The sign templates (placeholders ``{obj}`` and ``{sign}``)."""
        return self.templates_file.sign

    @property
    def is_phantom(self) -> bool:
        return self.phantom is not None

    def category_name(self, cat: str) -> str:
        """The phrase for ``cat`` in category-name prompts, e.g. "a pleural effusion"."""
        return self._names[self._cat(cat)]

    def candidates(self, cat: str) -> list[Sign]:
        """All candidate signs of ``cat`` (the LLM step), shared signs included."""
        return list(self._cands[self._cat(cat)].values())

    def candidate(self, cat: str, sign_id: str) -> Sign:
        try:
            return self._cands[self._cat(cat)][sign_id]
        except KeyError:
            raise KeyError(f"{sign_id!r} is not a candidate of {cat!r} in {self.name!r}") from None

    def selected(self, cat: str) -> list[Sign]:
        """The expert selection of ``cat`` (3-5 signs), each with its ``reason``."""
        return [replace(self._cands[cat][i], reason=r) for i, r in self._selection[self._cat(cat)]]

    def shared_signs(self) -> dict[str, tuple[str, ...]]:
        """sign id -> the categories of this bank that share it (two or more)."""
        out: dict[str, tuple[str, ...]] = {}
        for c in self.categories:
            for s in self._cands[c].values():
                if s.shared:
                    out.setdefault(s.id, s.categories)
        return out

    def renders(self, cat: str) -> dict[str, str | None]:
        """Phantom ground truth: candidate id -> the renderer sign it describes, or None (not
        drawn). Empty for a real bank."""
        self._cat(cat)
        if not self.is_phantom:
            return {}
        return {i: self._renders[cat].get(i) for i in self._cands[cat]}

    def drawn(self, cat: str) -> list[Sign]:
        """Phantom: the candidates that describe a sign the renderer draws for ``cat``."""
        r = self.renders(cat)
        return [s for s in self.candidates(cat) if r.get(s.id)]

    def _resolve_signs(self, cat: str, signs: Any) -> list[Sign]:
        if signs is None:
            return self.selected(cat)
        if isinstance(signs, str):
            if signs == "all":
                return self.candidates(cat)
            if signs == "drawn":
                return self.drawn(cat)
            if signs == "selected":
                return self.selected(cat)
            signs = [signs]
        return [s if isinstance(s, Sign) else self.candidate(cat, s) for s in signs]

    def sign_prompts(self, cat: str, signs: Any = None, templates: Sequence[str] | None = None) -> dict[str, list[str]]:
        """sign id -> its prompts (templates x that sign), for ``signs`` of ``cat``.

        ``signs``: None (the expert selection), "all", "drawn" (phantom), or ids / Sign objects.
        ``templates``: None (the bank's sign templates) or template strings with ``{sign}``.
        """
        tmpl = list(self.templates if templates is None else templates)
        for t in tmpl:
            if "sign" not in _fields(t):
                raise ValueError(f"template {t!r} has no {{sign}} placeholder")
        return {s.id: [t.format(obj=self.obj, sign=s.text) for t in tmpl] for s in self._resolve_signs(cat, signs)}

    def prompts(self, cat: str, signs: Any = None, templates: Sequence[str] | None = None) -> list[str]:
        """The expansion templates x signs for ``cat``, sign-major (see :meth:`sign_prompts`)."""
        return [q for qs in self.sign_prompts(cat, signs, templates).values() for q in qs]

    def anchor_prompts(self) -> dict[str, list[str]]:
        """The anchor prompts of the modality: {"normal": [...], "abnormal": [...]}."""
        m = self.templates_file.modalities[self.modality]
        return {side: [t.format(obj=self.obj) for t in m[side]] for side in ("normal", "abnormal")}

    def category_name_prompts(self, cat: str) -> list[str]:
        """Prompts naming the category (zero-shot baseline), e.g. "a chest x-ray with atelectasis"."""
        name = self.category_name(cat)
        return [t.format(obj=self.obj, category=name) for t in self.templates_file.category]

    def all_prompts(self) -> list[str]:
        """Every prompt the bank can produce: all candidates x templates, category names, anchors."""
        out: list[str] = []
        for c in self.categories:
            out += self.prompts(c, "all") + self.category_name_prompts(c)
        for qs in self.anchor_prompts().values():
            out += qs
        return list(dict.fromkeys(out))

    def stats(self) -> dict[str, Any]:
        """Counts for tables: candidates, selected, non-visual, shared, prompts, not-drawn share."""
        n_cand = sum(len(self._cands[c]) for c in self.categories)
        n_sel = sum(len(self._selection.get(c, [])) for c in self.categories)
        out: dict[str, Any] = {
            "bank": self.name,
            "kind": f"phantom {self.phantom}" if self.phantom else "real",
            "categories": len(self.categories),
            "candidates": n_cand,
            "not_visual": sum(not s.visual for c in self.categories for s in self._cands[c].values()),
            "selected": n_sel,
            "shared": len(self.shared_signs()),
            "templates": len(self.templates),
            "selected_prompts": n_sel * len(self.templates),
            "all_prompts": len(self.all_prompts()),
        }
        if self.is_phantom:
            nd = sum(v is None for c in self.categories for v in self.renders(c).values())
            out["not_drawn"] = nd
            out["not_drawn_share"] = round(nd / n_cand, 3)
            out["selected_not_drawn"] = sum(self._renders[c].get(i) is None for c in self.categories
                                            for i, _ in self._selection[c])
        return out

    def to_frame(self):
        """One row per (category, candidate): text, kind, shared, selected, reason, renders."""
        import pandas as pd

        rows = []
        for c in self.categories:
            reasons = dict(self._selection.get(c, []))
            r = self.renders(c)
            for s in self._cands[c].values():
                rows.append({
                    "category": c,
                    "id": s.id,
                    "text": s.text,
                    "kind": s.kind,
                    "shared_with": ", ".join(x for x in s.categories if x != c),
                    "selected": s.id in reasons,
                    "reason": reasons.get(s.id, ""),
                    "renders": r.get(s.id) if self.is_phantom else None,
                })
        return pd.DataFrame(rows)

    # ------------------------------------------------------------------ embeddings
    @staticmethod
    def _cache_file(model_key: str) -> Path:
        d = cache_dir() / "text_embeddings"
        d.mkdir(parents=True, exist_ok=True)
        return d / f"{hashlib.sha256(model_key.encode('utf-8')).hexdigest()[:32]}.pt"

    @staticmethod
    def _entry_key(model_key: str, text: str) -> str:
        return hashlib.sha256(f"{model_key}\x00{text}".encode("utf-8")).hexdigest()

    @staticmethod
    def _read_cache(path: Path, model_key: str) -> dict[str, tuple[str, torch.Tensor]]:
        if not path.exists():
            return {}
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            if blob.get("model_key") != model_key:
                return {}
            return {k: (t, v) for k, t, v in zip(blob["keys"], blob["texts"], blob["vectors"])}
        except Exception as e:  # a corrupt cache file is rebuilt, never trusted
            warnings.warn(f"ignoring unreadable text-embedding cache {path}: {e}", stacklevel=3)
            return {}

    @staticmethod
    def _write_cache(path: Path, model_key: str, entries: dict[str, tuple[str, torch.Tensor]]) -> None:
        keys = list(entries)
        blob = {
            "format": 1,
            "model_key": model_key,
            "keys": keys,
            "texts": [entries[k][0] for k in keys],
            "vectors": torch.stack([entries[k][1] for k in keys]),
        }
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        os.close(fd)
        try:
            torch.save(blob, tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    @classmethod
    def embed(cls, texts: Sequence[str], encode_fn: Callable[[list[str]], torch.Tensor], model_key: str,
              batch_size: int = 256) -> torch.Tensor:
        """L2-normalised text embeddings ``(N, D)`` (CPU, float32), cached by (model key, text).

        ``encode_fn(list[str]) -> Tensor (n, D)`` is the caller's text encoder (run under
        ``torch.no_grad``); ``model_key`` must identify the encoder *and its weights* (e.g.
        "phantomclip-tiny@<sha256>"). Only texts not yet cached are encoded, in batches of
        ``batch_size``; the cache is one file per model key under
        ``cache_dir()/text_embeddings``, written atomically, with an in-memory layer on top.
        An empty ``texts`` gives an empty ``(0, 0)`` tensor.
        """
        texts = list(texts)
        if not texts:
            return torch.empty(0, 0)
        path = cls._cache_file(model_key)
        mem = cls._MEMORY.setdefault(str(path), {})
        keys = [cls._entry_key(model_key, t) for t in texts]
        if any(k not in mem for k in keys):
            mem.update({k: v for k, v in cls._read_cache(path, model_key).items() if k not in mem})
        missing = list(dict.fromkeys(t for t, k in zip(texts, keys) if k not in mem))
        if missing:
            dim = next(iter(mem.values()))[1].shape[-1] if mem else None
            for i in range(0, len(missing), batch_size):
                batch = missing[i:i + batch_size]
                with torch.no_grad():
                    out = torch.as_tensor(encode_fn(batch)).detach().float().cpu()
                if out.ndim != 2 or out.shape[0] != len(batch):
                    raise ValueError(f"encode_fn returned shape {tuple(out.shape)} for {len(batch)} texts")
                if dim is not None and out.shape[1] != dim:
                    raise ValueError(f"encode_fn returned dimension {out.shape[1]} but the cache of model key "
                                     f"{model_key!r} holds dimension {dim}: use another model_key or clear_cache()")
                dim = out.shape[1]
                out = torch.nn.functional.normalize(out, dim=-1)
                for t, v in zip(batch, out):
                    mem[cls._entry_key(model_key, t)] = (t, v.clone())
            disk = cls._read_cache(path, model_key)  # merge what another process may have written
            disk.update(mem)
            cls._write_cache(path, model_key, disk)
        return torch.stack([mem[k][1] for k in keys])

    @classmethod
    def clear_cache(cls, model_key: str | None = None) -> None:
        """Forget cached text embeddings of ``model_key`` (all model keys if None), on disk and in memory."""
        d = cache_dir() / "text_embeddings"
        files = [cls._cache_file(model_key)] if model_key is not None else list(d.glob("*.pt"))
        for f in files:
            cls._MEMORY.pop(str(f), None)
            f.unlink(missing_ok=True)
        if model_key is None:
            cls._MEMORY.clear()


# ----------------------------------------------------------------------------- CLI
def _print_bank(bank: SignBank, show_all: bool) -> None:
    st = bank.stats()
    print(f"{bank.name}: {bank.title}")
    print(f"  file {bank.path}")
    print(f"  modality {bank.modality!r} (obj: {bank.obj!r}), {st['templates']} sign templates")
    line = (f"  {st['categories']} categories, {st['candidates']} candidates ({st['not_visual']} not visual), "
            f"{st['selected']} selected, {st['shared']} shared signs, {st['selected_prompts']} prompts with the "
            f"selection, {st['all_prompts']} prompts in all")
    print(line)
    if bank.is_phantom:
        print(f"  renderer: {st['candidates'] - st['not_drawn']} candidates drawn, {st['not_drawn']} not drawn "
              f"({st['not_drawn_share']:.0%}); {st['selected_not_drawn']} selected signs are not drawn")
    for c in bank.categories:
        cands, sel = bank.candidates(c), bank.selected(c)
        print(f"\n{c} ({bank.category_name(c)!r}): {len(cands)} candidates, {len(sel)} selected")
        r = bank.renders(c)
        chosen = {s.id for s in sel}
        rows = cands if show_all else sel
        for s in rows:
            mark = "*" if s.id in chosen else " "
            tags = [] if s.visual else [s.kind]
            if s.shared:
                tags.append("shared with " + ", ".join(x for x in s.categories if x != c))
            if bank.is_phantom:
                tags.append(f"draws {r[s.id]}" if r.get(s.id) else "not drawn")
            reason = next((x.reason for x in sel if x.id == s.id), None)
            print(f"  {mark} {s.id:<28} {s.text}" + (f"  [{'; '.join(tags)}]" if tags else ""))
            if reason:
                print(f"      - {reason}")


def _cmd_signs(args: argparse.Namespace, parser: argparse.ArgumentParser | None = None) -> int:
    if args.signs_command == "list":
        print(f"{'bank':<16} {'kind':<15} {'categories':>10} {'candidates':>10} {'selected':>8} {'prompts':>8}")
        for name in SignBank.available():
            st = SignBank.load(name).stats()
            print(f"{name:<16} {st['kind']:<15} {st['categories']:>10} {st['candidates']:>10} "
                  f"{st['selected']:>8} {st['selected_prompts']:>8}")
        return 0
    if args.signs_command == "show":
        try:
            bank = SignBank.load(args.name)
        except (FileNotFoundError, SignFileError) as e:
            print(f"error: {e}")
            return 2
        _print_bank(bank, args.all)
        return 0
    if parser is not None:
        parser.print_help()
    return 2


def add_subcommand(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``sdmad signs list`` and ``sdmad signs show NAME [--all]`` (``func`` -> int)."""
    p = subparsers.add_parser("signs", help="list and show the sign banks (candidates, selection, prompts)",
                              description="The sign banks: candidate signs, the expert selection, prompts.")
    sub = p.add_subparsers(dest="signs_command", metavar="{list,show}")
    sub.add_parser("list", help="the available sign banks with their counts")
    show = sub.add_parser("show", help="categories, selected signs with reasons, counts")
    show.add_argument("name", help="a bank name (see `sdmad signs list`) or a path to a sign file")
    show.add_argument("--all", action="store_true", help="list every candidate, not only the selection")
    p.set_defaults(func=functools.partial(_cmd_signs, parser=p))
    return p
