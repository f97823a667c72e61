"""The experiments of the book's chapters, as lists of configs: one definition for the chapter that
runs them and for the page that quotes them (*Results at a glance*), so both read the same runs
from the result cache.

Every study starts from the offline defaults (``default_config("offline")``) with the integrated
and per-anomaly protocols, and takes its methods from the registry (``configs/methods.yaml``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import pandas as pd

from . import settings
from .config import ExperimentConfig, default_config
from .data.phantoms.catalogue import get_modality
from .executor import run_many
from .io import RESOURCES
from .methods import config_for
from .results import ResultsFileError, check_current, read_results

#: the shipped results tables of the book (``sdmad study NAME --out RESULTS/NAME.csv``)
RESULTS = RESOURCES / "results"

#: The seeds of the book, declared here and nowhere else. A seed draws a run's support set and its test
#: sample (a bootstrap resample of the test set, ``data.test_resample``). Every table of the book uses the
#: *evaluation* seeds on the evaluation world; design choices (defaults, grids, margins, the backbone's
#: calibration) are made on the *development* seeds on the development world (``data.world: development``,
#: other phantoms), which no table uses (``tests/test_statistics.py`` checks every study).
EVALUATION_SEEDS = tuple(range(10))
DEVELOPMENT_SEEDS = tuple(range(1000, 1010))
SEEDS = EVALUATION_SEEDS
#: the comparison of chapter 9 — the reference rows and the methods at k = 4 and 8; the generic-prompt
#: adapters and the ablations at k = 4 (what fits the CPU budget of a book build)
REFERENCE = ("always-normal", "label-prior", "zeroshot-names", "zeroshot-signs", "sdmad-init")
COMPARED = ("sdmad", "linear-probe")
AT_K4 = ("generic-prompt-adapters",)
ABLATIONS = ("sdmad-no-ss", "sdmad-no-disc")
#: chapter 7 — when sign selection runs
SELECTION_VARIANTS = ("sdmad", "sdmad-no-ss", "sdmad-ss-before", "sdmad-ss-per-image")
#: chapter 8 — shots per category
SHOTS = (1, 2, 4, 8)
FEW_SHOT_SEEDS = EVALUATION_SEEDS  # 4 values of k × 2 methods
#: chapter 11 — the target-domain shift (data/phantoms/scanner.py), its strengths, methods and seeds
SHIFTS = (0.0, 0.25, 0.5, 0.75, 1.0)
SHIFT_METHODS = ("zeroshot-names", "zeroshot-signs", "sdmad-init", "sdmad", "linear-probe")
SHIFT_SEEDS = EVALUATION_SEEDS  # 5 strengths × 5 methods
#: chapter 12 — the open-set protocol with each category held out in turn
OPEN_SET_METHODS = ("zeroshot-signs", "sdmad-init", "sdmad", "linear-probe")
OPEN_SET_SEEDS = EVALUATION_SEEDS
OPEN_SET_CATEGORIES = tuple(get_modality("chest").categories)  # held out in turn: all eight
OPEN_SET_MIN_IMAGES = 20  # compared only with this many test images of the category alone in every seed
#: chapter 13 — the comparison of chapter 9 (reference rows, SD-MAD, the linear probe) on the other two
#: phantom modalities; the chest rows are chapter 9's
MODALITY_DATASETS = ("phantom-chest", "phantom-oct", "phantom-brain")
MODALITY_SEEDS = EVALUATION_SEEDS
MODALITY_SHOTS = (4, 8)
#: chapter 14 — noisy sign pools (signs/noise.py), fractions of each category's expert signs replaced × kinds
NOISE_FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)
NOISE_KINDS = ("undrawn", "uncaptioned", "other-category")
NOISE_METHODS = ("zeroshot-signs", "sdmad-no-ss", "sdmad")  # the frozen prompts, SD-MAD without and with selection
NOISE_CONSPICUITY = (1.0,)  # the book's conspicuity (a fainter one: not run)
NOISE_SEEDS = EVALUATION_SEEDS  # 13 pools × 3 methods
#: chapter 14 — shared signs under control, the pair worlds (data/phantoms/catalogue.py) whose two
#: categories share 0 … 3 of their 3 signs, with and without the discrepancy loss
SHARED = (0, 1, 2, 3)
SHARED_METHODS = ("zeroshot-signs", "sdmad-init", "sdmad", "sdmad-no-disc", "linear-probe")
SHARED_SEEDS = EVALUATION_SEEDS
#: the slowest baselines, run in their own study (``sdmad study expensive``)
EXPENSIVE = ("learned-context", "mvfa", "anomalyclip")  # sdmad-residual: benchmarks/bench_placements.py (CPU budget)
EXPENSIVE_SEEDS = EVALUATION_SEEDS
ORACLE_SEEDS = EVALUATION_SEEDS  # the oracle regime's headline rows (the glance page's contrast)


#: the two regimes of the book, as the PhantomCLIP checkpoint the backbone loads (``model.pretrained``).
#: *partial* (the default of the offline profile) knows the signs only partly, as real CLIP knows
#: medical images; *oracle* is pretrained longer and with the caption-tag loss, the contrast (chapter 5
#: measures how much more it knows)
REGIMES = {"partial": "shipped", "oracle": "shipped-oracle"}


def base_config(regime: str = "partial", **over) -> ExperimentConfig:
    """The offline defaults with the integrated and per-anomaly protocols, in ``regime`` (:data:`REGIMES`)."""
    if regime not in REGIMES:
        raise ValueError(f"unknown regime {regime!r}; choose one of {', '.join(REGIMES)}")
    cfg = default_config("offline", protocols=["integrated", "per-anomaly"], **over)
    cfg.model.pretrained = REGIMES[regime]
    return cfg


def configs(methods: Iterable[str], shots: Iterable[int], seeds: Iterable[int] = SEEDS, regime: str = "partial",
            **over) -> list[ExperimentConfig]:
    """One config per (k, seed, method), in that order, in ``regime``."""
    out = []
    base = base_config(regime)
    for k in shots:
        for seed in seeds:
            for m in methods:
                c = config_for(m, base)
                c.k_shot, c.seed = int(k), int(seed)
                for key, value in over.items():
                    setattr(c, key, value)
                out.append(c)
    return out


def comparison(regime: str = "partial") -> list[ExperimentConfig]:
    """Chapter 9: reference rows, SD-MAD and the baselines at k = 4 and 8, the ablations at k = 4."""
    return (configs(REFERENCE + COMPARED + AT_K4 + ABLATIONS, [4], regime=regime)
            + configs(REFERENCE + COMPARED, [8], regime=regime))


def headline(regime: str) -> list[ExperimentConfig]:
    """The glance page's headline rows in ``regime``: the reference rows, SD-MAD and the linear probe at
    k = 4 and 8 (the rows of :func:`comparison` in the partial regime, so they come from its runs; the
    oracle regime over ``ORACLE_SEEDS``)."""
    return configs(REFERENCE + COMPARED, [4, 8], SEEDS if regime == "partial" else ORACLE_SEEDS, regime=regime)


def selection_variants() -> list[ExperimentConfig]:
    """Chapter 7: SD-MAD with sign selection after training, none, before training, per image (k = 4)."""
    return configs(SELECTION_VARIANTS, [4])


def few_shot_sensitivity() -> list[ExperimentConfig]:
    """Chapter 8: SD-MAD and the linear probe at k = 1, 2, 4, 8 over ``FEW_SHOT_SEEDS``."""
    return configs(("sdmad", "linear-probe"), SHOTS, FEW_SHOT_SEEDS)


def shots_vs_training_seed(draws: int = 4, train_seeds: int = 4) -> list[ExperimentConfig]:
    """Chapter 8: at k = 4, ``draws`` support sets × ``train_seeds`` initialisations of SD-MAD."""
    out = []
    for seed in EVALUATION_SEEDS[:draws]:
        for t in range(train_seeds):
            c = config_for("sdmad", base_config())
            c.k_shot, c.seed, c.train_seed = 4, seed, 100 + t
            out.append(c)
    return out


def domain_shift(strengths: Iterable[float] = SHIFTS, seeds: Iterable[int] = SHIFT_SEEDS, k: int = 4,
                 scanner_seed: int = 0) -> list[ExperimentConfig]:
    """Chapter 11: ``SHIFT_METHODS`` at k = ``k`` on the phantom chest seen through one scanner
    (``scanner_seed``) at each strength — the pool and the test images shifted, the backbone not."""
    out = []
    for strength in strengths:
        for c in configs(SHIFT_METHODS, [k], seeds):
            c.data.scanner_shift, c.data.scanner_seed = float(strength), int(scanner_seed)
            out.append(c)
    return out


def open_set_per_category(seeds: Iterable[int] = OPEN_SET_SEEDS, k: int = 4,
                          dataset: str = "phantom-chest") -> list[ExperimentConfig]:
    """Chapter 12: ``OPEN_SET_METHODS`` at k = ``k`` with every category of ``dataset`` held out of
    training in turn (``open_set_category``), so that class difficulty and seed noise separate."""
    out = []
    for category in (OPEN_SET_CATEGORIES if dataset == "phantom-chest" else get_modality(dataset.removeprefix("phantom-")).categories):
        for c in configs(OPEN_SET_METHODS, [k], seeds):
            c.protocols, c.open_set_category = ["integrated", "per-anomaly", "open-set"], category
            c.data.dataset = dataset
            out.append(c)
    return out


def open_set_kept(rows, min_images: int = OPEN_SET_MIN_IMAGES) -> list[str]:
    """The held-out categories of open-set ``rows`` with ``min_images`` test images of their own in every seed's
    sample: those chapter 12 averages and tests (an AUROC over a handful of images says little)."""
    n = rows.groupby("open-set.held_out_category")["open-set.n_only_held_out"].min()
    return [c for c in n.index if n[c] >= min_images]


def three_modalities(datasets: Iterable[str] = MODALITY_DATASETS, seeds: Iterable[int] = MODALITY_SEEDS,
                     shots: Iterable[int] = MODALITY_SHOTS) -> list[ExperimentConfig]:
    """Chapter 13: the reference rows, SD-MAD and the linear probe at k in ``MODALITY_SHOTS`` on each phantom
    modality (the chest configs are those of :func:`comparison`, so they come from its runs)."""
    out = []
    for dataset in datasets:
        for c in configs(REFERENCE + COMPARED, shots, seeds):
            c.data.dataset = dataset
            out.append(c)
    return out


def sign_noise(fractions: Iterable[float] = NOISE_FRACTIONS, kinds: Iterable[str] = NOISE_KINDS,
               conspicuity: Iterable[float] = NOISE_CONSPICUITY, seeds: Iterable[int] = NOISE_SEEDS,
               k: int = 4) -> list[ExperimentConfig]:
    """Chapter 14: ``NOISE_METHODS`` at k = ``k`` on the phantom chest with ``fraction`` of every
    category's expert signs replaced by signs of each kind (one run at fraction 0, which is the same
    for every kind). At the first conspicuity every fraction; at the others 0, ½ and 1 (the CPU
    budget of a book build)."""
    fractions, out = list(fractions), []
    for i, consp in enumerate(conspicuity):
        fs = fractions if i == 0 else [f for f in fractions if f in (0.0, 0.5, 1.0)]
        for f in fs:
            for kind in (kinds if f else ["undrawn"]):
                for c in configs(NOISE_METHODS, [k], seeds):
                    c.data.conspicuity, c.selection.noise = float(consp), float(f)
                    c.selection.noise_kind = kind
                    out.append(c)
    return out


def shared_signs(shared: Iterable[int] = SHARED, seeds: Iterable[int] = SHARED_SEEDS, k: int = 4) -> list[ExperimentConfig]:
    """Chapter 14: ``SHARED_METHODS`` at k = ``k`` on each pair world ``phantom-pairs{n}``."""
    out = []
    for n in shared:
        for c in configs(SHARED_METHODS, [k], seeds):
            c.data.dataset = f"phantom-pairs{int(n)}"
            out.append(c)
    return out


def expensive() -> list[ExperimentConfig]:
    """The rows of ``EXPENSIVE`` at k = 4 over ``EXPENSIVE_SEEDS``."""
    return configs(EXPENSIVE, [4], EXPENSIVE_SEEDS)


def selection_pool_variants() -> list[ExperimentConfig]:
    """Chapter 7: selection choosing among *all* candidate signs (a noisy pool), and all candidates
    unselected (k = 4, every evaluation seed)."""
    out = []
    for rule in ("auto", "all"):
        for c in configs(("sdmad",), [4], EVALUATION_SEEDS):
            c.selection.pool, c.selection.rule = "all", rule
            out.append(c)
    return out


def label(cfg: ExperimentConfig) -> str:
    """A short name of a config's method and sign-selection settings (the rows of chapter 7)."""
    s = cfg.selection
    if s.pool == "all":
        return "all candidates, no selection" if s.rule == "all" else "selection among all candidates"
    return {"sdmad": "selection after training (default)", "sdmad-no-ss": "no selection (expert signs)",
            "sdmad-ss-before": "selection before training", "sdmad-ss-per-image": "selection per test image"}.get(
        cfg.method, cfg.method)


