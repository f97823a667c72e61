"""Shared test set-up: the library tests must not depend on the caller's environment.

``scripts/test.sh`` exports ``SDMAD_PROFILE=offline`` for the notebooks; a library test that
writes a config naming another profile (``profile: colab``) would then be refused by
:func:`sdmad_lite.config.load_config`. Each test starts with the variable unset; tests about the
variable set it themselves with ``monkeypatch``.

Under pytest-xdist (``-n auto``, as ``scripts/test.sh`` runs it) each test process gets its share of the
cores' threads, as a worker of the library's own pools does (:func:`sdmad_lite.processes.share_threads`):
two processes each running torch on every core run it several times slower (``benchmarks/bench_threads.py``). The
variable it sets is the test session's setting for everything a test starts (pools, ``sdmad`` subprocesses):
the machine is already shared by the test processes. Tests of the library's own defaults unset it.
"""
import os

import pytest


def pytest_configure(config):
    n = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if n > 1:
        from sdmad_lite.processes import core_share, share_threads, user_set_threads

        if not user_set_threads():
            share_threads(core_share(n))


@pytest.fixture(autouse=True)
def _no_profile_from_the_caller(monkeypatch):
    monkeypatch.delenv("SDMAD_PROFILE", raising=False)
