"""The installed `whisper-spi` command: its help, and every subcommand's, print without error."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from whisper_spi.cli import build_parser

WHISPER_SPI = str(Path(sys.executable).parent / "whisper-spi")


def _subcommands() -> list[str]:
    (action,) = (a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
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


def test_keep_freed_memory_lets_freed_buffers_be_reused_without_page_faults():
    """After tuning.keep_freed_memory, ops whose outputs are fresh 64 MB tensors (as an encoder
    layer's) mostly reuse freed pages; under glibc's default every output is a fresh mapping
    above its 32 MB mmap cap, faulted in page by page."""
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("keep_freed_memory is a glibc setting")
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if thp.is_file() and "[always]" in thp.read_text():
        pytest.skip("transparent huge pages: a fresh mapping faults per 2 MB, not per page")
    code = """
import resource, sys, torch
from whisper_spi.tuning import keep_freed_memory
if sys.argv[1] == "keep":
    keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def ops():
    x = torch.ones(16 * 2**20)
    return (x * 2 + x).sum()
for _ in range(3):  # the kept heap reaches its steady size over the first rounds
    ops()
before = faults()
for _ in range(10):
    ops()
print(faults() - before)
"""

    def faults(arm):
        out = subprocess.run(
            [sys.executable, "-c", code, arm], capture_output=True, text=True, check=True
        )
        return int(out.stdout.split()[-1])

    default = faults("default")
    assert default > 10 * 3 * 16384 // 2  # three fresh 64 MB outputs per round, faulted in
    assert faults("keep") < default / 4


@pytest.mark.parametrize(
    "argv",
    [
        ["theory-summary", "--measurements", "{missing}", "--out-dir", "{tmp}",
         "--figure", "{out}"],
        ["theory-measure", "--model-name", "m", "--model", "ct2:none", "--condition", "clean",
         "--pairs", "{missing}", "--transcripts", "{missing}", "--stress-manifests", "{missing}",
         "--options", "{{}}", "--out", "{out}"],
    ],
)  # fmt: skip
def test_the_theory_stage_names_a_missing_input_before_loading_the_model(argv, tmp_path):
    """A theory rule rerun by hand with a wrong input path: exit 2 with one line naming the
    file (checked against its contract before the model loads), nothing written."""
    paths = {"missing": str(tmp_path / "no-such.parquet"), "out": str(tmp_path / "out")}
    paths["tmp"] = str(tmp_path)
    run = _help(*(a.format(**paths) for a in argv))
    assert run.returncode == 2
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith(f"whisper-spi {argv[0]}: error: {paths['missing']}: not a readable")
    assert list(tmp_path.iterdir()) == []
