"""Bad inputs, second round (issue 25): nothing runs, nothing is lost, nothing is silently wrong.

Each test is one case of the issue, numbered by its item: 1 a planted checkpoint, 2 output paths that
are not regular files, 3 data lost, 4 trusted caches, 5 silently wrong results, 6 hangs, 7 late or
misleading errors, 8 the book build, 9 tracebacks where a one-line error belongs. A command's error is
one line on stderr, naming the problem and the fix, before any compute; nothing of the user's is
overwritten or lost.
"""
from __future__ import annotations

import errno
import fcntl
import importlib.util
import json
import os
import pickle
import signal
import stat
import struct
import tarfile
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from sdmad_lite import cache, executor, processes
from sdmad_lite.cli import main
from sdmad_lite.cli.commands import build_parser
from sdmad_lite.config import ConfigError, ExperimentConfig
from sdmad_lite.data.build import file_fingerprint
from sdmad_lite.data.download import DownloadError, extract_tar
from sdmad_lite.data.fastmri_plus import read_fastmri_brain_csv
from sdmad_lite.data.images import ImageLoadError, load_image
from sdmad_lite.data.table_files import TableError
from sdmad_lite.io import LockedError, OutputPathError, WriteError, atomic_write, exclusive_lock
from sdmad_lite.methods import load_experiment
from sdmad_lite.signs import SignBank, SignFileError

ROOT = Path(__file__).resolve().parents[1]

TINY = """\
seed: 3
k_shot: 2
protocols: [integrated]
model: {adapter_hidden: 8}
data: {dataset: phantom-oct, n_test: 20, n_pool: 60, image_size: 32}
tuning: {folds: 0}
train: {epochs: 2}
"""


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A tiny experiment, run afresh (no result cache; the features and text embeddings of the user's cache)."""
    monkeypatch.setenv("SDMAD_NO_RESULT_CACHE", "1")
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY)
    return p


def cli(argv: list[str], capsys) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line(err: str, command: str) -> str:
    """The one-line error of ``sdmad COMMAND``: no traceback, one line on stderr (after any progress bar,
    which redraws its line with carriage returns)."""
    msg = err.split("\r")[-1]
    assert msg.startswith(f"sdmad {command}: error: "), err
    assert "Traceback" not in err and len(msg.strip().splitlines()) == 1 and "\x1b" not in msg, err
    return msg


def argparse_error(argv: list[str], capsys) -> str:
    """An argument refused while parsing: exit 2 and argparse's message on stderr."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    return capsys.readouterr().err


# =========================================================================== 1. a planted checkpoint
class _Plant:
    """A pickle that, when unpickled, creates the file ``marker`` (as a planted checkpoint would run code)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.slow
def test_1_a_planted_checkpoint_runs_no_code_and_overwrite_replaces_it(tiny, tmp_path, capsys):
    out, marker = tmp_path / "run", tmp_path / "MARKER"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(pickle.dumps({"head": _Plant(marker)}, protocol=2))
    rc, _, err = cli(["run", tiny, "--out", out], capsys)
    assert rc == 2 and "checkpoint.pt is an unreadable training checkpoint" in one_line(err, "run")
    assert "--overwrite" in err and not marker.exists()
    # --overwrite runs afresh (never resuming the planted file) and replaces it once the run has finished
    assert cli(["run", tiny, "--out", out, "--overwrite"], capsys)[0] == 0
    assert not marker.exists() and (out / "metrics.json").is_file()
    assert torch.load(out / "checkpoint.pt", weights_only=True)  # the new run's own checkpoint
    assert not (tmp_path / ".run.overwrite").exists()


# =========================================================================== 2. output paths
def test_2_atomic_write_refuses_a_fifo_a_device_and_a_folder(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OutputPathError, match=r"fifo is a FIFO \(named pipe\), not a regular file.*give the path of "
                                              r"a regular file"):
        atomic_write(fifo, "rows")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # never replaced by a file
    with pytest.raises(OutputPathError, match="is a folder, not a regular file"):
        atomic_write(tmp_path, "rows")
    link = tmp_path / "to_fifo"
    link.symlink_to(fifo)
    with pytest.raises(OutputPathError, match=r"is a FIFO \(named pipe\) \(the symbolic link .*to_fifo points to it\)"):
        atomic_write(link, "rows")
    assert link.is_symlink()
    try:  # a device node like /dev/null, made here (root only): never replaced
        os.mknod(tmp_path / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (PermissionError, OSError):
        return
    with pytest.raises(OutputPathError, match="null is a character device"):
        atomic_write(tmp_path / "null", "rows")
    assert stat.S_ISCHR(os.lstat(tmp_path / "null").st_mode)


def test_2_a_symlink_is_written_through_and_modes_are_kept(tmp_path):
    target, link = tmp_path / "real.csv", tmp_path / "link.csv"
    target.write_text("old")
    target.chmod(0o640)
    link.symlink_to(target)
    atomic_write(link, "new")
    assert link.is_symlink() and target.read_text() == "new"  # the link stays; its target holds the new rows
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # not mkstemp's 0600
    mask = os.umask(0o022)
    try:
        atomic_write(tmp_path / "fresh.csv", "x")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "fresh.csv").stat().st_mode) == 0o644


