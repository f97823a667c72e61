#!/usr/bin/env python
"""Fetch MedMNIST+ ChestMNIST / OCTMNIST at 224 px, checksummed: ``python data_scripts/medmnist.py --help``.

The same as ``sdmad prepare medmnist``; the code is ``sdmad_lite/data_scripts/medmnist.py`` (see README.md here).
"""
from sdmad_lite.data_scripts.medmnist import main

if __name__ == "__main__":
    raise SystemExit(main())
