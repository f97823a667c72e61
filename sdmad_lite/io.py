"""Files: atomic writes, checksums and the cache folders (one helper each).

Every file the library writes goes through :func:`atomic_write`: the content is written to a
temporary file in the same folder, then renamed over the target, so a reader (or a resumed run)
never sees half a file, and an interrupted write leaves the previous version intact.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from . import settings

PACKAGE_DIR = Path(__file__).resolve().parent
RESOURCES = PACKAGE_DIR / "resources"


def atomic_write(path: str | os.PathLike, data: str | bytes | Callable[[Path], None]) -> Path:
    """Write ``data`` to ``path`` atomically; ``data`` is text, bytes, or ``write(tmp_path)``
    (e.g. ``lambda p: torch.save(obj, p)``). The parent folder is created. Returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    os.close(fd)
    try:
        if callable(data):
            data(Path(tmp))
        elif isinstance(data, bytes):
            Path(tmp).write_bytes(data)
        else:
            Path(tmp).write_text(data, encoding="utf-8")
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return p


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 1) -> Path:
    """:func:`atomic_write` of ``obj`` as JSON (numpy scalars become floats)."""
    return atomic_write(path, json.dumps(obj, indent=indent, default=float))


def stable_hash(obj: Any, n: int = 16) -> str:
    """The one hash of settings in the library: sha256 of ``obj`` as canonical JSON (sorted keys), ``n``
    hex digits. Keys the result cache, a sweep's rows, the tasks of a process and the feature cache."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:n]


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, read in 1 MB chunks."""
    return file_hash(path, "sha256")


def file_hash(path: str | os.PathLike, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def cache_dir(*parts: str) -> Path:
    """A folder of the cache (``$SDMAD_CACHE`` or ``~/.cache/sdmad_lite``), created on use."""
    d = settings.cache_root().joinpath(*parts)
    d.mkdir(parents=True, exist_ok=True)
    return d
