"""Process pools: how many workers, spawned (never forked), ended with their parent, stopped at once on
Ctrl-C, kept between the calls of one process (:func:`kept_pool`); and :func:`ordered_batches`, work
computed ahead in such a pool. Light on purpose (no torch): a worker imports the module of the function it
runs, and a phantom-rendering worker should start in a second. (A spawned worker also re-runs the main
script's imports: from a notebook, ``python -m`` or ``python -c`` they are light, and so are the ``sdmad``
command's, whose script imports only :mod:`sdmad_lite.cli`.) A worker runs torch on its share of the cores
(:func:`share_threads`).
"""
from __future__ import annotations

import atexit
import contextlib
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterator

from . import settings


#: whether this process is a worker of a pool of this module (set by its initialiser)
_IN_WORKER = False
#: whether the user set torch's threads (``OMP_NUM_THREADS``) for this worker (set by its initialiser)
_USER_THREADS = False


def usable_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def core_share(n: int, cores: int | None = None) -> int:
    """The threads each of ``n`` processes (or tasks) running side by side gets of ``cores`` (default: the usable
    cores), at least one."""
    return max(1, (usable_cores() if cores is None else cores) // max(1, n))


def default_workers() -> int:
    """Worker processes: ``SDMAD_WORKERS`` or the usable cores (at most 8); 1 in a worker of a pool, whose pool
    has the other cores (a caller that knows better, such as :func:`~sdmad_lite.executor.warm_task`, says so)."""
    if _IN_WORKER:
        return 1
    return settings.workers(max(1, min(8, usable_cores())))


def user_set_threads() -> bool:
    """Whether the user set torch's threads (``OMP_NUM_THREADS``) for this process: in a pool's worker, what its
    parent said (the variable there may be the library's own, :func:`share_threads`); else the variable."""
    return _USER_THREADS if _IN_WORKER else "OMP_NUM_THREADS" in os.environ


def share_threads(threads: int) -> None:
    """Give torch ``threads`` threads in this process and in the processes it starts: through
    ``OMP_NUM_THREADS``, which torch reads when imported (a rendering worker never imports it), and directly
    when torch is already imported. The caller checks first that the user did not set them
    (:func:`user_set_threads`)."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def threads_for(n: int) -> Iterator[None]:
    """torch on ``n`` threads for a block, then as before: a pool's worker that builds the only task in progress
    encodes on the cores its pool leaves free (:func:`~sdmad_lite.executor.warm_task`). The user's
    ``OMP_NUM_THREADS`` wins; without torch imported, nothing to do."""
    torch = sys.modules.get("torch")
    if torch is None or user_set_threads():
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _init_worker(parent: int, threads: int, user: bool, every_s: float = 1.0) -> None:
    """Worker initialiser: torch gets ``threads`` threads, the pool's share of the cores (:func:`share_threads`),
    unless the user set them (``user``, decided by the parent: :func:`user_set_threads`); two workers each on
    every core's threads run torch several times slower (``benchmarks/bench_threads.py``). The worker ends when
    the process that started the pool is gone (killed, or interrupted before the pool could shut down), instead
    of staying alive with its memory. Ctrl-C is the parent's to act on (it stops the pool, :func:`stop_pool`):
    a worker ignores it, instead of printing a traceback (a Jupyter kernel's interrupt and shutdown signal its
    whole process group)."""
    global _IN_WORKER, _USER_THREADS
    _IN_WORKER, _USER_THREADS = True, user
    if not user:
        share_threads(threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes for runs, each with its share of the cores' threads. Spawned, not
    forked: a forked child of a process that has run torch's thread pools can hang. A worker ends when the
    parent dies."""
    return ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                               initargs=(os.getpid(), core_share(workers), user_set_threads()))


def stop_pool(ex: ProcessPoolExecutor) -> None:
    """End a pool at once (Ctrl-C, an error): runs not started are cancelled, the workers are terminated (a
    run in progress is lost; the result cache keeps every run that finished), nothing is waited for."""
    procs = list((getattr(ex, "_processes", None) or {}).values())
    ex.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(timeout=5)
        if proc.is_alive():  # SIGTERM not acted on within 5 s (a loaded machine): SIGKILL
            proc.kill()
            proc.join(timeout=5)