#: the studies by name (``sdmad study NAME`` writes one's rows to a CSV)
STUDIES = {"comparison": comparison, "selection-variants": selection_variants, "few-shot": few_shot_sensitivity,
           "shots-vs-training-seed": shots_vs_training_seed, "selection-pool": selection_pool_variants,
           "domain-shift": domain_shift, "open-set": open_set_per_category, "three-modalities": three_modalities,
           "sign-noise": sign_noise, "shared-signs": shared_signs, "expensive": expensive,
           "headline-oracle": lambda: headline("oracle")}


# ----------------------------------------------------------------------------- shipped results tables
@dataclass
class Shipped:
    """A results table a chapter reads (``resources/results/NAME.csv``) and how far it can be trusted."""

    rows: pd.DataFrame
    meta: dict  # the sidecar: command, date, rows, code
    check: dict  # :func:`~sdmad_lite.results.check_current` on a sample of the rows ({} when all were recomputed)
    recomputed: bool

    @property
    def current(self) -> bool:
        return self.recomputed or bool(self.check.get("current"))

    def describe(self) -> str:
        """The sentence a chapter prints under the table: where the rows come from and whether they are current."""
        if self.recomputed:
            return f"all {len(self.rows)} rows computed in this execution (SDMAD_RECOMPUTE=1)"
        c = self.check
        verdict = ("current: the library installed now computes the same numbers" if c["current"] else
                   "NOT current: the library installed now computes other numbers — rerun the command above, or "
                   "execute with SDMAD_RECOMPUTE=1")
        return (f"{len(self.rows)} rows written by `{self.meta.get('command', '?')}` on {self.meta.get('date', '?')}; "
                f"{c['checked']} of them recomputed now, {c['agree']} agree to 0.1 points (largest difference "
                f"{c['max_diff']:.2f} points): {verdict}")


