"""``sdmad run``, ``sdmad sweep`` and ``sdmad study``."""
from __future__ import annotations

import argparse
import datetime

from .. import settings, studies
from ..config import ExperimentConfig, default_config, get_profile
from ..executor import run_many
from ..processes import default_workers
from ..io import exclusive_lock
from ..methods import ALL_METHODS, load_experiment
from ..results import read_meta, save_results, sidecar_path, write_meta
from ..run import run
from ..sweep import sweep
from . import checks


def default_experiment() -> ExperimentConfig:
    """The base of a sweep without ``--config``: the defaults of the profile ``$SDMAD_PROFILE`` names."""
    return default_config()


def _run(args: argparse.Namespace) -> int:
    checks.output_dir(args.out, "--out")
    cfg = load_experiment(args.config)
    row = run(cfg, args.out, overwrite=args.overwrite, progress=True)
    keys = ["integrated.subset_accuracy", "integrated.hamming_score", "integrated.macro_auroc", "per-anomaly.mean_auroc",
            "open-set.auroc_only_held_out"]
    for k in keys:
        if k in row:
            print(f"{k:32s} {row[k]:.4f}")
    print(f"results in {args.out}")
    return 0


def _results_file(path: str) -> None:
    """A results CSV and its sidecar can be written (before any compute): a regular file or none, a sidecar
    that is this library's (not the CSV itself, not a JSON file of the user's, not a corrupt one)."""
    checks.output_file(path, "--out")
    checks.output_file(sidecar_path(path), "--out (its sidecar)")
    read_meta(path)


def _sweep(args: argparse.Namespace) -> int:
    _results_file(args.out)
    base = load_experiment(args.config) if args.config else default_experiment()
    methods = list(dict.fromkeys(m.strip() for m in args.methods.split(",") if m.strip())) if args.methods != "all" \
        else list(ALL_METHODS)
    if not methods:
        raise checks.ArgumentError(f"--methods: no method in {args.methods!r}; give a comma list such as sdmad,mvfa, "
                                   "or all")
    rows = sweep(base, methods, args.seeds, args.shots, args.out,
                 backend=args.backend, workers=args.workers, progress=True, ray_address=args.ray_address,
                 cpus_per_run=args.cpus_per_run, gpus_per_run=args.gpus_per_run)
    write_meta(args.out, command=args.command_line, date=datetime.date.today().isoformat(), rows=len(rows))
    print(f"{len(rows)} rows in {args.out} (its command and library version in {sidecar_path(args.out).name})")
    return 0


def _study(args: argparse.Namespace) -> int:
    _results_file(args.out)
    profile = get_profile().name  # $SDMAD_PROFILE (validated), honoured as load_config honours it: never overridden
    cfgs = studies.STUDIES[args.name]()
    if settings.profile_name() is not None and any(c.profile != profile for c in cfgs):
        raise checks.ArgumentError(f"the study {args.name} is defined on the {cfgs[0].profile} profile (PhantomCLIP-tiny "
                                   f"on the phantom worlds) but {settings.PROFILE}={profile}; unset {settings.PROFILE}, "
                                   f"or run your own configs of the {profile} profile with sdmad sweep --config")
    workers = default_workers() if args.workers is None else args.workers
    print(f"{args.name}: {len(cfgs)} runs ({profile} profile) on {workers} worker(s); finished runs are kept in the "
          "result cache, so an interrupted study resumes where it stopped")
    with exclusive_lock(args.out, "another study"):
        rows = run_many(cfgs, workers=workers)
    save_results(rows, args.out, command=args.command_line)
    print(f"{len(rows)} rows in {args.out} (its command and library version in {sidecar_path(args.out).name})")
    return 0


def add_subcommands(sub) -> None:
    p = sub.add_parser("run", help="run one experiment from a YAML config")
    p.add_argument("config", help="experiment YAML (examples in sdmad_lite/configs/)")
    p.add_argument("--out", required=True, help="run folder (metrics.json, config.yaml, split.json, checkpoint.pt)")
    p.add_argument("--overwrite", action="store_true", help="replace the results of an existing run folder")
    p.set_defaults(func=_run)
    p = sub.add_parser("sweep", help="methods × seeds × shots into one CSV (resumable)")
    p.add_argument("--config", default=None, help="base experiment YAML (default: the offline defaults)")
    p.add_argument("--methods", default="all", help=f"comma list or 'all' ({', '.join(ALL_METHODS)})")
    p.add_argument("--seeds", type=checks.seeds, default=checks.seeds("0-9"), help="e.g. 0-9 or 0,1,2")
    p.add_argument("--shots", type=checks.shots, default=[4], help="e.g. 1,2,4,8,16")
    p.add_argument("--out", required=True, help="CSV file (rows already there are skipped)")
    p.add_argument("--backend", default="local", choices=["local", "ray"])
    p.add_argument("--workers", type=checks.positive_int, default=None,
                   help="local processes, or CPUs of a local Ray instance (default: $SDMAD_WORKERS, else the usable "
                        "cores, at most 8)")
    p.add_argument("--ray-address", default=None,
                   help="join this Ray cluster (e.g. ray://head:10001 or auto; default: $RAY_ADDRESS, else a local instance)")
    p.add_argument("--cpus-per-run", type=checks.positive, default=1.0, help="Ray: CPUs reserved per run")
    p.add_argument("--gpus-per-run", type=checks.non_negative, default=0.0, help="Ray: GPUs reserved per run (0.5: two runs share one)")
    p.set_defaults(func=_sweep)
    p = sub.add_parser("study", help="the runs of one of the book's studies into one CSV (a chapter can read it)")
    p.add_argument("name", choices=list(studies.STUDIES), help="the study (sdmad_lite/studies.py; the offline profile: "
                   "another $SDMAD_PROFILE is refused)")
    p.add_argument("--out", required=True, help="CSV file (replaced; its sidecar NAME.meta records the command and library)")
    p.add_argument("--workers", type=checks.positive_int, default=None,
                   help="local processes (default: $SDMAD_WORKERS, else the usable cores, at most 8)")
    p.set_defaults(func=_study)
