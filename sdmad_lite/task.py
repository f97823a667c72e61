"""The task: what is fixed across seeds for one dataset and backbone.

A :class:`Task` holds the evaluation set and the few-shot pool (disjoint), their frozen features
(cached on disk), the sign bank of the modality and its text embeddings (:class:`~sdmad_lite.models.sdmad.TextBank`),
and the sign-level ground truth of the phantom world. Every method of the book reads the same
task; the few-shot support sets are drawn from ``task.pool`` (:meth:`Task.draw_support`, the one way).
Nothing here is specific to a method.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

from .config import ExperimentConfig, get_profile, require_profile_ready, resolve_device
from .data.build import REAL_BANKS, Subset, build_datasets, check_feasible, dataset_key, draws_images, image_of
from .data.fewshot import Support, sample_few_shot, save_split, validation_rows
from .features import PATCHES, Features, cached_features, patch_blocks
from .errors import ConfigError
from .io import stable_hash
from .processes import default_workers
from .models.backbone import Backbone, default_taps, weights_cached
from .models.backbone import load as load_backbone
from .data.phantoms.catalogue import MODALITIES
from .models.checkpoints import uncaptioned_signs
from .models.sdmad import TextBank
from .signs.bank import SignBank
from .signs.noise import is_drawn, noisy_selection, renderer_sign
from .signs.schema import Sign


@dataclass
class Task:
    """Everything fixed across seeds for one dataset and backbone."""

    dataset: str
    categories: list[str]
    bank: SignBank
    text: TextBank
    sign_ids: list[list[str]]  # per category, the padded sign list's ids ('' for padding)
    expert: np.ndarray  # (C, K) expert selection
    drawn: np.ndarray  # (C, K) phantom ground truth: the renderer draws this sign (zeros for real data)
    known: np.ndarray  # (C, K) drawn *and* described in PhantomCLIP's captions
    name_text: torch.Tensor  # (C, D) category-name prompt embeddings (baselines)
    pool: object
    test: object
    pool_feats: Features
    test_feats: Features
    blocks: list[int]
    backbone: Backbone

    @property
    def y_pool(self) -> np.ndarray:
        return np.asarray(self.pool.labels)

    @property
    def y_test(self) -> np.ndarray:
        return np.asarray(self.test.labels)

    def draw_support(self, k: int, seed: int, val_fraction: float = 0.25, categories: list[int] | None = None,
                     split_file=None) -> Support:
        """k shots per category and k normals from the pool (:func:`~sdmad_lite.data.fewshot.sample_few_shot`);
        a seeded share of each stratum to validation (:func:`~sdmad_lite.data.fewshot.validation_rows`).

        ``categories``: restrict to these category columns (open-set runs hold one out): rows carrying
        a held-out category are neither shots nor normals. ``split_file``: where to write the draw.
        """
        y_pool = self.y_pool
        y = y_pool if categories is None else y_pool[:, categories]
        picked = list(self.categories) if categories is None else [self.categories[c] for c in categories]
        exclude = None
        if categories is not None:
            held = np.setdiff1d(np.arange(y_pool.shape[1]), categories)
            exclude = np.flatnonzero(y_pool[:, held].any(1))
        split = sample_few_shot(y, k, seed, n_normal=k, exclude=exclude, categories=picked)
        if split_file:
            save_split(split, split_file)
        return validation_rows(split, seed, val_fraction)

    def sign_embeddings(self, category: int) -> tuple[list[str], torch.Tensor]:
        """The ids and embeddings ``(K_c, D)`` of category ``category``'s candidate signs (no padding)."""
        ids = [s for s in self.sign_ids[category] if s]
        return ids, self.text.signs[category, : len(ids)]

    def text_columns(self, cols: list[int], active: np.ndarray | torch.Tensor | None = None) -> TextBank:
        """The text bank restricted to category columns ``cols`` (active signs: ``active`` or the expert ones)."""
        t = self.text
        act = torch.as_tensor(self.expert[cols] if active is None else active)
        return TextBank(t.signs[cols], t.sign_mask[cols], t.normal, t.abnormal, act)


