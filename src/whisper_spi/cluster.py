"""Is a SLURM cluster reachable from here? Asked once before a SLURM-profile run submits jobs.

Without this, a run on a machine with no cluster plans every job and then fails each one,
after its retries, with ``sinfo: fatal: Could not establish a configuration source``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping

__all__ = ["slurm_problem"]

_HINT = "run Snakemake on the cluster's login node, or use --profile local"


def slurm_problem(env: Mapping[str, str] | None = None, timeout: float = 20.0) -> str | None:
    """None when ``sinfo`` answers; otherwise one line saying why no cluster is reachable.

    ``env``: the environment to look ``sinfo`` up in and run it with (default: this one).
    """
    env = dict(os.environ if env is None else env)
    sinfo = shutil.which("sinfo", path=env.get("PATH"))
    if sinfo is None:
        return f"the slurm profile needs a SLURM cluster, but there is no `sinfo` on PATH: {_HINT}"
    try:
        run = subprocess.run(
            [sinfo, "--noheader", "--summarize"],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return (
            f"the slurm profile needs a SLURM cluster, but `sinfo` did not answer within "
            f"{timeout:g} s: {_HINT}"
        )
    if run.returncode != 0:
        why = (run.stderr.strip().splitlines() or [f"exit status {run.returncode}"])[-1]
        return (
            f"the slurm profile needs a SLURM cluster, but `sinfo` cannot reach one ({why}): "
            f"{_HINT}"
        )
    return None
