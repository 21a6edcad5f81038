"""The workflow under faults: killed mid-run and resumed, and run twice with different -j.

Two runs of tests/workflow/config.yaml, each in its own directory:

* ``reference``: ``-j 8``, the whole DAG, uninterrupted (the session's ``workflow_run``,
  tests/conftest.py);
* ``resumed``: ``-j 8``, the paper's path and the taxonomy (:data:`TARGETS`; the
  interventions, theory and detector are left to the reference, for make test's budget),
  SIGKILLed (the whole process group, as a node failure or ``kill -9`` would) while a decode
  job is running and after another one finished; then ``snakemake --unlock`` (SIGKILL leaves
  Snakemake's lock behind, and a plain rerun refuses to start) and the run resumed with
  ``-j 2``, which reruns the unfinished jobs (``--rerun-incomplete`` is set in
  profiles/local) two at a time, in another order.

The resumed run must leave no truncated or temporary file, and every output it wrote (all
Parquet and CSV under results/, values not timestamps) must equal the reference's: which
shows at once that resuming is correct, that the job count -j does not change any result,
and that two independent runs of the same configuration agree.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import polars as pl
import pytest

from .snakemake_runner import ENV, command, job_counts, snakemake

pytestmark = pytest.mark.slow
# What the resumed run builds: the paper's path (corpus, stresses, every decode shard, layer
# metrics, pairs, pooled scope, tables) and the taxonomy; the reference builds everything.
TARGETS = ("tables", "taxonomy_summary")


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmdline:
                pids.append(int(entry.name))
    return pids


def decode_state(workdir: Path, run_log: Path) -> tuple[list[Path], list[Path]]:
    """(decode shards whose job finished, decode shards whose job is writing its log).

    Finished = Snakemake logged "Finished jobid" for the job, which it does after recording
    the job as complete. The job's benchmark is written earlier: a kill between the two
    leaves a job that Snakemake rightly reruns (--rerun-incomplete).
    """
    logs = workdir / "results" / "logs" / "decode"
    text = run_log.read_text() if run_log.exists() else ""
    shard_of = {  # jobid -> shard, from each decode job's block in the run's log
        jobid: Path(log)
        for log, jobid in re.findall(r"log: results/logs/decode/(\S+)\.log\n\s+jobid: (\d+)", text)
    }
    done = {shard_of[j] for j in re.findall(r"Finished jobid: (\d+) \(Rule: decode_", text)}
    finished, running = [], []
    for log in sorted(logs.rglob("*.log")) if logs.is_dir() else []:
        shard = log.relative_to(logs).with_suffix("")
        if shard in done:
            finished.append(shard)
        elif log.stat().st_size > 0:
            running.append(shard)
    return finished, running


@pytest.fixture(scope="module")
def reference(workflow_run) -> Path:
    return workflow_run


@pytest.fixture(scope="module")
def resumed(tmp_path_factory) -> dict:
    workdir = tmp_path_factory.mktemp("resumed")
    run_log = workdir.parent / "resumed-killed.log"
    log = run_log.open("w")
    proc = subprocess.Popen(
        command(workdir, "-j", "8", *TARGETS),
        stdout=log,
        stderr=subprocess.STDOUT,
        env=ENV,
        start_new_session=True,  # its own process group: the jobs die with it
    )
    try:
        deadline = time.monotonic() + 900
        while True:
            finished, running = decode_state(workdir, run_log)
            if finished and running:
                break
            assert proc.poll() is None, "the run ended before it could be killed mid-decode"
            assert time.monotonic() < deadline, "no decode job started within 15 minutes"
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
    # nothing of the killed run survives it (a job in its own session would keep writing)
    for _ in range(50):
        if not processes_mentioning(str(workdir)):
            break
        time.sleep(0.1)
    survivors = processes_mentioning(str(workdir))
    for pid in survivors:
        os.kill(pid, signal.SIGKILL)

    locks = workdir / ".snakemake" / "locks"
    incomplete = workdir / ".snakemake" / "incomplete"
    finished, running = decode_state(workdir, run_log)  # as the kill left them
    state = {
        "workdir": workdir,
        "killed_during": running,
        "finished_before_kill": finished,
        "finished_mtimes": {
            s: (workdir / "results" / "decode" / s / "transcripts.parquet").stat().st_mtime_ns
            for s in finished
        },
        "survivors": survivors,
        "stale_locks": sorted(p.name for p in locks.iterdir()) if locks.is_dir() else [],
        "incomplete": len(list(incomplete.iterdir())) if incomplete.is_dir() else 0,
        "plain_rerun": snakemake(workdir, "-j", "8", *TARGETS, check=False),
    }
    snakemake(workdir, "--unlock")
    state["rerun"] = snakemake(workdir, "-j", "2", *TARGETS)  # most jobs, in another order
    state["after"] = snakemake(workdir, "-n", *TARGETS)
    return state


def test_sigkill_leaves_a_stale_lock_that_unlock_clears(resumed):
    assert resumed["survivors"] == []
    assert resumed["stale_locks"], "SIGKILL should leave .snakemake/locks behind"
    plain = resumed["plain_rerun"]
    assert plain.returncode != 0
    assert "LockException" in plain.stdout + plain.stderr
    assert "--unlock" in plain.stdout + plain.stderr
    assert resumed["incomplete"] > 0  # the killed job's outputs are marked incomplete


def test_resume_reruns_only_unfinished_jobs(resumed):
    rerun = resumed["rerun"]
    jobs = job_counts(rerun)
    assert "corpus" not in jobs and "stress" not in jobs  # finished before the kill
    # (4 conditions + 2 graded levels) x 2 shards of 5 utterances + 3 non-speech inputs x 1
    n_shards = 15
    assert resumed["finished_before_kill"] and resumed["killed_during"]
    assert 1 <= jobs["decode_tiny_en"] <= n_shards - len(resumed["finished_before_kill"])
    results = resumed["workdir"] / "results" / "decode"
    for shard, mtime in resumed["finished_mtimes"].items():  # kept, not rewritten
        assert (results / shard / "transcripts.parquet").stat().st_mtime_ns == mtime
    bench = resumed["workdir"] / "results" / "benchmarks" / "decode"
    for shard in resumed["killed_during"]:  # the killed job ran again, to the end
        assert (bench / f"{shard}.jsonl").exists()
    after = resumed["after"]  # and the resumed run left nothing to do
    assert job_counts(after) == {}, after.stdout[-3000:]
    assert "Nothing to be done" in after.stdout + after.stderr


def test_resumed_run_leaves_no_partial_outputs(resumed):
    results = resumed["workdir"] / "results"
    leftovers = [p for p in results.rglob("*") if p.is_file() and ".tmp" in p.name]
    assert leftovers == []
    parquets = sorted(results.rglob("*.parquet"))
    assert len(parquets) > 50
    for path in parquets:  # every file reads back whole, under its contract's columns
        df = pl.read_parquet(path)
        assert df.width > 0, path
        if path.name != "rejected.parquet":
            assert df.height > 0, path


def test_resumed_tables_equal_uninterrupted_run(reference, resumed):
    a, b = reference / "results" / "tables", resumed["workdir"] / "results" / "tables"
    for name in ("tables", "layer_summary", "rank_profile"):
        assert pl.read_parquet(b / f"{name}.parquet").equals(
            pl.read_parquet(a / f"{name}.parquet")
        ), name
    for name in ("table1_final_layer", "table2_layer_mean", "pair_counts"):
        assert pl.read_csv(b / f"{name}.csv").equals(pl.read_csv(a / f"{name}.csv")), name
        assert (b / f"{name}.md").read_text() == (a / f"{name}.md").read_text(), name


def _values(path: Path, workdir: Path) -> pl.DataFrame:
    """A Parquet or CSV file's values, with the run's own directory in paths made neutral."""
    df = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path)
    return df.with_columns(
        pl.col(pl.String).str.replace_all(str(workdir), "<workdir>", literal=True)
    )


def test_every_output_identical_across_runs(reference, resumed):
    """-j 8 uninterrupted vs -j 8 killed and resumed at -j 2: the same values in every table
    file the resumed run wrote, from the corpus manifest and the decoded spectra to the
    tables and the taxonomy."""
    workdir = resumed["workdir"]
    ours = sorted(
        p.relative_to(workdir / "results")
        for ext in ("*.parquet", "*.csv")
        for p in (workdir / "results").rglob(ext)
    )
    theirs = {
        p.relative_to(reference / "results")
        for ext in ("*.parquet", "*.csv")
        for p in (reference / "results").rglob(ext)
    }
    assert set(ours) <= theirs
    stages = {rel.parts[0] for rel in ours}
    assert {
        "corpus",
        "stress",
        "decode",
        "metrics",
        "taxonomy",
        "pairs",
        "pooled",
        "tables",
    } <= stages
    differ = [
        str(rel)
        for rel in ours
        if not _values(workdir / "results" / rel, workdir).equals(
            _values(reference / "results" / rel, reference)
        )
    ]
    assert differ == []