def build_text_bank(bank: SignBank, backbone: Backbone, categories: list[str],
                    pools: dict[str, list[Sign]] | None = None):
    """Embed every candidate sign of every category (mean over templates), padded to K.

    ``pools``: per category the signs the methods use (default: the expert selection); a sign of a
    pool that is not a candidate of its category (a noisy pool, ``signs.noise``) is appended to the
    category's candidates. Returns the text bank, the padded sign ids, the pool mask and, for a
    phantom bank, the ground truth: ``drawn`` (the renderer draws the sign for the category) and
    ``known`` (drawn *and* described in PhantomCLIP's captions).
    """
    sign_ids, vecs, expert, drawn, known = [], [], [], [], []
    uncaptioned = uncaptioned_signs(backbone.name, backbone.pretrained)  # the checkpoint card's
    for c in categories:
        pool = bank.selected(c) if pools is None else pools[c]
        cands = bank.candidates(c)
        cands += [s for s in pool if s.id not in {x.id for x in cands}]
        sel = {s.id for s in pool}
        prompts = bank.sign_prompts(c, cands)
        sign_ids.append([s.id for s in cands])
        vecs.append(torch.stack([backbone.mean_text(prompts[s.id]) for s in cands]))
        expert.append([s.id in sel for s in cands])
        d = [bank.is_phantom and is_drawn(bank, c, s.id) for s in cands]
        drawn.append(d)
        known.append([di and renderer_sign(bank, s.id) not in uncaptioned for di, s in zip(d, cands)])
    k = max(len(v) for v in vecs)
    dim = vecs[0].shape[1]
    signs = torch.zeros(len(categories), k, dim)
    mask = torch.zeros(len(categories), k, dtype=torch.bool)
    exp, drw, kno = (np.zeros((len(categories), k), bool) for _ in range(3))
    for i, v in enumerate(vecs):
        signs[i, : len(v)] = v
        mask[i, : len(v)] = True
        exp[i, : len(v)], drw[i, : len(v)], kno[i, : len(v)] = expert[i], drawn[i], known[i]
        sign_ids[i] += [""] * (k - len(v))
    anchors = bank.anchor_prompts()
    text = TextBank(signs, mask, backbone.mean_text(anchors["normal"]), backbone.mean_text(anchors["abnormal"]),
                    active=torch.as_tensor(exp))
    return text, sign_ids, exp, drw, kno


def with_sign_noise(task: Task, fraction: float, kind: str, seed: int) -> Task:
    """``task`` with every category's expert selection replaced by a noisy pool
    (:func:`~sdmad_lite.signs.noise.noisy_selection`); images, features and backbone shared."""
    pools = {c: noisy_selection(task.bank, c, fraction, kind, seed) for c in task.categories}
    text, sign_ids, expert, drawn, known = build_text_bank(task.bank, task.backbone, task.categories, pools)
    return replace(task, text=text, sign_ids=sign_ids, expert=expert, drawn=drawn, known=known)


def reads_block_inputs(cfg: ExperimentConfig) -> bool:
    """Whether ``cfg`` places adapters ``shift`` (in the config or its tuning grid): they read each adapted
    block's input too, the output of the block before it."""
    return "shift" in {cfg.model.adapter_mode, *cfg.tuning.grid.get("model.adapter_mode", [])}


def feature_taps(cfg: ExperimentConfig, blocks: list[int], patches: str = "none") -> tuple[list[int], list[int]]:
    """The blocks whose tokens the task keeps, and of those the ones whose patch tokens it keeps: the adapted
    ``blocks``, and under the shift placement their inputs ``ℓ − 1`` too (0: the embeddings after ``ln_pre``),
    class tokens only unless ``patches`` is ``"all"`` (:data:`~sdmad_lite.features.PATCHES`)."""
    keep = patch_blocks(blocks, patches)
    if not reads_block_inputs(cfg):
        return sorted(blocks), keep
    inputs = {b - 1 for b in blocks}
    return sorted(set(blocks) | inputs), sorted(set(keep) | (inputs if patches == "all" else set()))


def build_task(cfg: ExperimentConfig, backbone: Backbone, progress: bool = False, patches: str = "all",
               workers: int | None = None) -> Task:
    """The fixed part of an experiment: datasets (``data.build``), sign bank, text bank, features
    (with the patch tokens of the blocks ``patches`` names, :data:`~sdmad_lite.features.PATCHES`; phantoms
    drawn by ``workers`` processes, default :func:`~sdmad_lite.processes.default_workers`)."""
    blocks = cfg.model.adapter_blocks or default_taps(backbone.n_blocks)
    bad = [b for b in blocks if not 1 <= b <= backbone.n_blocks]
    if bad:
        raise ConfigError(f"model.adapter_blocks: {bad} outside 1..{backbone.n_blocks}, the blocks of {backbone.name}; "
                          "choose blocks in that range, or null for the default taps")
    modality, test, pool = build_datasets(cfg)
    check_feasible(pool, cfg)  # before any feature is extracted
    if modality is not None:
        bank = SignBank.from_catalogue(modality) if modality not in MODALITIES else SignBank.load(f"phantom_{modality}")
    else:
        bank = SignBank.load(REAL_BANKS[cfg.data.dataset])
    missing = [c for c in test.categories if c not in bank.categories]
    if missing:
        raise ValueError(f"categories {missing} of {cfg.data.dataset} have no signs in the bank {bank.name!r}")
    categories = list(test.categories)
    text, sign_ids, expert, drawn, known = build_text_bank(bank, backbone, categories)
    name_text = torch.stack([backbone.mean_text(bank.category_name_prompts(c)) for c in categories])
    feats = {}
    taps, keep = feature_taps(cfg, blocks, patches)
    draw_workers = default_workers() if workers is None else workers
    for name, ds in (("test", test), ("pool", pool)):
        feats[name] = cached_features(backbone, dataset_key(ds), partial(image_of, ds), len(ds), taps, progress=progress,
                                      patches=keep, workers=draw_workers if draws_images(ds) else 1).float()
    return Task(cfg.data.dataset, categories, bank, text, sign_ids, expert, drawn, known, name_text, pool, test,
                feats["pool"], feats["test"], sorted(blocks), backbone)


