"""Bad inputs: each gets ONE clear error of the library that names the file / key / value and says
what to do; nothing falls back silently (above all, never to random weights); nothing a user made
is lost. Images that are unusual but valid (16-bit, palette, RGBA, one pixel) must load correctly.

The table of these errors (bad input | where | exception | message) is in the reliability issue;
each test here is one row of it.
"""
from __future__ import annotations

import json
import logging
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from sdmad_lite.config import profiles
from sdmad_lite import config as C
from sdmad_lite import metrics as M
from sdmad_lite import protocols as P
from sdmad_lite.cli import main
from sdmad_lite.data import tables
from sdmad_lite.data.datasets import ChestXray14Dataset, DatasetNotFoundError, OCT2017Dataset
from sdmad_lite.data.fastmri_plus import read_fastmri_brain_csv
from sdmad_lite.data.medmnist import MedMNISTDataset
from sdmad_lite.data.table_files import TableError
from sdmad_lite.data.fewshot import PoolTooSmallError, sample_few_shot
from sdmad_lite.data.images import ImageLoadError, load_image
from sdmad_lite.data.phantoms.world import render
from sdmad_lite.features import Features, NonFiniteFeaturesError, cache_key, cached_features
from sdmad_lite.io import RESOURCES
from sdmad_lite.signs import SignBank, SignFileError, SignFileWarning

SAMPLES = RESOURCES / "samples"


# =========================================================================== datasets and files
def test_missing_dataset_folder(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"ChestX-ray14 image folder not found: .*nowhere.*"
                                                   r"python -m sdmad_lite\.data_scripts\.chestxray14 --root"):
        ChestXray14Dataset(tmp_path / "nowhere")
    with pytest.raises(DatasetNotFoundError, match=r"OCT2017 folder not found: .*nowhere.*sdmad_lite\.data_scripts\.oct2017"):
        OCT2017Dataset(tmp_path / "nowhere")
    with pytest.raises(DatasetNotFoundError, match=r"MedMNIST file not found: .*chestmnist_224\.npz.*"
                                                   r"sdmad_lite\.data_scripts\.medmnist --flag chestmnist"):
        MedMNISTDataset(tmp_path / "chestmnist_224.npz", "chestmnist")


def test_oct2017_without_class_folders(tmp_path):
    flat = tmp_path / "OCT2017" / "test"
    flat.mkdir(parents=True)
    for p in (SAMPLES / "oct2017").glob("*.jpeg"):
        shutil.copy(p, flat / p.name)  # the images, but not sorted into CNV/DME/DRUSEN/NORMAL
    n = len(list(flat.iterdir()))
    with pytest.raises(DatasetNotFoundError, match=rf"OCT2017.test: expected class subfolders .*missing "
                                                   rf"\['CNV', 'DME', 'DRUSEN', 'NORMAL'\].* It holds {n} image "
                                                   r"files directly.*sort the images into them"):
        OCT2017Dataset(tmp_path / "OCT2017", "test")


