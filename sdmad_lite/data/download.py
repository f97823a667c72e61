"""Explicit, resumable, checksummed downloads (never run at import time).

:func:`download` streams to ``dest + ".part"``, resumes an existing ``.part`` with an HTTP
``Range`` request, verifies the checksum, and only then renames the file to ``dest``
(``os.replace``), so a file under the final name is always complete and verified. On a
checksum mismatch the ``.part`` is deleted (resuming it could never succeed) and
:class:`ChecksumError` says what was expected and what arrived. After a network failure the
``.part`` is kept, and the next call resumes it.
"""
from __future__ import annotations

import http.client
import lzma
import os
import zlib
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from ..io import file_hash
from ..errors import SdmadError

USER_AGENT = "sdmad-lite-download/0.1"


class DownloadError(SdmadError, RuntimeError):
    """The download failed (network, HTTP status, size)."""


class ChecksumError(DownloadError):
    """The downloaded bytes do not match the expected checksum."""


def _expected(sha256: str | None, md5: str | None) -> tuple[str, str] | None:
    if sha256 and md5:
        raise ValueError("give sha256 or md5, not both")
    if sha256:
        return "sha256", sha256.lower()
    if md5:
        return "md5", md5.lower()
    return None


def download(url: str, dest: str | os.PathLike, sha256: str | None = None, resume: bool = True,
             *, md5: str | None = None, timeout: float = 60.0, chunk_size: int = 1 << 20,
             progress: bool = False) -> Path:
    """Download ``url`` to ``dest``; return ``dest``.

    If ``dest`` exists and matches the checksum (or no checksum is given) nothing is fetched.
    If it exists with a wrong checksum, :class:`ChecksumError` is raised and the file is left
    for you to inspect or delete. ``md5`` is accepted for sources that publish only MD5
    (MedMNIST).
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    check = _expected(sha256, md5)
    if dest.exists():
        if check is None:
            return dest
        got = file_hash(dest, check[0])
        if got == check[1]:
            return dest
        raise ChecksumError(f"{dest} exists but its {check[0]} is {got}, expected {check[1]}; "
                            "delete it and run again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    offset = part.stat().st_size if (resume and part.exists()) else 0

    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    req = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # nothing left to fetch: the .part is already complete
            resp = None
        else:
            raise DownloadError(f"HTTP {e.code} {e.reason} for {url}") from e
    except (urllib.error.URLError, OSError) as e:
        raise DownloadError(f"cannot reach {url}: {e}; check the URL and your connection, then "
                            f"run again (a partial file is resumed from {part})") from e

    if resp is not None:
        with resp:
            status = getattr(resp, "status", 200)
            if offset and status == 206:
                cr = resp.headers.get("Content-Range", "")
                if not cr.startswith(f"bytes {offset}-"):
                    raise DownloadError(f"{url}: server resumed at the wrong place ({cr!r}); "
                                        f"delete {part} and run again")
                mode = "ab"
            else:  # 200: fresh download (server ignored the Range header, or no .part)
                offset, mode = 0, "wb"
            length = resp.headers.get("Content-Length")
            expected_size = offset + int(length) if length is not None else None
            written = offset
            try:
                with open(part, mode) as fh:
                    while block := resp.read(chunk_size):
                        fh.write(block)
                        written += len(block)
                        if progress:
                            total = f"/{expected_size / 1e6:.1f}" if expected_size else ""
                            print(f"\r{dest.name}: {written / 1e6:.1f}{total} MB", end="", file=sys.stderr)
            except (OSError, http.client.HTTPException) as e:  # e.g. IncompleteRead, reset
                raise DownloadError(f"download of {url} interrupted after {written:,} bytes ({e}); "
                                    f"run again to resume from {part}") from e
            finally:
                if progress:
                    print(file=sys.stderr)
            if expected_size is not None and written != expected_size:
                raise DownloadError(f"{url}: got {written:,} of {expected_size:,} bytes; "
                                    f"run again to resume from {part}")

    if check is not None:
        got = file_hash(part, check[0])
        if got != check[1]:
            part.unlink()
            raise ChecksumError(f"checksum mismatch for {url}: {check[0]} {got}, expected {check[1]}; "
                                "the partial file was deleted — run again, and if it persists the "
                                "source has changed")
    os.replace(part, dest)
    return dest


def extract_tar(archive: str | os.PathLike, dest: str | os.PathLike,
                select: Callable[[str], bool] | None = None) -> int:
    """Extract a (compressed) tar safely into ``dest``; return the number of files extracted.

    Members with absolute paths, ``..``, links or device files are refused (Python's
    ``data`` filter where available). ``select(name)`` picks members (default: all).
    """
    import tarfile

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    n = 0
    try:
        with tarfile.open(archive) as tar:
            for m in tar:
                if select is not None and not select(m.name):
                    continue
                target = (dest / m.name).resolve()
                if not (m.isfile() or m.isdir()) or not target.is_relative_to(root):
                    raise DownloadError(f"{archive}: refusing unsafe member {m.name!r}")
                if hasattr(tarfile, "data_filter"):
                    tar.extract(m, dest, filter="data")
                else:  # pragma: no cover - Python < 3.11.4
                    tar.extract(m, dest)
                n += m.isfile()
    except (tarfile.ReadError, EOFError, zlib.error, lzma.LZMAError, OSError) as e:
        if isinstance(e, DownloadError) or getattr(e, "errno", None) is not None:  # ours, or a real I/O error
            raise
        raise DownloadError(_not_a_tar(Path(archive), e, n)) from None
    return n


def _not_a_tar(archive: Path, e: BaseException, extracted: int) -> str:
    """Why ``archive`` could not be extracted: an HTML page saved under its name, or an archive cut short."""
    try:
        with open(archive, "rb") as f:
            head = f.read(512).lstrip().lower()
    except OSError as err:
        return f"{archive}: cannot be read ({err.strerror})"
    if head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head")) or b"<html" in head:
        return (f"{archive} is an HTML page, not a tar archive (a login, error or quota page saved under the "
                "archive's name); delete it and download the archive again (see sdmad_lite/data_scripts/README.md)")
    if extracted or isinstance(e, (EOFError, zlib.error, lzma.LZMAError)) or "unexpected end" in str(e).lower():
        return (f"{archive} is cut short or damaged ({type(e).__name__}: {str(e)[:80]}) after {extracted} file(s); "
                "delete it and download it again (a checksummed download resumes a cut one)")
    return f"{archive} is not a tar archive ({str(e)[:80]}); delete it and download it again"
