"""What tuning costs in each adapter placement: one tuned run (phantom chest, k = 4, seed 0) per way.

    python benchmarks/bench_placements.py [--shots 4] [--seed 0] [--ways side,shift,residual-proxy,residual-own]
        [--own-max-epochs 5] [--json PATH]

Every way is one call of ``methods.predict`` (sign selection, the grid × folds stack, the F fold models of
the chosen point, scoring the support and test images) on the book's base config (``studies.base_config``),
timed in wall-clock seconds and in CPU seconds of the process (every thread: the residual placement runs
its frozen blocks on all of them, the others on one). The task (features, text bank; for the shift
placement also the class tokens of the blocks before the adapted ones) is built before any timing and
reported apart.

- ``side``: ``sdmad`` (side adapters, cross-validated in the side placement);
- ``shift``: ``sdmad-shift`` (the paper's Shift Adapter, image and text side, cross-validated in itself);
- ``residual-proxy``: ``sdmad-residual`` as shipped: the grid cross-validated by a stack of *side* heads
  (``methods.sdmad.CV_PLACEMENT``), then the fold models of the chosen point trained residual;
- ``residual-own``: the residual placement cross-validated in itself on its own grid (:data:`OWN_GRID`): a
  stack of 4 points × F folds residual heads, every branch of every model carried through the frozen blocks.

The stack and the fold models are timed apart (the stack's epochs and seconds per epoch too). The
residual-own stack is stopped after ``--own-max-epochs`` epochs (default 5; 0 runs it to its early stop,
about an hour of CPU on the phantom chest by the estimate below): its full cost is then estimated from its
CPU seconds per epoch × the epochs the proxy's stack ran, plus the proxy's fold models (``cpu_s_estimate``).

The latest run is ``benchmarks/results/placements.json``, shown on the book's costs page ("Tuning in each
adapter placement"). On 2 idle cores (2026-12-07), CPU seconds: side 6.4, shift 18.3, residual-proxy 282,
residual-own about 3,400 estimated (its stack 38.9 s per epoch) — so the residual placement keeps the side
proxy (``methods.sdmad.CV_PLACEMENT``).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

NAME = "placements"
WAYS = ("side", "shift", "residual-proxy", "residual-own")
#: the grid the residual placement would be tuned on in its own placement
OWN_GRID = {"train.lr": [0.003, 0.01], "train.weight_decay": [0.01, 0.1]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shots", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ways", default=",".join(WAYS))
    ap.add_argument("--own-max-epochs", type=int, default=5,
                    help="stop residual-own's stack after this many epochs, its full cost then estimated (0: never)")
    ap.add_argument("--json", default=str(C.default_json(NAME)))
    args = ap.parse_args(argv)

    import torch

    from sdmad_lite import methods
    from sdmad_lite.methods import heads
    from sdmad_lite.methods import sdmad as S
    from sdmad_lite.studies import base_config
    from sdmad_lite.task import get_task

    rec = C.envelope(NAME, "One tuned SD-MAD run per adapter placement (CPU time)", args)
    stacks: list[dict] = []
    train_stack = heads.train_stack_of_heads

    def timed_stack(task, rows, cfg, cols, *a, exact_epochs=None, **kw):  # what each stack costs
        t0, c0 = time.perf_counter(), time.process_time()
        if exact_epochs is None and cfg.model.adapter_mode == "residual" and args.own_max_epochs:
            cfg.tuning.max_epochs = args.own_max_epochs
        out = train_stack(task, rows, cfg, cols, *a, exact_epochs=exact_epochs, **kw)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        ep = out[1].epochs
        stacks.append({"part": "fold models" if exact_epochs is not None else "cv stack",
                       "placement": cfg.model.adapter_mode, "models": out[0].head.n_models, "epochs": ep,
                       "wall_s": wall, "cpu_s": cpu, "cpu_s_per_epoch": cpu / max(ep, 1)})
        return out

    S.train_stack_of_heads = timed_stack
    base = base_config()
    base.k_shot, base.seed = args.shots, args.seed
    name_of = {"side": "sdmad", "shift": "sdmad-shift", "residual-proxy": "sdmad-residual",
               "residual-own": "sdmad-residual"}
    rows, parts = [], []
    for way in args.ways.split(","):
        cfg = methods.config_for(name_of[way], base)
        if way == "residual-own":
            cfg.tuning.grid = dict(OWN_GRID)
        t0 = time.perf_counter()
        task = get_task(cfg, patches=methods.patches_read(cfg))
        build = time.perf_counter() - t0
        support = task.draw_support(cfg.k_shot, cfg.seed, cfg.train.val_fraction)
        S.CV_PLACEMENT["residual"] = "residual" if way == "residual-own" else "side"
        torch.manual_seed(cfg.seed)
        stacks.clear()
        t0, c0 = time.perf_counter(), time.process_time()
        pred, fitted = methods.predict(task, support, cfg)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        cv = next(s for s in stacks if s["part"] == "cv stack")
        row = {"way": way, "method": cfg.method, "cv_placement": cv["placement"], "support": len(support.all),
               "task_build_s": build, "wall_s": wall, "cpu_s": cpu, "cv_models": cv["models"],
               "cv_epochs": cv["epochs"], "cv_cpu_s": cv["cpu_s"], "cv_cpu_s_per_epoch": cv["cpu_s_per_epoch"],
               "chosen": fitted.tuned.point, "epochs": fitted.tuned.epochs, "criterion": max(
                   r["criterion"] for r in fitted.tuned.records), "measured": "all"}
        parts += [{"way": way, **s} for s in stacks]
        rows.append(row)
        print(C.table([row], list(row)), flush=True)
    proxy = next((r for r in rows if r["way"] == "residual-proxy"), None)
    for r in rows:  # a stack stopped early: its whole cost from its cost per epoch and the proxy's epochs
        if r["way"] == "residual-own" and args.own_max_epochs and r["cv_epochs"] >= args.own_max_epochs and proxy:
            full = r["cv_cpu_s_per_epoch"] * proxy["cv_epochs"]
            fold = next(p["cpu_s"] for p in parts if p["way"] == "residual-proxy" and p["part"] == "fold models")
            own_fold = next(p["cpu_s"] for p in parts if p["way"] == "residual-own" and p["part"] == "fold models")
            r["cpu_s_estimate"] = r["cpu_s"] - r["cv_cpu_s"] - own_fold + full + fold
            r["measured"] = (f"cv stack stopped at {r['cv_epochs']} epochs; estimate: its s/epoch × the proxy's "
                             f"{proxy['cv_epochs']} epochs, the proxy's fold models")
    rec["results"], rec["parts"] = rows, parts
    rec["notes"].append(f"phantom chest (studies.base_config), k = {args.shots}, seed {args.seed}; own grid of "
                        f"residual-own: {OWN_GRID}; CPU seconds of the process (all threads), task built before timing")
    cols = ["way", "cv_placement", "support", "cv_models", "cv_epochs", "cv_cpu_s_per_epoch", "cv_cpu_s", "epochs",
            "cpu_s", "wall_s", "task_build_s"]
    if any("cpu_s_estimate" in r for r in rows):
        cols.append("cpu_s_estimate")
    rec["table"] = C.table(rows, cols, "one tuned run per placement (seconds)") + "\n\n" + C.table(
        parts, ["way", "part", "placement", "models", "epochs", "cpu_s", "wall_s", "cpu_s_per_epoch"], "stacks")
    print(rec["table"])
    print("wrote", C.write_json(rec, args.json))
    return 0


if __name__ == "__main__":
    C.run(main)
