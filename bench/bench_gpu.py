"""The paper's three model shapes on the decode path, beside transformers' generate (issue 28).

For each layout of :data:`whisper_spi.decode.layouts.LAYOUTS` (random weights, full width
unless --d-model shrinks it), on the embedded demo corpus' utterances (cycled to --n):
- ours + capture: what the decode rule runs (``whisper-spi decode``: load_model, then
  decode_shard with the paper's components and prefix lengths: greedy loop, capture hooks,
  SVD spectra, WER);
- generate: transformers' ``model.generate`` (English, transcribe, no timestamps, the same
  suppress lists) without capture,
at the same batch size, max_new_tokens, dtype and device, each in a fresh process (so peak
memory is its own). Printed: utterances per second, peak memory (CUDA: max_memory_allocated,
weights included; CPU: the process' peak RSS, loading included) and ours / generate ratios,
plus how many utterances got the same tokens from both (a correctness check: both decode
greedily with the same prompt and suppression) and, on CUDA, decode.batch_size auto's memory
estimate per utterance beside the measured one (whisper_spi.decode.batching).

Run:  .venv/bin/python bench/bench_gpu.py [--device auto] [--batch 16] [--n 32]
          [--max-new-tokens 224] [--dtype float32] [--d-model 64] [--layouts tiny small]
"""

# ruff: noqa: E402  (the environment is set before the imports that read it)
from __future__ import annotations

from whisper_spi.tuning import keep_freed_memory, quiet_transformers, wait_passively

wait_passively()  # as a job's process does, before torch loads OpenMP

import argparse
import multiprocessing
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from whisper_spi.corpus.audio import load_audio
from whisper_spi.corpus.manifest import build_manifest
from whisper_spi.decode.batching import bytes_per_utterance
from whisper_spi.decode.capture import DecodeOptions, decode_shard
from whisper_spi.decode.layouts import LAYOUTS, write_layout
from whisper_spi.decode.loop import log_mel
from whisper_spi.decode.models import load_model, pick_device

ENGINES = ("ours+capture", "generate")


def demo_utterances(n: int) -> list[dict]:
    """The first n demo utterances (cycled if n exceeds the corpus), as decode_shard takes them."""
    manifest, _ = build_manifest("demo", ["test-clean"])
    rows = manifest.sort("utt_id").select("utt_id", "speaker", "text", "path").rows(named=True)
    waves = {r["path"]: load_audio(r["path"]) for r in rows[:n]}
    return [
        {**r, "utt_id": f"{r['utt_id']}#{i}", "wave": waves[r["path"]]}
        for i, r in ((i, rows[i % len(rows)]) for i in range(n))
    ]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _generated(bundle, sequences: torch.Tensor) -> list[list[int]]:
    """generate's tokens after the prompt, up to (without) the first <|endoftext|>."""
    out = []
    for seq in sequences.tolist():
        if seq[: len(bundle.prompt_ids)] == bundle.prompt_ids:
            seq = seq[len(bundle.prompt_ids) :]
        out.append(seq[: seq.index(bundle.eot_id)] if bundle.eot_id in seq else seq)
    return out


def _ours(bundle, utts, batch: int, max_new_tokens: int) -> list[list[int]]:
    opts = DecodeOptions(max_new_tokens=max_new_tokens)
    transcripts, _ = decode_shard(bundle, utts, "bench", "clean", opts, batch)
    return [t["token_ids"] for t in transcripts]


def _generate(bundle, utts, batch: int, max_new_tokens: int) -> list[list[int]]:
    out = []
    with torch.inference_mode():
        for start in range(0, len(utts), batch):
            waves = [u["wave"] for u in utts[start : start + batch]]
            sequences = bundle.model.generate(
                input_features=log_mel(bundle, waves),
                language="en",
                task="transcribe",
                return_timestamps=False,
                max_new_tokens=max_new_tokens,
            )
            out += _generated(bundle, sequences)
    return out


