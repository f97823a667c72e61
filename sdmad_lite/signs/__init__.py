"""The prompt bank: radiological signs per category, the expert selection, and prompt templates.

:mod:`.schema` (the data model), :mod:`.yamlio` (YAML with line numbers), :mod:`.templates`,
:mod:`.entries`, :mod:`.phantom_parser` and :mod:`.parser` (validation of the files), :mod:`.tokens`
(the 77-token check), :mod:`.catalogue_bank` (the pair worlds' banks), :mod:`.summary` (counts and
tables), :mod:`.bank` (:class:`SignBank`, the queries). The YAML files of this
folder are the banks.
"""
from .bank import SignBank
from .templates import load_templates
from .schema import KINDS, Sign, SignFileError, SignFileWarning, Templates

__all__ = ["KINDS", "Sign", "SignBank", "SignFileError", "SignFileWarning", "Templates", "load_templates"]
