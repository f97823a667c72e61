"""The real-data path rehearsed offline: OpenAI weights built with QuickGELU, local weights, caches
keyed by the data actually read, and the colab and paper profiles end to end through ``sdmad run`` on
look-alike data (MedMNIST-format files and ChestX-ray14 / OCT2017 folders made from the shipped real
images) with a small open_clip ViT whose random weights are saved as a local checkpoint."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from sdmad_lite.data import tables
from sdmad_lite.io import RESOURCES
from sdmad_lite.models import backbone as BB

SMALL_VIT = "ViT-S-32"  # 22 M parameters: a few seconds per pass on a CPU


def test_openai_weights_are_built_with_quickgelu_and_openai_preprocessing():
    model, r = BB.create("ViT-B-16", "openai")  # the code path of pretrained="openai", with random weights
    assert r["quick_gelu"] and isinstance(model.visual.transformer.resblocks[0].mlp.gelu, open_clip.transformer.QuickGELU)
    assert r["mean"] == tuple(open_clip.OPENAI_DATASET_MEAN) and r["std"] == tuple(open_clip.OPENAI_DATASET_STD)
    plain, r2 = BB.create(SMALL_VIT, None)
    assert not r2["quick_gelu"] and not isinstance(plain.visual.transformer.resblocks[0].mlp.gelu,
                                                   open_clip.transformer.QuickGELU)


def _small_checkpoint(tmp_path) -> Path:
    torch.manual_seed(0)
    model = open_clip.create_model(SMALL_VIT, pretrained=None)
    path = tmp_path / "weights" / "open_clip_pytorch_model.bin"
    path.parent.mkdir()
    torch.save(model.state_dict(), path)
    return path


def test_local_weights_load_from_a_file_or_a_folder_with_a_content_key(tmp_path):
    ck = _small_checkpoint(tmp_path)
    a = BB.load(SMALL_VIT, str(ck))
    b = BB.load(SMALL_VIT, str(ck.parent))  # the folder `huggingface-cli download` writes
    assert a.key == b.key and "sha256:" in a.key and not a.quick_gelu
    c = BB.load(SMALL_VIT, str(ck), weights_tag="openai")  # the same file, published as OpenAI weights
    assert c.quick_gelu and c.key != a.key
    with pytest.raises(BB.BackboneError, match="holds no open_clip weights"):
        BB.load(SMALL_VIT, str(tmp_path))


def test_missing_weights_say_where_to_put_them(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BB.BackboneError, match=r"huggingface-cli download timm/vit_base_patch16_clip_224\.openai "
                                                r"--local-dir WEIGHTS_DIR.*model\.pretrained: WEIGHTS_DIR"):
        BB.load("ViT-B-16", "openai")


# ----------------------------------------------------------------------------- look-alike data
def _chest_samples():
    rows = list(csv.DictReader(open(RESOURCES / "samples" / "chestxray14" / "labels.csv")))
    imgs = [np.asarray(Image.open(RESOURCES / "samples" / "chestxray14" / r["image"]).convert("L").resize((224, 224)))
            for r in rows]
    y = np.array([[int(lab in r["finding_labels"].split("|")) for lab in tables.CHESTXRAY14_LABELS] for r in rows])
    return np.stack(imgs), y.astype(np.uint8)


def _variants(imgs: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n look-alike images: the shipped ones shifted and flipped (index of the source of each)."""
    rng = np.random.default_rng(seed)
    src = np.arange(n) % len(imgs)
    out = []
    for i in src:
        im = np.roll(imgs[i], int(rng.integers(-12, 12)), axis=1)
        out.append(im[:, ::-1] if rng.random() < 0.5 else im)
    return np.stack(out).astype(np.uint8), src


def _chestmnist(root: Path) -> Path:
    imgs, y = _chest_samples()
    normal = np.zeros((1, 14), np.uint8)
    parts = {}
    for split, n, seed in (("train", 36, 1), ("val", 6, 2), ("test", 24, 3)):
        x, src = _variants(imgs, n, seed)
        xn, _ = _variants(imgs, 6, seed + 10)  # and some images labelled normal
        parts[f"{split}_images"] = np.concatenate([x, xn])
        parts[f"{split}_labels"] = np.concatenate([y[src], np.repeat(normal, 6, 0)])
    path = root / "chestmnist_224.npz"
    np.savez(path, **parts)
    return path


