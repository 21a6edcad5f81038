"""Running this repository's workflow from the tests: one command line, one job-stats parser."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CONFIG = ROOT / "tests" / "workflow" / "config.yaml"
# the venv's whisper-spi must be on PATH for the rules' shell commands
ENV = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")


def command(workdir: Path, *args: str, config: Path = CONFIG) -> list[str]:
    """`snakemake` on this Snakefile in ``workdir``, local profile, ``config`` only."""
    return [
        str(BIN / "snakemake"),
        "--snakefile", str(ROOT / "Snakefile"),
        "--directory", str(workdir),
        "--profile", str(ROOT / "profiles" / "local"),
        "--configfile", str(config),
        *args,
    ]  # fmt: skip


def snakemake(
    workdir: Path, *args: str, config: Path = CONFIG, check: bool = True
) -> subprocess.CompletedProcess:
    run = subprocess.run(
        command(workdir, *args, config=config), capture_output=True, text=True, env=ENV
    )
    if check:
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-6000:]
    return run


def job_counts(run: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule -> job count from Snakemake's 'Job stats' table (on stderr or stdout; a dry run
    prints it to stdout, a real run to stderr); {} when there was nothing to do."""
    output = run.stdout + run.stderr
    if "Job stats:" not in output:
        return {}
    table = output.split("Job stats:")[1].split("\n\n")[0]
    return {
        m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m[1] != "total"
    }
