"""The entries both kinds of sign file hold: a candidate sign and a category's expert selection."""
from __future__ import annotations

from typing import Any

from .schema import KINDS, N_SELECTED, BankData, Sign, _ID
from .yamlio import Problems, YamlDoc

def parse_sign(doc: YamlDoc, probs: Problems, p: tuple, item: Any, cats: tuple[str, ...],
               extra_keys: tuple[str, ...] = ()) -> Sign | None:
    """One candidate (``id``, ``text``, ``kind``) at ``p`` of ``doc``, or None after its problems are recorded."""
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