def test_2_commands_refuse_a_fifo_or_a_device_as_out_before_any_compute(tiny, tmp_path, capsys, monkeypatch):
    from sdmad_lite.cli import models as CM

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    rc, _, err = cli(["sweep", "--config", tiny, "--methods", "sdmad", "--seeds", "0", "--out", fifo], capsys)
    assert rc == 2 and "is a FIFO (named pipe), not a regular file" in one_line(err, "sweep")
    monkeypatch.setattr(CM, "load", lambda *a, **k: pytest.fail("the backbone was loaded before --out was checked"))
    rc, _, err = cli(["zeroshot-report", "--backbone", "phantomclip-tiny", "--out", fifo], capsys)
    assert rc == 2 and "FIFO" in one_line(err, "zeroshot-report")
    rc, _, err = cli(["run", tiny, "--out", fifo], capsys)
    assert rc == 2 and "is a FIFO (named pipe), not a folder" in one_line(err, "run")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_9_proc_as_out_is_one_line_before_compute(tiny, capsys):
    rc, _, err = cli(["sweep", "--config", tiny, "--methods", "sdmad", "--seeds", "0", "--out", "/proc/sdmad.csv"], capsys)
    assert rc == 2 and "cannot write there" in one_line(err, "sweep")
    rc, _, err = cli(["run", tiny, "--out", "/proc/sdmad-run"], capsys)
    assert rc == 2 and "cannot write there" in one_line(err, "run")


def test_2_a_csv_named_meta_and_a_sidecar_of_the_users_are_refused(tiny, tmp_path, capsys):
    base = ["sweep", "--config", tiny, "--methods", "sdmad", "--seeds", "0", "--out"]
    rc, _, err = cli(base + [tmp_path / "x.meta"], capsys)
    assert rc == 2 and "cannot end in .meta" in one_line(err, "sweep")
    mine = tmp_path / "r.meta"
    mine.write_text('{"my": "notes"}')
    rc, _, err = cli(base + [tmp_path / "r.csv"], capsys)
    assert rc == 2 and "is not the sidecar of an sdmad results file" in one_line(err, "sweep")
    assert mine.read_text() == '{"my": "notes"}' and not (tmp_path / "r.csv").exists()
    rc, _, err = cli(["study", "comparison", "--out", tmp_path / "r.csv"], capsys)  # refused before any run
    assert rc == 2 and "is not the sidecar" in one_line(err, "study")


def test_9_a_corrupt_sidecar_is_one_line(tiny, tmp_path, capsys):
    (tmp_path / "r.meta").write_text("{not json")
    rc, _, err = cli(["sweep", "--config", tiny, "--methods", "sdmad", "--seeds", "0", "--out", tmp_path / "r.csv"], capsys)
    assert rc == 2 and "r.meta is not a readable sidecar" in one_line(err, "sweep")
    assert (tmp_path / "r.meta").read_text() == "{not json"


# =========================================================================== 3. data lost
@pytest.mark.slow
def test_3_overwrite_keeps_the_old_run_when_the_new_one_fails(tiny, tmp_path, capsys, monkeypatch):
    from sdmad_lite import run as R
    from sdmad_lite.errors import SdmadError

    out = tmp_path / "run"
    assert cli(["run", tiny, "--out", out], capsys)[0] == 0
    (out / "notes.txt").write_text("mine")
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(*a, **k):
        raise SdmadError("the new run failed")

    evaluate = R.evaluate
    monkeypatch.setattr(R, "evaluate", broken)  # fails after the new run has trained
    tiny.write_text(TINY.replace("seed: 3", "seed: 4"))
    rc, _, err = cli(["run", tiny, "--out", out, "--overwrite"], capsys)
    assert rc == 2 and "the new run failed" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing of the old run lost
    monkeypatch.setattr(R, "evaluate", evaluate)
    assert cli(["run", tiny, "--out", out, "--overwrite"], capsys)[0] == 0
    assert json.loads((out / "metrics.json").read_text())["seed"] == 4
    assert (out / "notes.txt").read_text() == "mine"  # the user's own file stays


