"""Training cost of one few-shot experiment (phantom chest, k = 4, seed 0), four ways, side by side.

    python benchmarks/bench_training.py [--backbones phantomclip-tiny,ViT-B-32] [--epochs 60]
        [--vit-epochs 60] [--vit-residual-epochs 3] [--n-test 600] [--n-pool 1000] [--vit-n-test 200] [--vit-n-pool 300]
        [--variants mvfa-side,mvfa-residual,residual-cached,side-cached] [--json PATH]

Variants (the same shots, the same head, the same losses, the same number of epochs, no early stop):

- ``mvfa-side``      the MVFA recipe: every epoch, every (augmented: random shift ±8 px and
  horizontal flip) shot goes through the *whole* frozen backbone
  (``backbone.forward_image(backbone.prepare(images), taps=blocks)``), then the side adapters
  read those taps. The validation shots are recomputed too (no cache anywhere).
- ``mvfa-residual``  the same without a cache, for the residual (paper-faithful) adapters:
  every epoch the whole backbone runs, then each branch resumes from the first adapted block.
- ``residual-cached`` SD-MAD Lite's residual variant: the frozen stream up to the first adapted
  block comes from the feature cache (``SDMADHead.forward(..., mode="residual")``).
- ``side-cached``    SD-MAD Lite's default: the whole backbone cached, adapters read the taps.
- ``side-cached-1t``  the same, the training loop run with one torch thread (the extraction keeps
  them all): the head's operators are tiny, and thread hand-offs can cost more than they save.

Total = one-off feature extraction of the shots (cached variants) + the training epochs. The
shipped pipeline extracts the whole pool once per (backbone, dataset) and reuses it for every
seed, shot count and method; that one-off cost is reported apart (``task build``). Metrics of
each variant (integrated subset accuracy, macro AUROC, ``run.evaluate``) show the speed-up
is at equal accuracy. The test set is scored the same way for all (from the frozen test
features): inference is not what differs.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import _common as C  # noqa: E402

NAME = "training"
VARIANTS = ("mvfa-side", "mvfa-residual", "residual-cached", "side-cached", "side-cached-1t")


def make_cfg(backbone: str, pretrained, n_test: int, n_pool: int, epochs: int, k: int, seed: int, image_size: int,
             mode: str = "side"):
    from sdmad_lite.config import ExperimentConfig

    return ExperimentConfig.from_dict({
        "name": "bench-training", "seed": seed, "k_shot": k, "protocols": ["integrated"],
        "data": {"dataset": "phantom-chest", "n_test": n_test, "n_pool": n_pool, "image_size": image_size},
        "model": {"backbone": backbone, "pretrained": pretrained, "adapter_mode": mode},
        "train": {"epochs": epochs, "patience": epochs + 1},
    })


def with_mode(cfg, mode: str, epochs: int | None = None):
    c = copy.deepcopy(cfg)
    c.model.adapter_mode = mode
    if epochs is not None:
        c.train.epochs, c.train.patience = epochs, epochs + 1
    return c


# ----------------------------------------------------------------------------- the MVFA recipe
def augment(x: torch.Tensor, g: torch.Generator, max_shift: int = 8) -> torch.Tensor:
    """Random shift (±max_shift px, zero fill) and horizontal flip of uint8 images (N, H, W)."""
    n, h, w = x.shape
    out = torch.zeros_like(x)
    d = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=g).tolist()
    flip = (torch.rand(n, generator=g) < 0.5).tolist()
    for i in range(n):
        img = x[i].flip(-1) if flip[i] else x[i]
        dy, dx = d[i]
        out[i, max(0, dy): h + min(0, dy), max(0, dx): w + min(0, dx)] = \
            img[max(0, -dy): h + min(0, -dy), max(0, -dx): w + min(0, -dx)]
    return out


def train_mvfa(task, support, cfg, images: dict, aug: bool, on_epoch=None):
    """The head of methods.sdmad.train_head, trained the MVFA way: backbone recomputed from the images
    every epoch (augmented train shots, plain validation shots). Same init, optimiser, losses,
    best-epoch restore as ``methods.sdmad.train_head``."""
    from sdmad_lite.methods import heads as SD
    from sdmad_lite import losses as L
    from sdmad_lite.features import Features

    torch.manual_seed(cfg.seed)
    head = SD.make_head(task, cfg)
    opt = torch.optim.AdamW([p for p in head.parameters() if p.requires_grad], lr=cfg.train.lr,
                            weight_decay=cfg.train.weight_decay)
    bb, mode, text = task.backbone, cfg.model.adapter_mode, task.text
    xtr = torch.as_tensor(np.stack([images[i] for i in support.train]))
    xva = torch.as_tensor(np.stack([images[i] for i in support.val])) if len(support.val) else None
    ytr = torch.as_tensor(task.y_pool[support.train]).float()
    yva = torch.as_tensor(task.y_pool[support.val]).float()
    g = torch.Generator().manual_seed(cfg.seed)

    def feats(x):
        with torch.no_grad():
            _, taps = bb.forward_image(bb.prepare(x), taps=task.blocks)
        return Features(taps, torch.empty(len(x), 0))

    best, best_state, best_epoch = float("inf"), None, 0
    head.train()
    for ep in range(cfg.train.epochs):
        x = augment(xtr, g) if aug else xtr
        terms = SD.loss_terms(head, SD.branch_features(head, task, feats(x), mode), ytr, text, cfg)
        loss = L.total_loss(terms, cfg.loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            if xva is not None:
                vloss = float(L.total_loss(SD.loss_terms(head, SD.branch_features(head, task, feats(xva), mode), yva, text, cfg),
                                           cfg.loss))
            else:
                vloss = loss.item()
        if on_epoch:
            on_epoch(ep + 1, {"loss": loss.item(), "val_loss": vloss})
        if vloss < best - 1e-6:
            best, best_epoch, best_state = vloss, ep + 1, copy.deepcopy(head.state_dict())
    if best_state is not None:
        head.load_state_dict(best_state)
    head.eval()
    return head, best_epoch


# ----------------------------------------------------------------------------- evaluation (shared)
def evaluate_head(task, support, cfg, head) -> dict:
    """What ``methods.predict`` does after training: sign selection, scores, thresholds, metrics."""
    from sdmad_lite.evaluation import evaluate
    from sdmad_lite.methods import heads as SD
    from sdmad_lite.methods.sign_selection import select_signs
    from sdmad_lite.train import Predictions
    from sdmad_lite.models.sdmad import TextBank

    cols = list(range(len(task.categories)))
    kept = select_signs(task, support, cfg, cols, head)
    t = task.text
    text = TextBank(t.signs, t.sign_mask, t.normal, t.abnormal).with_active(torch.as_tensor(kept))
    mode = cfg.model.adapter_mode
    ss, sa = SD.head_scores(head, task, task.pool_feats.subset(support.all), text, mode)
    ts, ta = SD.head_scores(head, task, task.test_feats, text, mode)
    ev = evaluate(task, support, Predictions(ss, sa, ts, ta, kept=kept))
    return {"subset_accuracy": float(ev["integrated"]["subset_accuracy"]),
            "macro_auroc": float(ev["integrated"]["macro_auroc"]),
            "hamming_score": float(ev["integrated"]["hamming_score"])}


# ----------------------------------------------------------------------------- one backbone
def bench_backbone(backbone: str, args, n_test: int, n_pool: int, epochs: int, variants, rec: dict,
                   residual_epochs: int | None = None) -> list[dict]:
    """``residual_epochs``: the residual variants' epochs when not ``epochs`` (their epochs are long on a
    ViT-B); their totals are then not comparable and their goals use the time per epoch."""
    from sdmad_lite.methods import heads as SD
    from sdmad_lite import features as Fe
    from sdmad_lite.task import get_task

    weights = C.weights_for(backbone)
    cfg = make_cfg(backbone, weights, n_test, n_pool, epochs, args.k, args.seed, args.image_size)
    info: dict = {}
    with C.timed(info, "task_build_s"):  # cold cache: text bank + frozen features of test set and pool
        task = get_task(cfg)
    bb = task.backbone
    support = task.draw_support(cfg.k_shot, cfg.seed, cfg.train.val_fraction)
    rows_all = support.all
    with C.timed(info, "render_s"):  # the shots' images (phantoms are rendered; real data would be read)
        images = {int(i): task.pool[int(i)]["image"] for i in rows_all}
    first = task.blocks[0]
    meta = {"backbone": backbone, "weights": "shipped" if weights else "random", "n_blocks": bb.n_blocks,
            "blocks": task.blocks, "first_adapted_block": first, "branches": len(task.categories) + 1,
            "n_train_shots": len(support.train), "n_val_shots": len(support.val), "n_test": n_test, "n_pool": n_pool,
            "epochs": epochs, "image_size_rendered": args.image_size, "image_size_model": bb.image_size,
            "task_build_s": round(info["task_build_s"], 3), "render_shots_s": round(info["render_s"], 3)}
    print(f"\n[{backbone}] {meta}", flush=True)

    # one-off extraction of the shots' features (what a cached run needs; library code)
    ordered = [int(i) for i in rows_all]
    ex_times = C.repeat(lambda: Fe.extract(bb, lambda j: images[ordered[j]], len(ordered), task.blocks),
                        repeats=args.repeats, warmup=1)
    extract_s = C.median(ex_times)
    meta["extract_shots_s"] = round(extract_s, 4)

    rows = []
    for v in variants:
        mode = "residual" if "residual" in v else "side"
        vcfg = with_mode(cfg, mode, residual_epochs if mode == "residual" and residual_epochs else None)
        threads = torch.get_num_threads()
        if v.endswith("-1t"):
            torch.set_num_threads(1)
        stamps: list[float] = []
        t0 = time.perf_counter()
        cb = lambda ep, r: stamps.append(time.perf_counter())  # noqa: E731
        if v.startswith("mvfa"):
            head, best_epoch = train_mvfa(task, support, vcfg, images, aug=not args.no_augment, on_epoch=cb)
            one_off = 0.0
        else:
            res = SD.train_head(task, support, vcfg, on_epoch=cb)
            head, best_epoch = res.head, res.best_epoch
            one_off = extract_s
        train_s = time.perf_counter() - t0
        torch.set_num_threads(threads)
        per_epoch = np.diff([t0] + stamps).tolist()
        t1 = time.perf_counter()
        m = evaluate_head(task, support, vcfg, head)
        eval_s = time.perf_counter() - t1
        row = {"backbone": backbone, "variant": v, "adapter_mode": mode, "epochs": len(per_epoch),
               "train_threads": 1 if v.endswith("-1t") else threads,
               "per_epoch_s": C.median(per_epoch), "train_s": train_s, "one_off_extract_s": one_off,
               "total_s": train_s + one_off, "best_epoch": best_epoch, "eval_s": eval_s} | m
        rows.append(row)
        print(f"  {v:16s} total {row['total_s']:8.3f} s  epoch {row['per_epoch_s']:.4f} s  "
              f"subset acc {m['subset_accuracy']:.3f}  macro AUROC {m['macro_auroc']:.3f}", flush=True)

    by = {r["variant"]: r for r in rows}
    ref = by.get("mvfa-side")
    for r in rows:
        if ref:
            same = r["epochs"] == ref["epochs"]
            r["speedup_total_vs_mvfa_side"] = ref["total_s"] / r["total_s"] if same else None
            r["speedup_epoch_vs_mvfa_side"] = ref["per_epoch_s"] / r["per_epoch_s"]
        if "mvfa-residual" in by and r["adapter_mode"] == "residual":
            r["speedup_total_vs_mvfa_residual"] = by["mvfa-residual"]["total_s"] / r["total_s"]
    skip = first / bb.n_blocks
    ratios = {"blocks_skipped_fraction": skip}
    if ref and "side-cached" in by:
        ratios["side_cached_total_speedup"] = ref["total_s"] / by["side-cached"]["total_s"]
        ratios["side_cached_epoch_speedup"] = ref["per_epoch_s"] / by["side-cached"]["per_epoch_s"]
        C.goal(rec, f"{backbone}: side-cached total speed-up over mvfa-side", ratios["side_cached_total_speedup"], 30.0)
    if ref and "side-cached-1t" in by:
        ratios["side_cached_1t_total_speedup"] = ref["total_s"] / by["side-cached-1t"]["total_s"]
        ratios["side_cached_1t_epoch_speedup"] = ref["per_epoch_s"] / by["side-cached-1t"]["per_epoch_s"]
        C.goal(rec, f"{backbone}: side-cached-1t total speed-up over mvfa-side", ratios["side_cached_1t_total_speedup"],
               30.0, note="the head trained with one torch thread")
    per_epoch_only = residual_epochs is not None and residual_epochs != epochs
    what = "per_epoch_s" if per_epoch_only else "total_s"
    basis = " (time per epoch)" if per_epoch_only else ""
    if ref and "residual-cached" in by:
        saved = 1 - by["residual-cached"][what] / ref[what]
        ratios["residual_cached_time_saved_vs_mvfa_side"] = saved
        C.goal(rec, f"{backbone}: residual-cached time saved vs mvfa-side (share){basis}", saved, round(skip, 4),
               unit="share", note=f"target = blocks skipped / depth = {first}/{bb.n_blocks}")
    if "mvfa-residual" in by and "residual-cached" in by:
        saved = 1 - by["residual-cached"][what] / by["mvfa-residual"][what]
        ratios["residual_cached_time_saved_vs_mvfa_residual"] = saved
        C.goal(rec, f"{backbone}: residual-cached time saved vs mvfa-residual (share){basis}", saved, round(skip, 4),
               unit="share", note="like for like: the same residual adapters without the cache")
    # the residual variant runs the frozen blocks after the first adapted one once per branch
    n, b = bb.n_blocks, len(task.categories) + 1
    ratios["residual_block_passes_per_image"] = b * (n - first)
    ratios["side_block_passes_per_image_mvfa"] = n
    rec.setdefault("backbones", {})[backbone] = meta | {"ratios": ratios}

    if args.profile:
        prof = {}
        pe = max(2, min(10, epochs))
        prof["side-cached (methods.sdmad.train_head)"] = C.profile_top_ops(lambda: SD.train_head(task, support, with_mode(cfg, "side", pe)))
        prof["mvfa-side (backbone every epoch)"] = C.profile_top_ops(
            lambda: train_mvfa(task, support, with_mode(cfg, "side", 3), images, aug=True))
        if any("residual" in v for v in variants):
            prof["residual-cached (methods.sdmad.train_head)"] = C.profile_top_ops(
                lambda: SD.train_head(task, support, with_mode(cfg, "residual", 2)))
        rec["profile"][backbone] = prof
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbones", default="phantomclip-tiny,ViT-B-32")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="for PhantomCLIP-tiny")
    ap.add_argument("--vit-variants", default="mvfa-side,mvfa-residual,residual-cached,side-cached,side-cached-1t",
                    help="for the larger backbones")
    ap.add_argument("--epochs", type=int, default=60, help="PhantomCLIP-tiny (the library default is 60)")
    ap.add_argument("--vit-epochs", type=int, default=60, help="the larger backbones")
    ap.add_argument("--vit-residual-epochs", type=int, default=3,
                    help="the residual variants on the larger backbones (their epochs are long: see per_epoch_s)")
    ap.add_argument("--n-test", type=int, default=600)
    ap.add_argument("--n-pool", type=int, default=1000)
    ap.add_argument("--vit-n-test", type=int, default=200)
    ap.add_argument("--vit-n-pool", type=int, default=300)
    ap.add_argument("--image-size", type=int, default=224, help="rendered phantom size")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3, help="repeats of the shot-feature extraction (median)")
    ap.add_argument("--no-augment", action="store_true", help="MVFA variant without augmentation")
    ap.add_argument("--no-profile", dest="profile", action="store_false")
    C.add_threads_arg(ap)
    ap.add_argument("--json", default=str(C.default_json(NAME)))
    args = ap.parse_args(argv)
    C.apply_threads(args.threads)

    cache = tempfile.TemporaryDirectory(prefix="sdmad-bench-")
    os.environ["SDMAD_CACHE"] = cache.name  # cold feature / text caches: the task build is the one-off cost
    rec = C.envelope(NAME, "Training cost of one few-shot run: MVFA recipe vs cached residual vs cached side", args)
    rec["notes"] += [
        "phantom chest, k=%d, seed %d; every variant trains the same head for the same number of epochs "
        "(early stopping off), restores its best-validation epoch, and is scored the same way." % (args.k, args.seed),
        "mvfa-*: no cache; the train shots are augmented (random shift ±8 px, horizontal flip) and, with the "
        "validation shots, run through the whole frozen backbone every epoch.",
        "total = one-off extraction of the shots' features (cached variants, median of repeats) + training; the "
        "library extracts the whole pool once per backbone and dataset (task_build_s, shared by every run).",
        "'mvfa-*' names MVFA's training recipe (no cache, backbone every epoch) applied to SD-MAD's head; it is "
        "not the 'mvfa' baseline method of the registry (methods.yaml) (one-vs-rest adapters).",
        "PhantomCLIP-tiny uses the shipped checkpoint when present; ViT-B-32 uses random weights (no network): its "
        "timings are real, its accuracy is chance level, and it uses smaller sets (see settings); its residual "
        "variants run fewer epochs (vit_residual_epochs), so for them only the time per epoch is compared.",
    ]
    rows = []
    for bbn in [b for b in args.backbones.split(",") if b]:
        small = bbn != "phantomclip-tiny"
        var = [v for v in (args.vit_variants if small else args.variants).split(",") if v]
        bad = [v for v in var if v not in VARIANTS]
        if bad:
            ap.error(f"unknown variants {bad}; choose from {', '.join(VARIANTS)}")
        rows += bench_backbone(bbn, args, args.vit_n_test if small else args.n_test,
                               args.vit_n_pool if small else args.n_pool, args.vit_epochs if small else args.epochs,
                               var, rec, args.vit_residual_epochs if small else None)
    rec["results"] = rows
    rec["ratios"] = {b: m["ratios"] for b, m in rec.get("backbones", {}).items()}
    cols = ["backbone", "variant", "train_threads", "epochs", "per_epoch_s", "one_off_extract_s", "train_s", "total_s",
            "speedup_total_vs_mvfa_side", "subset_accuracy", "macro_auroc"]
    meta_rows = [{"backbone": b, "weights": m["weights"], "blocks": "/".join(map(str, m["blocks"])) + f" of {m['n_blocks']}",
                  "branches": m["branches"], "shots (train+val)": f"{m['n_train_shots']}+{m['n_val_shots']}",
                  "task_build_s": m["task_build_s"], "extract_shots_s": m["extract_shots_s"]}
                 for b, m in rec.get("backbones", {}).items()]
    parts = [C.table(rows, cols, "training cost, one few-shot run (seconds)"),
             C.table(meta_rows, list(meta_rows[0]) if meta_rows else [], "setup"), C.goals_table(rec)]
    for b, prof in rec["profile"].items():
        for k, p in prof.items():
            parts.append(C.profile_table(f"{b} · {k}", p))
    C.print_record(rec, *parts)
    print("wrote", C.write_json(rec, args.json))
    cache.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
