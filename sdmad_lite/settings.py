"""Every environment variable the library reads, read and validated here and nowhere else.

An empty value means "not set" (``SDMAD_CACHE=`` is the default cache, never the working
directory). A bad value raises :class:`SettingError` naming the variable and the fix.

=========================  =====================================================================
``SDMAD_PROFILE``          offline (default), colab or paper: the scale of every run
``SDMAD_CACHE``            folder of the feature, text-embedding and result caches
                           (default ``~/.cache/sdmad_lite``)
``SDMAD_WORKERS``          processes for parallel runs (default: the usable cores, at most 8)
``SDMAD_NO_RESULT_CACHE``  1: never reuse a finished run from the result cache
``SDMAD_STATIC``           1: the explorers draw one static figure instead of widgets (the book)
``SDMAD_RECOMPUTE``        1: a chapter recomputes every row of a shipped results table instead of
                           reading it and checking a sample
=========================  =====================================================================
"""
from __future__ import annotations

import os
from pathlib import Path
from .errors import SdmadError

PROFILE = "SDMAD_PROFILE"
CACHE = "SDMAD_CACHE"
WORKERS = "SDMAD_WORKERS"
NO_RESULT_CACHE = "SDMAD_NO_RESULT_CACHE"
STATIC = "SDMAD_STATIC"
RECOMPUTE = "SDMAD_RECOMPUTE"
ALL = (PROFILE, CACHE, WORKERS, NO_RESULT_CACHE, STATIC, RECOMPUTE)


class SettingError(SdmadError, ValueError):
    """An environment variable of the library holds a value it cannot use."""


def raw(name: str) -> str | None:
    """The stripped value of ``name``, or None when it is unset or empty."""
    if name not in ALL:
        raise KeyError(f"{name} is not a setting of sdmad_lite ({', '.join(ALL)})")
    v = os.environ.get(name, "").strip()
    return v or None


def _flag(name: str) -> bool:
    v = raw(name)
    if v is None:
        return False
    if v.lower() in ("1", "true", "yes", "on"):
        return True
    if v.lower() in ("0", "false", "no", "off"):
        return False
    raise SettingError(f"{name}={v!r}: expected 1 or 0 (or leave it unset)")


def profile_name() -> str | None:
    """``SDMAD_PROFILE`` lower-cased, or None (the caller's default applies)."""
    v = raw(PROFILE)
    return v.lower() if v else None


def cache_root() -> Path:
    """The cache folder: ``SDMAD_CACHE`` or ``~/.cache/sdmad_lite`` (created, checked writable)."""
    v = raw(CACHE)
    d = Path(v).expanduser() if v else Path.home() / ".cache" / "sdmad_lite"
    if d.exists() and not d.is_dir():
        raise SettingError(f"{CACHE}={str(d)!r} is a file, not a folder: point {CACHE} at a folder (or unset it)")
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SettingError(f"{CACHE}={str(d)!r}: cannot create the cache folder ({e.strerror}); "
                           f"point {CACHE} at a writable folder (or unset it)") from None
    if not os.access(d, os.W_OK):
        raise SettingError(f"{CACHE}={str(d)!r} is not writable; point {CACHE} at a writable folder (or unset it)")
    return d


def workers(default: int) -> int:
    """``SDMAD_WORKERS`` (a whole number ≥ 1), else ``default``."""
    v = raw(WORKERS)
    if v is None:
        return default
    if not v.isdigit() or int(v) < 1:
        raise SettingError(f"{WORKERS}={v!r}: expected a whole number ≥ 1 (or leave it unset)")
    return int(v)


def result_cache_enabled() -> bool:
    return not _flag(NO_RESULT_CACHE)


def static_figures() -> bool:
    """True when the explorers must draw a static figure (``SDMAD_STATIC=1``, the book build)."""
    return _flag(STATIC)


def recompute_shipped() -> bool:
    """True when a chapter must recompute a shipped results table (``SDMAD_RECOMPUTE=1``)."""
    return _flag(RECOMPUTE)


def describe() -> dict[str, str]:
    """Each setting and its current value (for ``sdmad info`` and the README)."""
    return {name: (raw(name) or "(unset)") for name in ALL}
