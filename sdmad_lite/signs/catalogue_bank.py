"""The bank of a phantom world that has no sign file (the pair worlds, ``pairs0`` … ``pairs3``), built from
the phantom catalogue: per category one candidate per renderer sign it draws, worded as the catalogue's
description, all of them the expert selection; prompts in the templates of the renderer's modality."""
from __future__ import annotations

from pathlib import Path

from ..data.phantoms import catalogue
from .schema import TEMPLATES_FILE, BankData, Sign
from .templates import load_templates


def catalogue_bank_data(modality: str) -> BankData:
    """What a sign file would say for the catalogue modality ``modality``."""
    spec = catalogue.get_modality(modality)
    where = f"{catalogue.__file__}: {spec.name}"
    users = {sid: tuple(c for c in spec.categories if sid in spec.category_signs[c]) for sid in spec.signs}
    bank = BankData(name=f"phantom_{spec.name}", path=Path(catalogue.__file__), dataset=spec.name,
                    modality=spec.renderer or spec.name, title=spec.title, phantom=spec.name,
                    categories=tuple(spec.categories), templates_file=load_templates(TEMPLATES_FILE))
    for c in spec.categories:
        bank._names[c] = c.lower()
        bank._cands[c] = {sid: Sign(sid, spec.signs[sid].description, "visual", users[sid])
                          for sid in spec.category_signs[c]}
        bank._selection[c] = [(sid, "drawn by the renderer for this category") for sid in spec.category_signs[c]]
        bank._renders[c] = {sid: sid for sid in spec.category_signs[c]}
        bank._where.update({(c, sid): where for sid in spec.category_signs[c]})
        bank._cat_where[c] = where
    return bank
