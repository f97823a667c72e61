"""A bank's counts and its table of candidates (``sdmad signs``, the prompt-bank chapter)."""
from __future__ import annotations

from typing import Any

import pandas as pd


def bank_stats(bank: Any) -> dict[str, Any]:
    """Counts of ``bank`` (a :class:`~sdmad_lite.signs.bank.SignBank`): candidates, selected, non-visual,
    shared, prompts, and for a phantom bank the candidates the renderer does not draw."""
    cats = bank.categories
    n_cand = sum(len(bank._cands[c]) for c in cats)
    n_sel = sum(len(bank._selection.get(c, [])) for c in cats)
    out: dict[str, Any] = {
        "bank": bank.name,
        "kind": f"phantom {bank.phantom}" if bank.phantom else "real",
        "categories": len(cats),
        "candidates": n_cand,
        "not_visual": sum(not s.visual for c in cats for s in bank._cands[c].values()),
        "selected": n_sel,
        "shared": len(bank.shared_signs()),
        "templates": len(bank.templates),
        "selected_prompts": n_sel * len(bank.templates),
        "all_prompts": len(bank.all_prompts()),
    }
    if bank.is_phantom:
        nd = sum(v is None for c in cats for v in bank.renders(c).values())
        out["not_drawn"] = nd
        out["not_drawn_share"] = round(nd / n_cand, 3)
        out["selected_not_drawn"] = sum(bank._renders[c].get(i) is None for c in cats for i, _ in bank._selection[c])
    return out


def bank_frame(bank: Any) -> pd.DataFrame:
    """One row per (category, candidate) of ``bank``: text, kind, shared, selected, reason, renders."""
    rows = []
    for c in bank.categories:
        reasons = dict(bank._selection.get(c, []))
        r = bank.renders(c)
        for s in bank._cands[c].values():
            rows.append({
                "category": c,
                "id": s.id,
                "text": s.text,
                "kind": s.kind,
                "shared_with": ", ".join(x for x in s.categories if x != c),
                "selected": s.id in reasons,
                "reason": reasons.get(s.id, ""),
                "renders": r.get(s.id) if bank.is_phantom else None,
            })
    return pd.DataFrame(rows)
