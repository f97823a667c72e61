import subprocess
import sys

from sdmad_lite import __version__
from sdmad_lite.cli import main


def test_version():
    out = subprocess.run([sys.executable, "-m", "sdmad_lite.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"sdmad-lite {__version__}"


def test_info_prints_profile_device_threads(capsys, monkeypatch):
    monkeypatch.delenv("SDMAD_PROFILE", raising=False)
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for key in ("sdmad_lite", "torch", "open_clip", "profile", "device", "threads", "seed"):
        assert key in out
    assert "offline" in out


def test_info_unknown_profile_is_a_clear_error(capsys):
    assert main(["info", "--profile", "tpu"]) == 2
    assert "unknown profile 'tpu'" in capsys.readouterr().err
