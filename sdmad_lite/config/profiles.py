"""The three profiles of the book: one code path at three scales (which backbone, weights, data).

The profile is chosen by an argument or ``$SDMAD_PROFILE`` (``settings.py``) and recorded in every
result; a profile that needs downloads fails at once, with the fix, where they are not possible.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass

from .. import settings
from ..errors import ConfigError, SdmadError

PROFILE_ENV = settings.PROFILE


class ProfileUnavailableError(SdmadError, RuntimeError):
    """A profile needs something (network, weights, data) that this machine does not have."""


# --------------------------------------------------------------------------- profiles
@dataclass(frozen=True)
class Profile:
    """One scale of the book: which backbone, which weights, which data."""

    name: str
    backbone: str
    pretrained: str | None
    data: str
    needs_network: bool
    description: str


PROFILES: dict[str, Profile] = {
    "offline": Profile(
        name="offline",
        backbone="phantomclip-tiny",
        pretrained="shipped",
        data="phantom",
        needs_network=False,
        description="PhantomCLIP-tiny shipped in the package + the phantom world; any CPU, no network",
    ),
    "colab": Profile(
        name="colab",
        backbone="ViT-B-16",
        pretrained="openai",
        data="medmnist",
        needs_network=True,
        description="open_clip ViT-B-16 (openai weights) + MedMNIST+ 224 px (ChestMNIST, OCTMNIST); a Colab GPU",
    ),
    "paper": Profile(
        name="paper",
        backbone="ViT-L-14-336",
        pretrained="openai",
        data="original",
        needs_network=True,
        description="ViT-L-14-336 (openai weights) + ChestX-ray14, OCT2017, fastMRI+ brain; a GPU machine",
    ),
}


def get_profile(name: str | None = None) -> Profile:
    """Return the profile named by ``name``, else by ``$SDMAD_PROFILE``, else ``offline``."""
    chosen = name or settings.profile_name() or "offline"
    chosen = chosen.strip().lower()
    if chosen not in PROFILES:
        raise ConfigError(
            f"unknown profile {chosen!r} (from {'argument' if name else '$' + PROFILE_ENV}); "
            f"choose one of {', '.join(PROFILES)}"
        )
    return PROFILES[chosen]


def network_available(host: str = "huggingface.co", port: int = 443, timeout: float = 3.0) -> bool:
    """True when a TCP connection to ``host`` can be opened (used to fail fast, not to download)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_profile_ready(profile: Profile, weights_cached: bool = False) -> None:
    """Fail at once, with the fix, when ``profile`` needs a network that is not there.

    ``weights_cached`` says that the pretrained files are already on disk (then no network is
    needed). The offline profile is always ready. This never falls back to random weights.
    """
    if not profile.needs_network or weights_cached:
        return
    if not network_available():
        raise ProfileUnavailableError(
            f"profile {profile.name!r} needs {profile.backbone} weights ({profile.pretrained}) and "
            f"{profile.data} data, which must be downloaded, but there is no network and no cached copy. "
            f"Run it where the network is reachable (for example on Colab), or use the offline profile: "
            f"unset {PROFILE_ENV} or set {PROFILE_ENV}=offline."
        )