# ----------------------------------------------------------------------------- one per process
#: How many tasks a process keeps, the least recently used dropped first with their noisy pools and test
#: draws. A task with every patch token of a 1,600-image world holds about 160 MB, and a study walks
#: through many worlds.
MAX_TASKS = 4
_TASKS: dict[tuple[str, str], Task] = {}
_NOISY: dict[tuple, Task] = {}
_BACKBONES: dict[str, Backbone] = {}


def get_backbone(cfg: ExperimentConfig) -> Backbone:
    """The backbone of ``cfg`` (built once per process); a profile that needs downloads fails first."""
    device = resolve_device(cfg.model.device)
    key = f"{cfg.model.backbone}|{cfg.model.pretrained}|{cfg.model.weights_tag}|{device}"
    if key not in _BACKBONES:
        prof = get_profile(cfg.profile)
        local = cfg.model.pretrained is not None and Path(cfg.model.pretrained).expanduser().exists()
        if prof.needs_network and cfg.model.pretrained not in (None, "shipped") and not local:
            require_profile_ready(prof, weights_cached=weights_cached(cfg.model.backbone, cfg.model.pretrained))
        _BACKBONES[key] = load_backbone(cfg.model.backbone, "default" if cfg.model.pretrained == "shipped"
                                        else cfg.model.pretrained, device=device, weights_tag=cfg.model.weights_tag)
    return _BACKBONES[key]


def task_key(cfg: ExperimentConfig) -> str:
    """What decides a config's task and frozen features: its data, its backbone and weights, the tapped blocks
    (and, under the shift placement, their inputs: :func:`feature_taps`)."""
    m = cfg.model
    key = [cfg.data.__dict__, m.backbone, m.pretrained, m.weights_tag, m.adapter_blocks]
    return stable_hash(key + ["block inputs"] if reads_block_inputs(cfg) else key, 32)


def get_task(cfg: ExperimentConfig, progress: bool = False, patches: str = "all", workers: int | None = None) -> Task:
    """The task of ``cfg`` (built once per process, features from the disk cache) with the patch tokens
    ``patches`` names (:data:`~sdmad_lite.features.PATCHES`; a task already built with more patches
    serves); with ``selection.noise`` > 0, the task with noisy sign pools drawn from ``cfg.seed``
    (:func:`with_sign_noise`). ``workers``: as in :func:`build_task`."""
    if patches not in PATCHES:
        raise ValueError(f"patches must be one of {', '.join(PATCHES)}, got {patches!r}")
    bb = get_backbone(cfg)
    data = task_key(cfg)
    have = [p for p in PATCHES[PATCHES.index(patches):] if (data, p) in _TASKS]  # this one or a superset
    key = (data, have[0] if have else patches)
    if key not in _TASKS:
        while len(_TASKS) >= MAX_TASKS:
            old = next(iter(_TASKS))
            gone = [_TASKS.pop(old)] + [_NOISY.pop(n) for n in [n for n in _NOISY if n[0] == old]]
            for draw in [d for d, (base, _) in _DRAWS.items() if any(base is g for g in gone)]:
                del _DRAWS[draw]  # its test draws too: they hold the task
        _TASKS[key] = build_task(cfg, bb, progress=progress, patches=patches, workers=workers)
    else:
        check_feasible(_TASKS[key].pool, cfg)  # this config's shots and seed
        _TASKS[key] = _TASKS.pop(key)  # the most recently used
    task, sel = _TASKS[key], cfg.selection
    if sel.noise:
        noisy = (key, sel.noise, sel.noise_kind, cfg.seed)  # the noisy pools differ per seed
        if noisy not in _NOISY:
            _NOISY[noisy] = with_sign_noise(task, sel.noise, sel.noise_kind, cfg.seed)
        task = _NOISY[noisy]
    return with_test_draw(task, cfg.seed) if cfg.data.test_resample else task


def with_test_draw(task: Task, seed: int) -> Task:
    """``task`` evaluated on the test set of ``seed``: a bootstrap resample of its test images (as many,
    drawn with replacement). Each seed then sees its own test sample, so the spread over seeds — the unit
    of every interval and paired test of the book — includes test-sample variance, and two methods
    compared on a seed see the same test images. Kept for the last few seeds of a process."""
    key = (id(task), seed)
    if key not in _DRAWS:
        n = len(task.test)
        idx = np.random.default_rng([seed, 41]).integers(0, n, n)
        test = Subset(task.test, idx, {"bootstrap_of": "test", "seed": int(seed)})
        if len(_DRAWS) >= 4:
            _DRAWS.pop(next(iter(_DRAWS)))
        _DRAWS[key] = (task, replace(task, test=test, test_feats=task.test_feats.subset(idx)))
    return _DRAWS[key][1]


_DRAWS: dict[tuple[int, int], tuple[Task, Task]] = {}  # the base task is kept with its view (its id stays unique)