def test_3_a_second_sweep_on_one_csv_is_refused(tiny, tmp_path, capsys):
    out = tmp_path / "s.csv"
    with exclusive_lock(out, "a test sweep"):  # a sweep running in another process holds the lock
        rc, _, err = cli(["sweep", "--config", tiny, "--methods", "sdmad", "--seeds", "0", "--out", out], capsys)
        assert rc == 2 and "being written by another sweep in another process" in one_line(err, "sweep")
        with pytest.raises(LockedError):
            with exclusive_lock(out, "x"):
                pass
    assert not out.exists() and not (tmp_path / "s.csv.lock").exists()  # the lock file goes with its holder
    fd = os.open(tmp_path / "s.csv.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # any flock on the file counts, not only this library's
    try:
        with pytest.raises(LockedError, match="choose another --out"):
            with exclusive_lock(out, "another sweep"):
                pass
    finally:
        os.close(fd)


def test_3_phantoms_never_overwrite_a_users_files(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "labels.jsonl").write_text('{"patient": 1, "finding": "effusion"}\n')
    argv = ["phantoms", "--modality", "oct", "--n", "2", "--size", "32", "--out"]
    rc, _, err = cli(argv + [mine], capsys)
    assert rc == 2 and "holds labels.jsonl, which sdmad phantoms did not write" in one_line(err, "phantoms")
    assert (mine / "labels.jsonl").read_text() == '{"patient": 1, "finding": "effusion"}\n'
    (mine / "labels.jsonl").unlink()
    (mine / "notes.txt").write_text("x")
    assert cli(argv + [mine], capsys)[0] == 2
    ours = tmp_path / "ours"
    assert cli(argv + [ours], capsys)[0] == 0
    assert cli(argv + [ours], capsys)[0] == 0  # its own output may be rewritten


# =========================================================================== 4. trusted caches
def test_4_the_result_cache_returns_only_untouched_finished_rows(tmp_path, monkeypatch):
    monkeypatch.setenv("SDMAD_CACHE", str(tmp_path))
    cfg = ExperimentConfig()
    row = {"method": cfg.method, "seed": cfg.seed, "k_shot": cfg.k_shot, "config_hash": cache.config_hash(cfg),
           "integrated.subset_accuracy": 0.25, "integrated.hamming_score": 0.5, "integrated.macro_auroc": float("nan"),
           "wall_time_s": 1.0}
    cache.write(cfg, row)
    got = cache.read(cfg)
    assert got["integrated.subset_accuracy"] == 0.25 and np.isnan(got["integrated.macro_auroc"])
    path = cache.result_path(cfg)
    entry = json.loads(path.read_text())

    def stored(e) -> None:
        path.write_text(json.dumps(e))

    stored({**entry, "row": {**entry["row"], "integrated.subset_accuracy": 0.99}})  # made-up metrics
    assert cache.read(cfg) is None
    for bad in ({}, {**row, "integrated.subset_accuracy": float("nan")}, {**row, "config_hash": "0" * 16}):
        stored({"format": cache.FORMAT, "digest": cache.stable_hash(bad, 64), "row": bad})  # consistent but not a row
        assert cache.read(cfg) is None
    stored(row)  # an entry of the old layout: a bare row
    assert cache.read(cfg) is None


def test_4_real_files_are_fingerprinted_by_content(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(b"\x00" * 1000)
    b.write_bytes(b"\x01" * 1000)
    before = file_fingerprint([a, b])
    st = a.stat()
    a.write_bytes(b"\x02" * 1000)  # another image: same name, same size ...
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))  # ... and the same modification time
    assert file_fingerprint([a, b]) != before
    a.write_bytes(b"\x00" * 1000)
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the same bytes, touched: the same images
    assert file_fingerprint([a, b]) == before


