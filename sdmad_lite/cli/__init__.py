"""The ``sdmad`` command (``sdmad --help``; the parser and the sub-commands: :mod:`sdmad_lite.cli.commands`).

Light on purpose: a worker process that a command spawns re-runs the imports of the command's script, which
imports this module. :func:`main` loads the whole library only when the command runs, so a worker that draws
phantoms starts in a second, not ten (``sdmad_lite.processes``).
"""
from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """Run the ``sdmad`` command line ``argv`` (default: this process's arguments); the exit status."""
    from .commands import main as run_command

    return run_command(argv)
