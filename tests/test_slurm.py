"""profiles/slurm on a real single-node SLURM (tests/slurm/cluster.sh) gives the local results.

Runs tests/slurm/test_config.yaml twice, with --profile profiles/slurm and --profile
profiles/local, checks that every job went through sbatch, that the decode jobs (and only they)
were allocated the GPU, and that the compared outputs are equal by value. Needs root (the cluster
runs slurmd); about 3 minutes on 2 cores.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

# The outputs both runs build and that must be equal, relative to the run directory.
COMPARED = [
    f"results/tables/{name}.parquet" for name in ("tables", "layer_summary", "rank_profile")
]

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "tests" / "slurm" / "cluster.sh"
CONFIG = ROOT / "tests" / "slurm" / "test_config.yaml"
# The venv's bin directory (not resolved: it must stay the venv's, not the base Python's).
BIN = Path(sys.executable).parent
DAEMONS = {"munged", "slurmctld", "slurmd"}
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+) \(log: (\S+)\)")
FINISHED = re.compile(r"Finished jobid: \d+ \(Rule: (\w+)\)")

pytestmark = pytest.mark.slurm


def _read_pids(pid_file: Path) -> list[tuple[str, int]]:
    """The (daemon, pid) pairs cluster.sh recorded, one "<name> <pid>" line each."""
    if not pid_file.is_file():
        return []
    return [(name, int(pid)) for name, pid in map(str.split, pid_file.read_text().splitlines())]


def _alive(name: str, pid: int) -> bool:
    """True if `pid` still runs the program `name` (a reused pid is not that daemon)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == name
    except OSError:
        return False


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """A running single-node cluster; stopped afterwards, leaving none of its daemons."""
    if os.geteuid() != 0:
        pytest.skip("needs root: tests/slurm/cluster.sh starts munged, slurmctld and slurmd")
    if not shutil.which("slurmctld") and not shutil.which("apt-get"):
        pytest.skip("SLURM is not installed and there is no apt-get to install it")
    state = tmp_path_factory.mktemp("slurm-cluster")
    start = subprocess.run([CLUSTER, "start", state], capture_output=True, text=True, timeout=600)
    pid_file = state / "run" / "daemons.pid"
    pids = _read_pids(pid_file)
    try:
        if start.returncode != 0:
            pytest.skip(f"tests/slurm/cluster.sh start failed:\n{start.stdout}{start.stderr}")
        assert {name for name, _ in pids} == DAEMONS, pid_file.read_text()
        yield state
    finally:
        stop = subprocess.run([CLUSTER, "stop", state], capture_output=True, text=True, timeout=120)
        left = [(name, pid) for name, pid in pids if _alive(name, pid)]
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert not left, f"daemons still running after stop: {left}"


def _env() -> dict[str, str]:
    """The venv first on PATH (jobs inherit it: the plugin submits with --export=ALL), and no
    SLURM_CONF: the test cluster's config is /etc/slurm/slurm.conf, a link cluster.sh made."""
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    env.pop("SLURM_CONF", None)
    return env


def _snakemake(profile: str, workdir: Path) -> str:
    """Run the test config through `profile` in `workdir`; returns Snakemake's log output."""
    args = {
        "--snakefile": ROOT / "Snakefile",
        "--profile": ROOT / "profiles" / profile,
        "--configfile": CONFIG,
        "--directory": workdir,
    }
    flags = []
    if profile == "slurm":
        flags.append("--slurm-keep-successful-logs")  # kept as evidence of the sbatch jobs
    run = subprocess.run(
        [BIN / "snakemake", *(str(x) for pair in args.items() for x in pair), *flags, *COMPARED],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, f"snakemake --profile {profile} failed:\n{run.stderr[-6000:]}"
    return run.stderr


def _scontrol_job(job_id: str) -> dict[str, str]:
    """`scontrol show job -d` as a dict (jobs stay visible for MinJobAge after they end)."""
    out = subprocess.run(
        ["scontrol", "--oneliner", "--details", "show", "job", job_id],
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(re.findall(r"(\S+?)=(\S*)", out))


def test_slurm_profile_matches_local(slurm_cluster, tmp_path):
    slurm_dir, local_dir = tmp_path / "slurm", tmp_path / "local"
    slurm_log = _snakemake("slurm", slurm_dir)

    # Every job went through sbatch: one SLURM job id per job, each with its plugin log.
    submitted = SUBMITTED.findall(slurm_log)
    assert submitted, f"no sbatch submission in Snakemake's log:\n{slurm_log[-3000:]}"
    jobs = {job_id: _scontrol_job(job_id) for job_id, _ in submitted}
    rules = sorted(
        job["Comment"].split("_wildcards_")[0].removeprefix("rule_") for job in jobs.values()
    )
    assert {"corpus", "stress", "decode_tiny_en", "layer_metrics", "pairs", "tables"} <= set(
        rules
    ), rules
    assert sorted(FINISHED.findall(slurm_log)) == rules, "a job ran outside SLURM"
    assert rules.count("decode_tiny_en") == 4, rules  # one per condition, no retried job
    for (job_id, log), job in zip(submitted, jobs.values(), strict=True):
        assert job["JobState"] == "COMPLETED", (job_id, job)
        assert Path(log).is_file(), f"no SLURM log {log} for job {job_id}"
        # The decode jobs were allocated the cluster's GPU (gres gpu:1); the CPU rules were not.
        gpu = job["Comment"].startswith("rule_decode_")
        assert job["JOB_GRES"] == ("gpu:1" if gpu else "(null)"), (job_id, job)

    _snakemake("local", local_dir)
    for target in COMPARED:
        slurm_df = pl.read_parquet(slurm_dir / target)
        local_df = pl.read_parquet(local_dir / target)
        assert slurm_df.height > 0, target
        assert slurm_df.equals(local_df), f"{target} differs between SLURM and local runs"
