"""The experiment's configuration as dataclasses: every setting of a run and its default.

Defaults live here and nowhere else (a profile changes the backbone and the data,
``profiles.py``); what a value may be is checked by ``checks.py`` when a config is built.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .checks import build, check_values


# --------------------------------------------------------------------------- experiment config
@dataclass
class DataConfig:
    """Which data, at which size, and the phantom world's difficulty knobs."""

    dataset: str = "phantom-chest"  # phantom-{chest,oct,brain}, chestmnist, octmnist, chestxray14, oct2017, fastmri-brain
    root: str | None = None  # folder of a real dataset (colab / paper profiles)
    skip_missing: bool = False  # ChestX-ray14: use the images present (one archive is enough to try) instead of failing
    pool_from_test: bool = False  # real data with no training split (oct2017 --test-only): pool = a seeded half of the test split, the other half evaluated
    image_size: int = 224
    n_test: int = 600  # evaluation images (phantoms) or a cap on a real test split (0 = all)
    n_pool: int = 1000  # phantoms the few-shot support sets are drawn from (disjoint from the test set)
    normal_fraction: float = 0.3  # share of normal images in the phantom world
    conspicuity: float = 1.0  # phantom sign contrast multiplier (1 = default difficulty)
    noise: float = 1.0  # phantom noise multiplier
    scanner_shift: float = 0.0  # phantom target-domain shift, 0 (none) … 1 (data/phantoms/scanner.py)
    scanner_seed: int = 0  # which scanner (its settings are drawn from this seed)
    test_resample: bool = True  # each seed evaluates a bootstrap resample of the test set (test-sample variance in every interval)
    world: str = "evaluation"  # phantom images: evaluation (the book's tables) | development (design choices, calibration; disjoint images)


@dataclass
class ModelConfig:
    """Backbone and adapters (paper: f_out = λ·f + (1−λ)·σ(W2 σ(W1 f)))."""

    backbone: str = "phantomclip-tiny"
    pretrained: str | None = "shipped"
    adapter_mode: str = "side"  # "side" (reads taps, cacheable), "shift" (the paper's parallel Shift Adapter) or "residual" (MVFA's pattern)
    adapter_blocks: list[int] | None = None  # None: MVFA's 6/12/18/24 of 24 scaled to the depth
    adapter_lambda: float = 0.8
    adapter_hidden: int | None = None  # None: width / 4 (CLIP-Adapter's reduction); 32 for PhantomCLIP-tiny
    weights_tag: str | None = None  # the open_clip tag a local weight file was published under (default: openai)
    adapter_init: str = "near-identity"  # near-identity (the head starts at the frozen features) | default (nn.Linear's)
    text_adapter: bool = False
    device: str = "auto"  # where the frozen backbone runs: auto (cuda when there is one), cpu, cuda, cuda:N


@dataclass
class LossConfig:
    """Loss weights; a weight of 0 turns the term off (the ablations)."""

    align: float = 1.0
    discrepancy: float = 1.0
    discrepancy_margin: float = 0.1
    intra: float = 0.1
    anchor: float = 1.0
    temperature: float = 0.07


@dataclass
class TrainConfig:
    """SD-MAD's optimiser (AdamW, full batch). ``epochs``/``patience``/``val_fraction`` apply only
    without tuning (``tuning.folds`` 0); with it, the epochs come from cross-validation."""

    epochs: int = 100
    lr: float = 1e-3
    weight_decay: float = 1e-2
    val_fraction: float = 0.25
    patience: int = 15


@dataclass
class SelectionConfig:
    """Sign selection at inference (see selection.py)."""

    rule: str = "auto"  # auto | none | expert | all | topk
    when: str = "after"  # after training (the paper) | before training | per-image (each image's top_k signs)
    pool: str = "expert"  # the signs selection chooses from: expert (the recorded 3-5) | all (every candidate)
    noise: float = 0.0  # phantom: the fraction of each category's expert signs replaced (signs/noise.py)
    noise_kind: str = "undrawn"  # what replaces them: undrawn | uncaptioned | other-category
    features: str = "frozen"  # frozen (what the VLM sees) | adapted (the trained category features)
    top_k: int = 3
    z_threshold: float = 1.0


@dataclass
class TuningConfig:
    """The fair protocol (``tuning.py``): k-fold cross-validation inside the support set over the
    method's ``grid`` (dotted config keys -> values; its registry entry declares it), an epoch
    budget, and early stopping on the held-out folds. ``folds`` 0: no tuning (fit once as configured)."""

    folds: int = 3
    max_epochs: int = 300
    patience: int = 15
    grid: dict[str, list] = field(default_factory=dict)


@dataclass
class MVFAConfig:
    """MVFA's few-shot recipe (``methods/mvfa.py``): Adam (0.5, 0.999) on the detection adapters."""

    lr: float = 1e-3
    epochs: int = 50


@dataclass
class AnomalyCLIPConfig:
    """AnomalyCLIP's prompts (``methods/anomalyclip.py``): context length, deep-token depth and length."""

    n_ctx: int = 12
    depth: int = 3  # text blocks after which deep tokens are inserted (AnomalyCLIP: 8 of 12; here of 4)
    deep_tokens: int = 4
    lr: float = 1e-3
    epochs: int = 15
    local_weight: float = 1.0


@dataclass
class ProbeConfig:
    """The linear probe: logistic regression per category (and the anchor) on the frozen embedding."""

    weight_decay: float = 1e-3
    steps: int = 300  # L-BFGS iterations
    lr: float = 0.5
    scale: float = 10.0  # the normalised embedding is multiplied by this before the linear layer


@dataclass
class CoopConfig:
    """Learned prompt context (CoOp): context vectors before the category name and the anchors."""

    n_ctx: int = 4
    epochs: int = 100
    lr: float = 2e-3
    weight_decay: float = 0.0


@dataclass
class ExperimentConfig:
    """Everything one run needs; ``profile`` is recorded in every result."""

    name: str = "sdmad"
    profile: str = "offline"
    seed: int = 0  # draws the few-shot support set (and trains, unless train_seed is set)
    train_seed: int | None = None  # seeds the adapters' initialisation separately from the shots
    k_shot: int = 4
    method: str = "sdmad"
    protocols: list[str] = field(default_factory=lambda: ["integrated", "per-anomaly", "open-set"])
    open_set_category: str | None = None  # the category the open-set protocol holds out (None: seed % C)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    coop: CoopConfig = field(default_factory=CoopConfig)
    mvfa: MVFAConfig = field(default_factory=MVFAConfig)
    anomalyclip: AnomalyCLIPConfig = field(default_factory=AnomalyCLIPConfig)
    tuning: TuningConfig = field(default_factory=TuningConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "config") -> "ExperimentConfig":
        """Build and check a config from a mapping: unknown keys, wrong types, unknown choices and
        out-of-range values are ConfigError (:class:`~sdmad_lite.errors.ConfigError`) naming the key."""
        cfg = build(cls, d, where)
        check_values(cfg, where)
        return cfg
