"""Seeding: same seed, same numbers on CPU."""
from __future__ import annotations

import os
import random

import numpy as np


def seed_everything(seed: int, deterministic: bool = True) -> np.random.Generator:
    """Seed Python, NumPy and torch; return a NumPy ``Generator`` seeded with ``seed``.

    With ``deterministic`` torch is asked for deterministic kernels (warn-only, so that an
    op without a deterministic version still runs); on CPU this gives identical numbers.
    """
    import torch  # here, not at the top: rendering a phantom (which derives its generators here) needs no torch

    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    return np.random.default_rng(seed)


def rng(seed: int, *keys: int | str) -> np.random.Generator:
    """A NumPy generator derived from ``seed`` and any number of keys (stable across runs)."""
    material = [seed] + [k if isinstance(k, int) else _stable_hash(k) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(material))


def _stable_hash(s: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.sha256(s.encode()).digest()[:8], "little")