@contextlib.contextmanager
def running_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """:func:`process_pool` for a block: shut down normally when the block ends, stopped at once
    (:func:`stop_pool`) when it is left by an exception — Ctrl-C above all, which would otherwise wait for
    every run in progress to finish."""
    ex = process_pool(workers)
    try:
        yield ex
    except BaseException:
        stop_pool(ex)
        raise
    ex.shutdown(wait=True)


#: the pool :func:`kept_pool` keeps between calls, with what it was started for
_KEPT: dict = {}


def forwarded_env() -> dict[str, str]:
    """The variables that set up a run, which a worker needs to run as this process would: the library's
    settings, torch's threads and CPU kernels, the Hugging Face cache (never a token: ``HF_TOKEN`` stays on
    this machine; a remote Ray worker gets these and no others)."""
    return {k: v for k, v in os.environ.items()
            if k.startswith(("SDMAD_", "OMP_NUM_THREADS", "ATEN_"))
            or k in ("HF_HUB_OFFLINE", "HF_HOME", "HF_HUB_CACHE")}


def _started_for(workers: int) -> tuple:
    """What a kept pool's workers took from this process when they started: their number, the working folder
    and :func:`forwarded_env` (a worker started under other settings would run with those)."""
    return workers, os.getcwd(), tuple(sorted(forwarded_env().items()))


def close_kept_pool() -> None:
    """Shut the kept pool down (at exit, or before one of another size or under other settings starts)."""
    ex = _KEPT.pop("pool", None)
    _KEPT.clear()
    if ex is not None:
        ex.shutdown(wait=True, cancel_futures=True)


atexit.register(close_kept_pool)


@contextlib.contextmanager
def kept_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """:func:`running_pool`, but the pool is kept for the next call in this process while its size, working
    folder and settings stay the same: a notebook's second batch of runs does not start its workers again
    (each imports torch and open_clip, about ten seconds), and they keep the tasks they built. Left by an
    exception (Ctrl-C, a failed run), the pool is stopped at once and the next call starts a new one. A pool
    still held by a call that was never finished (a generator left suspended by an interrupt) is not shared:
    the next call gets a new one, and the old one is stopped by its holder."""
    key = _started_for(workers)
    ex = _KEPT.get("pool")
    if ex is None or _KEPT.get("key") != key or _KEPT.get("busy") or getattr(ex, "_broken", False):
        if not _KEPT.get("busy"):
            close_kept_pool()
        ex = process_pool(workers)
        _KEPT.update(key=key, pool=ex)
    _KEPT["busy"] = True
    try:
        yield ex
    except BaseException:
        if _KEPT.get("pool") is ex:
            _KEPT.clear()
        stop_pool(ex)
        raise
    if _KEPT.get("pool") is ex:
        _KEPT["busy"] = False
    else:  # another call replaced it while this one held it
        ex.shutdown(wait=True)


def _call_range(fn: Callable[[int], object], lo: int, hi: int) -> list:
    return [fn(i) for i in range(lo, hi)]


def ordered_batches(fn: Callable[[int], object], n: int, batch_size: int, workers: int = 1,
                    window: int = 4) -> Iterator[list]:
    """``[fn(i) for i in batch]`` for the consecutive batches of ``range(n)``, in order. With ``workers`` > 1 they
    are computed by that many spawned processes, ``window`` batches per worker at a time, while the caller
    waits; the caller then consumes them while the workers wait (a caller running torch would otherwise
    compete with them for the cores: its idle threads spin). ``fn`` must pickle, and importing its module
    should be light. With one worker, or a single batch, here, one by one. The results do not depend on
    ``workers``."""
    spans = [(lo, min(n, lo + batch_size)) for lo in range(0, n, batch_size)]
    if workers <= 1 or len(spans) <= 1:
        for lo, hi in spans:
            yield _call_range(fn, lo, hi)
        return
    step = workers * window
    with running_pool(min(workers, len(spans))) as ex:
        for w in range(0, len(spans), step):
            part = spans[w:w + step]
            yield from list(ex.map(_call_range, [fn] * len(part), [lo for lo, _ in part], [hi for _, hi in part]))
