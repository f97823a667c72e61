"""SD-MAD Lite: a small library behind the SD-MAD tutorial and reproduction book.

SD-MAD: Sign-Driven Few-shot Multi-Anomaly Detection in Medical Images (arXiv 2505.16659).
"""
from .version import __version__  # noqa: E402

from .config import ExperimentConfig, get_profile, load_config  # noqa: E402
from .seeding import seed_everything  # noqa: E402

__all__ = ["__version__", "ExperimentConfig", "get_profile", "load_config", "print_config", "seed_everything"]


def __getattr__(name: str):
    """``print_config`` is imported when first used: it loads the backbone code (torch, open_clip), which a
    process that only renders phantoms (:func:`sdmad_lite.features.extract`'s workers) never needs."""
    if name == "print_config":
        from .info import print_config

        return print_config
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
