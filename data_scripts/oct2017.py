#!/usr/bin/env python
"""Download OCT2017 (Kermany et al.) and lay it out in train/ and test/ folders: ``python data_scripts/oct2017.py --help``.

The same as ``sdmad prepare oct2017``; the code is ``sdmad_lite/data_scripts/oct2017.py`` (see README.md here).
"""
from sdmad_lite.data_scripts.oct2017 import main

if __name__ == "__main__":
    raise SystemExit(main())
