"""The cost of the fair protocol's tuning: a whole grid × folds trained as one stack vs one at a time.

    python benchmarks/bench_tuning.py [--shots 4] [--seed 0] [--epochs 100] [--repeats 3] [--json PATH]

SD-MAD's tuning (``methods/sdmad.train_stack_of_heads``) trains every grid point of
``configs/methods.yaml`` on every fold of the support set at once: G points × F folds heads,
stacked along a model axis, one forward pass per epoch (``train.train_stack``). Three ways to do
the same work, side by side in one run, each for exactly ``--epochs`` epochs (no early stop, so
the work is equal):

- ``stack-all``: the whole grid × folds as one stack (what a run does);
- ``stack-per-point``: one grid point at a time, its F folds stacked (G stacks);
- ``one-at-a-time``: every (point, fold) model trained alone through the single-model loop
  (``train_head`` on the fold's complement, its held-out loss computed every epoch as the stack
  computes it, never stopping early: G × F trainings).

A fourth row, ``refit``, is the one training on the whole support set that follows the choice.
The held-out loss curves of ``stack-all`` and ``stack-per-point`` are reported side by side; they
are not identical — each stack draws the initial weights of all its models from one seed, so a
model of the whole stack starts from other weights than its twin in a one-point stack.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import _common as C  # noqa: E402

NAME = "tuning"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shots", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3, help="timings per way (median)")
    ap.add_argument("--json", default=str(C.default_json(NAME)))
    args = ap.parse_args(argv)

    from sdmad_lite import tuning as T
    from sdmad_lite.methods import config_for
    from sdmad_lite.methods import heads as S
    from sdmad_lite.studies import base_config
    from sdmad_lite.task import get_task

    rec = C.envelope(NAME, "Tuning SD-MAD: grid × folds as one stack vs one grid point or one model at a time", args)
    cfg = config_for("sdmad", base_config())
    cfg.k_shot, cfg.seed = args.shots, args.seed
    task = get_task(cfg)
    cols = list(range(len(task.categories)))
    support = task.draw_support(cfg.k_shot, cfg.seed, cfg.train.val_fraction)
    points = T.grid_points(cfg.tuning.grid)
    nf = cfg.tuning.folds
    text = task.text_columns(cols)
    kept_of = lambda rows: text  # noqa: E731  (selection is not what is timed)
    cv = T.CV.of(cfg, task.y_pool[support.all][:, cols])
    folds = cv.folds

    def stack_all():
        return S.train_stack_of_heads(task, support.all, cfg, cols, text, kept_of, cv, exact_epochs=args.epochs)

    def stack_per_point():
        return [S.train_stack_of_heads(task, support.all, cfg, cols, text, kept_of, cv, [p], exact_epochs=args.epochs)
                for p in points]

    def one_at_a_time():  # each model also evaluates its held-out fold every epoch, as the stack does
        for p in points:
            c = T.apply_point(cfg, p)
            c.train.patience = args.epochs + 1  # never stops early: equal epochs
            for f in range(nf):
                S.train_head(task, support.all[folds != f], c, text, cols, args.epochs, held_out=support.all[folds == f])

    def refit():
        S.train_head(task, support.all, T.apply_point(cfg, points[0]), text, cols, args.epochs)

    ways = {"stack-all": stack_all, "stack-per-point": stack_per_point, "one-at-a-time": one_at_a_time, "refit": refit}
    models = {"stack-all": len(points) * nf, "stack-per-point": len(points) * nf, "one-at-a-time": len(points) * nf,
              "refit": 1}
    rows = []
    for name, fn in ways.items():
        times = C.repeat(fn, args.repeats, warmup=1)
        rows.append({"way": name, "models": models[name], "epochs": args.epochs, "median_s": C.median(times),
                     "spread": C.spread(times), "s_per_model": C.median(times) / models[name]})
    base = {r["way"]: r["median_s"] for r in rows}
    for r in rows:
        r["speedup_vs_one_at_a_time"] = base["one-at-a-time"] / r["median_s"] if r["way"] != "refit" else float("nan")
    a, b = stack_all(), stack_per_point()
    gap = float(np.max(np.abs(a.curves - np.concatenate([t.curves for t in b], axis=1))))  # held-out loss curves
    crit_gap = float(max(abs(ra["criterion"] - t.records[0]["criterion"]) for ra, t in zip(a.records, b)))
    rec["results"] = rows
    rec["ratios"] = {"stack_all_vs_one_at_a_time": base["one-at-a-time"] / base["stack-all"],
                     "stack_all_vs_per_point": base["stack-per-point"] / base["stack-all"]}
    rec["setting"] = {"grid_points": len(points), "folds": nf, "support_images": int(len(support.all)),
                      "grid": cfg.tuning.grid, "held_out_loss_gap_stack_vs_per_point": gap,
                      "criterion_gap_stack_vs_per_point": crit_gap}
    rec["notes"] += [f"phantom chest, k = {args.shots}, seed {args.seed}: {len(support.all)} support images, "
                     f"{len(points)} grid points × {nf} folds = {len(points) * nf} models, {args.epochs} epochs each, "
                     "no early stop (equal work in every way)."]
    C.goal(rec, "grid × folds as one stack vs one model at a time", rec["ratios"]["stack_all_vs_one_at_a_time"], 3.0)
    rec["table"] = C.table(rows, ["way", "models", "epochs", "median_s", "spread", "s_per_model",
                                  "speedup_vs_one_at_a_time"], "tuning SD-MAD (seconds, median of repeats)")
    rec["table"] += "\n\n" + C.goals_table(rec)
    print(rec["table"])
    print("wrote", C.write_json(rec, args.json))
    return 0


if __name__ == "__main__":
    C.run(main)
