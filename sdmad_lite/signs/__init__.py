"""The prompt bank: radiological signs per category, the expert selection, and prompt templates.

:mod:`.schema` (the data model), :mod:`.yamlio` (YAML with line numbers), :mod:`.parser`
(validation of the files), :mod:`.bank` (:class:`SignBank`, the queries). The YAML files of this
folder are the banks.
"""
from .bank import SignBank
from .parser import load_templates
from .schema import KINDS, Sign, SignFileError, SignFileWarning, Templates

__all__ = ["KINDS", "Sign", "SignBank", "SignFileError", "SignFileWarning", "Templates", "load_templates"]
