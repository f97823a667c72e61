"""``print_config()``: what a bug report needs — versions, profile, device, threads, seeds."""
from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

import torch

from . import settings
from .config import PROFILE_ENV, get_profile
from .models.backbone import PHANTOMCLIP_CHECKPOINT
from .version import __version__


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def config_summary(profile: str | None = None, seed: int | None = None) -> dict[str, str]:
    """The facts :func:`print_config` prints, as a dict (also recorded in every result)."""
    prof = get_profile(profile)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        device += f" ({torch.cuda.get_device_name(0)})"
    return {
        "sdmad_lite": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "open_clip": _version("open_clip_torch"),
        "numpy": _version("numpy"),
        "profile": f"{prof.name} ({prof.description})",
        "profile_source": "argument" if profile else (f"${PROFILE_ENV}" if settings.profile_name() else "default"),
        "backbone": f"{prof.backbone} [{prof.pretrained}]" + _checkpoint_note(prof),
        "device": device,
        "threads": str(torch.get_num_threads()),
        "seed": "not set" if seed is None else str(seed),
        "platform": f"{platform.system()} {platform.machine()}",
        "executable": os.path.basename(sys.executable),
    }


def _checkpoint_note(prof) -> str:
    if prof.backbone != "phantomclip-tiny":
        return ""
    return "" if PHANTOMCLIP_CHECKPOINT.is_file() else " — checkpoint MISSING: run `sdmad pretrain-phantomclip`"


def print_config(profile: str | None = None, seed: int | None = None) -> None:
    """Print :func:`config_summary` as an aligned block (the first cell of every notebook)."""
    info = config_summary(profile, seed)
    width = max(map(len, info))
    for k, v in info.items():
        print(f"{k:<{width}} : {v}")
