"""Inference throughput: the frozen backbone alone vs the whole SD-MAD pipeline, on the same images.

    python benchmarks/bench_inference.py [--backbones phantomclip-tiny,ViT-B-32] [--batch 32]
        [--repeats 7] [--json PATH]

Rows (images per second, median of ``--repeats`` timed runs after a warm-up, under
``torch.inference_mode``, on one batch of rendered phantom chest radiographs; the repeats are
interleaved — every pipeline once per round — so that a change of load falls on all alike):

- ``backbone alone``      ``prepare`` + ``Backbone.forward_image`` without taps (the pooled embedding);
- ``open_clip encode_image`` ``prepare`` + ``model.encode_image`` (open_clip's own forward, a reference);
- ``SD-MAD (side)``       ``prepare`` + ``forward_image(taps=blocks)`` + the C+1 branches' adapters
  on the taps + scoring against the sign bank with sign selection applied (``TextBank.with_active``)
  + sigmoid: category probabilities and the anchor probability — what a deployed model computes;
- ``SD-MAD (residual)``   the same with residual adapters: each branch re-runs the frozen blocks
  after the first adapted one (``SDMADHead.forward(..., "residual")``);
- ``head only``           adapters + scoring on given taps (what scoring from the feature cache costs).

Goal: the side pipeline within 10% of the backbone alone. The head's weights and the choice of
kept signs do not change the cost, so a freshly initialised head and the expert selection are used.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import _common as C  # noqa: E402

NAME = "inference"


def setup(backbone: str, batch: int, image_size: int, seed: int = 0):
    from sdmad_lite.data.phantoms.world import PhantomDataset
    from sdmad_lite.models.backbone import default_taps
    from sdmad_lite.models.sdmad import SDMADHead, TextBank
    from sdmad_lite.signs import SignBank
    from sdmad_lite.task import build_text_bank

    bb, weights = C.load_backbone(backbone)
    ds = PhantomDataset("chest", batch, seed=seed, size=image_size)
    images = np.stack([ds[i]["image"] for i in range(batch)])
    bank = SignBank.load("phantom_chest")
    cats = list(ds.categories)
    text, _, expert = build_text_bank(bank, bb, cats)
    text = TextBank(text.signs, text.sign_mask, text.normal, text.abnormal).with_active(torch.as_tensor(expert))
    blocks = default_taps(bb.n_blocks)
    torch.manual_seed(seed)
    head = SDMADHead(len(cats), blocks, bb.width, 128, 0.8, 0.07, embed_dim=bb.embed_dim).eval()
    return bb, weights, images, text, head, blocks


def pipelines(bb, images, text, head, blocks):

    def backbone_alone():
        return bb.forward_image(bb.prepare(images))[0]

    def open_clip_encode():
        return bb.model.encode_image(bb.prepare(images))

    def sdmad(mode: str):
        def f():
            pix = bb.prepare(images)
            if mode == "side":
                _, taps = bb.forward_image(pix, taps=blocks)
            else:  # residual needs only the stream at the first adapted block, then each branch resumes
                _, taps = bb.forward_image(pix, taps=blocks[:1])
            u = head(taps, bb, mode)
            cat, anc = head.logits(u, text)
            return torch.sigmoid(cat), torch.sigmoid(anc)
        return f

    with torch.inference_mode():
        _, cached_taps = bb.forward_image(bb.prepare(images), taps=blocks)

    def head_only():
        u = head.branch_features(cached_taps, bb.to_joint)
        cat, anc = head.logits(u, text)
        return torch.sigmoid(cat), torch.sigmoid(anc)

    return {"backbone alone": backbone_alone, "open_clip encode_image": open_clip_encode,
            "SD-MAD (side)": sdmad("side"), "SD-MAD (residual)": sdmad("residual"), "head only": head_only}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbones", default="phantomclip-tiny,ViT-B-32")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--image-size", type=int, default=224, help="rendered phantom size (the model resizes)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--residual-repeats", type=int, default=3, help="timed runs of the (slow) residual pipeline")
    ap.add_argument("--no-residual", action="store_true", help="skip the residual pipeline (slow on large backbones)")
    ap.add_argument("--no-profile", dest="profile", action="store_false")
    C.add_threads_arg(ap)
    ap.add_argument("--json", default=str(C.default_json(NAME)))
    args = ap.parse_args(argv)
    C.apply_threads(args.threads)
    cache = tempfile.TemporaryDirectory(prefix="sdmad-bench-")
    os.environ["SDMAD_CACHE"] = cache.name
    rec = C.envelope(NAME, "Images per second: backbone alone vs the whole SD-MAD pipeline", args)
    rec["notes"] += [
        "one batch of rendered phantom chest images, uint8 -> prepare (resize, normalise) included in every row; "
        "torch.inference_mode; median of the timed repeats after warm-up; repeats interleaved across pipelines.",
        "SD-MAD (side) = taps + adapters of C+1 branches (C=8 categories + anchor) + scoring against the sign bank "
        "with selection applied + sigmoid. Random-weight heads cost the same as trained ones.",
        "PhantomCLIP-tiny uses the shipped checkpoint when present, ViT-B-32 random weights (no network).",
    ]
    rows = []
    for name in [b for b in args.backbones.split(",") if b]:
        bb, weights, images, text, head, blocks = setup(name, args.batch, args.image_size)
        fns = pipelines(bb, images, text, head, blocks)
        if args.no_residual:
            fns.pop("SD-MAD (residual)")
        with torch.inference_mode():
            a, b = fns["SD-MAD (side)"](), fns["head only"]()
            same = float((a[0] - b[0]).abs().max())  # the pipeline and the cached path agree
            out = {label: [] for label in fns}
            for label, fn in fns.items():
                C.repeat(fn, 0, args.warmup)
            # interleaved: repeat r times every pipeline in turn, so that a change of load on a shared
            # machine falls on all of them alike
            for r in range(args.repeats):
                for label, fn in fns.items():
                    if label == "SD-MAD (residual)" and r >= args.residual_repeats:
                        continue
                    out[label] += C.repeat(fn, 1, 0)
        base = C.median(out["backbone alone"])
        for label, times in out.items():
            med = C.median(times)
            rows.append({"backbone": name, "weights": weights, "pipeline": label, "batch": args.batch,
                         "median_s": med, "images_per_s": args.batch / med, "time_vs_backbone": med / base,
                         "spread": C.spread(times), "repeats": len(times)})
        side = C.median(out["SD-MAD (side)"]) / base
        rec["ratios"][name] = {"side_pipeline_time_vs_backbone": side,
                               "head_only_share_of_backbone": C.median(out["head only"]) / base,
                               "pipeline_vs_cached_head_max_abs_diff": same}
        if "SD-MAD (residual)" in out:
            rec["ratios"][name]["residual_pipeline_time_vs_backbone"] = C.median(out["SD-MAD (residual)"]) / base
        C.goal(rec, f"{name}: SD-MAD (side) time / backbone alone", side, 1.10, unit="×", higher_is_better=False)
        print(f"[{name}] side pipeline / backbone = {side:.3f}", flush=True)
        if args.profile:
            with torch.inference_mode():
                rec["profile"][name] = {
                    "SD-MAD (side) pipeline": C.profile_top_ops(fns["SD-MAD (side)"]),
                    "backbone alone": C.profile_top_ops(fns["backbone alone"]),
                }
    rec["results"] = rows
    parts = [C.table(rows, ["backbone", "pipeline", "batch", "median_s", "images_per_s", "time_vs_backbone", "spread"],
                     "inference throughput (images per second, one batch)"), C.goals_table(rec)]
    for b, prof in rec["profile"].items():
        for k, p in prof.items():
            parts.append(C.profile_table(f"{b} · {k}", p))
    C.print_record(rec, *parts)
    print("wrote", C.write_json(rec, args.json))
    cache.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