def test_4_ray_workers_get_no_token_and_the_readme_says_who_writes_a_shared_cache(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    monkeypatch.setenv("SDMAD_CACHE", "/shared/cache")
    env = processes.forwarded_env()
    assert "HF_TOKEN" not in env and env["SDMAD_CACHE"] == "/shared/cache"
    readme = (ROOT / "README.md").read_text()
    ray = readme[readme.index("### Sweeps on many cores"):]
    assert "never `HF_TOKEN`" in ray and "only the account that runs the sweep's workers may write it" in ray


# =========================================================================== 5 and 9. configs
BAD_CONFIGS = {
    "loss.temperature": ("loss: {temperature: .inf}\n", r"loss\.temperature: expected a finite number"),
    "data.conspicuity": ("data: {conspicuity: .inf}\n", r"data\.conspicuity: expected a finite number"),
    "train.lr": ("train: {lr: .inf}\n", r"train\.lr: expected a finite number"),
    "seed": ("seed: 4294967296\n", r"\.seed: 4294967296 is out of range.*alias"),
    "protocols": ("protocols: []\n", r"\.protocols: give at least one protocol"),
    "adapter_blocks []": ("model: {adapter_blocks: []}\n", r"model\.adapter_blocks: give at least one block"),
    "adapter_blocks [-1]": ("model: {adapter_blocks: [-1]}\n", r"model\.adapter_blocks: \[-1\] must be distinct block"),
    "tuning.grid k_shot": ("tuning: {grid: {k_shot: [1, 2]}}\n", r"tuning\.grid: 'k_shot' cannot be tuned"),
    "duplicate key": ("seed: 1\nseed: 2\n", r"line 2: the key 'seed' is given twice"),
    "alias": ("train: &t {epochs: 2}\nloss: *t\n", r"anchors and aliases .* are not allowed"),
    "alias bomb": ("tuning:\n  grid:\n    a: &a [x, x, x, x, x, x, x, x, x]\n    b: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
                   "    c: [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n", r"anchors and aliases"),
    "5001 digits": ("seed: " + "1" * 5001 + "\n", r"a value cannot be read"),
    "5000 deep": ("seed: " + "[" * 5000 + "]" * 5000 + "\n", r"nested too deeply"),
    "mixed keys": ("seed: 1\n2: 3\n", r"key 2 is not a name"),
    "image_size": ("data: {image_size: 100000}\n", r"data\.image_size: 100000 is out of range"),
    "n_test": ("data: {n_test: 1000000000}\n", r"data\.n_test: 1000000000 is out of range"),
    "folds": ("tuning: {folds: 1000}\n", r"tuning\.folds: 1000 is out of range"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_5_9_bad_configs_are_one_error_naming_the_key(case, tmp_path, capsys):
    text, match = BAD_CONFIGS[case]
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=match):
        load_experiment(p)
    rc, out, err = cli(["run", p, "--out", tmp_path / "run"], capsys)
    assert rc == 2 and "bad.yaml" in one_line(err, "run") and not (tmp_path / "run").exists()
    assert time.perf_counter() - t0 < 30  # an alias bomb is refused, not expanded


def test_9_a_latin_1_config_is_one_error(tmp_path, capsys):
    p = tmp_path / "bad.yaml"
    p.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"not UTF-8 text .* save the file as UTF-8"):
        load_experiment(p)
    assert cli(["run", p, "--out", tmp_path / "run"], capsys)[0] == 2


@pytest.mark.slow
def test_9_adapter_blocks_beyond_the_backbone_is_one_line(tiny, tmp_path, capsys):
    tiny.write_text(TINY.replace("adapter_hidden: 8", "adapter_hidden: 8, adapter_blocks: [99]"))
    rc, _, err = cli(["run", tiny, "--out", tmp_path / "run"], capsys)
    assert rc == 2 and "adapter_blocks" in one_line(err, "run")


def test_5_the_weights_are_recorded_in_every_row():
    from sdmad_lite.run import ROW_SETTINGS, settings_of

    cfg = ExperimentConfig.from_dict({"model": {"pretrained": None}})
    assert "model.pretrained" in ROW_SETTINGS and settings_of(cfg)["model.pretrained"] is None
    assert "model.pretrained" in __import__("sdmad_lite.results", fromlist=["TEXT_COLUMNS"]).TEXT_COLUMNS


def test_5_a_sweep_of_no_method_is_refused(tiny, tmp_path, capsys):
    rc, _, err = cli(["sweep", "--config", tiny, "--methods", ",", "--seeds", "0", "--out", tmp_path / "s.csv"], capsys)
    assert rc == 2 and "--methods: no method in ','" in one_line(err, "sweep") and not (tmp_path / "s.csv").exists()


def test_5_sdmad_profile_is_honoured_by_study_and_zeroshot_report(tmp_path, capsys, monkeypatch):
    from sdmad_lite.cli import models as CM
    from sdmad_lite.errors import SdmadError

    monkeypatch.setenv("SDMAD_PROFILE", "colab")
    rc, _, err = cli(["study", "comparison", "--out", tmp_path / "c.csv"], capsys)
    assert rc == 2 and "defined on the offline profile" in one_line(err, "study") and "SDMAD_PROFILE=colab" in err
    monkeypatch.setenv("SDMAD_PROFILE", "laptop")
    rc, _, err = cli(["study", "comparison", "--out", tmp_path / "c.csv"], capsys)
    assert rc == 2 and "unknown profile 'laptop'" in one_line(err, "study")

    asked = []

    def fake_backbone(cfg):
        asked.append((cfg.model.backbone, cfg.model.pretrained))
        raise SdmadError("stop here")

    monkeypatch.setattr(CM, "get_backbone", fake_backbone)
    monkeypatch.setenv("SDMAD_PROFILE", "colab")
    assert cli(["zeroshot-report"], capsys)[0] == 2
    assert asked == [("ViT-B-16", "openai")]  # the profile's backbone, not PhantomCLIP's


def test_5_sdmad_workers_is_the_default_of_every_workers_option(tmp_path, monkeypatch, capsys):
    from sdmad_lite.cli import experiments as CE
    from sdmad_lite.cli import models as CM

    parser = build_parser()
    for argv in (["sweep", "--out", "x.csv"], ["study", "comparison", "--out", "x.csv"],
                 ["pretrain-phantomclip", "--out", "x"]):
        assert parser.parse_args(argv).workers is None, argv
    monkeypatch.setenv("SDMAD_WORKERS", "3")
    assert processes.default_workers() == 3
    seen = {}
    monkeypatch.setattr(CE, "run_many", lambda cfgs, workers=None: seen.setdefault("study", workers) and [])
    monkeypatch.setattr(CE.studies, "STUDIES", {"comparison": lambda: []})
    cli(["study", "comparison", "--out", tmp_path / "c.csv"], capsys)
    monkeypatch.setattr(CM, "pretrain", lambda cfg, out, **kw: seen.setdefault("pretrain", cfg.workers))
    cli(["pretrain-phantomclip", "--out", tmp_path / "p"], capsys)
    monkeypatch.setattr(executor.cache, "read", lambda cfg: None)
    monkeypatch.setattr(executor, "_local", lambda cfgs, todo, workers: iter(seen.setdefault("sweep", workers) and ()))
    list(executor.iter_runs([ExperimentConfig(), ExperimentConfig(seed=1)], None))
    assert seen == {"study": 3, "pretrain": 3, "sweep": 3}
    monkeypatch.setenv("SDMAD_WORKERS", "many")
    rc, _, err = cli(["study", "comparison", "--out", tmp_path / "c.csv"], capsys)
    assert rc == 2 and "SDMAD_WORKERS='many'" in one_line(err, "study")


def test_5_9_the_brain_label_table_refuses_an_unknown_label_and_a_bad_slice(tmp_path):
    head = "file,slice,study_level,x,y,width,height,label\n"
    p = tmp_path / "brain.csv"
    p.write_text(head + "file_brain_AXT2_200_1,3,No,1,2,3,4,Mass\nfile_brain_AXT2_200_1,4,No,1,2,3,4,Tumour\n")
    with pytest.raises(TableError, match=r"brain\.csv: row 3: unknown label\(s\) \['Tumour'\]; fastMRI\+ brain labels "
                                         r"are .*Mass"):
        read_fastmri_brain_csv(p)
    p.write_text(head + "file_brain_AXT2_200_1,three,No,1,2,3,4,Mass\n")
    with pytest.raises(TableError, match=r"brain\.csv: row 2: slice 'three' is not a slice index"):
        read_fastmri_brain_csv(p)


# =========================================================================== 5, 7 and 9. DICOM
pydicom = pytest.importorskip("pydicom")
from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, generate_uid  # noqa: E402

DECODERS = all(importlib.util.find_spec(m) for m in ("pylibjpeg", "libjpeg", "openjpeg"))


def dicom(path: Path, pixels: np.ndarray, **header) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    for k, v in header.items():
        setattr(ds, k, v)
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


RAMP = np.tile(np.linspace(0, 4000, 16).round().astype(np.uint16), (8, 1))


@pytest.mark.parametrize("header, match", [
    ({"RescaleSlope": 0, "RescaleIntercept": 5}, r"RescaleSlope 0 makes every pixel the same value"),
    ({"WindowCenter": 2000, "WindowWidth": 0}, r"WindowWidth 0 is not a window"),
    ({"WindowCenter": 90000, "WindowWidth": 100}, r"window \(WindowCenter 90000, WindowWidth 100\) lies outside its "
                                                  r"values \(0 … 4000\)"),
    ({"Rows": 0}, r"the DICOM header says 0 rows"),
    ({"BitsAllocated": 12}, r"BitsAllocated 12 is not a size DICOM stores pixels in"),
    ({"NumberOfFrames": 2}, r"holds 2 frames \(a multi-frame DICOM"),
])
def test_5_7_9_a_dicom_that_cannot_be_one_image_says_what_is_wrong(tmp_path, header, match):
    p = dicom(tmp_path / "x.dcm", RAMP, **header)
    with pytest.raises(ImageLoadError, match=match) as e:
        load_image(p)
    assert "x.dcm" in str(e.value) and "install" not in str(e.value)


def test_7_a_dicom_cut_short_is_not_called_compressed(tmp_path):
    with pytest.raises(ImageLoadError, match=r"MR_truncated\.dcm: its pixel data is cut short .* fetch it again"):
        load_image(get_testdata_file("MR_truncated.dcm"))


def test_5_colour_palette_and_multi_frame_dicoms(tmp_path):
    from PIL import Image
    from pydicom.pixels import apply_color_lut

    for name in ("SC_rgb_small_odd.dcm", "SC_ybr_full_422_uncompressed.dcm", "examples_rgb_color.dcm"):
        ds = pydicom.dcmread(get_testdata_file(name))
        img = load_image(get_testdata_file(name))
        assert img.ndim == 2 and img.dtype == np.uint8, name  # grey, not (H, W, 3)
        np.testing.assert_array_equal(img, np.asarray(Image.fromarray(ds.pixel_array).convert("L")))
    ds = pydicom.dcmread(get_testdata_file("examples_palette.dcm"))
    grey = load_image(get_testdata_file("examples_palette.dcm"))
    rgb = np.round(apply_color_lut(ds.pixel_array, ds) / 257).astype(np.uint8)  # its 16-bit table, onto 8 bits
    want = np.asarray(Image.fromarray(rgb).convert("L"))
    np.testing.assert_array_equal(grey, want)  # through the palette, not the indices as grey levels
    for c in ("Red", "Green", "Blue"):
        delattr(ds, f"{c}PaletteColorLookupTableData")
    ds.save_as(tmp_path / "nolut.dcm")
    with pytest.raises(ImageLoadError, match=r"nolut\.dcm: a PALETTE COLOR image without its colour table"):
        load_image(tmp_path / "nolut.dcm")
    for name in ("SC_rgb_rle_2frame.dcm", "examples_ybr_color.dcm"):  # pydicom's own multi-frame colour files
        with pytest.raises(ImageLoadError, match=rf"{name} holds \d+ frames .* export the frame you mean"):
            load_image(get_testdata_file(name))


#: compressed files of pydicom's test corpus that no decoder reads: a 12-bit JPEG Extended stream with a
#: misplaced marker, and a JPEG 2000 stream cut by an embedded sequence delimiter (pydicom's own tests use them
#: as failures)
BROKEN = {"JPEG-lossy.dcm", "JPEG2000-embedded-sequence-delimiter.dcm"}


@pytest.mark.skipif(not DECODERS, reason="the dicom extra's decoders (pylibjpeg and its plugins) are not installed")
def test_7_the_dicom_extra_decodes_pydicoms_compressed_corpus():
    folder = Path(get_testdata_file("MR_small.dcm")).parent
    loaded = []
    for f in sorted(folder.glob("*.dcm")):
        try:
            ds = pydicom.dcmread(f)
        except pydicom.errors.InvalidDicomError:  # the corpus's files without a file header
            continue
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        if syntax is None or not syntax.is_compressed or "PixelData" not in ds or \
                int(ds.get("NumberOfFrames", 1) or 1) > 1:
            continue
        if f.name in BROKEN:
            with pytest.raises(ImageLoadError, match=r"could not be decoded by the installed decoders .* re-export"):
                load_image(f)
            continue
        img = load_image(f)
        assert img.ndim == 2 and img.dtype == np.uint8 and img.max() > img.min(), f.name
        loaded.append(syntax.name)
    kinds = " ".join(loaded)
    assert len(loaded) >= 20 and all(k in kinds for k in ("JPEG Baseline", "JPEG-LS", "JPEG 2000", "RLE"))


def test_7_extras_bring_the_decoders():
    extras = __import__("tomllib").loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {d.split(">")[0].split("=")[0] for d in extras["dicom"]}
    assert {"pydicom", "pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg", "pylibjpeg-rle"} <= names


# =========================================================================== 6. hangs
BOMB = "".join(["dataset: chestxray14\nmodality: chest\nbomb:\n  a: &a [x, x, x, x, x, x, x, x, x, x]\n"]
               + [f"  {c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi")]
               + ["categories: {}\n"])


