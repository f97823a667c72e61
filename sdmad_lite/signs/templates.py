"""``templates.yaml``: the sign templates, the category-name templates of the zero-shot baseline, and per
modality the object word and the normal / abnormal anchor prompts (each checked, ``file:line`` errors)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .schema import TEMPLATES_FILE, Templates
from .yamlio import Problems, YamlDoc, template_fields

_TEMPLATES_CACHE: dict[tuple[str, int], Templates] = {}


def load_templates(path: str | Path = TEMPLATES_FILE) -> Templates:
    """The templates file, checked (once per file and modification time)."""
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
