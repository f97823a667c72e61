"""Two processes encoding images side by side: each on every core's threads, or each on its share.

    python benchmarks/bench_threads.py [--images 768] [--json PATH]

Why the library's pool workers run torch on their share of the cores (``sdmad_lite.processes.share_threads``)
and pytest-xdist's processes too (``tests/conftest.py``): PhantomCLIP-tiny encodes ``--images`` images
(random pixels; the cost does not depend on them) in batches of 64, in one process and in two at once,
with torch on all the usable cores and on one thread. The seconds are those of the slower process.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import time

from _common import default_json, envelope, table, write_json


def encode(threads: int, images: int) -> float:
    import torch

    from sdmad_lite.models.backbone import load

    torch.set_num_threads(threads)
    bb = load("phantomclip-tiny", "default")
    x = torch.rand(64, 3, 128, 128)
    with torch.inference_mode():
        bb.forward_image(x, taps=[2, 4, 6])  # warm-up
        t0 = time.perf_counter()
        for _ in range(max(1, images // 64)):
            bb.forward_image(x, taps=[2, 4, 6])
    return time.perf_counter() - t0


def main(argv=None) -> int:
    from sdmad_lite.processes import usable_cores

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=768)
    ap.add_argument("--json", default=str(default_json("threads")))
    args = ap.parse_args(argv)
    rec = envelope("threads", "Two processes encoding side by side, on every core's threads or on their share", args)
    cores, rows = usable_cores(), []
    for threads in sorted({cores, max(1, cores // 2)}, reverse=True):
        for procs in (1, 2):
            with mp.get_context("spawn").Pool(procs) as pool:
                s = max(pool.starmap(encode, [(threads, args.images)] * procs))
            rows.append({"threads per process": threads, "processes": procs, "seconds": s})
    by = {(r["threads per process"], r["processes"]): r["seconds"] for r in rows}
    if cores > 1:
        rec["ratios"]["two processes: every core's threads / their share"] = by[(cores, 2)] / by[(max(1, cores // 2), 2)]
    rec["results"] = rows
    rec["table"] = table(rows, ["threads per process", "processes", "seconds"],
                         f"encoding {args.images} images per process, PhantomCLIP-tiny, {cores} usable cores")
    print(rec["table"])
    print(rec["ratios"])
    print(f"wrote {write_json(rec, args.json)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
