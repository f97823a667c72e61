"""``sdmad pretrain-phantomclip`` and ``sdmad zeroshot-report``."""
from __future__ import annotations

import argparse

import torch

from ..config import default_config
from ..processes import default_workers
from ..io import write_json
from ..models.backbone import load
from ..models.captions import SIGN_PHRASES
from ..models.checkpoints import uncaptioned_signs
from ..models.pretrain import PretrainConfig, pretrain
from ..reports import summarize_report, zero_shot_report
from ..task import get_backbone
from . import checks


def _pretrain(args: argparse.Namespace) -> int:
    checks.output_dir(args.out, "--out")
    workers = default_workers() if args.workers is None else args.workers
    try:
        cfg = PretrainConfig(steps=args.steps, batch_size=args.batch_size, pool_per_modality=args.pool, seed=args.seed,
                             workers=workers, lr=args.lr, warmup=args.warmup, aux_weight=args.aux_weight,
                             radiological_share=args.radiological_share, sign_caption_share=args.sign_caption_share,
                             extra_uncaptioned=tuple(args.uncaptioned), scanner_shift=args.scanner_shift,
                             scanner_seed=args.scanner_seed, negated_captions=args.negated_captions,
                             normal_anatomy=args.normal_anatomy, plain_captions=args.plain_captions, image_from=args.image_from,
                             stop_after=args.stop_after)
    except ValueError as e:
        raise SystemExit(f"sdmad pretrain-phantomclip: {e}") from None
    if args.threads:
        torch.set_num_threads(args.threads)
    pretrain(cfg, args.out, snapshots=tuple(args.snapshots))
    return 0


def _step_list(text: str) -> list[int]:
    """An argparse type: comma-separated step numbers ≥ 1."""
    return [checks.positive_int(t.strip()) for t in text.split(",") if t.strip()]


def _sign_list(text: str) -> list[str]:
    """An argparse type: comma-separated renderer sign ids, or 'none'."""
    items = [t.strip() for t in text.split(",") if t.strip() and t.strip().lower() != "none"]
    unknown = [t for t in items if t not in SIGN_PHRASES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown sign ids {unknown}; see sdmad_lite/data/phantoms/catalogue.py")
    return items


def _report(args: argparse.Namespace) -> int:
    if args.out:
        checks.output_file(args.out, "--out")
    if args.backbone is None and args.pretrained == "default":
        cfg = default_config()  # the backbone and weights of $SDMAD_PROFILE
        bb, backbone, pretrained = get_backbone(cfg), cfg.model.backbone, cfg.model.pretrained
    else:
        backbone, pretrained = args.backbone or "phantomclip-tiny", args.pretrained
        bb = load(backbone, pretrained)
    df = zero_shot_report(bb, seeds=tuple(range(args.seeds)), n=args.n, world=args.world,
                          uncaptioned=uncaptioned_signs(backbone, pretrained))
    summary = summarize_report(df)
    print(summary.to_string())
    if args.out:
        command = f"sdmad zeroshot-report --seeds {args.seeds} --n {args.n}"
        if args.world != "evaluation" or args.pretrained != "default":
            command += f" --world {args.world} --pretrained {args.pretrained}"
        write_json(args.out, {"backbone": bb.key, "command": command, "world": args.world,
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
    p.add_argument("--warmup", type=checks.positive_int, default=d.warmup, help="learning-rate warm-up steps")
    p.add_argument("--stop-after", type=checks.positive_int, default=None, metavar="N",
                   help="train only the first N steps of the --steps schedule (its weights = a --snapshots N run's)")
    p.add_argument("--aux-weight", type=checks.non_negative, default=d.aux_weight, help="caption-tag loss weight (0: off)")
    k = p.add_argument_group("what the backbone knows of the sign bank (models/pretrain.py)")
    k.add_argument("--radiological-share", type=checks.fraction, default=d.radiological_share,
                   help="share of sign phrases in the radiological vocabulary; the rest lay, visual words (0 … 1)")
    k.add_argument("--sign-caption-share", type=checks.fraction, default=d.sign_caption_share,
                   help="share of pool images whose captions say what they show; the rest: the modality alone")
    k.add_argument("--uncaptioned", type=_sign_list, default=list(d.extra_uncaptioned), metavar="SIGN,...",
                   help="signs never described, on top of the default ones ('none': no extra)")
    k.add_argument("--scanner-shift", type=checks.fraction, default=d.scanner_shift,
                   help="source-domain scanner strength for the pretraining images (0: the task's style)")
    k.add_argument("--scanner-seed", type=int, default=d.scanner_seed, help="which source-domain scanner")
    k.add_argument("--negated-captions", action=argparse.BooleanOptionalAction, default=d.negated_captions,
                   help="the old normal caption '... with no abnormal finding' (inverts the anchor)")
    k.add_argument("--normal-anatomy", action=argparse.BooleanOptionalAction, default=d.normal_anatomy,
                   help="some normal captions describe the normal anatomy in positive words")
    k.add_argument("--image-from", default=None, metavar="CHECKPOINT",
                   help="keep this checkpoint's image tower, frozen (a shipped name such as shipped-oracle, or a file), "
                        "and train the text tower from scratch (locked-image tuning; with --aux-weight 0)")
    k.add_argument("--plain-captions", action=argparse.BooleanOptionalAction, default=d.plain_captions,
                   help="images without sign captions are in the contrastive loss, captioned with the modality "
                        "alone (--no-plain-captions: tag loss only)")
    p.add_argument("--workers", type=checks.positive_int, default=None,
                   help="processes rendering the pool (default: $SDMAD_WORKERS, else the usable cores, at most 8)")
    p.add_argument("--threads", type=checks.threads, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--out", required=True, help="folder for phantomclip-tiny.pt and its card")
    p.add_argument("--snapshots", type=_step_list, default=[], metavar="STEP,...",
                   help="also write the weights after these steps (phantomclip-tiny-stepN.pt; calibration; not the recipe)")
    p.set_defaults(func=_pretrain)

    p = sub.add_parser("zeroshot-report", help="PhantomCLIP's zero-shot table: names vs signs vs random words")
    p.add_argument("--backbone", default=None,
                   help="a backbone name (default: the backbone and weights of $SDMAD_PROFILE, else phantomclip-tiny)")
    p.add_argument("--pretrained", default="default",
                   help="weights: default (the shipped checkpoint), shipped-oracle, shipped-partial (= default), or a file")
    p.add_argument("--world", choices=("evaluation", "development"), default="evaluation",
                   help="held-out phantoms: evaluation (chapter 4's table) or development (calibration phantoms no table uses)")
    p.add_argument("--seeds", type=checks.positive_int, default=5, help="number of seeds (held-out sets)")
    p.add_argument("--n", type=checks.positive_int, default=300, help="held-out phantoms per modality and seed")
    p.add_argument("--out", default=None, help="JSON file for the rows and the summary")
    p.set_defaults(func=_report)
