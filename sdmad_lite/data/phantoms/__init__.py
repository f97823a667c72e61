"""The phantom world: seeded chest / OCT / brain phantoms with sign-level ground truth.

``render`` draws one phantom; ``PhantomDataset`` gives MONAI-style dict samples whose label
vectors come from the real label tables; ``write_phantoms`` / ``sdmad phantoms`` write PNGs
with ``labels.jsonl``. The catalogue (``catalogue.py``) lists modalities, categories and signs.
"""
from .catalogue import BRAIN, CHEST, MODALITIES, OCT, ModalitySpec, SignSpec, get_modality
from .world import PhantomDataset, item_seed, label_vector, render, sample_signs, uniform_labels, write_phantoms

__all__ = [
    "BRAIN", "CHEST", "MODALITIES", "OCT", "ModalitySpec", "SignSpec", "get_modality",
    "PhantomDataset", "item_seed", "label_vector", "render", "sample_signs",
    "uniform_labels", "write_phantoms",
]
