"""The resumable download helper against a local HTTP server, the fastMRI converter, and the dataset
scripts' three entry points (``sdmad prepare NAME``, ``python -m sdmad_lite.data_scripts.NAME``,
``data_scripts/NAME.py``)."""
from __future__ import annotations

import hashlib
import http.server
import importlib
import re
import runpy
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from sdmad_lite.data.download import ChecksumError, DownloadError, download, file_hash

PAYLOAD = bytes(range(256)) * 400  # 102,400 bytes
SHA = hashlib.sha256(PAYLOAD).hexdigest()
REPO = Path(__file__).resolve().parents[1]


class _Handler(http.server.BaseHTTPRequestHandler):
    support_range = True
    cut_after: int | None = None  # close the connection after this many body bytes (once)
    ranges: list[str | None] = []

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        if self.path != "/file.bin":
            self.send_error(404)
            return
        rng = self.headers.get("Range")
        type(self).ranges.append(rng)
        start = 0
        if rng and self.support_range:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(PAYLOAD):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(PAYLOAD)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = type(self).cut_after
        if cut is not None:
            type(self).cut_after = None
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture()
def server():
    handler = type("H", (_Handler,), {"ranges": [], "support_range": True, "cut_after": None})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield handler, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_full_download(server, tmp_path):
    h, base = server
    dest = download(f"{base}/file.bin", tmp_path / "f.bin", sha256=SHA)
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "f.bin.part").exists()
    download(f"{base}/file.bin", dest, sha256=SHA)  # already there: no request
    assert h.ranges == [None]


def test_resume_partial(server, tmp_path):
    h, base = server
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD[:30_000])
    dest = download(f"{base}/file.bin", tmp_path / "f.bin", sha256=SHA)
    assert dest.read_bytes() == PAYLOAD
    assert h.ranges == ["bytes=30000-"]


def test_resume_when_server_ignores_range(server, tmp_path):
    h, base = server
    h.support_range = False
    (tmp_path / "f.bin.part").write_bytes(b"garbage" * 10)
    dest = download(f"{base}/file.bin", tmp_path / "f.bin", sha256=SHA)
    assert dest.read_bytes() == PAYLOAD


def test_complete_part_gets_416(server, tmp_path):
    _, base = server
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD)
    assert download(f"{base}/file.bin", tmp_path / "f.bin", sha256=SHA).read_bytes() == PAYLOAD


def test_interrupted_then_resumed(server, tmp_path):
    h, base = server
    h.cut_after = 40_000
    dest = tmp_path / "f.bin"
    with pytest.raises(DownloadError, match="resume"):
        download(f"{base}/file.bin", dest, sha256=SHA)
    assert not dest.exists()
    assert (tmp_path / "f.bin.part").stat().st_size == 40_000
    download(f"{base}/file.bin", dest, sha256=SHA)
    assert dest.read_bytes() == PAYLOAD and h.ranges[-1] == "bytes=40000-"


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    _, base = server
    dest = tmp_path / "f.bin"
    with pytest.raises(ChecksumError, match="expected " + "0" * 64):
        download(f"{base}/file.bin", dest, sha256="0" * 64)
    assert not dest.exists() and not (tmp_path / "f.bin.part").exists()


def test_existing_file_with_wrong_checksum(server, tmp_path):
    _, base = server
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"old")
    with pytest.raises(ChecksumError, match="delete it"):
        download(f"{base}/file.bin", dest, sha256=SHA)


def test_md5_and_errors(server, tmp_path):
    _, base = server
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    assert file_hash(download(f"{base}/file.bin", tmp_path / "m.bin", md5=md5), "md5") == md5
    with pytest.raises(DownloadError, match="404"):
        download(f"{base}/missing.bin", tmp_path / "x.bin")
    assert not (tmp_path / "x.bin").exists()
    with pytest.raises(ValueError):
        download(f"{base}/file.bin", tmp_path / "y.bin", sha256=SHA, md5=md5)


def test_unreachable(tmp_path):
    with pytest.raises(DownloadError, match="cannot reach"):
        download("http://127.0.0.1:9/none", tmp_path / "z.bin", timeout=2)


# --------------------------------------------------------------------------- fastMRI converter

SCRIPTS = ["chestxray14", "oct2017", "medmnist", "fastmri_brain"]


def _load_script(name: str):
    return importlib.import_module(f"sdmad_lite.data_scripts.{name}")


def test_fastmri_converter_without_h5py(tmp_path):
    """The array -> PNG part of the converter runs without h5py."""
    conv = _load_script("fastmri_brain")
    vol = np.zeros((3, 8, 8), np.float32)
    vol[1, 0, :] = 5.0  # a bright top row
    paths = conv.write_slices(vol, "file_brain_AXFLAIR_200_6002425", tmp_path)
    assert [p.name for p in paths] == [f"file_brain_AXFLAIR_200_6002425_{i:03d}.png" for i in range(3)]
    from sdmad_lite.data.images import load_image
    img = load_image(paths[1])
    assert img[-1].min() == 255 and img[0].max() == 0  # flipped up/down: the top row is now at the bottom
    noflip = conv.write_slices(vol, "v", tmp_path / "noflip", flip_ud=False)
    assert load_image(noflip[1])[0].min() == 255


