"""``sdmad prepare NAME``: download or export one real dataset's images.

The arguments and the work are those of ``sdmad_lite/data_scripts/NAME.py`` (``add_arguments``, ``run``):
the same code as ``python -m sdmad_lite.data_scripts.NAME`` and, in a clone, ``python data_scripts/NAME.py``.
"""
from __future__ import annotations

from ..data_scripts import chestxray14, fastmri_brain, medmnist, oct2017

#: the dataset names of ``sdmad prepare``, each with its module
DATASETS = {"chestxray14": chestxray14, "oct2017": oct2017, "medmnist": medmnist, "fastmri_brain": fastmri_brain}


def add_subcommands(sub) -> None:
    p = sub.add_parser("prepare", help="download or export a real dataset's images (data_scripts/README.md)",
                       description="Download (ChestX-ray14, OCT2017, MedMNIST+) or export (fastMRI brain, from "
                                   "your own .h5 files) the images of a real dataset; the labels ship with the "
                                   "package. See data_scripts/README.md.")
    which = p.add_subparsers(dest="dataset", metavar="NAME", required=True)
    for name, module in DATASETS.items():
        summary = module.__doc__.strip().splitlines()[0]
        q = which.add_parser(name, help=summary, description=summary)
        module.add_arguments(q)
        q.set_defaults(func=module.run)
