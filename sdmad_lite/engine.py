"""Training and evaluation of SD-MAD on one few-shot draw: data → frozen features → adapters →
sign selection → thresholds → metrics.

The pieces:

- :func:`build_task` — the evaluation set, the few-shot pool (disjoint), their frozen features
  (cached), and the text bank of the modality's signs;
- :func:`draw_support` — k shots per category + k normals, seeded, split into train / validation
  for early stopping (written to a split file so the run can be repeated exactly);
- :func:`train_head` — AdamW on the adapters, full batch (few-shot), early stopping on the
  validation loss, checkpoints written atomically so an interrupted run resumes exactly;
- :func:`predict_sdmad` — category and anchor scores with sign selection applied;
- :func:`evaluate` — thresholds chosen on the few-shot data, then every protocol.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import losses as L
from . import metrics as M
from . import selection as S
from .config import ExperimentConfig
from .data.fewshot import FewShotSplit, sample_few_shot, save_split
from .features import Features, cached_features
from .models.backbone import Backbone, default_taps
from .models.sdmad import SDMADHead, TextBank
from .signs.bank import SignBank

#: seeds of the fixed phantom sets (every run, every seed, evaluates on the same test images)
TEST_SEED, POOL_SEED = 900_001, 900_002


# ----------------------------------------------------------------------------- the task
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


def phantom_datasets(cfg: ExperimentConfig):
    from .data.phantoms.world import PhantomDataset

    modality = cfg.data.dataset.removeprefix("phantom-")
    kw = dict(size=cfg.data.image_size, normal_fraction=cfg.data.normal_fraction,
              conspicuity=cfg.data.conspicuity, noise=cfg.data.noise)
    test = PhantomDataset(modality, cfg.data.n_test, seed=TEST_SEED, **kw)
    pool = PhantomDataset(modality, cfg.data.n_pool, seed=POOL_SEED, **kw)
    return modality, test, pool


#: the sign bank of each real dataset
REAL_BANKS = {"chestmnist": "chestxray14", "chestxray14": "chestxray14", "octmnist": "oct2017", "oct2017": "oct2017",
              "fastmri-brain": "fastmri_brain"}


class Subset:
    """Rows ``idx`` of a dataset, with its ``labels`` (a seeded cap on a large test split)."""

    def __init__(self, ds, idx: np.ndarray, key: dict):
        self.ds, self.idx, self.key = ds, np.asarray(idx, dtype=int), key
        self.labels = np.asarray(ds.labels)[self.idx]
        self.categories = list(ds.categories)

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i: int) -> dict:
        return self.ds[int(self.idx[i])]


def real_datasets(cfg: ExperimentConfig):
    """(test, pool) of a real dataset under ``cfg.data.root`` (colab / paper profiles)."""
    from .data import datasets as D

    name, root = cfg.data.dataset, cfg.data.root
    if name not in REAL_BANKS:
        raise ValueError(f"unknown dataset {name!r}; choose phantom-chest, phantom-oct, phantom-brain or one of "
                         f"{', '.join(REAL_BANKS)}")
    if not root:
        raise ValueError(f"dataset {name!r} needs data.root: the folder of the images (see data_scripts/README.md)")
    root = Path(root).expanduser()
    if name in ("chestmnist", "octmnist"):
        path = root / f"{name}_224.npz" if root.is_dir() else root
        test, pool = D.MedMNISTDataset(path, name, "test"), D.MedMNISTDataset(path, name, "train")
    elif name == "chestxray14":
        test, pool = D.ChestXray14Dataset(root, "test"), D.ChestXray14Dataset(root, "train_val")
    elif name == "oct2017":
        test, pool = D.OCT2017Dataset(root, "test"), D.OCT2017Dataset(root, "train")
    else:  # fastmri-brain: one folder of slices; volumes split in two halves, seeded
        full = D.FastMRIBrainSlices(root)
        vols = sorted({m for m in (full[i]["meta"].get("file") for i in range(len(full)))})
        rng = np.random.default_rng(TEST_SEED)
        test_vols = set(rng.permutation(vols)[: len(vols) // 2].tolist())
        files = [full[i]["meta"].get("file") for i in range(len(full))]
        is_test = np.array([f in test_vols for f in files])
        test = Subset(full, np.flatnonzero(is_test), {"dataset": name, "root": str(root), "part": "test"})
        pool = Subset(full, np.flatnonzero(~is_test), {"dataset": name, "root": str(root), "part": "pool"})
    out = []
    for part, ds, cap in (("test", test, cfg.data.n_test), ("pool", pool, cfg.data.n_pool)):
        n = len(ds)
        idx = np.arange(n) if not cap or cap >= n else np.sort(np.random.default_rng([TEST_SEED, n]).choice(n, cap, replace=False))
        out.append(ds if isinstance(ds, Subset) and len(idx) == n else
                   Subset(ds, idx, {"dataset": name, "root": str(root), "part": part, "n": int(n), "cap": int(cap or 0)}))
    return out[0], out[1]


def _dataset_key(ds) -> dict:
    if isinstance(ds, Subset):
        return ds.key
    return {k: getattr(ds, k) for k in ("modality", "n", "seed", "size", "conspicuity", "noise", "label_source")
            if hasattr(ds, k)} | {"normal_fraction": float(getattr(ds, "normal_fraction", -1))}


def encode_texts(backbone: Backbone, texts: list[str]) -> torch.Tensor:
    """Text embeddings through the on-disk cache of the sign bank (keyed by model + text)."""
    return SignBank.embed(texts, backbone.encode_text, backbone.key)


def mean_embedding(backbone: Backbone, texts: list[str]) -> torch.Tensor:
    return F.normalize(encode_texts(backbone, texts).mean(0), dim=-1)


def build_text_bank(bank: SignBank, backbone: Backbone, categories: list[str]):
    """Embed every candidate sign of every category (mean over templates), padded to K."""
    sign_ids, vecs, expert = [], [], []
    for c in categories:
        cands = bank.candidates(c)
        sel = {s.id for s in bank.selected(c)}
        prompts = bank.sign_prompts(c, "all")
        sign_ids.append([s.id for s in cands])
        vecs.append(torch.stack([mean_embedding(backbone, prompts[s.id]) for s in cands]))
        expert.append([s.id in sel for s in cands])
    k = max(len(v) for v in vecs)
    d = vecs[0].shape[1]
    signs = torch.zeros(len(categories), k, d)
    mask = torch.zeros(len(categories), k, dtype=torch.bool)
    exp = np.zeros((len(categories), k), bool)
    for i, v in enumerate(vecs):
        signs[i, : len(v)] = v
        mask[i, : len(v)] = True
        exp[i, : len(v)] = expert[i]
        sign_ids[i] += [""] * (k - len(v))
    anchors = bank.anchor_prompts()
    text = TextBank(signs, mask, mean_embedding(backbone, anchors["normal"]), mean_embedding(backbone, anchors["abnormal"]),
                    active=torch.as_tensor(exp))
    return text, sign_ids, exp


def build_task(cfg: ExperimentConfig, backbone: Backbone, progress: bool = False) -> Task:
    """The fixed part of an experiment (phantom datasets; real datasets via ``data.datasets``)."""
    if cfg.data.dataset.startswith("phantom-"):
        modality, test, pool = phantom_datasets(cfg)
        bank = SignBank.load(f"phantom_{modality}")
    else:
        test, pool = real_datasets(cfg)
        bank = SignBank.load(REAL_BANKS[cfg.data.dataset])
    missing = [c for c in test.categories if c not in bank.categories]
    if missing:
        raise ValueError(f"categories {missing} of {cfg.data.dataset} have no signs in the bank {bank.name!r}")
    categories = list(test.categories)
    text, sign_ids, expert = build_text_bank(bank, backbone, categories)
    from .models.captions import UNCAPTIONED

    drawn = np.zeros_like(expert)
    known = np.zeros_like(expert)
    for i, c in enumerate(categories):
        r = bank.renders(c)
        for j, sid in enumerate(sign_ids[i]):
            drawn[i, j] = bool(sid and r.get(sid))
            known[i, j] = drawn[i, j] and r.get(sid) not in UNCAPTIONED
    name_text = torch.stack([mean_embedding(backbone, bank.category_name_prompts(c)) for c in categories])
    blocks = cfg.model.adapter_blocks or default_taps(backbone.n_blocks)
    bad = [b for b in blocks if not 1 <= b <= backbone.n_blocks]
    if bad:
        raise ValueError(f"model.adapter_blocks {bad} outside 1..{backbone.n_blocks} for {backbone.name}")
    feats = {}
    for name, ds in (("test", test), ("pool", pool)):
        feats[name] = cached_features(backbone, _dataset_key(ds), lambda i, ds=ds: ds[i]["image"], len(ds), blocks,
                                      progress=progress).float()
    return Task(cfg.data.dataset, categories, bank, text, sign_ids, expert, drawn, known, name_text, pool, test,
                feats["pool"], feats["test"], sorted(blocks), backbone)


# ----------------------------------------------------------------------------- shots
@dataclass
class Support:
    """A few-shot draw: rows of the pool, split into train and validation."""

    split: FewShotSplit
    train: np.ndarray
    val: np.ndarray

    @property
    def all(self) -> np.ndarray:
        return np.concatenate([self.train, self.val])


def draw_support(task: Task, k: int, seed: int, val_fraction: float = 0.25, categories: list[int] | None = None,
                 split_file: str | os.PathLike | None = None) -> Support:
    """k shots per category and k normals from the pool; a seeded share goes to validation.

    ``categories``: restrict to these category columns (open-set runs hold one out). The
    validation rows are drawn per stratum (each category's shots, the normals) so that, when
    k ≥ 2, every category has a shot in both parts.
    """
    y = task.y_pool if categories is None else task.y_pool[:, categories]
    names = task.categories if categories is None else [task.categories[c] for c in categories]
    if categories is not None:  # rows carrying a held-out category are neither shots nor normals
        held = np.setdiff1d(np.arange(task.y_pool.shape[1]), categories)
        exclude = np.flatnonzero(task.y_pool[:, held].any(1))
    else:
        exclude = None
    split = sample_few_shot(y, k, seed, n_normal=k, exclude=exclude, categories=names)
    if split_file:
        save_split(split, split_file)
    rng = np.random.default_rng([seed, 7])
    val: set[int] = set()
    strata = [sorted(v) for v in split.support.values()] + [sorted(split.normal)]
    for rows in strata:
        free = [r for r in rows if r not in val]
        n_val = int(np.floor(len(rows) * val_fraction)) if len(rows) >= 2 else 0
        if n_val and free:
            val.update(rng.choice(free, size=min(n_val, len(free)), replace=False).tolist())
    allrows = np.array(split.indices)
    va = np.array(sorted(val), dtype=int)
    tr = np.array([r for r in allrows if r not in val], dtype=int)
    return Support(split, tr, va)


# ----------------------------------------------------------------------------- the model
class one_thread:
    """Run small tensor work (few-shot training, scoring cached features) on one thread.

    The adapters' tensors are tiny: with several OpenMP threads, synchronisation costs more
    than the arithmetic, and any other busy process on the machine makes it far worse. One
    thread is faster here and gives the same numbers whatever the machine's core count.

    ``enabled=False`` leaves the threads alone: the residual variant runs frozen transformer
    blocks inside its loop, large products that do use several threads (``bench_training``).
    """

    def __init__(self, enabled: bool = True):
        self.enabled = enabled

    def __enter__(self):
        self.n = torch.get_num_threads()
        if self.enabled:
            torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.n)


def make_head(task: Task, cfg: ExperimentConfig, n_categories: int | None = None) -> SDMADHead:
    return SDMADHead(n_categories or len(task.categories), task.blocks, task.backbone.width, cfg.model.adapter_hidden,
                     cfg.model.adapter_lambda, cfg.loss.temperature, cfg.model.text_adapter, task.backbone.embed_dim)


def branch_features(head: SDMADHead, task: Task, feats: Features, mode: str, tokens: str = "cls") -> torch.Tensor:
    """u (B, branches, blocks, D) for the side variant (cached taps) or the residual one."""
    if mode == "side":
        return head.branch_features(feats.taps, task.backbone.to_joint, tokens)
    if mode != "residual":
        raise ValueError(f"model.adapter_mode must be 'side' or 'residual', got {mode!r}")
    # residual: every branch carries its own stream through the frozen blocks after the first
    # adapted one; the branches travel stacked in the batch dimension (one pass, not one per branch)
    ads, first = head.adapters, head.blocks[0]
    f0 = feats.taps[first]  # (B, T, W), exact from the cache
    nb, (b, t, w) = ads.n_branches, f0.shape

    def adapt(block: int, x: torch.Tensor) -> torch.Tensor:  # x: (nb·B, T, W), branch-major
        y = ads.per_branch(block, x.reshape(nb, b * t, w).to(ads.down.device))  # where the head is
        return y.reshape(nb * b, t, w).to(x.device)  # back to where the backbone is

    stream = adapt(first, f0.repeat(nb, 1, 1))
    hook = lambda i, x: adapt(i, x) if i in ads.blocks else x  # noqa: E731
    _, taps = task.backbone.forward_image(None, taps=head.blocks[1:], hook=hook, start_block=first, stream=stream)
    taps[first] = stream
    sl = slice(0, 1) if tokens == "cls" else slice(1, None)
    z = F.normalize(task.backbone.to_joint(torch.stack([taps[blk][:, sl].to(f0.device) for blk in head.blocks], 1)), dim=-1)
    z = z.reshape(nb, b, *z.shape[1:]).transpose(0, 1)  # (B, nb, L, T', D)
    return z[:, :, :, 0] if tokens == "cls" else z


def loss_terms(head: SDMADHead, u: torch.Tensor, y: torch.Tensor, text: TextBank, cfg: ExperimentConfig) -> dict:
    cat, anc = head.logits(u, text)
    uc = F.normalize(u[:, : head.n_categories].mean(2), dim=-1)
    cross = torch.einsum("bcd,kd->bck", uc, head.adapt_text(text.category_means()))
    return {
        "align": L.alignment_loss(cat, y),
        "discrepancy": L.discrepancy_loss(cross, y, cfg.loss.discrepancy_margin),
        "intra": L.intra_loss(head.sign_similarities(u, text), text.active, y),
        "anchor": L.anchor_loss(anc, y),
    }


@dataclass
class TrainResult:
    head: SDMADHead
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    resumed_from: int | None = None


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train_head(task: Task, support: Support, cfg: ExperimentConfig, *args, **kwargs) -> TrainResult:
    """See :func:`_train_head` (the side variant on one thread, see :class:`one_thread`)."""
    with one_thread(cfg.model.adapter_mode != "residual"):
        return _train_head(task, support, cfg, *args, **kwargs)


def _train_head(task: Task, support: Support, cfg: ExperimentConfig, text: TextBank | None = None,
               categories: list[int] | None = None, checkpoint: str | os.PathLike | None = None,
               checkpoint_every: int = 10, stop_after: int | None = None,
               on_epoch: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Train the adapters of a fresh head on the support set (full batch, AdamW, early stopping).

    ``checkpoint``: a file written atomically every ``checkpoint_every`` epochs; when it
    exists the run resumes from it and ends exactly as an uninterrupted run. ``stop_after``
    ends the loop early after that epoch (to simulate an interruption in tests).
    """
    torch.manual_seed(cfg.seed if cfg.train_seed is None else cfg.train_seed)
    cols = list(range(len(task.categories))) if categories is None else list(categories)
    text = text or task.text
    if categories is not None:
        text = TextBank(text.signs[cols], text.sign_mask[cols], text.normal, text.abnormal, text.active[cols])
    head = make_head(task, cfg, len(cols))
    opt = torch.optim.AdamW([p for p in head.parameters() if p.requires_grad], lr=cfg.train.lr,
                            weight_decay=cfg.train.weight_decay, fused=True)
    tr, va = task.pool_feats.subset(support.train), task.pool_feats.subset(support.val)
    ytr = torch.as_tensor(task.y_pool[support.train][:, cols]).float()
    yva = torch.as_tensor(task.y_pool[support.val][:, cols]).float()
    state = {"epoch": 0, "best": float("inf"), "best_epoch": 0, "best_state": None, "bad": 0, "history": []}
    res = TrainResult(head)
    ck = Path(checkpoint) if checkpoint else None
    if ck and ck.is_file():
        try:
            saved = torch.load(ck, map_location="cpu", weights_only=False)
        except Exception as e:  # noqa: BLE001 — one clear message instead of torch's
            raise ValueError(f"{ck} is an unreadable training checkpoint ({type(e).__name__}: {str(e)[:120]}); "
                             "delete it or pass --overwrite") from None
        head.load_state_dict(saved["head"])
        opt.load_state_dict(saved["opt"])
        state = saved["state"]
        torch.set_rng_state(saved["rng"])
        res.resumed_from = state["epoch"]
    head.train()
    while state["epoch"] < cfg.train.epochs:
        ep = state["epoch"]
        terms = loss_terms(head, branch_features(head, task, tr, cfg.model.adapter_mode), ytr, text, cfg)
        loss = L.total_loss(terms, cfg.loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            if len(support.val):
                vt = loss_terms(head, branch_features(head, task, va, cfg.model.adapter_mode), yva, text, cfg)
                vloss = float(L.total_loss(vt, cfg.loss))
            else:
                vloss = float(loss)
        rec = {"epoch": ep + 1, "loss": loss.item(), "val_loss": vloss} | {k: v.item() for k, v in terms.items()}
        state["history"].append(rec)
        if on_epoch:
            on_epoch(ep + 1, rec)
        if vloss < state["best"] - 1e-6:
            if state["best_state"] is None:
                state["best_state"] = {k: v.detach().clone() for k, v in head.state_dict().items()}
            else:  # copy into the buffers already there: fresh large allocations cost page faults
                for k, v in head.state_dict().items():
                    state["best_state"][k].copy_(v)
            state.update(best=vloss, best_epoch=ep + 1, bad=0)
        else:
            state["bad"] += 1
        state["epoch"] = ep + 1
        done = state["bad"] >= cfg.train.patience or state["epoch"] >= cfg.train.epochs
        if ck and (state["epoch"] % checkpoint_every == 0 or done):
            _atomic_save({"head": head.state_dict(), "opt": opt.state_dict(), "state": state,
                          "rng": torch.get_rng_state()}, ck)
        if done:
            break
        if stop_after is not None and state["epoch"] >= stop_after:
            res.history = state["history"]
            return res
    if state["best_state"] is not None:
        head.load_state_dict(state["best_state"])
    head.eval()
    res.history, res.best_epoch = state["history"], state["best_epoch"]
    return res


# ----------------------------------------------------------------------------- inference
@dataclass
class Predictions:
    """Scores of one method on the support set and the test set (probabilities in [0, 1])."""

    support_scores: np.ndarray
    support_anchor: np.ndarray
    test_scores: np.ndarray
    test_anchor: np.ndarray
    kept: np.ndarray | None = None  # (C, K) signs kept by selection
    extra: dict = field(default_factory=dict)


def support_discrimination(task: Task, support: Support, cols: list[int], features: str = "frozen",
                           head: SDMADHead | None = None, text: TextBank | None = None, mode: str = "side") -> torch.Tensor:
    """d_ck (C, K) of selection.py from the support images."""
    rows = support.all
    y = task.y_pool[rows][:, cols]
    signs = (text or task.text).signs[cols]
    with torch.no_grad():
        if features == "frozen":
            v = task.pool_feats.pooled[rows]  # (N, D)
            sims = torch.einsum("nd,ckd->nck", v, signs)
        elif features == "adapted":
            if head is None:
                raise ValueError("features='adapted' needs the trained head")
            u = branch_features(head, task, task.pool_feats.subset(rows), mode)
            sims = head.sign_similarities(u, TextBank(signs, torch.ones_like(signs[..., 0], dtype=torch.bool),
                                                      task.text.normal, task.text.abnormal))
        else:
            raise ValueError(f"selection.features must be 'frozen' or 'adapted', got {features!r}")
    normal = y.sum(1) == 0
    d = torch.stack([S.support_discrimination(sims[y[:, c] == 1, c], sims[normal, c]) for c in range(len(cols))])
    return d


def select_signs(task: Task, support: Support, cfg: ExperimentConfig, cols: list[int], head: SDMADHead | None = None) -> np.ndarray:
    rule = cfg.selection.rule
    expert = task.expert[cols]
    cand = task.text.sign_mask[cols].numpy()
    pool = expert if cfg.selection.pool == "expert" else cand
    if cfg.selection.pool not in ("expert", "all"):
        raise ValueError(f"selection.pool must be 'expert' or 'all', got {cfg.selection.pool!r}")
    d = None
    if rule in ("auto", "topk"):
        d = support_discrimination(task, support, cols, cfg.selection.features, head, mode=cfg.model.adapter_mode)
    return np.stack([S.select(rule, None if d is None else d[i], pool[i], expert[i], cand[i], cfg.selection.top_k,
                              cfg.selection.z_threshold) for i in range(len(cols))])


@torch.no_grad()
def head_scores(head: SDMADHead, task: Task, feats: Features, text: TextBank, mode: str, batch: int = 256):
    """Category and anchor probabilities of ``feats`` (side variant on one thread, see :class:`one_thread`)."""
    with one_thread(mode != "residual"):
        return _head_scores(head, task, feats, text, mode, batch)


def _head_scores(head: SDMADHead, task: Task, feats: Features, text: TextBank, mode: str, batch: int):
    cats, ancs = [], []
    for lo in range(0, len(feats), batch):
        u = branch_features(head, task, feats.subset(range(lo, min(len(feats), lo + batch))), mode)
        c, a = head.logits(u, text)
        cats.append(torch.sigmoid(c))
        ancs.append(torch.sigmoid(a))
    return torch.cat(cats).numpy(), torch.cat(ancs).numpy()


def predict_sdmad(task: Task, support: Support, cfg: ExperimentConfig, categories: list[int] | None = None,
                  checkpoint: str | os.PathLike | None = None) -> tuple[Predictions, TrainResult]:
    """Train SD-MAD on the support set, select signs, score support and test images."""
    cols = list(range(len(task.categories))) if categories is None else list(categories)
    res = train_head(task, support, cfg, categories=categories, checkpoint=checkpoint)
    kept = select_signs(task, support, cfg, cols, res.head)
    t = task.text
    text = TextBank(t.signs[cols], t.sign_mask[cols], t.normal, t.abnormal).with_active(torch.as_tensor(kept))
    ss, sa = head_scores(res.head, task, task.pool_feats.subset(support.all), text, cfg.model.adapter_mode)
    ts, ta = head_scores(res.head, task, task.test_feats, text, cfg.model.adapter_mode)
    return Predictions(ss, sa, ts, ta, kept=kept), res


# ----------------------------------------------------------------------------- evaluation
def evaluate(task: Task, support: Support, pred: Predictions, cols: list[int] | None = None) -> dict:
    """Thresholds from the few-shot data (support = train + validation), then the integrated and
    per-anomaly protocols on the test set (never used for any choice)."""
    cols = list(range(len(task.categories))) if cols is None else cols
    ys = task.y_pool[support.all][:, cols]
    yt = task.y_test[:, cols]
    thr = M.choose_thresholds(pred.support_scores, ys, rule="f1")
    athr = M.choose_binary_threshold(pred.support_anchor, (ys.sum(1) > 0).astype(int))
    integ = M.evaluate_integrated(pred.test_scores, pred.test_anchor, yt, thr, athr)
    per = M.evaluate_per_anomaly(pred.test_scores, yt, thr)
    return {"integrated": integ, "per-anomaly": per, "thresholds": thr, "anchor_threshold": athr}


def open_set_heldout(task: Task, seed: int) -> int:
    """The category held out in the open-set protocol for ``seed`` (cycles through categories)."""
    return seed % len(task.categories)


def evaluate_open_set(task: Task, support: Support, pred: Predictions, held_out: int, cols: list[int]) -> dict:
    ys = task.y_pool[support.all][:, cols]
    athr = M.choose_binary_threshold(pred.support_anchor, (ys.sum(1) > 0).astype(int))
    out = M.evaluate_open_set(pred.test_anchor, task.y_test, [held_out], athr)
    out["held_out_category"] = task.categories[held_out]
    return out