def test_bad_image_files(tmp_path):
    png = (SAMPLES / "chestxray14" / "00000211_000.png").read_bytes()
    # corrupt: a byte flipped inside the compressed data (the PNG checksum no longer matches)
    bad = bytearray(png)
    bad[len(bad) // 2] ^= 0xFF
    (tmp_path / "corrupt.png").write_bytes(bytes(bad))
    (tmp_path / "truncated.png").write_bytes(png[: len(png) // 2])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "page.png").write_text("<html><body>403 Forbidden</body></html>")
    cases = {
        "corrupt.png": r"corrupt or truncated image: .*corrupt\.png.*delete it and fetch it again",
        "truncated.png": r"corrupt or truncated image: .*truncated\.png.*delete it and fetch it again",
        "empty.png": r"image file is empty \(0 bytes\): .*empty\.png.*delete it and fetch it again",
        "page.png": r"not an image Pillow can read: .*page\.png.*HTML error page",
    }
    for name, match in cases.items():
        with pytest.raises(ImageLoadError, match=match):
            load_image(tmp_path / name)
    with pytest.raises(ImageLoadError, match=r"image not found: .*missing\.png.*sdmad_lite/data_scripts/README\.md"):
        load_image(tmp_path / "missing.png")


def test_corrupt_image_inside_a_dataset_names_the_file(tmp_path):
    root = tmp_path / "OCT2017" / "test"
    for cls in tables.OCT2017_CLASSES:
        (root / cls).mkdir(parents=True)
    shutil.copy(SAMPLES / "oct2017" / "CNV-1032178-1.jpeg", root / "CNV" / "CNV-1032178-1.jpeg")
    jpg = (SAMPLES / "oct2017" / "CNV-1032178-1.jpeg").read_bytes()
    (root / "DME" / "DME-1-1.jpeg").write_bytes(jpg[: len(jpg) // 3])  # an interrupted copy
    ds = OCT2017Dataset(tmp_path / "OCT2017", "test")
    assert ds[0]["image"].ndim == 2
    with pytest.raises(ImageLoadError, match=r"DME-1-1\.jpeg.*fetch it again"):
        ds[1]


def test_unusual_but_valid_images_load_correctly(tmp_path):
    # 16-bit (12-bit data): scaled by its own range, not clipped
    a16 = np.array([[0, 1000], [2000, 4000]], np.uint16)
    Image.fromarray(a16).save(tmp_path / "x16.png")
    want = np.round((a16 - 0) * (255 / 4000)).astype(np.uint8)
    assert load_image(tmp_path / "x16.png").tolist() == want.tolist() == [[0, 64], [128, 255]]
    # palette: luminance of the palette colours (ITU-R 601-2)
    pal = Image.new("P", (2, 1))
    pal.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    pal.putpixel((1, 0), 1)
    pal.save(tmp_path / "p.png")
    r, b = load_image(tmp_path / "p.png")[0].tolist()
    assert abs(r - 76) <= 1 and abs(b - 29) <= 1
    # RGBA: composited on black
    rgba = np.zeros((1, 3, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[..., 3] = [255, 128, 0]
    Image.fromarray(rgba).save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    assert out[0, 0] == 200 and abs(int(out[0, 1]) - 100) <= 1 and out[0, 2] == 0
    # one pixel, grey and RGB
    Image.fromarray(np.array([[77]], np.uint8)).save(tmp_path / "one.png")
    assert load_image(tmp_path / "one.png").tolist() == [[77]]
    Image.fromarray(np.array([[[10, 20, 30]]], np.uint8)).save(tmp_path / "one_rgb.png")
    assert load_image(tmp_path / "one_rgb.png", mode="RGB").tolist() == [[[10, 20, 30]]]


# =========================================================================== labels and tables
def test_labels_naming_an_unknown_category():
    with pytest.raises(ValueError, match=r"unknown chest categories \['Pneumonitis'\]; known: .*'Effusion'"):
        render("chest", ["Effusion", "Pneumonitis"], seed=0, size=32)
    with pytest.raises(ValueError, match=r"label vector must have 8 entries for chest, got \(3,\)"):
        render("chest", [1, 0, 1], seed=0, size=32)
    with pytest.raises(ValueError, match=r"must hold only 0/1, got \[2, 0, 0\]"):
        render("oct", [2, 0, 0], seed=0, size=32)
    with pytest.raises(ValueError, match=r"unknown category \['Pneumonitis'\] for dataset 'chestxray14'; "
                                         r"valid: \['Atelectasis'"):
        tables.label_rows("chestxray14", ["Effusion", "Pneumonitis"])
    with pytest.raises(ValueError, match=r"unknown dataset 'mimic'; valid: \['chestxray14', 'oct2017', 'fastmri-brain'\]"):
        tables.label_rows("mimic", ["Effusion"])


def test_label_table_with_a_missing_column(tmp_path):
    pd.DataFrame({"file": ["file_brain_AXT2_200_1"], "slice": [3], "x": [1]}).to_csv(tmp_path / "brain.csv", index=False)
    with pytest.raises(TableError, match=r"brain\.csv: missing column\(s\) \['study_level', 'y', 'width', "
                                                r"'height', 'label'\]; found \['file', 'slice', 'x'\]"):
        read_fastmri_brain_csv(tmp_path / "brain.csv")
    (tmp_path / "list.txt").write_text("00000001_000.png 0 1 0\n")
    with pytest.raises(TableError, match=r"list\.txt: expected 15 columns .* got 4; first missing: Infiltration"):
        tables.read_chestxray14_list(tmp_path / "list.txt", "test")


def test_k_larger_than_the_pool_of_a_category():
    y = np.zeros((40, 2), np.int8)
    y[:10, 0] = 1
    y[10:13, 1] = 1
    with pytest.raises(PoolTooSmallError, match=r"category 'Hernia': only 3 available positive rows .*fewer "
                                                r"than k=4; use a smaller k, or a larger pool"):
        sample_few_shot(y, k=4, seed=0, categories=["Mass", "Hernia"])
    assert issubclass(PoolTooSmallError, ValueError)


def test_category_without_positives_in_the_evaluation_split():
    rng = np.random.default_rng(0)
    y = np.zeros((12, 3), np.int8)
    y[:4, 0] = 1
    y[3:7, 1] = 1  # column 2 ("Hernia") has no positive
    s, anchor = rng.random((12, 3)), rng.random(12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning (mean of empty slice), no sklearn warning
        per = P.evaluate_per_anomaly(s, y, [0.5] * 3)
        integ = P.evaluate_integrated(s, anchor, y, [0.5] * 3, 0.5)
        none = M.macro_auroc(np.zeros((5, 2), np.int8), rng.random((5, 2)))
    assert per["n_positive"].tolist() == [4, 4, 0]
    assert np.isnan(per["per_category_auroc"][2]) and np.isnan(per["per_category_f1"][2])
    assert per["n_auroc_defined"] == 2 and per["n_f1_defined"] == 2 and np.isfinite(per["mean_auroc"])
    assert np.isnan(integ["per_category_auroc"][3]) and integ["n_auroc_defined"] == 3  # of 1 + 3 columns
    assert np.isfinite(integ["macro_auroc"]) and np.isfinite(integ["subset_accuracy"])
    assert np.isnan(none.value) and none.n_defined == 0 and none.n_categories == 2


# =========================================================================== sign files
_SIGN_TEXTS = [f"a distinct radiographic sign number {i}" for i in range(15)]


def _sign_file(tmp_path: Path, category: str = "Effusion", selection: str | None = None, extra: str = "") -> Path:
    lines = ["dataset: chestxray14", "modality: chest", "categories:", f"  {category}:", "    candidates:"]
    lines += [f"      - {{id: s{i}, text: \"{t}\"}}" for i, t in enumerate(_SIGN_TEXTS)]
    lines += [extra] if extra else []
    lines += ["    selection:", selection or "\n".join(f"      - {{id: s{i}, reason: \"reason {i}\"}}" for i in range(3))]
    p = tmp_path / "my_signs.yaml"
    p.write_text("\n".join(lines) + "\n")
    return p


def _load(p: Path) -> SignBank:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SignFileWarning)
        return SignBank.load(p)


def test_sign_file_valid_reference(tmp_path):
    assert _load(_sign_file(tmp_path)).categories == ("Effusion",)


def test_sign_file_with_an_unknown_category(tmp_path):
    p = _sign_file(tmp_path, category="Pneumonitis")
    with pytest.raises(SignFileError, match=r"my_signs\.yaml:4: unknown category 'Pneumonitis': not a label of "
                                            r"dataset 'chestxray14' \(Atelectasis, .*Hernia\)"):
        _load(p)


def test_sign_file_with_an_empty_selection(tmp_path):
    p = _sign_file(tmp_path, selection="      []")
    with pytest.raises(SignFileError, match=r"my_signs\.yaml:\d+: empty selection for category 'Effusion' "
                                            r"\(select 3-5 candidate ids\)"):
        _load(p)


def test_sign_file_with_a_prompt_over_77_tokens(tmp_path):
    wordy = " ".join(["a very long and wordy description"] * 14)
    p = _sign_file(tmp_path, extra=f"      - {{id: wordy, text: \"{wordy}\"}}")
    with pytest.raises(SignFileError, match=r"1 problem in .*my_signs\.yaml:\n  .*my_signs\.yaml:\d+: \d+ prompts over "
                                            r"77 tokens \(longest \d+\); shorten the text: 'an abnormal photo of"):
        _load(p)


def test_unknown_sign_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no sign file 'chest_xray'; available: .*chestxray14"):
        SignBank.load("chest_xray")


# =========================================================================== configs and profiles
@pytest.mark.parametrize("text, match", [
    ("train: {epoch: 3}\n", r"bad\.yaml\.train: unknown key\(s\) 'epoch'; allowed keys: .*epochs"),
    ("train: {epochs: ten}\n", r"bad\.yaml\.train\.epochs: expected an integer, got str 'ten'"),
    ("model: {adapter_hidden: 1.5}\n", r"bad\.yaml\.model\.adapter_hidden: expected an integer, got float 1\.5"),
    ("protocols: integrated\n", r"bad\.yaml\.protocols: expected a list, got str 'integrated'"),
])
def test_config_unknown_key_or_wrong_type(tmp_path, text, match):
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(C.ConfigError, match=match):
        C.load_config(tmp_path / "bad.yaml")


@pytest.mark.parametrize("text, match", [
    ("method: sdmad-lite\n", r"bad\.yaml\.method: unknown method 'sdmad-lite'; choose one of always-normal, .*sdmad, .*mvfa"),
    ("selection: {rule: best}\n", r"bad\.yaml\.selection\.rule: unknown value 'best'; choose one of auto, none, expert"),
    ("model: {adapter_mode: parallel}\n", r"bad\.yaml\.model\.adapter_mode: unknown value 'parallel'; choose one of "
                                          r"side, residual"),
    ("protocols: [integrated, open_set]\n", r"bad\.yaml\.protocols\[1\]: unknown value 'open_set'; choose one of "
                                            r"integrated, per-anomaly, open-set"),
    ("data: {dataset: phantom-lung}\n", r"bad\.yaml\.data\.dataset: unknown value 'phantom-lung'; choose one of "
                                        r"phantom-chest"),
])
def test_config_unknown_method_rule_or_adapter_mode(tmp_path, text, match):
    from sdmad_lite.methods import load_experiment  # the config's keys, then the method against the registry

    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(C.ConfigError, match=match):
        load_experiment(tmp_path / "bad.yaml")


def test_known_values_load():
    for method in ("sdmad", "mvfa", "zeroshot-names", "sdmad-no-ss"):
        assert C.ExperimentConfig.from_dict({"method": method}).method == method
    cfg = C.ExperimentConfig.from_dict({"model": {"adapter_mode": "residual"}, "selection": {"rule": "topk"}})
    assert (cfg.model.adapter_mode, cfg.selection.rule) == ("residual", "topk")


def test_selection_rule_unknown_at_the_function():
    from sdmad_lite import selection as S

    m = np.ones(3, bool)
    with pytest.raises(ValueError, match=r"unknown selection rule 'best'; choose one of auto, none, expert, all, topk"):
        S.select("best", None, m, m, m)


def test_unknown_profile(tmp_path, monkeypatch):
    with pytest.raises(C.ConfigError, match=r"unknown profile 'gpu' \(from argument\); choose one of offline, colab, paper"):
        C.get_profile("gpu")
    monkeypatch.setenv("SDMAD_PROFILE", "laptop")
    with pytest.raises(C.ConfigError, match=r"unknown profile 'laptop' \(from \$SDMAD_PROFILE\)"):
        C.get_profile()
    with pytest.raises(C.ConfigError, match=r"unknown profile 'laptop' \(from \$SDMAD_PROFILE\)"):
        C.load_config(tmp_path / "bad.yaml") if (tmp_path / "bad.yaml").write_text("seed: 1\n") else None
    monkeypatch.delenv("SDMAD_PROFILE")
    (tmp_path / "bad.yaml").write_text("profile: gpu\n")
    with pytest.raises(C.ConfigError, match=r"bad\.yaml\.profile: unknown profile 'gpu'; choose one of offline"):
        C.load_config(tmp_path / "bad.yaml")


def test_profile_needing_the_network_without_one(monkeypatch):
    monkeypatch.setattr(profiles, "network_available", lambda *a, **k: False)
    with pytest.raises(profiles.ProfileUnavailableError, match=r"profile 'colab' needs ViT-B-16 weights \(openai\).*no "
                                                        r"network and no cached copy.*SDMAD_PROFILE=offline"):
        profiles.require_profile_ready(profiles.get_profile("colab"))
    profiles.require_profile_ready(profiles.get_profile("colab"), weights_cached=True)  # cached weights need no network
    profiles.require_profile_ready(profiles.get_profile("offline"))


def test_cli_run_with_a_network_profile_without_network(tmp_path, monkeypatch, capsys):
    from sdmad_lite import task as T

    monkeypatch.setattr(profiles, "network_available", lambda *a, **k: False)
    monkeypatch.setattr(T, "weights_cached", lambda name, pretrained: False)
    monkeypatch.setattr(T, "_BACKBONES", {})
    cfg = tmp_path / "colab.yaml"
    cfg.write_text("profile: colab\nmodel: {backbone: ViT-B-16, pretrained: openai}\n"
                   f"data: {{dataset: chestmnist, root: {tmp_path}}}\n")
    assert main(["run", str(cfg), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sdmad run: error: profile 'colab' needs ViT-B-16 weights") and "SDMAD_PROFILE=offline" in err


# =========================================================================== checkpoints
@pytest.fixture(scope="module")
def phantomclip_state(tmp_path_factory):
    """A state dict of PhantomCLIP-tiny (random weights, built here: the shipped file is not needed)."""
    from sdmad_lite.models import backbone as BB

    bb = BB.load(BB.PHANTOMCLIP, pretrained=None)
    path = tmp_path_factory.mktemp("ckpt") / "good.pt"
    torch.save(bb.model.state_dict(), path)
    return path


def test_checkpoint_of_another_model(tmp_path, phantomclip_state):
    from sdmad_lite.models import backbone as BB

    state = torch.load(phantomclip_state, weights_only=True)
    state["visual.proj"] = torch.zeros(64, 32)
    torch.save(state, tmp_path / "other_shape.pt")
    with pytest.raises(BB.BackboneError, match=r"other_shape\.pt is a checkpoint of another model, not phantomclip-tiny: "
                                               r"1 wrong shapes \(e\.g\. visual\.proj \(64, 32\) instead of \(128, 128\)\)"
                                               r".*Pass a checkpoint of phantomclip-tiny"):
        BB.load("phantomclip-tiny", pretrained=str(tmp_path / "other_shape.pt"))
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "resnet.pt")
    with pytest.raises(BB.BackboneError, match=r"resnet\.pt is a checkpoint of another model.*missing keys.*"
                                               r"1 unexpected keys \(e\.g\. fc\.weight\)"):
        BB.load("phantomclip-tiny", pretrained=str(tmp_path / "resnet.pt"))
    torch.save({"epoch": 3, "note": "not weights"}, tmp_path / "meta.pt")
    with pytest.raises(BB.BackboneError, match=r"meta\.pt is not a model state dict \(a dict with non-tensor entries"):
        BB.load("phantomclip-tiny", pretrained=str(tmp_path / "meta.pt"))


def test_truncated_checkpoint(tmp_path, phantomclip_state):
    from sdmad_lite.models import backbone as BB

    data = phantomclip_state.read_bytes()
    (tmp_path / "half.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(BB.BackboneError, match=r"half\.pt is not a readable checkpoint .*truncated.*re-download or rebuild"):
        BB.load("phantomclip-tiny", pretrained=str(tmp_path / "half.pt"))
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(BB.BackboneError, match=r"empty\.pt is not a readable checkpoint \(EOFError\); it may be empty"):
        BB.load("phantomclip-tiny", pretrained=str(tmp_path / "empty.pt"))


def test_a_good_checkpoint_loads_without_a_random_init_warning(phantomclip_state, caplog):
    from sdmad_lite.models import backbone as BB

    with caplog.at_level(logging.WARNING):
        bb = BB.load("phantomclip-tiny", pretrained=str(phantomclip_state))
    assert "initialized randomly" not in caplog.text
    want = torch.load(phantomclip_state, weights_only=True)["visual.proj"]
    assert torch.equal(bb.model.visual.proj, want) and bb.pretrained == str(phantomclip_state)


def test_missing_weights_never_fall_back_to_random(tmp_path, monkeypatch):
    from sdmad_lite import task as T
    from sdmad_lite.models import backbone as BB

    with pytest.raises(BB.BackboneError, match=r"checkpoint not found: .*nope\.pt\. For phantomclip-tiny, pretrained is "
                                               r"'default'"):
        BB.load("phantomclip-tiny", pretrained=str(tmp_path / "nope.pt"))
    monkeypatch.setitem(BB.SHIPPED, "shipped", (tmp_path / "phantomclip-tiny.pt", BB.PHANTOMCLIP_CARD))
    with pytest.raises(BB.BackboneError, match=r"checkpoint not found: .*phantomclip-tiny\.pt\. Build it with "
                                               r"`sdmad pretrain-phantomclip`"):
        BB.load("phantomclip-tiny", pretrained="default")
    monkeypatch.setattr(T, "_BACKBONES", {})  # the run path ("shipped" in a config) too
    with pytest.raises(BB.BackboneError, match="checkpoint not found"):
        T.get_backbone(C.ExperimentConfig())


def test_shipped_checkpoint_with_a_wrong_sha256(tmp_path, monkeypatch, phantomclip_state):
    from sdmad_lite.models import backbone as BB

    ckpt, card = tmp_path / "phantomclip-tiny.pt", tmp_path / "phantomclip-tiny.card.json"
    shutil.copy(phantomclip_state, ckpt)
    monkeypatch.setitem(BB.SHIPPED, "shipped", (ckpt, card))  # the file and card that "default" names
    card.write_text(json.dumps({"sha256": "0" * 64}))
    with pytest.raises(BB.BackboneError, match=r"phantomclip-tiny\.pt has sha256 [0-9a-f]{12}…, the model card says "
                                               r"000000000000…: the shipped checkpoint is damaged or was replaced\. "
                                               r"Reinstall the package or rebuild it"):
        BB.load("phantomclip-tiny", pretrained="default")
    card.write_text("{not json")
    with pytest.raises(BB.BackboneError, match=r"phantomclip-tiny\.card\.json .* is not valid JSON"):
        BB.load("phantomclip-tiny", pretrained="default")
    card.write_text(json.dumps({"sha256": BB.sha256_file(ckpt)}))
    assert BB.load("phantomclip-tiny", pretrained="default").pretrained == str(ckpt)


def test_one_pixel_image_through_the_backbone(phantomclip_state):
    from sdmad_lite.models import backbone as BB

    bb = BB.load("phantomclip-tiny", pretrained=str(phantomclip_state))
    x = bb.prepare([np.array([[77]], np.uint8), np.zeros((3, 500), np.uint8)])
    assert x.shape == (2, 3, bb.image_size, bb.image_size) and torch.isfinite(x).all()
    with pytest.raises(ValueError, match=r"expected grayscale images \(B, H, W\), got shape \(1, 2, 2, 2\)"):
        bb.prepare(np.zeros((1, 2, 2, 2), np.uint8))


# =========================================================================== NaN / inf
def test_nan_or_inf_features():
    f = Features({3: torch.tensor([[[0.0, float("nan")]], [[float("inf"), 1.0]]])}, torch.ones(2, 2))
    with pytest.raises(NonFiniteFeaturesError, match=r"test set: 2 NaN/inf values in the block 3 features of 2 of 2 "
                                                     r"images \(e\.g\. image 0\) — the "
                                                     r"backbone or its checkpoint is broken \(rebuild or reinstall it\)"):
        f.check_finite("test set")
    assert issubclass(NonFiniteFeaturesError, ValueError)


class _FakeBackbone:
    """Stands in for a Backbone in ``cached_features``: constant features (finite or NaN)."""

    def __init__(self, value: float):
        self.value, self.key = value, "fake|none"

    def prepare(self, images):
        return torch.zeros(len(images), 3, 2, 2)

    def forward_image(self, pixels, taps=()):
        n = len(pixels)
        return torch.full((n, 4), self.value), {b: torch.full((n, 2, 4), self.value) for b in taps}


def test_nan_features_are_refused_and_a_nan_cache_entry_is_recomputed(tmp_path, monkeypatch):
    monkeypatch.setenv("SDMAD_CACHE", str(tmp_path))
    key, img = {"dataset": "toy"}, (lambda i: np.zeros((2, 2), np.uint8))
    with pytest.raises(NonFiniteFeaturesError, match=r"features of \{'dataset': 'toy'\}: 12 NaN/inf values in the pooled features "
                                                     r"of 3 of 3 images"):
        cached_features(_FakeBackbone(float("nan")), key, img, 3, [2])
    folder = tmp_path / "features" / cache_key("fake|none", key)
    assert not folder.exists()  # NaN features are never cached
    folder.mkdir(parents=True)
    torch.save(torch.full((3, 2, 4), float("nan")), folder / "block2.all.pt")
    torch.save(torch.ones(3, 4), folder / "pooled.pt")
    feats = cached_features(_FakeBackbone(1.0), key, img, 3, [2])  # the NaN entry is not trusted
    assert torch.isfinite(feats.taps[2].float()).all()
    assert torch.isfinite(torch.load(folder / "block2.all.pt", weights_only=True).float()).all()


def test_metrics_with_nan_or_inf_scores():
    y = np.array([[1, 0], [0, 1], [0, 0]])
    s = np.array([[0.9, 0.1], [np.nan, 0.8], [0.2, 0.3]])
    with pytest.raises(M.MetricInputError, match=r"scores contains 1 NaN and 0 inf value\(s\) in 1 image\(s\) \(rows 1\): "
                                                 r"features contain NaN/inf — check the model/checkpoint"):
        M.macro_auroc(y, s)
    with pytest.raises(M.MetricInputError, match=r"anchor contains 0 NaN and 1 inf"):
        P.evaluate_integrated(np.nan_to_num(s), np.array([0.1, np.inf, 0.2]), y, [0.5, 0.5], 0.5)


# =========================================================================== the CLI and run folders
_TINY = """\
seed: 3
k_shot: 2
protocols: [integrated]
model: {pretrained: null, adapter_hidden: 16}
data: {dataset: phantom-oct, n_test: 20, n_pool: 60, image_size: 64}
train: {epochs: 5, patience: 50}
"""


@pytest.mark.slow
def test_cli_run_refuses_an_existing_run_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SDMAD_CACHE", str(tmp_path / "cache"))
    cfg, out = tmp_path / "tiny.yaml", tmp_path / "run"
    cfg.write_text(_TINY)
    assert main(["run", str(cfg), "--out", str(out)]) == 0
    made = {p.name: p.read_bytes() for p in out.iterdir()}
    assert {"metrics.json", "config.yaml", "split.json"} <= set(made)  # a tuned run predicts with its fold models: no checkpoint
    capsys.readouterr()
    cfg.write_text(_TINY.replace("seed: 3", "seed: 4"))  # even another config may not replace it
    assert main(["run", str(cfg), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sdmad run: error: ") and "already holds a finished run (metrics.json)" in err
    assert "--overwrite" in err and str(out) in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == made  # nothing the first run made is touched


def test_cli_user_errors_exit_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {epoch: 3}\n")
    assert main(["run", str(bad), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sdmad run: error: ") and "bad.yaml.train: unknown key(s) 'epoch'" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()  # a config error creates nothing

    bad.write_text("method: sdmad-lite\n")
    assert main(["run", str(bad), "--out", str(tmp_path / "run")]) == 2
    assert "sdmad run: error: " in (err := capsys.readouterr().err) and "unknown method 'sdmad-lite'" in err

    assert main(["run", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "run")]) == 2
    assert "sdmad run: error: config file not found" in capsys.readouterr().err

    assert main(["info", "--profile", "gpu"]) == 2
    assert "sdmad info: error: unknown profile 'gpu'" in capsys.readouterr().err


def test_cli_recognises_library_errors_but_not_bugs():
    from sdmad_lite.cli.commands import is_user_error
    from sdmad_lite.models.backbone import BackboneError
    from sdmad_lite.run import RunExistsError
    from sdmad_lite.settings import SettingError

    for exc in (RunExistsError("x"), BackboneError("x"), ImageLoadError("x"), DatasetNotFoundError("x"),
                SignFileError("x"), TableError("x"), M.MetricInputError("x"), PoolTooSmallError("x"),
                NonFiniteFeaturesError("x"), C.ConfigError("x"), profiles.ProfileUnavailableError("x"), SettingError("x")):
        assert is_user_error(exc), type(exc)
    for exc in (KeyError("x"), TypeError("x"), RuntimeError("x"), AttributeError("x"), ValueError("x"),
                FileNotFoundError("x")):
        assert not is_user_error(exc), type(exc)
