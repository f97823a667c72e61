"""The ``sdmad`` command.

Sub-commands live next to the code they drive; each such module has an
``add_subcommand(subparsers)`` function, registered here.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__

#: modules that register a sub-command (in the order ``sdmad --help`` lists them)
SUBCOMMAND_MODULES = (
    "sdmad_lite.data.phantoms",
    "sdmad_lite.data.stats",
    "sdmad_lite.signs.bank",
    "sdmad_lite.models.pretrain",
    "sdmad_lite.models.zeroshot",
    "sdmad_lite.experiments",
)


def _info(args: argparse.Namespace) -> int:
    from .info import print_config

    print_config(args.profile)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sdmad", description="SD-MAD Lite: sign-driven few-shot multi-anomaly detection")
    parser.add_argument("--version", action="version", version=f"sdmad-lite {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("info", help="print versions, profile, device, threads")
    p.add_argument("--profile", default=None, help="offline (default), colab or paper; else $SDMAD_PROFILE")
    p.set_defaults(func=_info)
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:  # a part of the library that is not built yet
            if e.name and name.startswith(e.name):
                continue
            raise
        add = getattr(module, "add_subcommand", None)
        if add is not None:
            add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except Exception as e:  # noqa: BLE001 — user errors get one line; anything else is a bug: re-raised
        if not isinstance(e, user_errors()):
            raise
        print(f"sdmad {args.command}: error: {e}", file=sys.stderr)
        return 2


def user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "the user can fix this" (bad config, file, data, weights, run folder).

    ``FileExistsError`` covers a run folder that already holds results (``--overwrite``). The error
    types of heavy modules are only looked up when the module was imported (else they cannot occur).
    """
    from .config import ConfigError, ProfileUnavailableError

    errors: list[type[BaseException]] = [ConfigError, ProfileUnavailableError, FileNotFoundError,
                                         FileExistsError, ValueError]
    for module, name in (("sdmad_lite.models.backbone", "BackboneError"), ("sdmad_lite.data.images", "ImageLoadError")):
        cls = getattr(sys.modules.get(module), name, None)
        if cls is not None:
            errors.append(cls)
    return tuple(errors)


if __name__ == "__main__":
    sys.exit(main())
