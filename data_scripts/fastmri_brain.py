#!/usr/bin/env python
"""Export your fastMRI brain volumes (.h5) to PNG slices (no download): ``python data_scripts/fastmri_brain.py --help``.

The same as ``sdmad prepare fastmri_brain``; the code is ``sdmad_lite/data_scripts/fastmri_brain.py`` (see README.md here).
"""
from sdmad_lite.data_scripts.fastmri_brain import main

if __name__ == "__main__":
    raise SystemExit(main())
