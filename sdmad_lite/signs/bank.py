"""The sign bank: candidate radiological signs, the expert selection, and the prompts.

SD-MAD (sections "sign-driven prompts" and "sign selection") describes each anomaly category
by radiological *signs*: an LLM writes 15-20 candidate descriptions per category, experts keep
3-5 distinct ones, and the signs are inserted into templates such as "an abnormal photo of
{obj} with {sign}". At inference, sign selection (``sdmad_lite.selection``) keeps the signs
that align with the images and drops the others.

The files (read by :mod:`.parser`, :mod:`.phantom_parser` and :mod:`.templates`, line numbers by :mod:`.yamlio`):

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

Loading also checks every prompt against CLIP's 77-token context (:mod:`.tokens`).
Text embeddings of the prompts are cached beside the image features (``sdmad_lite.features``).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..models.backbone import Backbone
from . import parser
from .catalogue_bank import catalogue_bank_data
from .schema import TEMPLATES_FILE, BankData, Sign
from .summary import bank_frame, bank_stats
from .templates import load_templates
from .tokens import prompts_over_context
from .yamlio import Problems, template_fields


class SignBank(BankData):
    """The signs and prompts of one dataset (real) or one phantom modality.

    Load with :meth:`SignBank.load`; the bank is read-only. Categories keep the file's order
    (a phantom bank: the catalogue's order).
    """

    _LOADED: dict[tuple, "SignBank"] = {}  # loaded files, keyed by (path, mtime, templates, mtime, check_tokens)

    available = staticmethod(parser.available)
    resolve = staticmethod(parser.resolve)

    @classmethod
    def load(cls, name: str | Path, templates: str | Path | None = None, check_tokens: bool = True) -> "SignBank":
        """Load and validate a sign file: a stem of :meth:`available` or a path.

        A phantom file's ``dataset`` is looked up next to it first, then among the shipped
        files. ``check_tokens`` checks every prompt against CLIP's 77-token context.
        """
        path = parser.resolve(name)
        tpath = Path(templates).resolve() if templates else TEMPLATES_FILE
        key = (str(path), path.stat().st_mtime_ns, str(tpath), tpath.stat().st_mtime_ns, check_tokens)
        if key not in cls._LOADED:
            tmpl = load_templates(tpath)
            data, probs = parser.parse_file(path, tmpl, lambda name, near: cls.load(parser.resolve(name, near), tpath,
                                                                                    check_tokens))
            probs.raise_if_any(str(path))
            bank = cls(**{k: getattr(data, k) for k in BankData.__dataclass_fields__})
            if check_tokens:
                probs.errors += prompts_over_context(bank)
                probs.raise_if_any(str(path))
            probs.emit_warnings()
            cls._LOADED[key] = bank
        return cls._LOADED[key]

    @classmethod
    def from_catalogue(cls, modality: str) -> "SignBank":
        """The bank of a phantom world that has no sign file (the pair worlds, ``pairs0`` … ``pairs3``):
        :func:`~sdmad_lite.signs.catalogue_bank.catalogue_bank_data`, its prompts checked."""
        key = ("catalogue", modality)
        if key not in cls._LOADED:
            data = catalogue_bank_data(modality)
            bank = cls(**{k: getattr(data, k) for k in BankData.__dataclass_fields__})
            probs = Problems()
            probs.errors += prompts_over_context(bank)
            probs.raise_if_any(data._cat_where[data.categories[0]] if data.categories else str(data.path))
            cls._LOADED[key] = bank
        return cls._LOADED[key]

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
        """The expert selection of ``cat`` (3–4 signs in the shipped banks), each with its ``reason``."""
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
            if "sign" not in template_fields(t):
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
        """Counts for tables: candidates, selected, non-visual, shared, prompts, not-drawn share (:mod:`.summary`)."""
        return bank_stats(self)

    def distinct_signs(self) -> pd.DataFrame:
        """One row per distinct candidate sign of the bank (a shared sign once): id, text, kind, the
        categories that list it, those that select it, the renderer sign it describes, shared."""
        rows: dict[str, dict] = {}
        for c in self.categories:
            r = self.renders(c)
            sel = {s.id for s in self.selected(c)}
            for s in self.candidates(c):
                row = rows.setdefault(s.id, {"id": s.id, "text": s.text, "kind": s.kind, "categories": [],
                                             "selected_in": [], "renders": None})
                row["categories"].append(c)
                if s.id in sel:
                    row["selected_in"].append(c)
                row["renders"] = row["renders"] or r.get(s.id)
        table = pd.DataFrame(rows.values())
        table["shared"] = table["categories"].map(len) > 1
        return table

    def sign_embeddings(self, backbone: Backbone, cached: bool = True) -> tuple[list[str], torch.Tensor]:
        """Ids and embeddings ``(N, D)`` of :meth:`distinct_signs`: the normalised mean of each sign's
        prompts over the templates, as SD-MAD's text bank embeds them (``cached=False`` encodes
        afresh: a backbone with random weights has no reusable cache key)."""
        prompts: dict[str, list[str]] = {}
        for c in self.categories:
            prompts.update(self.sign_prompts(c, "all"))
        ids = list(self.distinct_signs()["id"])
        if cached:
            return ids, torch.stack([backbone.mean_text(prompts[i]) for i in ids])
        flat = [q for i in ids for q in prompts[i]]
        with torch.no_grad():
            e = backbone.encode_text(flat).reshape(len(ids), len(self.templates), -1)
        return ids, F.normalize(e.mean(1), dim=-1)

    def category_means(self, ids: Sequence[str], embeddings: torch.Tensor | np.ndarray,
                       signs: str = "selected") -> np.ndarray:
        """t̄_c per category ``(C, D)``: the normalised mean of the embeddings of its ``signs``
        ("selected": the expert selection; "all": every candidate), rows of ``embeddings`` by ``ids``."""
        e = np.asarray(embeddings)
        index = {i: k for k, i in enumerate(ids)}
        m = np.stack([e[[index[s.id] for s in self._resolve_signs(c, signs)]].mean(0) for c in self.categories])
        return m / np.linalg.norm(m, axis=1, keepdims=True)

    def to_frame(self) -> pd.DataFrame:
        """One row per (category, candidate): text, kind, shared, selected, reason, renders (:mod:`.summary`)."""
        return bank_frame(self)
