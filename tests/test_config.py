import pytest
import torch

from sdmad_lite.config import profiles
from sdmad_lite import config as C
from sdmad_lite.seeding import rng, seed_everything


def test_default_profile_is_offline(monkeypatch):
    monkeypatch.delenv(profiles.PROFILE_ENV, raising=False)
    assert C.get_profile().name == "offline"
    assert C.get_profile().backbone == "phantomclip-tiny"


def test_profile_from_env_and_argument(monkeypatch):
    monkeypatch.setenv(profiles.PROFILE_ENV, "colab")
    assert C.get_profile().name == "colab"
    assert C.get_profile("paper").backbone == "ViT-L-14-336"  # the argument wins


def test_unknown_profile_names_choices(monkeypatch):
    monkeypatch.setenv(profiles.PROFILE_ENV, "gpu-please")
    with pytest.raises(C.ConfigError, match=r"unknown profile 'gpu-please'.*offline, colab, paper"):
        C.get_profile()


def test_network_profile_fails_fast_without_network(monkeypatch):
    monkeypatch.setattr(profiles, "network_available", lambda *a, **k: False)
    with pytest.raises(profiles.ProfileUnavailableError, match="no network and no cached copy"):
        profiles.require_profile_ready(C.get_profile("colab"))
    profiles.require_profile_ready(C.get_profile("colab"), weights_cached=True)  # cached: fine
    profiles.require_profile_ready(C.get_profile("offline"))  # never needs the network


def test_config_roundtrip(tmp_path):
    cfg = C.default_config("offline", seed=3, model={"adapter_lambda": 0.7})
    assert cfg.seed == 3 and cfg.model.adapter_lambda == 0.7
    C.save_config(cfg, tmp_path / "c.yaml")
    assert C.load_config(tmp_path / "c.yaml") == cfg


def test_default_config_follows_profile():
    cfg = C.default_config("paper")
    assert cfg.model.backbone == "ViT-L-14-336" and cfg.data.dataset == "chestxray14"


@pytest.mark.parametrize(
    "text, match",
    [
        ("seed: 1\nlearning_rate: 3\n", r"unknown key\(s\) 'learning_rate'"),
        ("train: {epochs: ten}\n", r"train\.epochs: expected an integer, got str 'ten'"),
        ("model: {adapter_lambda: yes}\n", r"model\.adapter_lambda: expected a number"),
        ("profile: laptop\n", "unknown profile 'laptop'"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("data: {dataset: [\n", "not valid YAML"),
    ],
)
def test_bad_config_names_the_key(tmp_path, text, match):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(C.ConfigError, match=match):
        C.load_config(p)


def test_missing_config_file(tmp_path):
    with pytest.raises(C.ConfigError, match="config file not found"):
        C.load_config(tmp_path / "nope.yaml")


def test_seed_everything_same_numbers():
    seed_everything(7)
    a = torch.randn(5), torch.rand(2)
    seed_everything(7)
    b = torch.randn(5), torch.rand(2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    seed_everything(8)
    assert not torch.equal(a[0], torch.randn(5))


def test_derived_rng_is_stable_and_keyed():
    assert rng(1, "chest", 3).integers(1 << 30) == rng(1, "chest", 3).integers(1 << 30)
    assert rng(1, "chest", 3).integers(1 << 30) != rng(1, "chest", 4).integers(1 << 30)


def test_bad_seed():
    with pytest.raises(ValueError, match="non-negative integer"):
        seed_everything(-1)


def test_device_setting_is_checked_and_resolved():
    import torch

    from sdmad_lite.config import ConfigError, ExperimentConfig, resolve_device

    assert ExperimentConfig().model.device == "auto"
    for ok in ("auto", "cpu", "cuda", "cuda:1"):
        assert ExperimentConfig.from_dict({"model": {"device": ok}}).model.device == ok
    with pytest.raises(ConfigError, match=r"model\.device.*'gpu'.*auto, cpu, cuda or cuda:N"):
        ExperimentConfig.from_dict({"model": {"device": "gpu"}})
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="sees 0 GPU.*'auto' or 'cpu'"):
            resolve_device("cuda")
