"""The datasets of an experiment: the test set and the few-shot pool (disjoint) of its config.

Phantom worlds draw two fixed seeded sets (every run, every seed, evaluates on the same test
images); real datasets read their official test split and draw the pool from the training part,
each capped by ``data.n_test`` / ``data.n_pool`` with a seeded subset.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ..config import ConfigError, ExperimentConfig
from . import datasets as D
from .fastmri_slices import FastMRIBrainSlices
from .medmnist import MedMNISTDataset
from .fewshot import PoolTooSmallError, sample_few_shot
from .phantoms.world import PhantomDataset

#: seeds of the fixed phantom sets (every run, every seed, evaluates on the same test images)
TEST_SEED, POOL_SEED = 900_001, 900_002
#: the development world (``data.world: development``), other phantoms, never in a table of the book,
#: for design choices and calibration
DEV_TEST_SEED, DEV_POOL_SEED = 700_001, 700_002


def phantom_datasets(cfg: ExperimentConfig):
    """(modality, test, pool) of a phantom world: two fixed, disjoint sets of seeded phantoms."""
    modality = cfg.data.dataset.removeprefix("phantom-")
    kw = dict(size=cfg.data.image_size, normal_fraction=cfg.data.normal_fraction,
              conspicuity=cfg.data.conspicuity, noise=cfg.data.noise, shift=cfg.data.scanner_shift,
              shift_seed=cfg.data.scanner_seed)
    dev = cfg.data.world == "development"
    test = PhantomDataset(modality, cfg.data.n_test, seed=DEV_TEST_SEED if dev else TEST_SEED, **kw)
    pool = PhantomDataset(modality, cfg.data.n_pool, seed=DEV_POOL_SEED if dev else POOL_SEED, **kw)
    return modality, test, pool


#: the sign bank of each real dataset
REAL_BANKS = {"chestmnist": "chestxray14", "chestxray14": "chestxray14", "octmnist": "oct2017", "oct2017": "oct2017",
              "fastmri-brain": "fastmri_brain"}


def image_of(ds, i: int) -> np.ndarray:
    """Image ``i`` of dataset ``ds``; ``functools.partial(image_of, ds)`` is an image reader that pickles (the
    feature extraction's workers call it)."""
    return ds[i]["image"]


def draws_images(ds) -> bool:
    """Whether ``ds`` draws its images (phantoms, a subset of phantoms) rather than reading them from files:
    drawing costs more than the backbone's encoding, so it is worth spreading over processes."""
    return isinstance(getattr(ds, "ds", ds), PhantomDataset)


class Subset:
    """Rows ``idx`` of a dataset, with its ``labels`` (a seeded cap on a large test split)."""

    def __init__(self, ds, idx: np.ndarray, key: dict):
        idx = np.asarray(idx, dtype=int)
        if isinstance(ds, Subset):  # rows of rows: one level, so the fingerprint reads the files of these rows
            ds, idx, key = ds.ds, ds.idx[idx], {**key, "of": ds.key}
        self.ds, self.idx, self.key = ds, idx, key
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
        raise ConfigError(f"data.dataset: unknown dataset {name!r}; choose phantom-chest, phantom-oct, phantom-brain "
                          f"or one of {', '.join(REAL_BANKS)}")
    if not root:
        raise ConfigError(f"data.root: dataset {name!r} needs the folder of its images (see sdmad_lite/data_scripts/README.md)")
    root = Path(root).expanduser()
    if name in ("chestmnist", "octmnist"):
        path = root / f"{name}_224.npz" if root.is_dir() else root
        test, pool = MedMNISTDataset(path, name, "test"), MedMNISTDataset(path, name, "train")
    elif name == "chestxray14":
        sub = "images" if (root / "images").is_dir() else None  # the NIH layout, or the PNG/DICOM files directly
        kw = dict(images_subdir=sub, skip_missing=cfg.data.skip_missing)
        test, pool = D.ChestXray14Dataset(root, "test", **kw), D.ChestXray14Dataset(root, "train_val", **kw)
    elif name == "oct2017":
        if (root / "test").is_dir() and not (root / "train").is_dir() and not cfg.data.pool_from_test:
            raise D.DatasetNotFoundError(
                f"{root} holds test/ but no train/ (the `--test-only` download), and the few-shot pool is drawn from "
                "train/. Set data.pool_from_test: true to draw the pool from a seeded half of test/ (the other half "
                f"is evaluated), or get train/ too: python -m sdmad_lite.data_scripts.oct2017 --root "
                f"{root.parent if root.name == 'OCT2017' else root}")
        test = D.OCT2017Dataset(root, "test")
        pool = None if cfg.data.pool_from_test else D.OCT2017Dataset(root, "train")
    else:  # fastmri-brain: one folder of slices; volumes split in two halves, seeded
        full = FastMRIBrainSlices(root)
        vols = sorted({m for m in (full[i]["meta"].get("file") for i in range(len(full)))})
        rng = np.random.default_rng(TEST_SEED)
        test_vols = set(rng.permutation(vols)[: len(vols) // 2].tolist())
        files = [full[i]["meta"].get("file") for i in range(len(full))]
        is_test = np.array([f in test_vols for f in files])
        test = Subset(full, np.flatnonzero(is_test), {"dataset": name, "root": str(root), "part": "test"})
        pool = Subset(full, np.flatnonzero(~is_test), {"dataset": name, "root": str(root), "part": "pool"})
    if cfg.data.pool_from_test and name == "fastmri-brain":
        raise ConfigError("data.pool_from_test: fastmri-brain already splits its one folder by volume; remove the key")
    if cfg.data.pool_from_test:  # no training split: a seeded half of the test split is the pool
        if isinstance(test, Subset):
            raise ConfigError(f"data.pool_from_test: not available for {name}")
        order = np.random.default_rng([TEST_SEED, len(test)]).permutation(len(test))
        half = len(test) // 2
        key = {"dataset": name, "root": str(root), "from": "test", "n": len(test)}
        test, pool = (Subset(test, np.sort(order[:half]), {**key, "part": "test-half"}),
                      Subset(test, np.sort(order[half:]), {**key, "part": "pool-half"}))
    out = []
    for part, ds, cap in (("test", test, cfg.data.n_test), ("pool", pool, cfg.data.n_pool)):
        n = len(ds)
        idx = np.arange(n) if not cap or cap >= n else np.sort(np.random.default_rng([TEST_SEED, n]).choice(n, cap, replace=False))
        out.append(ds if isinstance(ds, Subset) and len(idx) == n else
                   Subset(ds, idx, {"dataset": name, "root": str(root), "part": part, "n": int(n), "cap": int(cap or 0)}))
    return out[0], out[1]


#: files up to this size are fingerprinted by their whole content; larger ones by their first and last MB
WHOLE_FILE_BYTES = 2 << 20


def file_fingerprint(paths) -> str:
    """What identifies a set of files: each one's name and size, and its content — all of its bytes up to
    :data:`WHOLE_FILE_BYTES` (every image of the real datasets: an image replaced by another of the same
    name, size and time changes it); a larger one (an ``.npz`` of gigabytes, not read whole) by its
    modification time and its first and last MB. A copy of the same small files answers from the cache.
    Each file is read once per process while its status (size, times, inode) stays the same."""
    h = hashlib.sha256()
    for p in paths:
        st = os.stat(p)
        h.update(_one_file(str(p), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino).encode())
    return h.hexdigest()[:24]


@functools.lru_cache(maxsize=1 << 18)
def _one_file(path: str, size: int, mtime_ns: int, ctime_ns: int, inode: int) -> str:
    """The fingerprint of one file (:func:`file_fingerprint`), memoised by its status."""
    h = hashlib.sha256(f"{Path(path).name}\x00{size}\x00".encode())
    with open(path, "rb") as f:
        if size <= WHOLE_FILE_BYTES:
            h.update(f.read())
        else:
            h.update(f"{mtime_ns}\x00".encode())
            h.update(f.read(1 << 20))
            f.seek(-(1 << 20), 2)
            h.update(f.read(1 << 20))
    return h.hexdigest()


def data_fingerprint(ds) -> str:
    """A fingerprint of the files a real dataset reads ("phantom" for a phantom world: its images are
    a function of the config and the code)."""
    inner = ds.ds if isinstance(ds, Subset) else ds
    if isinstance(inner, PhantomDataset):
        return "phantom"
    if isinstance(inner, MedMNISTDataset):
        return file_fingerprint([inner.path])
    paths = getattr(inner, "_paths", [])
    if isinstance(ds, Subset):
        paths = [paths[i] for i in ds.idx] if paths else []
    return file_fingerprint(paths)


def build_datasets(cfg: ExperimentConfig):
    """``(modality or None, test, pool)`` of a config: a phantom world (:func:`phantom_datasets`) or a real
    dataset (:func:`real_datasets`). Built once per process for each data setting (the datasets read
    their images lazily), so the task, the feasibility check and the result cache share one build."""
    key = json.dumps(dataclasses.asdict(cfg.data), sort_keys=True)
    if key not in _DATASETS:
        if cfg.data.dataset.startswith("phantom-"):
            _DATASETS[key] = phantom_datasets(cfg)
        else:
            _DATASETS[key] = (None, *real_datasets(cfg))
    return _DATASETS[key]


_DATASETS: dict[str, tuple] = {}


def check_feasible(pool, cfg: ExperimentConfig, categories: list[int] | None = None) -> None:
    """Fail before any feature is extracted (and before a run folder is made) when ``pool`` cannot give
    ``k_shot`` shots per category (of ``categories``: all by default) and ``k_shot`` normal images."""
    y = np.asarray(pool.labels)
    names = list(pool.categories)
    exclude = None
    if categories is not None:
        held = np.setdiff1d(np.arange(y.shape[1]), categories)
        exclude = np.flatnonzero(y[:, held].any(1))
        y, names = y[:, categories], [names[c] for c in categories]
    try:
        sample_few_shot(y, cfg.k_shot, cfg.seed, n_normal=cfg.k_shot, exclude=exclude, categories=names)
    except PoolTooSmallError as e:
        raise PoolTooSmallError(f"k_shot = {cfg.k_shot} cannot be drawn from the pool of {len(pool)} images "
                                f"of {cfg.data.dataset}: {e}") from None


def fingerprint(cfg: ExperimentConfig) -> str:
    """What identifies the images a config reads: ``phantom`` for a phantom world (its images are a
    function of the config and the code), else a fingerprint of the real files (:func:`data_fingerprint`)."""
    if cfg.data.dataset.startswith("phantom-"):
        return "phantom"
    _, test, pool = build_datasets(cfg)
    return data_fingerprint(test) + data_fingerprint(pool)


def dataset_key(ds) -> dict:
    """What identifies a dataset's images in the feature cache (real data: a fingerprint of its files)."""
    if isinstance(ds, Subset):
        return ds.key | {"files": data_fingerprint(ds)}
    key = {k: getattr(ds, k) for k in ("modality", "n", "seed", "size", "conspicuity", "noise", "label_source")
           if hasattr(ds, k)} | {"normal_fraction": float(getattr(ds, "normal_fraction", -1))}
    scanner = getattr(ds, "scanner", None)
    if scanner is not None and scanner.strength:  # unshifted worlds keep the keys they always had
        key["scanner"] = [float(scanner.strength), int(scanner.seed)]
    return key