def test_fastmri_converter_h5(tmp_path):
    h5py = pytest.importorskip("h5py", reason="h5py not installed: the .h5 reader is not tested")
    conv = _load_script("fastmri_brain")
    rss = np.random.default_rng(0).random((4, 16, 16)).astype(np.float32)
    with h5py.File(tmp_path / "file_brain_AXT1_201_6000000.h5", "w") as f:
        f["reconstruction_rss"] = rss
    out = tmp_path / "png"
    n = conv.convert(tmp_path, out)
    assert n == 4 and len(list(out.glob("file_brain_AXT1_201_6000000_*.png"))) == 4


def test_rss_from_kspace_roundtrip():
    conv = _load_script("fastmri_brain")
    img = np.random.default_rng(0).random((2, 3, 8, 8))  # slices, coils, H, W
    k = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(img, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    rss = conv.rss_from_kspace(k)
    assert rss.shape == (2, 8, 8)
    assert np.allclose(rss, np.sqrt((img ** 2).sum(axis=1)))


def _tar(path, members: dict[str, bytes]):
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_extract_tar_and_oct_layout(tmp_path):
    from sdmad_lite.data.download import extract_tar

    arch = tmp_path / "OCT2017.tar.gz"
    _tar(arch, {"OCT2017 /test/CNV/CNV-1-1.jpeg": b"x", "OCT2017 /train/CNV/CNV-2-1.jpeg": b"y",
                **{f"OCT2017 /test/{c}/.keep": b"" for c in ("DME", "DRUSEN", "NORMAL")}})
    n = extract_tar(arch, tmp_path / "out", select=lambda name: "/test/" in f"/{name}")
    assert n == 4 and not (tmp_path / "out" / "OCT2017 " / "train").exists()
    oct_script = _load_script("oct2017")
    root = oct_script.find_split_root(tmp_path / "out")
    assert root.name == "OCT2017 "
    assert len(oct_script.verify_test(root)) == 1000  # none of the real test images is there

    evil = tmp_path / "evil.tar.gz"
    _tar(evil, {"../escape.txt": b"no"})
    with pytest.raises(DownloadError, match="unsafe"):
        extract_tar(evil, tmp_path / "out2")
    assert not (tmp_path / "escape.txt").exists()


@pytest.mark.parametrize("name", SCRIPTS)
def test_scripts_have_cli(name, capsys, monkeypatch):
    """The library's ``main``, the thin script of the repository's ``data_scripts/`` and ``sdmad prepare NAME``
    show the same options."""
    from sdmad_lite.cli import main as sdmad

    mod = _load_script(name)
    helps = []
    for call in (lambda: mod.main(["--help"]), lambda: sdmad(["prepare", name, "--help"]),
                 lambda: runpy.run_path(str(REPO / "data_scripts" / f"{name}.py"), run_name="__main__")):
        monkeypatch.setattr(sys, "argv", [f"{name}.py", "--help"])
        with pytest.raises(SystemExit) as e:
            call()
        assert e.value.code == 0
        out = capsys.readouterr().out
        assert "usage" in out
        helps.append(sorted(set(re.findall(r"--[a-z][a-z0-9-]*", out))))
    assert helps[0] == helps[1] == helps[2] and "--help" in helps[0]


def test_sdmad_prepare_lists_the_datasets_and_checks_arguments(capsys):
    from sdmad_lite.cli import main as sdmad

    with pytest.raises(SystemExit) as e:
        sdmad(["prepare", "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and all(n in out for n in SCRIPTS)
    with pytest.raises(SystemExit) as e:
        sdmad(["prepare"])
    assert e.value.code == 2 and "NAME" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        sdmad(["prepare", "chestxray14", "--root", "r", "--parts", "13"])
    assert e.value.code == 2 and "parts must be in 1..12, got 13" in capsys.readouterr().err


def test_sdmad_prepare_oct2017_from_an_archive(tmp_path, capsys):
    """The whole command on a local archive: laid out as OCT2017/{train,test}/..., then checked against the
    shipped test listing (one image of 1,000 is there: exit status 1, and it says what is missing)."""
    from sdmad_lite.cli import main as sdmad

    arch = tmp_path / "OCT2017.tar.gz"
    _tar(arch, {"OCT2017 /test/CNV/CNV-1-1.jpeg": b"x", "OCT2017 /train/CNV/CNV-2-1.jpeg": b"y",
                **{f"OCT2017 /test/{c}/.keep": b"" for c in ("DME", "DRUSEN", "NORMAL")}})
    assert sdmad(["prepare", "oct2017", "--root", str(tmp_path / "data"), "--archive", str(arch), "--test-only"]) == 1
    assert (tmp_path / "data" / "OCT2017" / "test" / "CNV" / "CNV-1-1.jpeg").is_file()
    assert not (tmp_path / "data" / "OCT2017" / "train").exists() and not (tmp_path / "data" / "_extract").exists()
    assert "missing 1000 files" in capsys.readouterr().out


def test_medmnist_script_is_not_taken_for_the_package(monkeypatch):
    """``python data_scripts/medmnist.py`` puts data_scripts/ first on sys.path; ``import medmnist`` must not
    find the script there (nor the library's own medmnist.py)."""
    mod = _load_script("medmnist")
    for folder in (REPO / "data_scripts", REPO / "sdmad_lite" / "data_scripts"):
        monkeypatch.setattr(sys, "path", [str(folder), *sys.path])
        monkeypatch.delitem(sys.modules, "medmnist", raising=False)
        found = mod._import_medmnist()
        assert found is None or Path(found.__file__).parent.name == "medmnist"  # the package, when installed
        assert sys.path[0] == str(folder)  # the import path is given back as it was
