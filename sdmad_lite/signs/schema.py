"""The prompt bank's data model: a sign, its kinds, the files' errors, the templates, the counts.

SD-MAD describes each anomaly category by radiological *signs*: an LLM writes 15-20 candidate
descriptions per category, experts keep 3-5 distinct ones, and the signs are inserted into
templates such as "an abnormal photo of {obj} with {sign}".
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SdmadError

SIGNS_DIR = Path(__file__).resolve().parent
TEMPLATES_FILE = SIGNS_DIR / "templates.yaml"
#: kinds of candidate: a visual sign of the modality, or what an LLM also writes: history,
#: symptoms, labs or treatment (``non_visual``), a finding of another modality or view
#: (``other_modality``), or something too vague to point at (``nonspecific``).
KINDS = ("visual", "non_visual", "other_modality", "nonspecific")
N_CANDIDATES = (15, 20)
N_SELECTED = (3, 5)
_ID = re.compile(r"^[a-z0-9][a-z0-9_]*$")


class SignFileError(SdmadError, ValueError):
    """A sign or template file is invalid; the message lists ``file:line: problem`` lines."""


class SignFileNotFoundError(SdmadError, FileNotFoundError):
    """No sign file of that name or path (the message lists the shipped banks)."""


class SignFileWarning(UserWarning):
    """A sign file is valid but outside the paper's counts (15-20 candidates, 3-5 selected)."""


@dataclass(frozen=True)
class Sign:
    """One candidate sign of a category.

    ``categories`` lists the categories of the bank that use the sign (more than one for a
    shared sign); ``reason`` is set on the signs returned by :meth:`~sdmad_lite.signs.bank.SignBank.selected`.
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



@dataclass(frozen=True)
class Templates:
    """``templates.yaml``: sign templates, category-name templates, per-modality obj and anchors."""

    path: Path
    sign: tuple[str, ...]
    category: tuple[str, ...]
    modalities: dict[str, dict[str, Any]]  # name -> {"obj": str, "normal": [...], "abnormal": [...]}
    where: dict[str, str]  # template or anchor text -> "file:line"


@dataclass
class BankData:
    """What a sign file says, as parsed (:mod:`.parser`); :class:`~sdmad_lite.signs.bank.SignBank` adds the queries."""

    name: str = ""
    path: Path = Path()
    dataset: str = ""
    modality: str = ""
    title: str = ""
    phantom: str | None = None
    categories: tuple[str, ...] = ()
    templates_file: Templates | None = None
    _names: dict[str, str] = field(default_factory=dict)
    _cands: dict[str, dict[str, Sign]] = field(default_factory=dict)
    _selection: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    _renders: dict[str, dict[str, str]] = field(default_factory=dict)
    _where: dict[tuple[str, str], str] = field(default_factory=dict)  # (category, id) -> "file:line"
    _cat_where: dict[str, str] = field(default_factory=dict)