def test_6_an_alias_bomb_in_a_sign_file_is_refused_at_once(tmp_path, capsys):
    p = tmp_path / "bomb.yaml"
    p.write_text(BOMB)  # 10^9 items once expanded
    t0 = time.perf_counter()
    rc, out, err = cli(["signs", "show", p], capsys)
    assert rc == 2 and "bomb.yaml:5: aliases (*name) are not allowed in a sign file" in one_line(err, "signs")
    assert time.perf_counter() - t0 < 10 and not out


def test_6_duplicate_keys_in_a_sign_file_are_an_error(tmp_path):
    p = tmp_path / "dup.yaml"
    p.write_text("dataset: chestxray14\nmodality: chest\nmodality: oct\ncategories: {}\n")
    with pytest.raises(SignFileError, match=r"dup\.yaml:3: duplicate key 'modality' \(first at line 2\)"):
        SignBank.load(p)


@pytest.fixture
def default_ctrl_c():
    """Python's own Ctrl-C (SIGINT raises KeyboardInterrupt in the main thread, not blocked), whatever an
    earlier test in this process left behind; restored afterwards."""
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    blocked = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    yield
    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    signal.signal(signal.SIGINT, handler)


def test_6_ctrl_c_stops_a_process_pool_at_once(default_ctrl_c):
    assert threading.current_thread() is threading.main_thread()  # where Python delivers KeyboardInterrupt
    timer = threading.Timer(3.0, os.kill, (os.getpid(), signal.SIGINT))  # Ctrl-C, 3 s into the runs
    with pytest.raises(KeyboardInterrupt):
        with processes.running_pool(2) as ex:
            futures = [ex.submit(time.sleep, 300) for _ in range(2)]
            procs = list(ex._processes.values())
            timer.start()
            t0 = time.perf_counter()
            for f in futures:
                f.result()
    assert time.perf_counter() - t0 < 20  # not the 300 s of the runs in progress
    deadline = time.perf_counter() + 15  # a loaded machine reaps a killed worker late, never 300 s late
    while any(p.is_alive() for p in procs) and time.perf_counter() < deadline:
        time.sleep(0.2)
    assert not any(p.is_alive() for p in procs)


