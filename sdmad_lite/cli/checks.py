"""Arguments checked when they are parsed, and output paths checked before any compute.

Each check raises :class:`ArgumentError`, whose one-line message names the option and the fix.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..config import ConfigError


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
    """``path`` can be a folder to write into: not a file, not under a file, writable (created later)."""
    p = Path(path).expanduser()
    q = _nearest(p)
    if q.is_file():
        what = "is a file, not a folder" if q == p else f"is under the file {q}"
        raise ArgumentError(f"{option} {p} {what}; give the path of a folder")
    if not os.access(q, os.W_OK):
        where = "the folder is not writable" if q == p else f"cannot create it in {q} (permission denied)"
        raise ArgumentError(f"{option} {p}: {where}; give a writable folder")
    return p


def output_file(path: str | os.PathLike, option: str) -> Path:
    """``path`` can be a file to (re)write atomically: not a folder, not under a file, in a writable folder."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise ArgumentError(f"{option} {p} is a folder; give the path of a file (e.g. {p / 'results.csv'})")
    q = _nearest(p.parent)
    if q.is_file():
        raise ArgumentError(f"{option} {p} is under the file {q}; give another path")
    if not os.access(q, os.W_OK):
        raise ArgumentError(f"{option} {p}: cannot write in {q} (permission denied); give a writable place")
    return p


def _nearest(p: Path) -> Path:
    """``p`` or its nearest ancestor that exists."""
    while not p.exists() and p != p.parent:
        p = p.parent
    return p