#: how many rows of a shipped table a chapter recomputes to check it
SHIPPED_SAMPLE = 2


def shipped_path(name: str) -> Path:
    """The file of study ``name``'s shipped table (``sign-noise`` -> ``resources/results/sign_noise.csv``)."""
    return RESULTS / f"{name.replace('-', '_')}.csv"


def shipped(name: str, cfgs: list[ExperimentConfig], sample: int = SHIPPED_SAMPLE, seed: int = 0) -> Shipped:
    """The shipped results table ``NAME.csv`` of the runs ``cfgs``: read, and ``sample`` of its rows (drawn
    with ``seed``) recomputed to check that this library still computes them (the check of
    :func:`~sdmad_lite.results.check_current`, by behaviour rather than by code fingerprint). With
    ``SDMAD_RECOMPUTE=1`` every row is computed instead; a table that is not there says which command
    writes it."""
    if settings.recompute_shipped():
        return Shipped(pd.DataFrame(run_many(cfgs)), {}, {}, True)
    path = shipped_path(name)
    if not path.is_file():
        raise ResultsFileError(f"{path} is not there: write it with `sdmad study {name.replace('_', '-')} --workers 2 "
                               f"--out {path.relative_to(RESULTS.parents[2])}`, "
                               f"or execute the chapter with {settings.RECOMPUTE}=1")
    df, meta = read_results(path)
    return Shipped(df, meta, check_current(df, cfgs, run_many, n=sample, seed=seed), False)
