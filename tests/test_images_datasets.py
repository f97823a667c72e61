"""Image loading edge cases and the real-data dataset classes (on shipped samples / tiny files)."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sdmad_lite.data import tables
from sdmad_lite.data.datasets import ChestXray14Dataset, DatasetNotFoundError, OCT2017Dataset
from sdmad_lite.data.fastmri_plus import fastmri_brain_units
from sdmad_lite.data.fastmri_slices import FastMRIBrainSlices, fastmri_slice_filename
from sdmad_lite.data.medmnist import MedMNISTDataset
from sdmad_lite.data.images import ImageLoadError, load_image, save_image, to_pil
from sdmad_lite.io import RESOURCES

SAMPLES = RESOURCES / "samples"


# --------------------------------------------------------------------------- load_image

def test_real_samples_load():
    a = load_image(SAMPLES / "chestxray14" / "00000211_000.png")
    assert a.dtype == np.uint8 and a.shape == (1024, 1024)
    o = load_image(SAMPLES / "oct2017" / "CNV-1032178-1.jpeg")
    assert o.dtype == np.uint8 and o.ndim == 2 and o.shape[1] > o.shape[0]
    rgb = load_image(SAMPLES / "oct2017" / "CNV-1032178-1.jpeg", mode="RGB")
    assert rgb.shape == o.shape + (3,)


def test_16bit_scaled_by_range(tmp_path):
    a = np.array([[1000, 2000], [3000, 4095]], dtype=np.uint16)  # 12-bit data in 16 bits
    p = tmp_path / "x16.png"
    Image.fromarray(a).save(p)
    with Image.open(p) as im:
        assert im.mode.startswith("I")
    out = load_image(p)
    assert out.dtype == np.uint8
    assert out.min() == 0 and out.max() == 255  # scaled, not clipped to 255 everywhere
    assert out[0, 1] == round((2000 - 1000) / 3095 * 255)
    const = tmp_path / "c16.png"
    Image.fromarray(np.full((3, 3), 500, np.uint16)).save(const)
    assert (load_image(const) == 0).all()


def test_float_tiff(tmp_path):
    p = tmp_path / "f.tif"
    Image.fromarray(np.array([[0.5, 1.5], [2.5, 3.5]], np.float32)).save(p)
    out = load_image(p)
    assert out.tolist() == [[0, 85], [170, 255]]


def test_palette_and_rgba_and_la(tmp_path):
    pal = Image.new("P", (4, 3))
    pal.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    pal.putpixel((1, 1), 1)
    pal.save(tmp_path / "p.png")
    out = load_image(tmp_path / "p.png")
    assert out.shape == (3, 4) and out[1, 1] == 255 and out[0, 0] == 0

    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[..., 3] = [[255, 0], [128, 255]]
    Image.fromarray(rgba).save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    assert out[0, 0] == 200 and out[0, 1] == 0 and abs(int(out[1, 0]) - 100) <= 1

    la = np.zeros((1, 2, 2), np.uint8)
    la[..., 0], la[..., 1] = 100, [[255, 0]]
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    assert load_image(tmp_path / "la.png").tolist() == [[100, 0]]

    # palette with a transparent index
    pt = Image.new("P", (2, 1))
    pt.putpalette([255, 255, 255, 10, 10, 10] + [0] * 762)
    pt.putpixel((1, 0), 1)
    pt.info["transparency"] = 0
    pt.save(tmp_path / "pt.png", transparency=0)
    assert load_image(tmp_path / "pt.png").tolist() == [[0, 10]]


def test_one_pixel_and_bilevel(tmp_path):
    Image.fromarray(np.array([[77]], np.uint8)).save(tmp_path / "one.png")
    out = load_image(tmp_path / "one.png")
    assert out.shape == (1, 1) and out[0, 0] == 77
    Image.new("1", (3, 2), 1).save(tmp_path / "b.png")
    assert (load_image(tmp_path / "b.png") == 255).all()


def test_load_errors(tmp_path):
    with pytest.raises(ImageLoadError, match="not found.*nope.png|nope.png.*not found"):
        load_image(tmp_path / "nope.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty") as e:
        load_image(tmp_path / "empty.png")
    assert "empty.png" in str(e.value)
    (tmp_path / "page.png").write_text("<html>Access denied</html>")
    with pytest.raises(ImageLoadError, match="not an image") as e:
        load_image(tmp_path / "page.png")
    assert "page.png" in str(e.value)
    data = (SAMPLES / "chestxray14" / "00000211_000.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="trunc.png"):
        load_image(tmp_path / "trunc.png")
    jpg = (SAMPLES / "oct2017" / "CNV-1032178-1.jpeg").read_bytes()
    (tmp_path / "trunc.jpeg").write_bytes(jpg[: len(jpg) // 3])
    with pytest.raises(ImageLoadError, match="trunc.jpeg"):
        load_image(tmp_path / "trunc.jpeg")
    with pytest.raises(ImageLoadError, match="directory"):
        load_image(tmp_path)


def test_to_pil_and_save(tmp_path):
    a = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000)
    assert to_pil(a).mode == "L"
    p = save_image(a.astype(np.uint8), tmp_path / "s.png")
    assert load_image(p).shape == (3, 4)
    with pytest.raises(ValueError):
        to_pil(np.zeros((2, 2, 5)))


# --------------------------------------------------------------------------- ChestX-ray14

@pytest.fixture()
def chest_root(tmp_path):
    img = tmp_path / "images"
    img.mkdir()
    for p in (SAMPLES / "chestxray14").glob("*.png"):
        shutil.copy(p, img / p.name)
    return tmp_path


def test_chestxray14_dataset(chest_root):
    ds = ChestXray14Dataset(chest_root, "all", skip_missing=True)
    assert len(ds) == 12 and ds.n_missing == 112_120 - 12
    ref = pd.read_csv(SAMPLES / "chestxray14" / "labels.csv").set_index("image")
    for i in range(len(ds)):
        s = ds[i]
        assert set(s) == {"image", "labels", "signs", "meta"}
        assert s["image"].dtype == np.uint8 and s["image"].shape == (1024, 1024)
        assert s["labels"].dtype == np.int8 and s["signs"] is None
        assert s["labels"].tolist() == ref.loc[s["meta"]["image"], list(tables.CHESTXRAY14_LABELS)].tolist()
    assert ds.labels.shape == (12, 14)
    test = ChestXray14Dataset(chest_root, "test", skip_missing=True)
    assert [s["meta"]["image"] for s in (test[i] for i in range(len(test)))] == ["00000211_000.png"]
    # categories subset: images whose findings are all elsewhere are dropped by default
    sub = ChestXray14Dataset(chest_root, "all", categories=["Hernia", "Mass"], skip_missing=True)
    kept = {sub[i]["meta"]["image"] for i in range(len(sub))}
    assert "00000550_000.png" in kept  # No Finding -> normal
    assert "00000211_000.png" not in kept  # Cardiomegaly only -> neither
    assert sub.labels.sum(0).tolist() == [1, 3]
    keep_all = ChestXray14Dataset(chest_root, "all", categories=["Hernia"], skip_missing=True,
                                  drop_other_findings=False)
    assert len(keep_all) == 12


def test_chestxray14_errors(tmp_path, chest_root):
    with pytest.raises(DatasetNotFoundError, match="data_scripts") as e:
        ChestXray14Dataset(tmp_path / "nowhere")
    assert "00000001_000.png" in str(e.value)
    with pytest.raises(DatasetNotFoundError, match="skip_missing"):
        ChestXray14Dataset(chest_root, "test")
    (tmp_path / "empty" / "images").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match="no ChestX-ray14"):
        ChestXray14Dataset(tmp_path / "empty", skip_missing=True)
    with pytest.raises(ValueError, match="split"):
        ChestXray14Dataset(chest_root, "val")
    with pytest.raises(ValueError, match="Hernia"):
        ChestXray14Dataset(chest_root, categories=["Hernias"])


# --------------------------------------------------------------------------- OCT2017

@pytest.fixture()
def oct_root(tmp_path):
    ref = pd.read_csv(SAMPLES / "oct2017" / "labels.csv")
    for _, r in ref.iterrows():
        d = tmp_path / "OCT2017" / "test" / r["label"]
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(SAMPLES / "oct2017" / r["image"], d / r["image"])
    return tmp_path / "OCT2017"


def test_oct2017_dataset(oct_root):
    ds = OCT2017Dataset(oct_root, "test")
    assert len(ds) == 20 and ds.categories == ("CNV", "DME", "DRUSEN")
    assert ds.labels.sum(0).tolist() == [5, 5, 5] and (ds.labels.sum(1) <= 1).all()
    s = ds[0]
    assert s["image"].dtype == np.uint8 and s["image"].ndim == 2
    assert s["meta"]["class"] == "CNV" and s["labels"].tolist() == [1, 0, 0]
    assert s["meta"]["patient"] == "1032178"
    normal = [i for i in range(len(ds)) if ds[i]["meta"]["class"] == "NORMAL"]
    assert len(normal) == 5 and not ds.labels[normal].any()
    assert len(OCT2017Dataset(oct_root / "test", split=None)) == 20
    sub = OCT2017Dataset(oct_root, "test", categories=["DME"])
    assert len(sub) == 10


def test_oct2017_layout_errors(oct_root):
    with pytest.raises(DatasetNotFoundError, match="train"):
        OCT2017Dataset(oct_root, "train")
    shutil.rmtree(oct_root / "test" / "DRUSEN")
    with pytest.raises(DatasetNotFoundError) as e:
        OCT2017Dataset(oct_root, "test")
    assert "DRUSEN" in str(e.value) and "NORMAL" in str(e.value)


# --------------------------------------------------------------------------- fastMRI slices

def test_fastmri_slices(tmp_path):
    units = fastmri_brain_units()
    mass_edema = units[(units["Mass"] == 1) & (units["Edema"] == 1)].iloc[0]
    vol, sl = mass_edema["file"], int(mass_edema["slice"])
    img16 = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 7)
    for s in (sl, 30):  # a boxed slice and an unboxed one of the same reviewed volume
        Image.fromarray(img16).save(tmp_path / fastmri_slice_filename(vol, s))
    Image.fromarray(img16).save(tmp_path / "file_brain_AXT2_999_9999999_000.png")  # not reviewed
    (tmp_path / "notes.txt").write_text("ignored")
    ds = FastMRIBrainSlices(tmp_path, categories=["Mass", "Edema"])
    assert len(ds) == 2 and ds.skipped_unreviewed == 1
    s = ds[0]
    assert s["image"].dtype == np.uint8 and s["image"].shape == (64, 64) and s["image"].max() == 255
    assert s["labels"].tolist() == [1, 1]
    assert s["meta"]["flipped_ud"] is True and s["meta"]["boxes"]
    assert {b["label"] for b in s["meta"]["boxes"]} >= {"Mass", "Edema"}
    assert ds[1]["labels"].tolist() == [0, 0] and ds[1]["meta"]["slice"] == 30
    assert len(FastMRIBrainSlices(tmp_path, ["Mass"], include_unboxed=False)) == 1


def test_fastmri_slices_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"python -m sdmad_lite\.data_scripts\.fastmri_brain"):
        FastMRIBrainSlices(tmp_path / "none")
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(DatasetNotFoundError, match=r"\{file\}_\{slice:03d\}"):
        FastMRIBrainSlices(tmp_path)


# --------------------------------------------------------------------------- MedMNIST

@pytest.mark.parametrize("compressed", [False, True])
def test_medmnist_chest(tmp_path, compressed):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (5, 8, 8), dtype=np.uint8)
    labels = np.zeros((5, 14), np.uint8)
    labels[1, [0, 2]] = 1  # Atelectasis + Effusion
    labels[2, 13] = 1  # Hernia only
    p = tmp_path / "chestmnist_224.npz"
    (np.savez_compressed if compressed else np.savez)(p, test_images=imgs, test_labels=labels,
                                                     train_images=imgs[:1], train_labels=labels[:1])
    ds = MedMNISTDataset(p, "chestmnist", "test")
    assert len(ds) == 5 and ds.labels.shape == (5, 14)
    s = ds[1]
    assert (s["image"] == imgs[1]).all() and s["image"].dtype == np.uint8
    assert s["meta"]["findings"] == ["Atelectasis", "Effusion"] and s["signs"] is None
    sub = MedMNISTDataset(p, "chestmnist", "test", categories=["Effusion", "Atelectasis"])
    assert len(sub) == 4  # the Hernia-only image is neither normal nor a chosen category
    assert sub[1]["labels"].tolist() == [1, 1]
    with pytest.raises(DatasetNotFoundError, match="val_labels"):
        MedMNISTDataset(p, "chestmnist", "val")


def test_medmnist_oct(tmp_path):
    imgs = np.arange(4 * 6 * 6, dtype=np.uint8).reshape(4, 6, 6)
    p = tmp_path / "octmnist.npz"
    np.savez(p, test_images=imgs, test_labels=np.array([[0], [1], [2], [3]]))
    ds = MedMNISTDataset(p, "octmnist", "test")
    assert ds.categories == ("CNV", "DME", "DRUSEN")
    assert ds.labels.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]]
    assert ds[3]["meta"]["findings"] == []
    assert len(MedMNISTDataset(p, "octmnist", "test", categories=["DME"])) == 2


def test_medmnist_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="sdmad_lite.data_scripts.medmnist"):
        MedMNISTDataset(tmp_path / "x.npz", "octmnist")
    with pytest.raises(ValueError, match="flag"):
        MedMNISTDataset(tmp_path / "x.npz", "pathmnist")
    bad = tmp_path / "bad.npz"
    bad.write_text("not a zip")
    with pytest.raises(DatasetNotFoundError, match="not a valid"):
        MedMNISTDataset(bad, "octmnist")
