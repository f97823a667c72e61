"""``sdmad pretrain-phantomclip`` and ``sdmad zeroshot-report``."""
from __future__ import annotations

import argparse

import torch

from ..config import default_config
from ..executor import default_workers
from ..io import write_json
from ..models.backbone import load
from ..models.pretrain import PretrainConfig, pretrain
from ..reports import summarize_report, zero_shot_report
from ..task import get_backbone
from . import checks


def _pretrain(args: argparse.Namespace) -> int:
    checks.output_dir(args.out, "--out")
    workers = default_workers() if args.workers is None else args.workers
    cfg = PretrainConfig(steps=args.steps, batch_size=args.batch_size, pool_per_modality=args.pool, seed=args.seed,
                         workers=workers, lr=args.lr, aux_weight=args.aux_weight)
    if args.threads:
        torch.set_num_threads(args.threads)
    pretrain(cfg, args.out)
    return 0


def _report(args: argparse.Namespace) -> int:
    if args.out:
        checks.output_file(args.out, "--out")
    bb = load(args.backbone) if args.backbone else get_backbone(default_config())  # default: $SDMAD_PROFILE's
    df = zero_shot_report(bb, seeds=tuple(range(args.seeds)), n=args.n)
    summary = summarize_report(df)
    print(summary.to_string())
    if args.out:
        write_json(args.out, {"backbone": bb.key, "command": f"sdmad zeroshot-report --seeds {args.seeds} --n {args.n}",
                              "rows": df.to_dict(orient="records"),
                              "summary": summary.reset_index().to_dict(orient="records")})
        print(f"wrote {args.out}")
    return 0


def add_subcommands(sub) -> None:
    p = sub.add_parser("pretrain-phantomclip", help="pretrain PhantomCLIP-tiny on phantoms with sign captions")
    d = PretrainConfig()
    p.add_argument("--steps", type=checks.positive_int, default=d.steps)
    p.add_argument("--batch-size", type=checks.positive_int, default=d.batch_size)
    p.add_argument("--pool", type=checks.positive_int, default=d.pool_per_modality, help="phantoms rendered per modality")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--lr", type=checks.positive, default=d.lr)
    p.add_argument("--aux-weight", type=checks.non_negative, default=d.aux_weight, help="caption-tag loss weight (0: off)")
    p.add_argument("--workers", type=checks.positive_int, default=None,
                   help="processes rendering the pool (default: $SDMAD_WORKERS, else the usable cores, at most 8)")
    p.add_argument("--threads", type=checks.threads, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--out", required=True, help="folder for phantomclip-tiny.pt and its card")
    p.set_defaults(func=_pretrain)

    p = sub.add_parser("zeroshot-report", help="PhantomCLIP's zero-shot table: names vs signs vs random words")
    p.add_argument("--backbone", default=None,
                   help="a backbone name (default: the backbone and weights of $SDMAD_PROFILE, else phantomclip-tiny)")
    p.add_argument("--seeds", type=checks.positive_int, default=5, help="number of seeds (held-out sets)")
    p.add_argument("--n", type=checks.positive_int, default=300, help="held-out phantoms per modality and seed")
    p.add_argument("--out", default=None, help="JSON file for the rows and the summary")
    p.set_defaults(func=_report)