def _run(cfg: Path, out: Path, profile: str) -> dict:
    env = {**os.environ, "SDMAD_PROFILE": profile, "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "sdmad_lite.cli", "run", str(cfg), "--out", str(out)],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text())


def _rehearsal_yaml(tmp_path, name, profile, dataset, root, ck, extra="") -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(f"""name: {name}
profile: {profile}
seed: 0
k_shot: 1
protocols: [integrated, per-anomaly]
data: {{dataset: {dataset}, root: "{root}", n_test: 0, n_pool: 0{extra}}}
model: {{backbone: {SMALL_VIT}, pretrained: "{ck}", adapter_mode: side}}
tuning: {{max_epochs: 4, patience: 2}}
""")
    return p


@pytest.mark.slow
def test_the_colab_profile_end_to_end_on_medmnist_format_files(tmp_path, monkeypatch):
    monkeypatch.setenv("SDMAD_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "medmnist"
    data.mkdir()
    npz = _chestmnist(data)
    ck = _small_checkpoint(tmp_path)
    cfg = _rehearsal_yaml(tmp_path, "rehearsal-colab", "colab", "chestmnist", data, ck)
    row = _run(cfg, tmp_path / "run", "colab")
    assert row["profile"] == "colab" and row["data.dataset"] == "chestmnist" and row["integrated.n_images"] > 0
    assert 0 <= row["integrated.subset_accuracy"] <= 1 and row["support_scores"] == "out-of-fold"
    # a replaced file of the same size is new data: the feature cache must not answer it
    from sdmad_lite.data.build import file_fingerprint

    before = file_fingerprint([npz])
    arr = dict(np.load(npz))
    arr["test_images"] = 255 - arr["test_images"]
    np.savez(npz, **arr)
    assert npz.stat().st_size > 0 and file_fingerprint([npz]) != before


@pytest.mark.slow
def test_the_paper_profile_on_chestxray14_and_oct2017_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("SDMAD_CACHE", str(tmp_path / "cache"))
    imgs, _ = _chest_samples()
    table = tables.load_chestxray14()
    root = tmp_path / "cxr"
    root.mkdir()
    picked = []
    for split, n in (("train_val", 40), ("test", 20)):
        t = table[table["split"] == split]
        for lab in tables.CHESTXRAY14_LABELS:  # every finding at least once, then normal images
            picked += list(t[t[lab] == 1]["image"][:2]) if split == "train_val" else list(t[t[lab] == 1]["image"][:1])
        picked += list(t[t[list(tables.CHESTXRAY14_LABELS)].sum(axis=1) == 0]["image"][:6])
    x, _ = _variants(imgs, len(picked), 5)
    for name, im in zip(picked, x):
        Image.fromarray(im).save(root / name)
    ck = _small_checkpoint(tmp_path)
    row = _run(_rehearsal_yaml(tmp_path, "rehearsal-cxr", "paper", "chestxray14", root, ck, ", skip_missing: true"),
               tmp_path / "run_cxr", "paper")
    assert row["profile"] == "paper" and row["data.dataset"] == "chestxray14" and row["integrated.n_images"] > 0
    # OCT2017 layout: root/{train,test}/{CNV,DME,DRUSEN,NORMAL}/*.jpeg from the shipped B-scans
    oct_root = tmp_path / "oct"
    samples = sorted((RESOURCES / "samples" / "oct2017").glob("*.jpeg"))
    for split, reps in (("train", 3), ("test", 2)):
        for f in samples:
            cls = f.name.split("-")[0]
            (oct_root / split / cls).mkdir(parents=True, exist_ok=True)
            im = np.asarray(Image.open(f).convert("L").resize((224, 224)))
            for r in range(reps):
                Image.fromarray(np.roll(im, 5 * r, axis=1)).save(oct_root / split / cls / f"{f.stem}-{r}.jpeg")
    row = _run(_rehearsal_yaml(tmp_path, "rehearsal-oct", "paper", "oct2017", oct_root, ck), tmp_path / "run_oct", "paper")
    assert row["data.dataset"] == "oct2017" and row["integrated.n_images"] == 2 * len(samples)


@pytest.mark.slow
def test_chapter_15_runs_under_the_colab_profile_on_rehearsal_files(tmp_path):
    """Chapter 15 executed as a Colab user runs it (SDMAD_PROFILE=colab), pointed at look-alike
    MedMNIST files, a random-weight ViT saved as a local checkpoint, and a manifest of the files'
    checksums: the data script checks them (no download), the sweep runs every method of the chapter."""
    import hashlib
    import shutil

    import nbformat
    from nbclient import NotebookClient

    data = tmp_path / "medmnist"
    data.mkdir()
    npz = _chestmnist(data)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({npz.name: hashlib.md5(npz.read_bytes()).hexdigest()}))
    ck = _small_checkpoint(tmp_path)
    cfg = _rehearsal_yaml(tmp_path, "rehearsal-ch15", "colab", "chestmnist", data, ck)
    nb_path = tmp_path / "15_real_data.ipynb"
    shutil.copy(Path(__file__).resolve().parents[1] / "notebooks" / "15_real_data.ipynb", nb_path)
    env = {"SDMAD_PROFILE": "colab", "SDMAD_CONFIG": str(cfg), "SDMAD_MANIFEST": str(manifest), "SDMAD_SEEDS": "1",
           "SDMAD_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits them
    try:
        nb = nbformat.read(nb_path, as_version=4)
        NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    text = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                     for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "profile: colab" in text and "skipped" not in text  # nothing skipped: the real path ran
    rows = list(csv.DictReader(open(tmp_path / "results_rehearsal-ch15.csv")))
    assert len(rows) == 7 and {r["profile"] for r in rows} == {"colab"}
    assert {r["method"] for r in rows} >= {"sdmad", "linear-probe", "mvfa", "learned-context"}
    # a file that is not the manifest's is refused, not silently used
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({npz.name: "0" * 32}))
    r = subprocess.run([sys.executable, "-m", "sdmad_lite.cli", "prepare", "medmnist", "--flag", "chestmnist", "--root",
                        str(data), "--manifest", str(bad)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "sdmad prepare: error:" in r.stderr and "delete it and run again" in r.stderr


def test_an_oct2017_test_only_download_serves_as_pool_and_test_when_asked(tmp_path):
    """``oct2017.py --test-only`` gives test/ alone: the config must say so (data.pool_from_test), and then the
    pool and the evaluated images are disjoint seeded halves of test/, keyed apart in the feature cache."""
    from sdmad_lite.config import ExperimentConfig
    from sdmad_lite.data.build import Subset, real_datasets
    from sdmad_lite.data.datasets import DatasetNotFoundError
    from sdmad_lite.task import dataset_key

    root = tmp_path / "OCT2017"
    samples = sorted((RESOURCES / "samples" / "oct2017").glob("*.jpeg"))
    for f in samples:
        (root / "test" / f.name.split("-")[0]).mkdir(parents=True, exist_ok=True)
        (root / "test" / f.name.split("-")[0] / f.name).write_bytes(f.read_bytes())
    cfg = lambda **d: ExperimentConfig.from_dict(  # noqa: E731
        {"profile": "paper", "data": {"dataset": "oct2017", "root": str(root), "n_test": 0, "n_pool": 0, **d}})
    with pytest.raises(DatasetNotFoundError, match=r"holds test/ but no train/ \(the `--test-only` download\).*"
                                                   r"data\.pool_from_test: true.*--root " + str(tmp_path) + "$"):
        real_datasets(cfg())
    test, pool = real_datasets(cfg(pool_from_test=True))
    assert len(test) + len(pool) == len(samples) and abs(len(test) - len(pool)) <= 1
    assert isinstance(pool, Subset) and not set(test.idx) & set(pool.idx) and pool.ds is not test
    assert dataset_key(test)["files"] != dataset_key(pool)["files"] and dataset_key(pool)["part"] == "pool-half"
    again, capped = real_datasets(cfg(pool_from_test=True, n_pool=3))
    assert np.array_equal(again.idx, test.idx) and len(capped) == 3 and set(capped.idx) <= set(pool.idx)
    assert not isinstance(capped.ds, Subset) and capped.key["of"]["part"] == "pool-half"  # rows of the folder, one level
    assert np.array_equal(capped.labels, np.asarray(capped.ds.labels)[capped.idx])
    elsewhere = tmp_path / "new" / "OCT2017"  # the hint names the folder the script writes OCT2017/ into
    with pytest.raises(DatasetNotFoundError, match=f"--root {tmp_path / 'new'}` \\(it writes ROOT/OCT2017/"):
        real_datasets(cfg(root=str(elsewhere)))
