"""`--profile slurm` where no SLURM cluster answers stops before planning turns into submitting.

tests/test_slurm.py runs the profile on a throwaway cluster; here sinfo is absent or pointed at
a configuration that does not exist (SLURM_CONF), so no cluster is reachable whatever runs.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess

from tests.snakemake_runner import BIN, CONFIG, ROOT
from whisper_spi.cluster import slurm_problem


def test_no_sinfo_on_path(tmp_path):
    problem = slurm_problem({"PATH": str(tmp_path)})
    assert problem.startswith("the slurm profile needs a SLURM cluster, but there is no `sinfo`")
    assert "--profile local" in problem and "\n" not in problem


def test_sinfo_that_cannot_reach_a_cluster(tmp_path):
    # a stand-in with the message of a real sinfo that finds no slurm.conf
    fake = tmp_path / "sinfo"
    fake.write_text(
        "#!/bin/sh\necho 'sinfo: fatal: Could not establish a configuration source' >&2\nexit 1\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    problem = slurm_problem({"PATH": str(tmp_path)})
    assert "cannot reach one (sinfo: fatal: Could not establish a configuration source)" in problem
    if shutil.which("sinfo"):  # the real one, if installed, pointed at no configuration
        env = dict(os.environ, SLURM_CONF=str(tmp_path / "no-such-slurm.conf"))
        # without a configuration it either fails or (looking for one in DNS) hangs
        problem = slurm_problem(env, timeout=5)
        assert "cannot reach one" in problem or "did not answer within 5 s" in problem


def test_slurm_profile_run_stops_at_once(tmp_path):
    env = dict(
        os.environ,
        PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",
        SLURM_CONF=str(tmp_path / "no-such-slurm.conf"),
    )
    run = subprocess.run(
        [
            str(BIN / "snakemake"),
            "--snakefile", str(ROOT / "Snakefile"),
            "--directory", str(tmp_path / "run"),
            "--profile", str(ROOT / "profiles" / "slurm"),
            "--configfile", str(CONFIG),
        ],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    out = run.stdout + run.stderr
    assert run.returncode != 0
    lines = [line for line in out.splitlines() if "needs a SLURM cluster" in line]
    assert len(lines) == 1 and "--profile local" in lines[0], out[-3000:]
    assert "submitted" not in out and "Traceback" not in out
    assert not (tmp_path / "run" / "results").exists()
