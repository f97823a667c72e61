"""Nothing silently wrong: settings read in one place and honoured, values checked at load naming the
key, arguments checked at parse time, output paths checked before any compute, and messages that say
what is wrong with *this* input."""
from __future__ import annotations

import os
import stat

import pytest

from sdmad_lite import config as C
from sdmad_lite import settings
from sdmad_lite.cli import main


def _yaml(tmp_path, text, name="c.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("text, key", [
    ("k_shot: 0\n", "k_shot"), ("k_shot: -3\n", "k_shot"), ("train: {epochs: -1}\n", "train.epochs"),
    ("train: {val_fraction: 1.5}\n", "train.val_fraction"), ("data: {n_test: -1}\n", "data.n_test"),
    ("data: {normal_fraction: 2}\n", "data.normal_fraction"), ("model: {adapter_lambda: 1.2}\n", "model.adapter_lambda"),
    ("tuning: {folds: 1}\n", "tuning.folds"), ("loss: {temperature: 0}\n", "loss.temperature"),
    ("seed: -1\n", "seed"), ("tuning: {grid: {train.nope: [1]}}\n", "tuning.grid"),
])
def test_out_of_range_values_fail_at_load_naming_the_key(tmp_path, text, key):
    with pytest.raises(C.ConfigError, match=key.replace(".", r"\.")):
        C.load_config(_yaml(tmp_path, text))


def test_the_profile_variable_is_validated_and_honoured(tmp_path, monkeypatch):
    monkeypatch.setenv("SDMAD_PROFILE", "bogus")
    with pytest.raises(C.ConfigError, match="unknown profile 'bogus'"):
        C.load_config(_yaml(tmp_path, "seed: 1\n"))
    monkeypatch.setenv("SDMAD_PROFILE", "paper")
    with pytest.raises(C.ConfigError, match=r"says profile 'offline' but SDMAD_PROFILE=paper"):
        C.load_config(_yaml(tmp_path, "profile: offline\n"))
    assert C.load_config(_yaml(tmp_path, "profile: offline\n"), environment=False).profile == "offline"  # the file alone
    cfg = C.load_config(_yaml(tmp_path, "seed: 1\n"))  # no profile in the file: the variable's, with its defaults
    assert cfg.profile == "paper" and cfg.model.backbone == "ViT-L-14-336" and cfg.data.dataset == "chestxray14"
    monkeypatch.setenv("SDMAD_PROFILE", "  ")  # empty means unset
    assert C.load_config(_yaml(tmp_path, "seed: 1\n")).profile == "offline"


def test_cache_variable(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SDMAD_CACHE", "")
    assert settings.cache_root() != tmp_path and settings.cache_root() == settings.Path.home() / ".cache" / "sdmad_lite"
    f = tmp_path / "a_file"
    f.write_text("x")
    monkeypatch.setenv("SDMAD_CACHE", str(f))
    with pytest.raises(settings.SettingError, match="SDMAD_CACHE=.*is a file, not a folder"):
        settings.cache_root()
    monkeypatch.setenv("SDMAD_WORKERS", "two")
    with pytest.raises(settings.SettingError, match="SDMAD_WORKERS"):
        settings.workers(1)


@pytest.mark.parametrize("argv, message", [
    (["sweep", "--seeds", "9-0", "--out", "x.csv"], "the range '9-0' is empty"),
    (["sweep", "--seeds", "-3", "--out", "x.csv"], "'-3' is not a seed or a range"),
    (["sweep", "--shots", "0", "--out", "x.csv"], "expected a whole number ≥ 1, got 0"),
    (["phantoms", "--modality", "chest", "--n", "-3", "--out", "o"], "expected a whole number ≥ 1, got -3"),
    (["phantoms", "--modality", "chest", "--n", "0", "--out", "o"], "expected a whole number ≥ 1, got 0"),
    (["phantoms", "--modality", "chest", "--n", "2", "--normal-fraction", "2", "--out", "o"], "expected a number in [0, 1]"),
    (["phantoms", "--modality", "chest", "--n", "2", "--noise", "-1", "--out", "o"], "expected a number ≥ 0"),
])
def test_arguments_are_checked_when_parsed(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "o").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_out_fails_before_compute(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        assert main(["sweep", "--out", str(ro / "s.csv")]) == 2
        assert "permission denied" in capsys.readouterr().err
    finally:
        ro.chmod(stat.S_IRWXU)


def test_output_paths_are_checked_before_compute(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    cfg = _yaml(tmp_path, "seed: 0\n")
    assert main(["run", str(cfg), "--out", str(f)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert main(["run", str(cfg), "--out", str(f / "run")]) == 2
    assert f"is under the file {f}" in capsys.readouterr().err
    assert main(["sweep", "--out", str(tmp_path)]) == 2
    assert "is a folder; give the path of a file" in capsys.readouterr().err
    assert main(["phantoms", "--modality", "oct", "--n", "1", "--out", str(f)]) == 2
    assert list(tmp_path.glob("*.tmp")) == [] and list(tmp_path.glob(".*.tmp")) == []


def test_k_too_large_fails_before_the_run_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SDMAD_CACHE", str(tmp_path / "cache"))
    cfg = _yaml(tmp_path, "k_shot: 400\ndata: {n_pool: 300, n_test: 20}\n")
    assert main(["run", str(cfg), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "k_shot = 400 cannot be drawn from the pool of 300 images" in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache" / "features").exists()


def test_ctrl_c_exits_130_with_one_line(monkeypatch, capsys):
    import sdmad_lite.cli.commands as cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_info", interrupted)
    assert main(["info"]) == 130
    err = capsys.readouterr().err
    assert err.startswith("sdmad info: interrupted") and len(err.strip().splitlines()) == 1


def test_a_bug_keeps_its_traceback(monkeypatch):
    import sdmad_lite.cli.commands as cli

    def buggy(args):
        raise ValueError("a plain ValueError from somewhere")

    monkeypatch.setattr(cli, "_info", buggy)
    with pytest.raises(ValueError, match="plain ValueError"):
        main(["info"])


def test_a_missing_user_table_is_not_called_shipped(tmp_path):
    from sdmad_lite.data.fastmri_plus import read_fastmri_brain_csv
    from sdmad_lite.data.table_files import TableError

    with pytest.raises(TableError, match="check the path you gave") as e:
        read_fastmri_brain_csv(tmp_path / "brain.csv")
    assert "reinstall" not in str(e.value)


def test_conflicting_table_rows_are_refused(tmp_path):
    from sdmad_lite.data import tables
    from sdmad_lite.data.table_files import TableError

    p = tmp_path / "list.txt"
    zeros = " ".join(["0"] * 14)
    p.write_text(f"00000001_000.png {zeros}\n00000001_000.png 1{zeros[1:]}\n")
    with pytest.raises(TableError, match="more than once with different labels"):
        tables.read_chestxray14_list(p, "test")
    p.write_text(f"00000001_000.png {zeros}\n00000001_000.png {zeros}\n")
    assert len(tables.read_chestxray14_list(p, "test")) == 1  # an exact duplicate is kept once
