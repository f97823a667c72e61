"""The ``sdmad`` command's parser and its handling of errors: every sub-command's arguments, gathered here
(domain modules hold no argparse). :func:`sdmad_lite.cli.main` loads this module when the command runs.

Modules: ``cli/data.py`` (phantoms, stats), ``cli/signs.py``, ``cli/models.py`` (pretrain-phantomclip,
zeroshot-report), ``cli/experiments.py`` (run, sweep).
"""
from __future__ import annotations

import argparse
import re
import sys

from ..errors import SdmadError
from ..version import __version__
from ..info import print_config
from . import data, experiments, models, prepare, signs

#: modules that register sub-commands, in the order ``sdmad --help`` lists them
SUBCOMMANDS = (data, prepare, signs, models, experiments)


def _info(args: argparse.Namespace) -> int:
    print_config(args.profile)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sdmad", description="SD-MAD Lite: sign-driven few-shot multi-anomaly detection")
    parser.add_argument("--version", action="version", version=f"sdmad-lite {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("info", help="print versions, profile, device, threads")
    p.add_argument("--profile", default=None, help="offline (default), colab or paper; else $SDMAD_PROFILE")
    p.set_defaults(func=_info)
    for module in SUBCOMMANDS:
        module.add_subcommands(sub)
    return parser


def is_user_error(e: BaseException) -> bool:
    """An error the user can fix: a :class:`~sdmad_lite.errors.SdmadError` (bad config, file, data,
    weights, run folder, setting). Anything else is a bug and keeps its traceback."""
    return isinstance(e, SdmadError)


def main(argv: list[str] | None = None) -> int:
    """Run the ``sdmad`` command line ``argv`` (default: this process's arguments); the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = " ".join(["sdmad"] + list(sys.argv[1:] if argv is None else argv))  # what a CSV records
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"sdmad {args.command}: interrupted (a run resumes from its checkpoint, a sweep from its CSV: "
              "run the same command again)", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 — the library's own errors get one line; anything else is a bug: re-raised
        if not is_user_error(e):
            raise
        print(f"sdmad {args.command}: error: {_ANSI.sub('', str(e))}", file=sys.stderr)
        return 2


#: terminal escape sequences (colours, bold) that a message quoted from another library may hold
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
