"""Worker processes (``sdmad_lite.processes``). Phantoms are drawn by workers while features are extracted
(``features.extract(workers=…)``): the batches come back in order, the features are those of one process,
and a worker that renders phantoms imports neither torch nor open_clip (else it would start in ten seconds,
not one). The runs' pool is kept between calls of one process, and not past a change of settings or an error."""
import functools
import operator
import os
import subprocess
import sys

import pytest
import torch

from sdmad_lite import features as F
from sdmad_lite.data.build import Subset, draws_images, image_of
from sdmad_lite.data.phantoms.world import PhantomDataset
from sdmad_lite.models.backbone import PHANTOMCLIP, load, vision_geometry
from sdmad_lite import processes as P
from sdmad_lite.processes import ordered_batches


def test_ordered_batches_are_the_same_batches_in_the_same_order_with_workers():
    fn = functools.partial(operator.mul, 3)
    one = list(ordered_batches(fn, 11, 2))
    assert one == [[0, 3], [6, 9], [12, 15], [18, 21], [24, 27], [30]]
    assert list(ordered_batches(fn, 11, 2, workers=2, window=1)) == one  # several windows, the last one short
    assert list(ordered_batches(fn, 0, 4, workers=2)) == []


def test_features_drawn_by_workers_equal_those_drawn_here(monkeypatch):
    monkeypatch.setattr(F, "MIN_PARALLEL_IMAGES", 0)
    ds = PhantomDataset("oct", 10, seed=3, size=64)
    taps = vision_geometry(PHANTOMCLIP)["taps"]
    bb = load(PHANTOMCLIP)
    get = functools.partial(image_of, ds)
    here = F.extract(bb, get, len(ds), taps, batch_size=3, patches=[])
    there = F.extract(bb, get, len(ds), taps, batch_size=3, patches=[], workers=2)
    assert torch.equal(here.pooled, there.pooled)
    assert all(torch.equal(here.taps[b], there.taps[b]) for b in taps)


def test_only_drawn_datasets_are_spread_over_processes():
    ds = PhantomDataset("chest", 4, seed=0, size=32)
    assert draws_images(ds) and draws_images(Subset(ds, [0, 2], {"d": 0}))
    assert not draws_images([{"image": None}])


@pytest.mark.parametrize("module", ["sdmad_lite.data.build", "sdmad_lite.processes", "sdmad_lite.cli"])
def test_a_rendering_worker_starts_without_torch(module):
    """The modules a rendering worker imports, and the ``sdmad`` command's script (whose imports a worker
    spawned by the command re-runs), load neither torch nor open_clip."""
    code = (f"import sys, {module}, sdmad_lite.data.phantoms.world; "
            "print(sorted(m for m in ('torch', 'open_clip') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _pids(ex) -> set[int]:
    """The pids of the workers that answered four calls (one worker may answer all of them)."""
    return {f.result() for f in [ex.submit(os.getpid) for _ in range(4)]}


def test_the_kept_pool_serves_the_next_call_until_settings_change_or_a_call_fails(monkeypatch):
    monkeypatch.setenv("SDMAD_SOMETHING", "a")
    try:
        with P.kept_pool(2) as ex:
            first = _pids(ex)
        with P.kept_pool(2) as again:  # the same workers: nothing started twice
            assert again is ex and set(again._processes) == set(ex._processes) and _pids(again) <= set(ex._processes)
        monkeypatch.setenv("SDMAD_SOMETHING", "b")  # workers started under "a" would run with it
        with P.kept_pool(2) as other:
            assert other is not ex
        with pytest.raises(KeyboardInterrupt):
            with P.kept_pool(2) as ex:
                raise KeyboardInterrupt
        with P.kept_pool(2) as fresh:  # the pool an error left is stopped, not reused
            assert fresh is not ex and _pids(fresh)
    finally:
        P.close_kept_pool()
    assert "pool" not in P._KEPT


def test_a_pool_held_by_a_call_never_finished_is_not_shared():
    """A run_many generator left suspended (an interrupt in its caller's frame) still holds its pool: the next
    call gets its own, and the holder, when it ends, shuts down the pool that is no longer the kept one."""
    try:
        held = P.kept_pool(2)
        ex = held.__enter__()
        with P.kept_pool(2) as other:
            assert other is not ex and _pids(other)
        held.__exit__(None, None, None)
        assert P._KEPT["pool"] is other and ex._shutdown_thread
    finally:
        P.close_kept_pool()


def test_a_worker_of_a_pool_draws_with_one_process_unless_told_otherwise():
    """No pool inside a pool by default: a run worker's phantoms are drawn by workers only when the caller,
    who knows how many tasks are built side by side, says how many (executor.warm_task)."""
    with P.running_pool(1) as ex:
        assert ex.submit(P.default_workers).result() == 1


def _threads() -> tuple[int, str | None, bool]:
    import torch as t  # imported in the worker after its initialiser ran

    return t.get_num_threads(), os.environ.get("OMP_NUM_THREADS"), P.user_set_threads()


def _nested_user() -> bool:
    """Whether a pool started by a pool's worker takes the worker's threads for the user's."""
    with P.running_pool(1) as ex:
        return ex.submit(P.user_set_threads).result()


def test_a_pool_worker_runs_torch_on_its_share_of_the_cores(monkeypatch):
    """Two workers each running torch on every core take several times as long as on their share
    (benchmarks/bench_threads.py): a worker of a pool of n gets
    cores // n threads, unless the user set OMP_NUM_THREADS, which wins; the variable a worker sets for itself
    is not taken for the user's by the pools it starts. A process that has imported torch gets its share
    directly."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    share = max(1, P.usable_cores() // 2)
    with P.running_pool(2) as ex:
        assert ex.submit(_threads).result() == (share, str(share), False)
        assert ex.submit(_nested_user).result() is False
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    with P.running_pool(2) as ex:
        assert ex.submit(_threads).result()[1:] == ("3", True)  # the user's (torch may cap it at the cores)
        assert ex.submit(_nested_user).result() is True
    monkeypatch.delenv("OMP_NUM_THREADS")
    before = torch.get_num_threads()
    try:
        P.share_threads(1)
        assert torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
    finally:
        torch.set_num_threads(before)
        os.environ.pop("OMP_NUM_THREADS", None)


def _warm_threads(n: int) -> tuple[int, int, int]:
    import torch as t

    before = t.get_num_threads()
    with P.threads_for(n):
        inside = t.get_num_threads()
    return before, inside, t.get_num_threads()


def test_tasks_built_side_by_side_share_the_pool_and_the_cores(monkeypatch):
    """executor.warm_task: each task built side by side gets the pool's workers and the cores the others leave
    it, in their own units (processes that draw, threads that encode); a worker's threads go back after, and a
    user's OMP_NUM_THREADS is left alone."""
    from sdmad_lite.executor import task_shares

    assert task_shares(8, 8, cores=16) == (1, 2)  # 8 tasks at once: each its worker and its 2 cores
    assert task_shares(8, 1, cores=16) == (8, 16)  # the only task: every worker draws, every core encodes
    assert task_shares(2, 1, cores=16) == (2, 16) and task_shares(2, 3, cores=2) == (1, 1)
    assert task_shares(4, 10, cores=2) == (1, 1)  # never below one
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores, share = P.usable_cores(), max(1, P.usable_cores() // 2)
    with P.running_pool(2) as ex:
        assert ex.submit(_warm_threads, cores).result() == (share, cores, share)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with P.running_pool(2) as ex:
        assert ex.submit(_warm_threads, 2).result() == (1, 1, 1)
