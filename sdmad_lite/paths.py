"""Where things live: shipped resources and the local cache."""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
RESOURCES = PACKAGE_DIR / "resources"


def cache_dir() -> Path:
    """The feature/embedding cache: ``$SDMAD_CACHE`` or ``~/.cache/sdmad_lite`` (created on use)."""
    d = Path(os.environ.get("SDMAD_CACHE", Path.home() / ".cache" / "sdmad_lite"))
    d.mkdir(parents=True, exist_ok=True)
    return d
