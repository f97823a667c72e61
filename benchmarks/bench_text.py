"""Text side: the whole prompt bank encoded cold vs from the embedding cache, and the trimmed
text forward vs open_clip's full 77-token ``encode_text``.

    python benchmarks/bench_text.py [--backbones phantomclip-tiny,ViT-B-32] [--banks phantom_chest,chestxray14]
        [--repeats 3] [--cold-repeats 2] [--json PATH]

Rows:

- ``cold``            ``TextEmbeddings`` (``features.py``) of every prompt of the banks (``SignBank.all_prompts()``: all
  candidate signs × templates, category names, anchors) into a fresh ``SDMAD_CACHE`` (a new temporary
  folder each repeat): tokenise + encode + write the cache file;
- ``warm (disk)``     the same call in a "new process": the in-memory layer cleared, the cache file read;
- ``warm (memory)``   the same call again in the same process;
- ``text_forward``    ``Backbone.text_forward`` (the causal text transformer cut at the longest prompt)
  on the tokenised bank, batches of 256;
- ``encode_text``     open_clip's ``model.encode_text`` on the same tokens (all 77 positions).

The two forwards must agree: the JSON records the largest absolute difference of their outputs.
They are timed on an evenly spaced subset of ``--forward-prompts`` prompts; the larger backbones
(random weights) use a subset of ``--vit-max-prompts`` prompts for the cache timings too (a full
77-token pass of ViT-B-32's text tower over the whole bank takes minutes on 2 cores).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import _common as C  # noqa: E402

NAME = "text"


def bank_prompts(names: list[str]) -> list[str]:
    from sdmad_lite.signs.bank import SignBank

    out: list[str] = []
    for n in names:
        out += SignBank.load(n).all_prompts()
    return list(dict.fromkeys(out))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbones", default="phantomclip-tiny,ViT-B-32")
    ap.add_argument("--banks", default="phantom_chest,chestxray14")
    ap.add_argument("--repeats", type=int, default=3, help="warm and forward timings (median)")
    ap.add_argument("--cold-repeats", type=int, default=2, help="cold encodings, each into a fresh cache folder")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--vit-max-prompts", type=int, default=600,
                    help="larger backbones: cache timings on an evenly spaced subset of this many prompts (0: all)")
    ap.add_argument("--forward-prompts", type=int, default=128,
                    help="text_forward vs encode_text on an evenly spaced subset of this many prompts (0: all)")
    C.add_threads_arg(ap)
    ap.add_argument("--json", default=str(C.default_json(NAME)))
    args = ap.parse_args(argv)
    C.apply_threads(args.threads)

    from sdmad_lite.features import TextEmbeddings
    from sdmad_lite.models.backbone import count_tokens

    rec = C.envelope(NAME, "Prompt bank: cold vs cached embeddings; trimmed text forward vs encode_text", args)
    prompts = bank_prompts(args.banks.split(","))
    ntok = count_tokens(prompts)
    rec["bank"] = {"banks": args.banks.split(","), "n_prompts": len(prompts), "max_tokens": max(ntok),
                   "mean_tokens": sum(ntok) / len(ntok)}
    rec["notes"] += [f"{len(prompts)} distinct prompts ({', '.join(args.banks.split(','))}); longest {max(ntok)} tokens "
                     f"of 77, mean {sum(ntok) / len(ntok):.1f}.",
                     "PhantomCLIP-tiny uses the shipped checkpoint when present, ViT-B-32 random weights (no network).",
                     f"larger backbones: cache timings on {args.vit_max_prompts or 'all'} prompts (evenly spaced); "
                     f"text_forward vs encode_text on {args.forward_prompts or 'all'} prompts for every backbone."]
    rows = []
    all_prompts = prompts

    def subset(ps: list[str], n: int) -> list[str]:
        if not n or n >= len(ps):
            return ps
        step = len(ps) / n
        return [ps[int(i * step)] for i in range(n)]

    for name in [b for b in args.backbones.split(",") if b]:
        bb, weights = C.load_backbone(name)
        prompts = all_prompts if name == "phantomclip-tiny" else subset(all_prompts, args.vit_max_prompts)
        fwd_prompts = subset(prompts, args.forward_prompts)
        emb = {}
        cold, disk, mem = [], [], []
        for _ in range(max(1, args.cold_repeats)):
            with tempfile.TemporaryDirectory(prefix="sdmad-bench-") as d:
                os.environ["SDMAD_CACHE"] = d
                t = {}
                with C.timed(t, "s"):
                    emb["cold"] = TextEmbeddings(bb.encode_text, bb.key)(prompts)
                cold.append(t["s"])
                for _ in range(args.repeats):
                    cache = TextEmbeddings(bb.encode_text, bb.key)  # a fresh memory layer: read from disk
                    with C.timed(t, "s"):
                        emb["disk"] = cache(prompts)
                    disk.append(t["s"])
                    with C.timed(t, "s"):
                        emb["mem"] = cache(prompts)
                    mem.append(t["s"])
        cache_same = max(float((emb["cold"] - emb[k]).abs().max()) for k in ("disk", "mem"))
        tok = bb.tokenizer(fwd_prompts)

        def batched(fn):
            def f():
                return torch.cat([fn(tok[i: i + args.batch]) for i in range(0, len(tok), args.batch)])
            return f

        with torch.inference_mode():
            fwd = {"text_forward (trimmed)": batched(bb.text_forward), "encode_text (77 tokens)": batched(bb.model.encode_text)}
            times = {k: C.repeat(f, args.repeats, warmup=1) for k, f in fwd.items()}
            a, b = fwd["text_forward (trimmed)"](), fwd["encode_text (77 tokens)"]()
            diff = float((a - b).abs().max())
            ndiff = float((torch.nn.functional.normalize(a, dim=-1) - torch.nn.functional.normalize(b, dim=-1)).abs().max())
        for label, ts in [("cold (encode + write cache)", cold), ("warm (disk)", disk), ("warm (memory)", mem)] + list(times.items()):
            med = C.median(ts)
            n = len(fwd_prompts) if label in times else len(prompts)
            rows.append({"backbone": name, "weights": weights, "what": label, "prompts": n, "median_s": med,
                         "prompts_per_s": n / med, "repeats": len(ts), "spread": C.spread(ts)})
        r = {"cold_over_warm_disk": C.median(cold) / C.median(disk), "cold_over_warm_memory": C.median(cold) / C.median(mem),
             "encode_text_over_text_forward": C.median(times["encode_text (77 tokens)"]) / C.median(times["text_forward (trimmed)"]),
             "text_forward_max_abs_diff": diff, "text_forward_max_abs_diff_normalised": ndiff,
             "cache_vs_fresh_max_abs_diff": cache_same, "output_scale_max_abs": float(b.abs().max())}
        rec["ratios"][name] = r
        C.goal(rec, f"{name}: text_forward = encode_text (max abs diff)", diff, 1e-4, unit="", higher_is_better=False)
        print(f"[{name}] {r}", flush=True)
    rec["results"] = rows
    ratio_rows = [{"backbone": b} | v for b, v in rec["ratios"].items()]
    parts = [C.table(rows, ["backbone", "what", "prompts", "median_s", "prompts_per_s", "repeats", "spread"],
                     f"prompt bank: {len(all_prompts)} prompts"),
             C.table(ratio_rows, ["backbone", "cold_over_warm_disk", "cold_over_warm_memory", "encode_text_over_text_forward",
                                  "text_forward_max_abs_diff"], "ratios"),
             C.goals_table(rec)]
    C.print_record(rec, *parts)
    print("wrote", C.write_json(rec, args.json))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
