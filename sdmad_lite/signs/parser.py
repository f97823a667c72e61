"""Parse and validate the sign files: every problem found, reported as ``file:line: message``.

Errors (one :class:`~sdmad_lite.signs.schema.SignFileError` listing all of them): unknown keys,
wrong types, unknown category (for a phantom file: not in the catalogue), empty or unknown
selection, duplicate id or text within a category, the same text in two categories without being
declared ``shared``, a ``renders`` entry naming an unknown renderer sign or one the renderer does
not draw for that category, a catalogue sign described by no candidate. *Counts* outside the
paper's ranges (15-20 candidates, 3-5 selected) are a :class:`~sdmad_lite.signs.schema.SignFileWarning`,
never an error, so that the book can build deliberately small or degraded banks.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from ..data import tables
from ..data.phantoms.catalogue import MODALITIES
from .schema import KINDS, N_CANDIDATES, N_SELECTED, SIGNS_DIR, TEMPLATES_FILE, BankData, Sign, Templates, _ID
from .yamlio import Problems, YamlDoc, normalized, template_fields


def available() -> list[str]:
    """Stems of the shipped sign files (``SignBank.load`` accepts them)."""
    return sorted(p.stem for p in SIGNS_DIR.glob("*.yaml") if p.stem != "templates")


def resolve(name: str | Path, near: Path | None = None) -> Path:
    """The path of sign file ``name``: a path, or a stem looked up ``near`` first, then among the shipped files."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.exists():
            raise FileNotFoundError(f"sign file {p} does not exist")
        return p.resolve()
    for d in ([near] if near else []) + [SIGNS_DIR]:
        if (d / f"{name}.yaml").exists():
            return (d / f"{name}.yaml").resolve()
    raise FileNotFoundError(f"no sign file {name!r}; available: {', '.join(available())}")


def _dataset_labels(dataset: str) -> tuple[str, ...] | None:
    """The labels of a real dataset the library knows (its categories must be among them), else None."""
    name = dataset.replace("_", "-")
    return tables.dataset_categories(name) if name in tables.DATASETS else None


_TEMPLATES_CACHE: dict[tuple[str, int], Templates] = {}


def load_templates(path: str | Path = TEMPLATES_FILE) -> Templates:
    path = Path(path).resolve()
    key = (str(path), path.stat().st_mtime_ns)
    if key in _TEMPLATES_CACHE:
        return _TEMPLATES_CACHE[key]
    doc, probs = YamlDoc(path), Problems()
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
                fields = template_fields(t)
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
                            ok = template_fields(t) <= {"obj"}
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



def parse_file(path: Path, tmpl: Templates, load_real: Callable[[Path], BankData]) -> tuple[BankData, Problems]:
    """Parse one sign file (real or phantom); the caller raises or warns with the returned problems."""
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


def parse_sign(doc: YamlDoc, probs: Problems, p: tuple, item: Any, cats: tuple[str, ...],
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


def parse_selection(self: BankData, doc: YamlDoc, probs: Problems, p: tuple, sel: Any, c: str) -> None:
    """The expert ``selection`` of category ``c`` (ids with reasons) into ``self._selection``."""
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



def parse_phantom(doc: YamlDoc, probs: Problems, tmpl: Templates, load_real: Callable[[Path], BankData]) -> BankData:
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
        real = load_real(resolve(str(data["dataset"]), near=doc.path.parent))
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
