"""Many runs at once: the one executor of :func:`run_many` and the sweeps — a local process pool or Ray.

Every run seeds itself and trains on one thread (:class:`~sdmad_lite.train.one_thread`), so runs in
parallel processes use the cores that one run alone leaves idle, and the rows do not depend on the
number of workers. Runs already in the result cache are answered at once.
"""
from __future__ import annotations

import os
import sys
from concurrent.futures import as_completed
from typing import Iterator, Sequence

from tqdm import tqdm

from . import cache, methods, settings
from .config import ExperimentConfig
from .errors import ConfigError
from .features import PATCHES
from .processes import core_share, default_workers, forwarded_env, kept_pool, threads_for
from .run import run_cached
from .task import get_task, task_key


class _Lines:
    """A stream for a progress bar in a log (no terminal, no notebook): each redraw becomes one line."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.strip("\r\n")
        if text.strip():
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


def _interactive() -> bool:
    """stderr is a terminal, or this is a Jupyter kernel (whose front end redraws a line on ``\\r``)."""
    try:
        return sys.stderr.isatty() or "ipykernel" in sys.modules
    except (AttributeError, ValueError):
        return False


def progress_bar(total: int, desc: str = "runs", disable: bool = False):
    """A text progress bar (tqdm) on stderr that works everywhere: redrawn in place in a terminal or a notebook;
    in a plain log, a line at most every 30 s (a long build shows it is alive without flooding its log)."""
    if _interactive():
        return tqdm(total=total, desc=desc, disable=disable, file=sys.stderr, mininterval=0.5)
    return tqdm(total=total, desc=desc, disable=disable, file=_Lines(sys.stderr), mininterval=30, ncols=80,
                ascii=True)


def run_job(cfg_dict: dict) -> dict:
    """One run in a worker process: the config as a dict, run exactly as given (cached)."""
    return run_cached(ExperimentConfig.from_dict(cfg_dict))


def task_shares(workers: int, tasks: int, cores: int | None = None) -> tuple[int, int]:
    """What each of ``tasks`` tasks built side by side by a pool of ``workers`` gets: the processes that draw its
    phantoms (the pool's workers it leaves free) and the torch threads that encode them (the cores it leaves
    free; default: this process's usable cores)."""
    side_by_side = max(1, min(workers, tasks))
    return max(1, workers // side_by_side), core_share(side_by_side, cores)


def warm_task(cfg_dict: dict, patches: str = "all", workers: int = 1, threads: int = 1) -> None:
    """Build the task of a config in a worker process, its phantoms drawn by ``workers`` processes and its
    images encoded on ``threads`` threads (:func:`task_shares`): its frozen features land in the disk cache."""
    with threads_for(threads):
        get_task(ExperimentConfig.from_dict(cfg_dict), patches=patches, workers=workers)


def _ray_start(ray, workers: int, address: str | None) -> None:
    """Join ``address`` / ``RAY_ADDRESS`` when given, else start a local instance of ``workers`` CPUs."""
    if ray.is_initialized():
        return
    env = {"env_vars": forwarded_env()}
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        ray.init(address=address, runtime_env=env, ignore_reinit_error=True)
    else:
        ray.init(num_cpus=max(1, workers), include_dashboard=False, ignore_reinit_error=True, runtime_env=env)


def _local(cfgs: list[ExperimentConfig], todo: list[int], workers: int) -> Iterator[tuple[int, dict]]:
    if workers <= 1 or len(todo) <= 1:
        for i in todo:
            yield i, run_cached(cfgs[i])
        return
    with kept_pool(workers) as ex:
        # first the distinct tasks, one per worker at a time (no two workers extract the same features),
        # with the most patches any of their runs reads (the others read their class tokens from those files)
        tasks, patches = {}, {}
        for i in todo:
            key, p = task_key(cfgs[i]), methods.patches_read(cfgs[i])
            tasks.setdefault(key, cfgs[i].to_dict())
            patches[key] = max(patches.get(key, p), p, key=PATCHES.index)
        draw, threads = task_shares(workers, len(tasks))
        list(ex.map(warm_task, list(tasks.values()), [patches[k] for k in tasks], [draw] * len(tasks),
                    [threads] * len(tasks)))
        futures = {ex.submit(run_job, cfgs[i].to_dict()): i for i in todo}
        for f in as_completed(futures):
            yield futures[f], f.result()


def _ray(cfgs: list[ExperimentConfig], todo: list[int], workers: int, opts: dict) -> Iterator[tuple[int, dict]]:
    try:
        import ray  # deferred on purpose: Ray is a heavy optional dependency (the ray extra)
    except ImportError:
        raise ConfigError("backend 'ray' needs Ray: pip install 'sdmad-lite[ray]'") from None
    _ray_start(ray, workers, opts.get("address"))
    remote = ray.remote(num_cpus=opts.get("num_cpus", 1.0), num_gpus=opts.get("num_gpus", 0.0))(run_job)
    pending = {remote.remote(cfgs[i].to_dict()): i for i in todo}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        yield pending.pop(ready[0]), ray.get(ready[0])


def iter_runs(cfgs: Sequence[ExperimentConfig], workers: int | None = None, backend: str = "local",
              progress: bool = False, ray_opts: dict | None = None) -> Iterator[tuple[int, dict]]:
    """``(index, row)`` of every config as its run finishes (cached rows first). ``backend``: ``local``
    (one after the other with ``workers`` 1, else a process pool) or ``ray`` (``ray_opts``: ``address``,
    ``num_cpus``, ``num_gpus`` per run; a Ray instance already initialised in this process is used)."""
    if backend not in ("local", "ray"):
        raise ConfigError(f"unknown backend {backend!r}; choose local or ray")
    cfgs = list(cfgs)
    workers = default_workers() if workers is None else int(workers)
    bar = progress_bar(len(cfgs), "runs", disable=not progress)
    todo = []
    for i, c in enumerate(cfgs):
        row = cache.read(c)
        if row is None:
            todo.append(i)
        else:
            bar.update()
            yield i, row
    rows = _ray(cfgs, todo, workers, ray_opts or {}) if backend == "ray" else _local(cfgs, todo, workers)
    for i, row in rows:
        bar.update()
        yield i, row
    bar.close()


def run_many(cfgs: Sequence[ExperimentConfig], workers: int | None = None, backend: str = "local",
             progress: bool = False) -> list[dict]:
    """:func:`~sdmad_lite.run.run_cached` for every config, rows in the order of ``cfgs`` (:func:`iter_runs`).
    ``workers``: None for :func:`~sdmad_lite.processes.default_workers` (``SDMAD_WORKERS``); ``progress``: a
    :func:`progress_bar`."""
    cfgs = list(cfgs)
    rows: list[dict | None] = [None] * len(cfgs)
    for i, row in iter_runs(cfgs, workers, backend, progress):
        rows[i] = row
    return rows  # type: ignore[return-value]
