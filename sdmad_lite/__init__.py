"""SD-MAD Lite."""
__version__ = "0.1.0"
