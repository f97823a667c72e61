"""The datasets of an experiment: the test set and the few-shot pool (disjoint) of its config.

Phantom worlds draw two fixed seeded sets (every run, every seed, evaluates on the same test
images); real datasets read their official test split and draw the pool from the training part,
each capped by ``data.n_test`` / ``data.n_pool`` with a seeded subset.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config import ExperimentConfig
from . import datasets as D
from .phantoms.world import PhantomDataset

#: seeds of the fixed phantom sets (every run, every seed, evaluates on the same test images)
TEST_SEED, POOL_SEED = 900_001, 900_002


def phantom_datasets(cfg: ExperimentConfig):
    """(modality, test, pool) of a phantom world: two fixed, disjoint sets of seeded phantoms."""
    modality = cfg.data.dataset.removeprefix("phantom-")
    kw = dict(size=cfg.data.image_size, normal_fraction=cfg.data.normal_fraction,
              conspicuity=cfg.data.conspicuity, noise=cfg.data.noise)
    test = PhantomDataset(modality, cfg.data.n_test, seed=TEST_SEED, **kw)
    pool = PhantomDataset(modality, cfg.data.n_pool, seed=POOL_SEED, **kw)
    return modality, test, pool


#: the sign bank of each real dataset
REAL_BANKS = {"chestmnist": "chestxray14", "chestxray14": "chestxray14", "octmnist": "oct2017", "oct2017": "oct2017",
              "fastmri-brain": "fastmri_brain"}


class Subset:
    """Rows ``idx`` of a dataset, with its ``labels`` (a seeded cap on a large test split)."""

    def __init__(self, ds, idx: np.ndarray, key: dict):
        self.ds, self.idx, self.key = ds, np.asarray(idx, dtype=int), key
        self.labels = np.asarray(ds.labels)[self.idx]
        self.categories = list(ds.categories)

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i: int) -> dict:
        return self.ds[int(self.idx[i])]


def real_datasets(cfg: ExperimentConfig):
    """(test, pool) of a real dataset under ``cfg.data.root`` (colab / paper profiles)."""
    name, root = cfg.data.dataset, cfg.data.root
    if name not in REAL_BANKS:
        raise ValueError(f"unknown dataset {name!r}; choose phantom-chest, phantom-oct, phantom-brain or one of "
                         f"{', '.join(REAL_BANKS)}")
    if not root:
        raise ValueError(f"dataset {name!r} needs data.root: the folder of the images (see data_scripts/README.md)")
    root = Path(root).expanduser()
    if name in ("chestmnist", "octmnist"):
        path = root / f"{name}_224.npz" if root.is_dir() else root
        test, pool = D.MedMNISTDataset(path, name, "test"), D.MedMNISTDataset(path, name, "train")
    elif name == "chestxray14":
        test, pool = D.ChestXray14Dataset(root, "test"), D.ChestXray14Dataset(root, "train_val")
    elif name == "oct2017":
        test, pool = D.OCT2017Dataset(root, "test"), D.OCT2017Dataset(root, "train")
    else:  # fastmri-brain: one folder of slices; volumes split in two halves, seeded
        full = D.FastMRIBrainSlices(root)
        vols = sorted({m for m in (full[i]["meta"].get("file") for i in range(len(full)))})
        rng = np.random.default_rng(TEST_SEED)
        test_vols = set(rng.permutation(vols)[: len(vols) // 2].tolist())
        files = [full[i]["meta"].get("file") for i in range(len(full))]
        is_test = np.array([f in test_vols for f in files])
        test = Subset(full, np.flatnonzero(is_test), {"dataset": name, "root": str(root), "part": "test"})
        pool = Subset(full, np.flatnonzero(~is_test), {"dataset": name, "root": str(root), "part": "pool"})
    out = []
    for part, ds, cap in (("test", test, cfg.data.n_test), ("pool", pool, cfg.data.n_pool)):
        n = len(ds)
        idx = np.arange(n) if not cap or cap >= n else np.sort(np.random.default_rng([TEST_SEED, n]).choice(n, cap, replace=False))
        out.append(ds if isinstance(ds, Subset) and len(idx) == n else
                   Subset(ds, idx, {"dataset": name, "root": str(root), "part": part, "n": int(n), "cap": int(cap or 0)}))
    return out[0], out[1]


def dataset_key(ds) -> dict:
    """What identifies a dataset's images in the feature cache."""
    if isinstance(ds, Subset):
        return ds.key
    return {k: getattr(ds, k) for k in ("modality", "n", "seed", "size", "conspicuity", "noise", "label_source")
            if hasattr(ds, k)} | {"normal_fraction": float(getattr(ds, "normal_fraction", -1))}
