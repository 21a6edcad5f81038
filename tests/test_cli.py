"""The installed `whisper-spi` command: its help, and every subcommand's, print without error."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from whisper_spi.cli import _parser

WHISPER_SPI = str(Path(sys.executable).parent / "whisper-spi")


def _subcommands() -> list[str]:
    (action,) = (a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(action.choices)


def _help(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([WHISPER_SPI, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_top_level_help_lists_every_subcommand(flag):
    run = _help(flag)
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    assert run.stdout.startswith("usage: whisper-spi")
    for name in _subcommands():
        assert name in run.stdout
    assert "Delta% tables" in run.stdout  # the help text's literal percent sign


@pytest.mark.parametrize("name", _subcommands())
def test_subcommand_help(name):
    run = _help(name, "--help")
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    assert run.stdout.startswith(f"usage: whisper-spi {name}")