def test_6_ctrl_c_of_a_study_exits_130(tmp_path, capsys, monkeypatch):
    from sdmad_lite.cli import experiments as CE

    def interrupted(cfgs, workers=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(CE, "run_many", interrupted)
    rc, _, err = cli(["study", "comparison", "--out", tmp_path / "c.csv", "--workers", "2"], capsys)
    assert rc == 130 and "interrupted" in err and not (tmp_path / "c.csv.lock").exists()


# =========================================================================== 7. late: open set
def test_7_an_impossible_open_set_fails_before_anything_trains(tiny, tmp_path, monkeypatch):
    from sdmad_lite import methods
    from sdmad_lite import run as R
    from sdmad_lite.data.fewshot import PoolTooSmallError

    monkeypatch.setattr(methods, "predict", lambda *a, **k: pytest.fail("the model trained before the check"))
    cfg = load_experiment(tiny)
    cfg.protocols = ["integrated", "open-set"]
    cfg.open_set_category = "Glaucoma"  # not a category of the OCT phantoms
    with pytest.raises(ConfigError, match="Glaucoma"):
        R.run(cfg, tmp_path / "run")
    tiny.write_text(TINY.replace("phantom-oct", "phantom-chest").replace("k_shot: 2", "k_shot: 1"))
    cfg = load_experiment(tiny)  # its pool's one Pneumonia image also shows Atelectasis: held out, no Pneumonia shot
    cfg.protocols, cfg.open_set_category = ["integrated", "open-set"], "Atelectasis"
    with pytest.raises(PoolTooSmallError, match="k_shot = 1 cannot be drawn .*Pneumonia"):
        R.run(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


# =========================================================================== 8. the book build
def test_8_the_book_has_no_per_cell_time_limit():
    execute = yaml.safe_load((ROOT / "_config.yml").read_text())["execute"]
    assert execute.get("timeout", -1) in (-1, None)


def test_8_run_many_shows_progress_in_a_log_and_in_a_notebook(monkeypatch, capsys):
    rows = {0: {"method": "sdmad"}, 1: {"method": "mvfa"}}
    monkeypatch.setattr(executor.cache, "read", lambda cfg: rows[cfg.seed])
    cfgs = [ExperimentConfig(seed=0), ExperimentConfig(seed=1)]
    monkeypatch.setattr(executor, "_interactive", lambda: False)  # a log: whole lines, no carriage return
    assert executor.run_many(cfgs, progress=True) == [rows[0], rows[1]]
    err = capsys.readouterr().err
    assert "runs: 100%" in err and "2/2" in err and "\r" not in err and err.endswith("\n")
    monkeypatch.setattr(executor, "_interactive", lambda: True)  # a terminal or a notebook: one line redrawn
    executor.run_many(cfgs, progress=True)
    assert "\r" in capsys.readouterr().err


# =========================================================================== 9. tracebacks
def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def test_9_a_decompression_bomb_png_names_the_file(tmp_path):
    (tmp_path / "bomb.png").write_bytes(_png_header(100_000, 100_000))
    with pytest.raises(ImageLoadError, match=r"bomb\.png is larger than Pillow opens .*downscale it"):
        load_image(tmp_path / "bomb.png")


def test_9_a_tar_that_is_an_html_page_or_cut_short(tmp_path):
    page = tmp_path / "images_001.tar.gz"
    page.write_text("<!DOCTYPE html>\n<html><body>Download quota exceeded</body></html>\n")
    with pytest.raises(DownloadError, match=r"images_001\.tar\.gz is an HTML page, not a tar archive.*download"):
        extract_tar(page, tmp_path / "out")
    good = tmp_path / "good.tar.gz"
    with tarfile.open(good, "w:gz") as tar:
        for i in range(2):
            f = tmp_path / f"{i}.bin"
            f.write_bytes(os.urandom(100_000))
            tar.add(f, arcname=f"images/{i}.bin")
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size * 3 // 4])
    with pytest.raises(DownloadError, match=r"cut\.tar\.gz is cut short or damaged .* download it again"):
        extract_tar(cut, tmp_path / "out")


def test_9_signs_show_on_a_folder_a_device_or_nothing(tmp_path, capsys):
    rc, out, err = cli(["signs", "show", tmp_path], capsys)
    assert rc == 2 and "is a folder, not a sign file" in one_line(err, "signs") and not out
    if Path("/dev/zero").exists():  # read no further than the check (never 2 MB, never to the end)
        rc, _, err = cli(["signs", "show", "/dev/zero"], capsys)
        assert rc == 2 and "/dev/zero is not a regular file, not a sign file" in one_line(err, "signs")
    rc, out, err = cli(["signs", "show", "nonexistent"], capsys)
    assert rc == 2 and "no sign file 'nonexistent'; available: " in one_line(err, "signs") and not out


def test_9_phantoms_size_and_pretrain_threads_are_checked_when_parsed(tmp_path, capsys):
    err = argparse_error(["phantoms", "--modality", "oct", "--n", "1", "--size", "100000", "--out", str(tmp_path)], capsys)
    assert "--size: expected a side of 16 … 4096 pixels, got 100000" in err
    err = argparse_error(["pretrain-phantomclip", "--threads", "-1", "--out", str(tmp_path / "p")], capsys)
    assert "--threads: expected 0 (the default) … 1024 threads, got -1" in err


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_9_a_full_disk_is_one_line_and_loses_nothing(tmp_path, monkeypatch):
    from sdmad_lite import train as T
    from sdmad_lite.features import cached_features

    # the feature cache
    monkeypatch.setenv("SDMAD_CACHE", str(tmp_path / "cache"))

    class Backbone:
        key = "fake|none"

        def prepare(self, images):
            return torch.zeros(len(images), 3, 2, 2)

        def forward_image(self, pixels, taps=()):
            return torch.ones(len(pixels), 4), {b: torch.ones(len(pixels), 2, 4) for b in taps}

    monkeypatch.setattr(torch, "save", _disk_full)
    with pytest.raises(WriteError, match=r"writing .*\.pt failed: no space left on its device; free some space") as e:
        cached_features(Backbone(), {"dataset": "toy"}, lambda i: np.zeros((2, 2), np.uint8), 3, [2])
    assert len(str(e.value).splitlines()) == 1
    assert not [p for p in (tmp_path / "cache").rglob("*.tmp")]  # no half-written file left behind
    # a training checkpoint: the previous one stays intact
    head = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(head.parameters(), lr=0.1)
    x = torch.ones(4, 2)
    with pytest.raises(WriteError, match=r"checkpoint\.pt failed: no space left"):  # a training checkpoint
        T.train(head, opt, lambda: ((head(x) ** 2).mean(), {}), None, epochs=1, checkpoint=tmp_path / "checkpoint.pt",
                checkpoint_every=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]  # no checkpoint, no temporary file
    metrics = tmp_path / "metrics.json"
    metrics.write_text('{"previous": 1}')
    monkeypatch.setattr(Path, "write_text", _disk_full)
    with pytest.raises(WriteError, match=r"metrics\.json failed: no space left"):
        atomic_write(metrics, "{}")
    assert metrics.read_bytes() == b'{"previous": 1}'  # the previous version intact