def run_engine(engine, spec, device, dtype, threads, batch, max_new_tokens, utts) -> dict:
    """One engine in this (fresh) process: warm up on one batch, then time all of ``utts``."""
    quiet_transformers()  # as a decode job does
    keep_freed_memory()
    if threads:
        torch.set_num_threads(threads)
    bundle = load_model(spec, device=device, dtype=dtype)
    dev = bundle.device
    fn = _ours if engine == "ours+capture" else _generate
    fn(bundle, utts[:batch], batch, 2)  # kernels, cuBLAS handles, allocator pools
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    _sync(dev)
    start = time.perf_counter()
    tokens = fn(bundle, utts, batch, max_new_tokens)
    _sync(dev)
    seconds = time.perf_counter() - start
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    weights = sum(p.numel() * p.element_size() for p in bundle.model.parameters())
    element = torch.empty((), dtype=bundle.dtype).element_size()
    estimate = bytes_per_utterance(bundle.model.config.to_dict(), max_new_tokens, element)
    return {"seconds": seconds, "peak": peak, "tokens": tokens, "device": str(dev),
            "weights": weights, "estimate": estimate}  # fmt: skip


def in_fresh_process(*args) -> dict:
    ctx = multiprocessing.get_context("spawn")  # CUDA cannot be forked
    with ProcessPoolExecutor(1, mp_context=ctx) as pool:
        return pool.submit(run_engine, *args).result()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=list(LAYOUTS))
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    ap.add_argument("--batch", type=int, default=16, help="the paper config's decode.batch_size")
    ap.add_argument("--n", type=int, default=32, help="utterances per engine")
    ap.add_argument("--max-new-tokens", type=int, default=224)
    ap.add_argument("--d-model", type=int, default=None, help="shrink the width (default real)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args()

    quiet_transformers()
    device = str(pick_device(args.device))
    utts = demo_utterances(args.n)
    print(
        f"device {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.startswith("cuda") else "")
        + f", dtype {args.dtype}, batch {args.batch}, {args.n} utterances, "
        f"max_new_tokens {args.max_new_tokens}, d_model {args.d_model or 'real'}, "
        f"torch {torch.__version__}",
        flush=True,
    )
    mem = "peak GPU MiB" if device.startswith("cuda") else "peak RSS MiB"
    header = (
        f"{'layout':<15} {'ours utt/s':>10} {'gen utt/s':>10} {'speed ratio':>11} "
        f"{'ours ' + mem:>17} {'gen ' + mem:>16} {'mem ratio':>9} {'same tokens':>11}"
    )
    lines, memory = [], []
    for name in args.layouts:
        with tempfile.TemporaryDirectory() as tmp:
            spec = f"dir:{write_layout(name, Path(tmp) / name, d_model=args.d_model)}"
            job = (spec, device, args.dtype, args.threads, args.batch, args.max_new_tokens, utts)
            res = {e: in_fresh_process(e, *job) for e in ENGINES}
        ours, gen = res["ours+capture"], res["generate"]
        rate = {e: args.n / r["seconds"] for e, r in res.items()}
        same = sum(a == b for a, b in zip(ours["tokens"], gen["tokens"], strict=True))
        lines.append(
            f"{name:<15} {rate['ours+capture']:>10.3f} {rate['generate']:>10.3f} "
            f"{rate['ours+capture'] / rate['generate']:>11.2f} "
            f"{ours['peak'] / 2**20:>17.0f} {gen['peak'] / 2**20:>16.0f} "
            f"{ours['peak'] / gen['peak']:>9.2f} {f'{same}/{args.n}':>11}"
        )
        if device.startswith("cuda"):  # decode.batch_size auto's estimate against the peak
            measured = (ours["peak"] - ours["weights"]) / args.batch
            memory.append(
                f"{name}: decode.batch_size auto's estimate {ours['estimate'] / 2**20:.0f} MiB per "
                f"utterance; measured (peak - weights) / batch {measured / 2**20:.0f} MiB"
            )
        print(f"{name}: done", flush=True)
    print(header)
    print("\n".join(lines))
    print("speed ratio = ours+capture utt/s / generate utt/s; mem ratio = ours / generate peak")
    print("\n".join(memory))


if __name__ == "__main__":
    main()
