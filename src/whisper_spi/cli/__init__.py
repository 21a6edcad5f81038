"""The ``whisper-spi`` command: one subcommand per workflow stage, plus user tools.

Each subcommand only parses arguments, reads and writes files, and calls the library; the
Snakemake rules call these. A :class:`WhisperSpiError` becomes one line on stderr and exit
status 2, never a traceback.

Layout: :mod:`.options` (the option groups several subcommands share), :mod:`.decoding`
(the subcommands that load a Whisper model), :mod:`.stages` (those that only read and write
files).
"""

from __future__ import annotations

import argparse
import sys

from whisper_spi.cli import decoding, stages
from whisper_spi.errors import WhisperSpiError
from whisper_spi.tuning import wait_passively


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="whisper-spi", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    decoding.register(sub)
    stages.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    wait_passively()  # before any subcommand imports torch, which loads OpenMP
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except WhisperSpiError as exc:
        print(f"whisper-spi {args.command}: error: {exc}", file=sys.stderr)
        return 2


__all__ = ["build_parser", "main"]
