"""Arguments checked when they are parsed, and output paths checked before any compute.

Each check raises :class:`ArgumentError`, whose one-line message names the option and the fix.
"""
from __future__ import annotations

import argparse
import os
import stat
import tempfile
from pathlib import Path

from ..config import ConfigError
from ..io import OutputPathError, output_target


class ArgumentError(ConfigError):
    """A command-line argument is out of range, malformed, or names an unusable output path."""


def positive_int(text: str) -> int:
    """An argparse type: a whole number ≥ 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ 1, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ 1, got {v}")
    return v


def threads(text: str) -> int:
    """An argparse type: a number of threads, 0 (the library's default) … 1024."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of threads, got {text!r}") from None
    if not 0 <= v <= 1024:
        raise argparse.ArgumentTypeError(f"expected 0 (the default) … 1024 threads, got {v}")
    return v


def image_side(text: str) -> int:
    """An argparse type: an image side in pixels, 16 … 4096 (as ``data.image_size`` in a config)."""
    v = positive_int(text)
    if not 16 <= v <= 4096:
        raise argparse.ArgumentTypeError(f"expected a side of 16 … 4096 pixels, got {v}")
    return v


def fraction(text: str) -> float:
    """An argparse type: a number in [0, 1]."""
    v = _number(text)
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {v:g}")
    return v


def non_negative(text: str) -> float:
    """An argparse type: a number ≥ 0."""
    v = _number(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a number ≥ 0, got {v:g}")
    return v


def positive(text: str) -> float:
    """An argparse type: a number > 0."""
    v = _number(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {v:g}")
    return v


def _number(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return v


def seeds(text: str) -> list[int]:
    """An argparse type: ``"0-9"``, ``"0,1,2"`` or a mix -> distinct seeds in the order given."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        a, sep, b = part.partition("-")
        try:
            lo, hi = int(a), int(b) if sep else int(a)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{part!r} is not a seed or a range: seeds are whole numbers ≥ 0, e.g. 0-9 or 0,1,2") from None
        if hi < lo:
            raise argparse.ArgumentTypeError(f"the range {part!r} is empty (write the lower seed first, e.g. 0-9)")
        out += [s for s in range(lo, hi + 1) if s not in out]
    if not out:
        raise argparse.ArgumentTypeError(f"no seed in {text!r}; give e.g. 0-9 or 0,1,2")
    return out


def shots(text: str) -> list[int]:
    """An argparse type: comma-separated shot counts ≥ 1, distinct."""
    out: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if part:
            k = positive_int(part)
            if k not in out:
                out.append(k)
    if not out:
        raise argparse.ArgumentTypeError(f"no shot count in {text!r}; give e.g. 4 or 1,2,4,8")
    return out


def output_dir(path: str | os.PathLike, option: str) -> Path:
    """``path`` can be a folder to write into: not a file or another non-folder, not under a file, and a file
    can really be created there or in the nearest folder above it that exists (created later)."""
    p = Path(path).expanduser()
    q = _nearest(p)
    if q.exists() and not q.is_dir():
        if q == p:
            what = "is a file" if q.is_file() else f"is a {_kind(q)}"
            raise ArgumentError(f"{option} {p} {what}, not a folder; give the path of a folder")
        what = f"the file {q}" if q.is_file() else f"{q}, which is not a folder"
        raise ArgumentError(f"{option} {p} is under {what}; give the path of a folder")
    _probe(q, p, option, "folder")
    return p


def output_file(path: str | os.PathLike, option: str) -> Path:
    """``path`` can be a file to (re)write atomically: a regular file or none yet (a symbolic link is written
    through to its target), not under a file, in a folder where a file can really be created."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise ArgumentError(f"{option} {p} is a folder; give the path of a file (e.g. {p / 'results.csv'})")
    try:
        target = output_target(p)
    except OutputPathError as e:
        raise ArgumentError(f"{option}: {e}") from None
    q = _nearest(target.parent)
    if q.exists() and not q.is_dir():
        what = f"the file {q}" if q.is_file() else f"{q}, which is not a folder"
        raise ArgumentError(f"{option} {p} is under {what}; give another path")
    _probe(q, p, option, "place")
    return p


def _kind(p: Path) -> str:
    """What a path that is neither a file nor a folder is, in words."""
    mode = p.stat().st_mode
    for test, name in ((stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISFIFO, "FIFO (named pipe)"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


def _probe(q: Path, p: Path, option: str, what: str) -> None:
    """Create and delete a file in the folder ``q``: what ``os.access`` says is not what the file system does
    (root in ``/proc``, a read-only mount, a full quota)."""
    try:
        fd, tmp = tempfile.mkstemp(dir=q, prefix=".sdmad-probe.")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        where = "" if q == p else f" (it would be created in {q})"
        raise ArgumentError(f"{option} {p}: cannot write there{where}: {e.strerror}; give a writable {what}") from None


def _nearest(p: Path) -> Path:
    """``p`` or its nearest ancestor that exists."""
    while not p.exists() and p != p.parent:
        p = p.parent
    return p
