"""Reading a label table file: the checks every table of :mod:`.tables` and :mod:`.fastmri_plus` goes through.

A table is found (shipped under ``resources/``, or a path of the user's), parsed, has the columns
its reader needs, and holds one row per key; each problem is a :class:`TableError` naming the file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from ..errors import SdmadError
from ..io import RESOURCES


class TableError(SdmadError, ValueError):
    """A shipped (or user-given) table is missing, malformed, or lacks a column."""


def require_file(path: Path) -> Path:
    """``path`` if it is a file, else a :class:`TableError` saying how to restore it."""
    path = Path(path)
    if not path.is_file():
        if RESOURCES in path.resolve().parents:
            raise TableError(f"table file not found: {path}. It is shipped with sdmad_lite under resources/; "
                             "reinstall the package (pip install -e .) or restore the file from git.")
        raise TableError(f"table file not found: {path}; check the path you gave (a file of your own, "
                         "not one shipped with sdmad_lite)")
    return path


def no_conflicting_duplicates(df: pd.DataFrame, key: str, path: Path) -> pd.DataFrame:
    """One row per ``key``: exact duplicates are dropped; rows that disagree are an error."""
    dup = df[key].duplicated(keep=False)
    if not dup.any():
        return df
    conflict = df[dup].groupby(key).nunique(dropna=False).gt(1).any(axis=1)
    if conflict.any():
        ex = list(conflict[conflict].index[:3])
        raise TableError(f"{path}: {int(conflict.sum())} {key}(s) appear more than once with different labels "
                         f"(e.g. {ex}); keep one row per {key}")
    return df.drop_duplicates(subset=[key]).reset_index(drop=True)


def require_columns(df: pd.DataFrame, columns: Iterable[str], path: Path) -> None:
    """A :class:`TableError` naming the columns of ``columns`` that ``df`` lacks."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise TableError(f"{path}: missing column(s) {missing}; found {list(df.columns)}")


def read_csv(path: Path, columns: Sequence[str], **kwargs) -> pd.DataFrame:
    """A CSV table that has ``columns`` (``kwargs`` go to :func:`pandas.read_csv`)."""
    path = require_file(path)
    try:
        df = pd.read_csv(path, **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as e:
        raise TableError(f"{path}: cannot parse as CSV ({e})") from e
    require_columns(df, columns, path)
    return df
