"""Shared test set-up: the library tests must not depend on the caller's environment.

``scripts/test.sh`` exports ``SDMAD_PROFILE=offline`` for the notebooks; a library test that
writes a config naming another profile (``profile: colab``) would then be refused by
:func:`sdmad_lite.config.load_config`. Each test starts with the variable unset; tests about the
variable set it themselves with ``monkeypatch``.
"""
import pytest


@pytest.fixture(autouse=True)
def _no_profile_from_the_caller(monkeypatch):
    monkeypatch.delenv("SDMAD_PROFILE", raising=False)
