#!/usr/bin/env python
"""Download the NIH ChestX-ray14 images (12 archives, ~42 GB): ``python data_scripts/chestxray14.py --help``.

The same as ``sdmad prepare chestxray14``; the code is ``sdmad_lite/data_scripts/chestxray14.py`` (see README.md here).
"""
from sdmad_lite.data_scripts.chestxray14 import main

if __name__ == "__main__":
    raise SystemExit(main())
