"""Files: atomic writes, checksums and the cache folders (one helper each).

Every file the library writes goes through :func:`atomic_write`: the content is written to a
temporary file in the same folder, then renamed over the target, so a reader (or a resumed run)
never sees half a file, and an interrupted write leaves the previous version intact.

Only regular files are replaced. A target that is a device, a FIFO, a socket or a folder is refused
(:class:`OutputPathError`): renaming over it would swap ``/dev/null`` for a file. A symbolic link is
written *through*: its target is replaced and the link stays (a results file linked into another
folder keeps being the one the link shows). A write that fails for want of space or permission is
one :class:`WriteError` naming the file; the previous version stays intact.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from . import settings
from .errors import SdmadError

PACKAGE_DIR = Path(__file__).resolve().parent
RESOURCES = PACKAGE_DIR / "resources"


class OutputPathError(SdmadError, OSError):
    """An output path is not a regular file (a device, FIFO, socket or folder) or cannot be written."""


class WriteError(SdmadError, OSError):
    """Writing a file failed for want of disk space or permission; the previous version is intact."""


class LockedError(SdmadError, BlockingIOError):
    """Another process holds the lock of a file this one would write."""


#: what the file types of ``stat`` are called in messages
_KINDS = ((stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"), (stat.S_ISFIFO, "FIFO (named pipe)"),
          (stat.S_ISSOCK, "socket"), (stat.S_ISDIR, "folder"))


def output_target(path: str | os.PathLike) -> Path:
    """The regular file that writing ``path`` replaces: ``path`` itself, or the final target of a symbolic
    link. An existing target that is not a regular file is an :class:`OutputPathError`."""
    p = Path(path)
    target = Path(os.path.realpath(p)) if p.is_symlink() else p
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        return target
    except OSError as e:
        raise OutputPathError(f"cannot write {p}: {e.strerror}; give the path of a regular file") from None
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "special file")
        via = f" (the symbolic link {p} points to it)" if target != p else ""
        raise OutputPathError(f"{target} is a {kind}{via}, not a regular file: sdmad writes a file by replacing it, "
                              "so it never writes to one; give the path of a regular file")
    return target


def _write_failed(p: Path, e: BaseException) -> SdmadError | None:
    """The :class:`WriteError` for a write of ``p`` that failed with ``e`` when the cause is the place (space,
    permission, a read-only or pseudo file system), else None (a bug: re-raised as it is)."""
    code = getattr(e, "errno", None)
    if code in (errno.ENOSPC, errno.EDQUOT) or (isinstance(e, RuntimeError) and "write failed" in str(e)):
        return WriteError(f"writing {p} failed: no space left on its device; free some space (or point --out or "
                          "SDMAD_CACHE elsewhere) and run again (the previous version of the file is intact)")
    if code in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ENOTDIR, errno.EINVAL, errno.EIO):
        return WriteError(f"cannot write {p}: {os.strerror(code)}; give a place where you can write files")
    return None


def _mode_for(target: Path) -> int:
    """The permissions the written file gets: those of the file it replaces, else what ``open`` would give a
    new file (0666 less the umask), not ``mkstemp``'s 0600."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def atomic_write(path: str | os.PathLike, data: str | bytes | Callable[[Path], None]) -> Path:
    """Write ``data`` to ``path`` atomically; ``data`` is text, bytes, or ``write(tmp_path)``
    (e.g. ``lambda p: torch.save(obj, p)``). The parent folder is created. A symbolic link is written
    through to its target; a target that is not a regular file is refused (:func:`output_target`); a
    write that fails for want of space or permission is a :class:`WriteError`. Returns the path."""
    p = Path(path)
    target = output_target(p)
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
        if callable(data):
            data(Path(tmp))
        elif isinstance(data, bytes):
            Path(tmp).write_bytes(data)
        else:
            Path(tmp).write_text(data, encoding="utf-8")
        os.chmod(tmp, _mode_for(target))
        os.replace(tmp, target)
    except (OSError, RuntimeError) as e:
        if isinstance(e, SdmadError):
            raise
        err = _write_failed(p, e)
        if err is None:
            raise
        raise err from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return p


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, what: str) -> Iterator[Path]:
    """Hold ``NAME.lock`` beside ``path`` (an advisory ``flock``) while the block runs: a second process that
    would write ``path`` at the same time gets a :class:`LockedError` naming ``what`` holds it. The lock ends
    with the block, or with the process however it ends; the file is removed when the block ends."""
    lock = Path(path).with_name(Path(path).name + ".lock")
    while True:
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise WriteError(f"cannot create the lock file {lock}: {e.strerror}; give a place where you can write "
                             "files") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LockedError(f"{path} is being written by {what} in another process (it holds {lock}); wait for "
                              "it to finish, or choose another --out") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # its holder removed it while we opened it: lock the file now at that path
    try:
        yield lock
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)


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
