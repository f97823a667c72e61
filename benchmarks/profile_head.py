"""Time (and optionally profile) SD-MAD's training loop alone: ``methods.sdmad.train_head`` on cached features.

    python benchmarks/profile_head.py [--backbone phantomclip-tiny|ViT-B-32] [--mode side|residual]
        [--epochs 60] [--repeats 3] [--pyinstrument] [--torch-profiler]

Phantom chest, k = 4, seed 0, 300 pool / 200 test phantoms; the task (features, text bank) is built
first and not timed. Prints milliseconds per epoch (median of the repeats) and, with the flags, a
pyinstrument call tree or torch.profiler's operator table. This is the script behind the
"what each change bought" figures of the performance notes: run it at two commits to compare.
ViT-B-32 uses random weights (timing only).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="phantomclip-tiny")
    ap.add_argument("--mode", default="side", choices=["side", "residual"])
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pyinstrument", action="store_true", help="print a pyinstrument call tree of one more run")
    ap.add_argument("--torch-profiler", action="store_true", help="print torch.profiler's top operators of one more run")
    args = ap.parse_args(argv)

    import bench_training as B

    from sdmad_lite import task as T
    from sdmad_lite.methods import heads as SD

    cfg = B.make_cfg(args.backbone, C.weights_for(args.backbone), 200, 300, args.epochs, 4, 0, 224, args.mode)
    task = T.get_task(cfg)
    sup = task.draw_support(4, 0, cfg.train.val_fraction)
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        res = SD.train_head(task, sup, cfg)
        times.append(time.perf_counter() - t0)
    ms = 1000 * statistics.median(times) / args.epochs
    print(f"{args.backbone} {args.mode}: {len(sup.train)} train + {len(sup.val)} val shots, blocks {task.blocks}, "
          f"{args.epochs} epochs: {ms:.1f} ms/epoch (median of {args.repeats}; final loss {res.history[-1]['loss']:.5f})")
    if args.pyinstrument:
        from pyinstrument import Profiler

        p = Profiler(interval=0.0005)
        p.start()
        SD.train_head(task, sup, cfg)
        p.stop()
        print(p.output_text(unicode=False, color=False))
    if args.torch_profiler:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            SD.train_head(task, sup, cfg)
        print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=15))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
