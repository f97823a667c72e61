"""The one base class of the library's errors.

Every error that a user can fix (a bad config, file, setting, data set, checkpoint or run folder)
is a :class:`SdmadError`; the ``sdmad`` command turns each into one line naming the problem and the
fix, and only a true bug shows a traceback. Each subclass also derives from the built-in class
that describes it (``ValueError``, ``OSError``, ...), so ``except ValueError`` keeps working.
"""
from __future__ import annotations


class SdmadError(Exception):
    """An error of sdmad_lite that the user can fix; its message names the problem and the fix."""


class ConfigError(SdmadError, ValueError):
    """A configuration problem the user can fix (unknown key, wrong type, value out of range,
    unknown profile or method); the message names the key and, when read from a file, the file."""
