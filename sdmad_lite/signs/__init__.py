"""The prompt bank: radiological signs per category, the expert selection, and prompt templates.

See :mod:`sdmad_lite.signs.bank` and the YAML files of this folder.
"""
from .bank import (
    KINDS,
    Sign,
    SignBank,
    SignFileError,
    SignFileWarning,
    Templates,
    add_subcommand,
    load_templates,
)

__all__ = ["KINDS", "Sign", "SignBank", "SignFileError", "SignFileWarning", "Templates", "add_subcommand",
           "load_templates"]
