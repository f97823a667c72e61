"""Is the phantom sandbox in the published regime? (DESIGN.md, "The regime the sandbox must be in")

For each PhantomCLIP-tiny checkpoint and modality, on calibration phantoms that no table of the book
uses, this prints and saves:

- **zero-shot** (``sdmad_lite.reports.zero_shot_report``, ``world="development"``: phantom seeds
  720_000 + seed): macro AUROC with category names, with the expert sign prompts, with random words,
  and the anchor AUROC (normal vs abnormal), mean ± std over ``--zs-seeds`` held-out sets;
- **k = 4 check** (``data.world: development``, support draws ``--seeds``, default 100, 101, 102):
  the macro AUROC over the anomaly columns (``integrated.anomaly_macro_auroc``: each category scored
  against every other image) of the trained methods (SD-MAD ``sdmad``, ``linear-probe``) and of the
  frozen sign prompts (``zeroshot-signs``), and the margin of the best trained method over the frozen
  prompts. The per-anomaly AUROC (each category against the normal images only, an easier question
  that any "abnormal" signal answers) is kept beside it (``k4pa_*`` columns).

Next to each number: the band it should be in for the calibrated (``shipped-partial``) checkpoint,
from PAPER.md's published figures (chest names 50-60, signs 60-72, anchor 60-78; OCT and brain names
<= 65, signs <= 80; anchor > 50 everywhere; trained >= frozen + 5 at k = 4).

    python benchmarks/calibrate_regime.py                       # the table of calibration.csv
    python benchmarks/calibrate_regime.py --checkpoints /tmp/candidate/phantomclip-tiny.pt --modalities chest

Writes ``--out`` (default ``sdmad_lite/resources/results/calibration.csv``) and a ``.meta`` JSON sidecar
(command, date, code fingerprint, settings, wall time). Runs go through the result cache
(``$SDMAD_CACHE``); a checkpoint given as a path must not be overwritten between two calls.

``--shots-curve K,K,...`` measures instead, on the same development draws, the anomaly-column AUROC of
``--methods`` (default here: the linear probe and the frozen sign prompts) as the shots per category grow,
for each checkpoint and modality (a k the pool cannot supply is left out), and writes ``shots_curve.csv``:
whether a modality's image features give a few-shot method more to read as k grows (the k = 4 margin asks
that of 4 shots only).

``--recipe-seeds SEED,SEED,...`` builds the default checkpoint's recipe (its card, ``phantomclip-tiny.card.json``)
once per seed into ``--build-dir`` (a build whose card holds the same recipe is reused), measures the zero-shot
columns and the k = 4 check of each (``--skip-k4``: zero-shot only), and writes ``recipe_seeds.csv``: how far the
regime, and the k = 4 comparison of SD-MAD, the probe and the frozen prompts, move with the recipe's own seed (the
shipped default is the card's seed; the bands were met, or missed, on that one draw). The card's seed must rebuild the
shipped weights (within ``REBUILD_TOLERANCE``), and the run stops if it does not. ``--recipe-change FIELD=VALUE,...``
studies a changed recipe the same way, in build folders of its own (write ``--out`` elsewhere: the shipped
``recipe_seeds.csv`` is the card's recipe).

``--anchor-cause ARM=CHECKPOINT,...`` prints instead the anchor AUROC of each checkpoint with subsets
of the anchor prompts, the first negated normal prompt put back where a subset says so (which prompts
invert the anchor), and writes ``anchor_inversion.csv``: the measurement behind the caption fix
(``sdmad_lite/models/captions.py``) and behind the positive wording of normal #3 (``signs/templates.yaml``).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from sdmad_lite.reports import BANDS

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "sdmad_lite" / "resources" / "results" / "calibration.csv"
TRAINED = ("sdmad", "linear-probe")
FROZEN = "zeroshot-signs"
#: the metric of the k = 4 check: macro AUROC over the anomaly columns of the integrated protocol (each
#: category scored against every other image, normal or not); ``per-anomaly.mean_auroc`` (each category
#: against the normal images only) is kept beside it, as ``k4pa_*``
ANOMALY_COLUMNS = "integrated.anomaly_macro_auroc"

MARGIN = 5.0  # the best trained method at k = 4 beats the frozen sign prompts by at least this (points)


def uncaptioned_of(checkpoint: str) -> frozenset:
    from sdmad_lite.models.checkpoints import uncaptioned_signs

    return uncaptioned_signs("phantomclip-tiny", checkpoint)


def zero_shot(checkpoint: str, seeds: int, n: int, modalities) -> list[dict]:
    from sdmad_lite.models.backbone import load
    from sdmad_lite.reports import zero_shot_report

    bb = load("phantomclip-tiny", checkpoint)
    df = zero_shot_report(bb, seeds=tuple(range(seeds)), n=n, world="development", uncaptioned=uncaptioned_of(checkpoint))
    rows = []
    for mod in modalities:
        g = df[df.modality == mod]
        row = {"checkpoint": checkpoint, "modality": mod, "zs_seeds": seeds, "zs_images": n}
        for src in ("names", "signs", "random", "anchor"):
            v = 100 * g[f"auroc_{src}"].to_numpy(float)
            row[f"zs_{src}"], row[f"zs_{src}_std"] = round(float(v.mean()), 1), round(float(v.std(ddof=1)) if len(v) > 1 else 0.0, 1)
        rows.append(row)
    return rows


def runs(checkpoint: str, modality: str, k: int, seeds, method: str, workers: int = 1,
         conspicuity: float = 1.0) -> list[dict]:
    """``method`` at ``k`` shots per category on the development world of ``modality`` (its signs drawn at
    ``conspicuity``, 1 = the book's), one run per seed."""
    from sdmad_lite import methods as M
    from sdmad_lite.config import default_config
    from sdmad_lite.executor import run_many

    base = default_config("offline")
    base.data.dataset = f"phantom-{modality}"
    base.data.world = "development"
    base.model.pretrained = checkpoint
    base.protocols = ["integrated", "per-anomaly"]
    base.k_shot, base.data.conspicuity = k, conspicuity
    cfgs = []
    for s in seeds:
        c = M.config_for(method, base)
        c.seed = s
        cfgs.append(c)
    return run_many(cfgs, workers=workers)


def percent(rows: list[dict], metric: str) -> np.ndarray:
    """``metric`` of each run, in percent (the k = 4 check and the shots curve read their runs this way)."""
    return 100 * np.array([r[metric] for r in rows], float)


def k4(checkpoint: str, modality: str, seeds, methods, log, workers: int = 1) -> dict:
    out = {}
    for method in methods:
        t0 = time.time()
        rows = runs(checkpoint, modality, 4, seeds, method, workers)
        v = percent(rows, ANOMALY_COLUMNS)
        out[f"k4_{method}"], out[f"k4_{method}_std"] = round(float(v.mean()), 1), round(float(v.std(ddof=1)), 1)
        out[f"k4_{method}_seeds"] = " ".join(f"{x:.1f}" for x in v)
        pa = percent(rows, "per-anomaly.mean_auroc")
        out[f"k4pa_{method}"] = round(float(pa.mean()), 1)
        log(f"  {checkpoint} {modality} {method}: anomaly-column AUROC {v.mean():.1f} ± {v.std(ddof=1):.1f} "
            f"({out[f'k4_{method}_seeds']}), per-anomaly {pa.mean():.1f}, in {time.time() - t0:.0f} s")
    trained = [m for m in TRAINED if m in methods]
    if FROZEN in methods and trained:
        for col in ("k4", "k4pa"):  # the band's metric (anomaly columns), then per anomaly
            best = max(trained, key=lambda m: out[f"{col}_{m}"])
            out[f"{col}_best_trained"] = best
            out[f"{col}_margin"] = round(out[f"{col}_{best}"] - out[f"{col}_{FROZEN}"], 1)
    return out


#: the negated normal prompt of the first anchor prompts (sdmad_lite/signs/templates.yaml, issue 24): normal #3,
#: now "a {obj} with normal findings"; the anchor-cause table puts it back for the subsets marked negated
NEGATED_NORMAL = "a {obj} with no abnormal findings"
#: subsets of the anchor prompts: (indices into the abnormal list, into the normal list, normal #3 negated)
ANCHOR_SUBSETS = {
    "all": ((0, 1, 2, 3, 4), (0, 1, 2, 3, 4), True),
    "without normal #3 (no abnormal findings)": ((0, 1, 2, 3, 4), (0, 1, 3, 4), True),
    "without normal #4 (descriptive)": ((0, 1, 2, 3, 4), (0, 1, 2, 4), True),
    "without normal #3 and #4": ((0, 1, 2, 3, 4), (0, 1, 4), True),
    "normal #3 in positive words (shipped)": ((0, 1, 2, 3, 4), (0, 1, 2, 3, 4), False),
}


def shots_curve(checkpoints, modalities, shots, seeds, methods, log, workers: int = 1) -> pd.DataFrame:
    """The ``--shots-curve`` table: one row per checkpoint × modality × k × method, the anomaly-column and
    the per-anomaly AUROC (percent, mean and std over ``seeds``); a k the pool cannot supply is skipped."""
    from sdmad_lite.data.fewshot import PoolTooSmallError

    rows = []
    for ck in checkpoints:
        for modality in modalities:
            for k in shots:
                for method in methods:
                    t0 = time.time()
                    try:
                        got = runs(ck, modality, k, seeds, method, workers)
                    except PoolTooSmallError as e:  # k larger than a category's positives in the pool
                        log(f"  {ck} {modality} k = {k}: skipped ({str(e).split(';')[0]})")
                        break
                    v, pa = percent(got, ANOMALY_COLUMNS), percent(got, "per-anomaly.mean_auroc")
                    rows.append({"checkpoint": ck, "modality": modality, "k_shot": k, "method": method,
                                 "anomaly_columns": round(float(v.mean()), 1), "anomaly_columns_std": round(float(v.std(ddof=1)), 1),
                                 "per_anomaly": round(float(pa.mean()), 1), "seeds": " ".join(str(s) for s in seeds)})
                    log(f"  {ck} {modality} k = {k} {method}: anomaly columns {v.mean():.1f} ± {v.std(ddof=1):.1f}, "
                        f"per anomaly {pa.mean():.1f} ({time.time() - t0:.0f} s)")
    return pd.DataFrame(rows)


def recipe_folder(seed: int, changes: dict) -> str:
    """The build folder's name of a seed: ``seed1234``, or with ``--recipe-change`` ``seed1234-lr0.0002-stop_after40``."""
    return f"seed{seed}" + "".join(f"-{k}{v}" for k, v in sorted(changes.items()))


def parse_changes(text: str | None) -> dict:
    """``--recipe-change lr=0.0002,stop_after=40``: the default card's recipe fields to change (JSON values)."""
    import dataclasses

    from sdmad_lite.models.pretrain import PretrainConfig

    fields = {f.name for f in dataclasses.fields(PretrainConfig)} - {"seed"}
    out = {}
    for item in filter(None, (text or "").split(",")):
        key, _, value = item.partition("=")
        if key not in fields or not value:
            raise SystemExit(f"--recipe-change {item!r}: write FIELD=VALUE with FIELD one of {', '.join(sorted(fields))} "
                             "(the seed is --recipe-seeds)")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def build_recipe_seeds(seeds, build_dir: Path, log, changes: dict | None = None) -> tuple[dict[int, str], dict | None]:
    """The default checkpoint's recipe (its card), with ``changes``, built once per seed in ``build_dir/``
    :func:`recipe_folder`: (seed -> checkpoint file, the card's seed against the shipped file or None). A folder
    whose card holds the same recipe is reused, one that holds another is refused (never overwritten). Unchanged,
    the card's own seed must give the shipped weights within :data:`REBUILD_TOLERANCE`."""
    import dataclasses

    import torch

    from sdmad_lite.io import sha256_file
    from sdmad_lite.models.checkpoints import SHIPPED
    from sdmad_lite.models.pretrain import PretrainConfig, pretrain

    card = json.loads(SHIPPED["shipped"][1].read_text())
    out, vs_shipped = {}, None
    for s in seeds:
        cfg = PretrainConfig(**{**card["recipe"], **(changes or {}), "seed": s})
        want = json.loads(json.dumps(dataclasses.asdict(cfg)))
        d = Path(build_dir) / recipe_folder(s, changes or {})
        ck, built = d / "phantomclip-tiny.pt", d / "phantomclip-tiny.card.json"
        if built.is_file() and json.loads(built.read_text()).get("recipe") != want:
            raise SystemExit(f"{d} holds a build of another recipe (its card's \"recipe\"): choose another --build-dir, "
                             "or delete that folder if you no longer need it")
        if ck.is_file() and built.is_file():
            log(f"seed {s}: {ck} (built before, same recipe)")
        else:
            log(f"seed {s}: building the default recipe with seed {s} in {d} ...")
            threads = torch.get_num_threads()
            torch.set_num_threads(int(card.get("machine", {}).get("threads") or 2))  # as the card's command ran
            try:
                pretrain(cfg, d, log=lambda *a: None)
            finally:
                torch.set_num_threads(threads)
        if s == card["recipe"]["seed"] and not changes:
            diff = max_abs_diff(ck, SHIPPED["shipped"][0])
            vs_shipped = {"sha256_equal": sha256_file(ck) == card["sha256"], "max_abs_diff": diff}
            log(f"seed {s} is the card's: sha256 {'equal to' if vs_shipped['sha256_equal'] else 'unlike'} the "
                f"shipped file's, largest tensor difference {diff:.2g}")
            if diff > REBUILD_TOLERANCE:
                raise SystemExit(f"seed {s} is the shipped checkpoint's seed but {ck} differs from it by {diff:.2g} "
                                 f"(> {REBUILD_TOLERANCE:g}): the recipe no longer rebuilds the default; find out why "
                                 "before reading any other seed")
        out[s] = str(ck)
    return out, vs_shipped


#: how far the card's own seed may rebuild from the shipped file (largest absolute tensor difference): float
#: arithmetic on another CPU (kernels, thread count) moves the weights by about 1e-4 in 20 steps
REBUILD_TOLERANCE = 1e-3


def max_abs_diff(a: Path, b: Path) -> float:
    """The largest absolute difference between two checkpoints' tensors (inf when their keys differ)."""
    import torch

    x, y = (torch.load(p, map_location="cpu", weights_only=True) for p in (a, b))
    if x.keys() != y.keys():
        return float("inf")
    return max(float((x[k].double() - y[k].double()).abs().max()) for k in x)


def measure(checkpoint: str, args, log) -> list[dict]:
    """One row per modality of ``args.modalities``: the zero-shot columns, the k = 4 check where ``args`` asks for
    it, and the verdicts against :data:`BANDS` and :data:`MARGIN` (the calibration table and the recipe-seed table)."""
    split = lambda text: [x.strip() for x in text.split(",") if x.strip()]  # noqa: E731
    k4_modalities = split(args.k4_modalities or args.modalities)
    methods = split(args.methods or f"sdmad,linear-probe,{FROZEN}")
    log(f"{checkpoint}: zero-shot on {args.zs_seeds} x {args.n} development phantoms per modality ...")
    rows = zero_shot(checkpoint, args.zs_seeds, args.n, split(args.modalities))
    for r in rows:
        log("  " + " ".join(f"{k} {r[f'zs_{k}']:.1f}" for k in ("names", "signs", "random", "anchor")) + f"  ({r['modality']})")
        if not args.skip_k4 and r["modality"] in k4_modalities:
            r.update(k4(checkpoint, r["modality"], [int(s) for s in args.seeds.split(",")], methods, log, args.workers))
        b = BANDS[r["modality"]]
        r["zs_in_bands"] = all(b[src].contains(r[f"zs_{src}"]) for src in b)
        if "k4_margin" in r:
            r["k4_margin_ok"] = r["k4_margin"] >= MARGIN
    return rows


#: what every table of measured checkpoints records of its bands and phantoms (in its .meta)
MEASURE_META = {
    "bands": {m: {k: str(v) for k, v in b.items()} for m, b in BANDS.items()}, "k4_margin_band": f">= {MARGIN:g}",
    "zero_shot_phantoms": "sdmad_lite.reports.REPORT_SEED_BASE['development'] + seed (720_000 + 0, 1, ...)",
    "k4_phantoms": "data.world: development (sdmad_lite/data/build.py DEV_TEST_SEED, DEV_POOL_SEED)"}


def negated_anchors(bank) -> dict[str, list[str]]:
    """The bank's anchor prompts with normal #3 in its first, negated form (:data:`NEGATED_NORMAL`)."""
    a = bank.anchor_prompts()
    return {**a, "normal": a["normal"][:2] + [NEGATED_NORMAL.format(obj=bank.obj)] + a["normal"][3:]}


def anchor_cause(arms: dict[str, str], n: int, seed: int = 0) -> pd.DataFrame:
    """Anchor AUROC of each checkpoint with the anchor prompt subsets of :data:`ANCHOR_SUBSETS`."""
    import torch.nn.functional as F

    from sdmad_lite import metrics as M
    from sdmad_lite.models.backbone import load
    from sdmad_lite.reports import REPORT_SEED_BASE, report_phantoms
    from sdmad_lite.signs.bank import SignBank

    rows = []
    for arm, ck in arms.items():
        bb = load("phantomclip-tiny", ck)
        for mod in ("chest", "oct", "brain"):
            x, y, _ = report_phantoms(mod, n, REPORT_SEED_BASE["development"] + seed)
            v, ab = bb.encode_images(x), (y.sum(1) > 0).astype(int)
            bank = SignBank.load(f"phantom_{mod}")
            first, now = negated_anchors(bank), bank.anchor_prompts()
            A = bb.encode_text(now["abnormal"])
            N = {neg: bb.encode_text((first if neg else now)["normal"]) for neg in (True, False)}
            row = {"arm": arm, "checkpoint": ck, "modality": mod, "images": n}
            for name, (ia, inn, neg) in ANCHOR_SUBSETS.items():
                ta, tn = F.normalize(A[list(ia)].mean(0), dim=-1), F.normalize(N[neg][list(inn)].mean(0), dim=-1)
                row[f"anchor {name}"] = round(100 * M.binary_auroc(ab, (v @ ta - v @ tn).numpy()), 1)
            rows.append(row)
            print(f"  {arm:<28} {mod:<6} " + "  ".join(f"{row[f'anchor {k}']:5.1f}" for k in ANCHOR_SUBSETS), flush=True)
    return pd.DataFrame(rows)


def table(df: pd.DataFrame) -> str:
    lines = []
    head = (f"{'checkpoint':<18} {'modality':<6} {'names':>11} {'signs':>11} {'random':>11} {'anchor':>11} | "
            f"{'SD-MAD k4':>11} {'probe k4':>11} {'ZS signs':>11} {'margin':>7} {'(per-an.)':>9}")
    lines.append(head)
    lines.append("-" * len(head))
    for _, r in df.iterrows():
        cells = []
        for src in ("names", "signs", "random", "anchor"):
            cells.append(f"{r[f'zs_{src}']:5.1f}±{r[f'zs_{src}_std']:4.1f}")
        k = []
        for m in ("sdmad", "linear-probe", FROZEN):
            k.append(f"{r[f'k4_{m}']:5.1f}±{r[f'k4_{m}_std']:4.1f}" if f"k4_{m}" in r and pd.notna(r.get(f"k4_{m}")) else f"{'-':>10}")
        margin = f"{r['k4_margin']:+7.1f}" if "k4_margin" in r and pd.notna(r.get("k4_margin")) else f"{'-':>7}"
        pa = f"{r['k4pa_margin']:+9.1f}" if "k4pa_margin" in r and pd.notna(r.get("k4pa_margin")) else f"{'-':>9}"
        lines.append(f"{Path(str(r['checkpoint'])).name[:18]:<18} {r['modality']:<6} {' '.join(f'{c:>11}' for c in cells)} | "
                     f"{' '.join(f'{c:>11}' for c in k)} {margin} {pa}")
    lines.append("bands (calibrated checkpoint): " + "; ".join(
        f"{mod} " + ", ".join(f"{src} {b}" for src, b in bb.items()) for mod, bb in BANDS.items())
        + f"; random: no band; k=4 margin (anomaly columns) >= +{MARGIN:g}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoints", default="shipped,shipped-oracle",
                    help="comma-separated: shipped names (shipped = shipped-partial, shipped-oracle) or files")
    ap.add_argument("--modalities", default="chest,oct,brain")
    ap.add_argument("--zs-seeds", type=int, default=3, help="held-out zero-shot sets per modality")
    ap.add_argument("--n", type=int, default=300, help="phantoms per zero-shot set")
    ap.add_argument("--seeds", default="100,101,102", help="support draws of the k = 4 check (development world)")
    ap.add_argument("--methods", default=None, help=f"default: sdmad,linear-probe,{FROZEN}")
    ap.add_argument("--k4-modalities", default=None, help="modalities of the k = 4 check (default: --modalities)")
    ap.add_argument("--workers", type=int, default=1, help="processes of the k = 4 runs")
    ap.add_argument("--skip-k4", action="store_true", help="zero-shot columns only")
    ap.add_argument("--shots-curve", default=None, metavar="K,K,...",
                    help="the anomaly-column AUROC as the shots grow instead (writes shots_curve.csv; --methods "
                    f"defaults to linear-probe,{FROZEN} here)")
    ap.add_argument("--recipe-seeds", default=None, metavar="SEED,SEED,...",
                    help="the default checkpoint's recipe built with each seed, its zero-shot columns and k = 4 check "
                    "(writes recipe_seeds.csv)")
    ap.add_argument("--recipe-change", default=None, metavar="FIELD=VALUE,...",
                    help="with --recipe-seeds: change these fields of the default card's recipe (e.g. lr=0.0002,stop_after=40)")
    ap.add_argument("--build-dir", default=None, help="where --recipe-seeds builds (default: the cache's recipe-seeds/)")
    ap.add_argument("--anchor-cause", default=None, metavar="ARM=CHECKPOINT,...",
                    help="anchor prompt-subset table of these checkpoints instead (writes anchor_inversion.csv)")
    ap.add_argument("--out", default=None, help="CSV file (default: resources/results/calibration.csv or "
                    "anchor_inversion.csv; '' : print only)")
    ap.add_argument("--append", action="store_true", help="keep the rows of --out's other checkpoints (a checkpoint "
                    "measured again replaces its rows); the .meta lists every run that wrote rows (recipe_search.csv)")
    args = ap.parse_args(argv)
    t0 = time.time()
    log = lambda *a: print(*a, flush=True)  # noqa: E731
    if args.anchor_cause:
        arms = dict(item.split("=", 1) for item in args.anchor_cause.split(","))
        log("anchor AUROC with subsets of the anchor prompts: " + " | ".join(ANCHOR_SUBSETS))
        df = anchor_cause(arms, args.n)
        out = OUT.with_name("anchor_inversion.csv") if args.out is None else (Path(args.out) if args.out else None)
        if out is not None:
            df, earlier = appended(out, df, list(arms.values())) if args.append else (df, None)
            df.to_csv(out, index=False)
            _write_meta(out, argv, df, args, t0, {"anchor_subsets": {k: {"abnormal": list(a), "normal": list(b), "negated": g}
                                                                     for k, (a, b, g) in ANCHOR_SUBSETS.items()},
                                                  "negated_normal": NEGATED_NORMAL},
                        earlier, list(arms.values()) if earlier is not None else None)
            log(f"wrote {out}")
        return 0
    if args.shots_curve:
        df = shots_curve([c.strip() for c in args.checkpoints.split(",") if c.strip()],
                         [m.strip() for m in args.modalities.split(",") if m.strip()],
                         [int(k) for k in args.shots_curve.split(",")], [int(s) for s in args.seeds.split(",")],
                         (args.methods or f"linear-probe,{FROZEN}").split(","), log, args.workers)
        out = OUT.with_name("shots_curve.csv") if args.out is None else (Path(args.out) if args.out else None)
        if out is not None:
            df.to_csv(out, index=False)
            _write_meta(out, argv, df, args, t0, {"metric": ANOMALY_COLUMNS, "phantoms": "data.world: development"})
            log(f"wrote {out}")
        return 0
    if args.recipe_seeds:
        from sdmad_lite.io import cache_dir

        seeds = [int(x) for x in args.recipe_seeds.split(",")]
        changes = parse_changes(args.recipe_change)
        if changes and args.out is None:
            raise SystemExit("--recipe-change: give --out (a CSV file, or '' to print only); the shipped recipe_seeds.csv "
                             "is the card's unchanged recipe")
        built, vs_shipped = build_recipe_seeds(seeds, Path(args.build_dir) if args.build_dir else cache_dir("recipe-seeds"),
                                               log, changes)
        recipe = "changed" if changes else "default"
        rows = [{**r, "recipe_seed": s, "checkpoint": f"{recipe} recipe, seed {s}"}  # the files are local: sha256 in the .meta
                for s, ck in built.items() for r in measure(ck, args, log)]
        df = pd.DataFrame(rows)
        out = OUT.with_name("recipe_seeds.csv") if args.out is None else (Path(args.out) if args.out else None)
        if out is not None:
            from sdmad_lite.io import sha256_file
            from sdmad_lite.models.checkpoints import SHIPPED

            df.to_csv(out, index=False)
            card = json.loads(SHIPPED["shipped"][1].read_text())
            _write_meta(out, argv, df, args, t0, {
                **MEASURE_META, "recipe": {**card["recipe"], **changes}, "recipe_change": changes,
                "card_seed": card["recipe"]["seed"], "sha256": {str(s): sha256_file(Path(ck)) for s, ck in built.items()},
                "card_seed_vs_shipped": vs_shipped}, measured=[])
            log(f"wrote {out} in {time.time() - t0:.0f} s")
        return 0
    if args.out is None:
        args.out = str(OUT)
    checkpoints = [c.strip() for c in args.checkpoints.split(",") if c.strip()]
    df = pd.DataFrame([r for ck in checkpoints for r in measure(ck, args, log)])
    df, earlier = appended(Path(args.out), df, checkpoints) if args.append and args.out else (df, None)
    text = table(df)
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(out, index=False)
        _write_meta(out, argv, df, args, t0, {**MEASURE_META, "table": text},
                    earlier, checkpoints if earlier is not None else None)
        log(f"wrote {out} and {out.with_suffix('.meta')} in {time.time() - t0:.0f} s")
    return 0


def appended(out: Path, df: pd.DataFrame, checkpoints: list[str]) -> tuple[pd.DataFrame, dict | None]:
    """``--append``: ``df`` after the rows of ``out`` whose checkpoint is not measured again, and the meta of
    ``out`` (None when there is no ``out`` yet)."""
    if not out.is_file():
        return df, None
    from sdmad_lite.results import read_meta

    old = pd.read_csv(out)
    return pd.concat([old[~old.checkpoint.astype(str).isin(checkpoints)], df], ignore_index=True), read_meta(out)


def _write_meta(out: Path, argv, df, args, t0: float, extra: dict, earlier: dict | None = None,
                measured: list[str] | None = None) -> None:
    """``earlier``/``measured`` (``--append``): the meta of the rows kept and the checkpoints this run measured."""
    from sdmad_lite.cache import code_fingerprint

    cards = {}
    kept = {str(c) for c in df["checkpoint"]}
    for ck in sorted(kept if measured is None else measured):
        from sdmad_lite.models.checkpoints import SHIPPED, SHIPPED_ALIASES

        name = SHIPPED_ALIASES.get(ck, ck)
        card = SHIPPED[name][1] if name in SHIPPED else Path(ck).with_name(Path(ck).stem + ".card.json")
        try:
            c = json.loads(card.read_text())
            cards[ck] = {"sha256": c.get("sha256"), "command": c.get("command"), "recipe": c.get("recipe")}
        except (OSError, ValueError):
            cards[ck] = None
    meta = {"command": "python " + " ".join(shlex.quote(a) for a in ["benchmarks/calibrate_regime.py",
                                                                     *(argv if argv is not None else sys.argv[1:])]),
            "date": dt.date.today().isoformat(), "code": code_fingerprint(), "rows": len(df), "settings": vars(args),
            "checkpoints": cards, "wall_time_s": round(time.time() - t0, 1), **extra}
    if earlier is not None:  # --append: the earlier runs that wrote the rows kept, newest last
        runs = earlier.get("runs") or [{k: earlier.get(k) for k in ("command", "date", "code", "wall_time_s")}]
        meta["runs"] = [*runs, {k: meta[k] for k in ("command", "date", "code", "wall_time_s")}]
        meta["checkpoints"] = {ck: c for ck, c in {**earlier.get("checkpoints", {}), **cards}.items() if ck in kept}
    out.with_suffix(".meta").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
