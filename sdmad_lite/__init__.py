"""SD-MAD Lite: a small library behind the SD-MAD tutorial and reproduction book.

SD-MAD: Sign-Driven Few-shot Multi-Anomaly Detection in Medical Images (arXiv 2505.16659).
"""
from .version import __version__  # noqa: E402

from .config import ExperimentConfig, get_profile, load_config  # noqa: E402
from .info import print_config  # noqa: E402
from .seeding import seed_everything  # noqa: E402

__all__ = ["__version__", "ExperimentConfig", "get_profile", "load_config", "print_config", "seed_everything"]
