"""The data contracts: every Parquet file the workflow writes, its columns, types and units.

This module is the one place where they are defined. Writers go through
:func:`write_parquet`, which refuses a frame whose columns differ from the contract, and
``whisper-spi schemas`` prints this as Markdown (the README's "Data contracts" section).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from .io import atomic_path


@dataclass(frozen=True)
class Col:
    name: str
    dtype: pa.DataType
    doc: str
    unit: str = ""


@dataclass(frozen=True)
class Contract:
    name: str
    path: str  # where the workflow writes it, relative to results_dir
    doc: str
    cols: tuple[Col, ...]

    @property
    def arrow(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.dtype, nullable=True) for c in self.cols])


_F32 = pa.float32()
_F64 = pa.float64()
_I32 = pa.int32()
_I64 = pa.int64()
_STR = pa.string()
_BOOL = pa.bool_()

CONTRACTS: dict[str, Contract] = {}


def _add(contract: Contract) -> None:
    CONTRACTS[contract.name] = contract


_add(
    Contract(
        "manifest",
        "corpus/manifest.parquet",
        "One row per usable utterance of the corpus (after the bad-audio checks).",
        (
            Col("utt_id", _STR, "LibriSpeech id <speaker>-<chapter>-<utterance>"),
            Col("split", _STR, "split directory, e.g. test-clean"),
            Col("speaker", _STR, "speaker id"),
            Col("chapter", _STR, "chapter id"),
            Col("path", _STR, "absolute path of the source audio file"),
            Col("duration_s", _F64, "duration of the source audio", "s"),
            Col("sample_rate", _I32, "sample rate of the source file", "Hz"),
            Col("text", _STR, "reference transcript as in the .trans.txt file"),
            Col(
                "note",
                _STR,
                "non-fatal remark: resampled, downmixed, truncated to 30 s; empty if none",
            ),
        ),
    )
)

_add(
    Contract(
        "rejected",
        "corpus/rejected.parquet",
        "Audio files skipped under on_bad_audio: skip, with the reason.",
        (
            Col("path", _STR, "file that was skipped"),
            Col(
                "reason",
                _STR,
                "why: unreadable, empty, silent, too short, non-finite, no transcript, ...",
            ),
        ),
    )
)

_add(
    Contract(
        "stress_manifest",
        "stress/{condition}/shard-{shard}.parquet",
        "One row per utterance of a shard under one condition (clean included).",
        (
            Col("utt_id", _STR, "utterance id"),
            Col("stress", _STR, "condition: clean, time_stretch, speaker_mix, gaussian_noise"),
            Col("path", _STR, "16 kHz mono FLAC written by the stress rule"),
            Col(
                "params", _STR, "JSON of the stress parameters (factor, snr_db, mixed utt_ids, ...)"
            ),
            Col("gain", _F64, "scale applied after stressing to avoid clipping (1.0 = none)"),
            Col("seed", _I64, "seed derived from (global seed, stress, utt_id)"),
        ),
    )
)


_add(
    Contract(
        "transcripts",
        "decode/{model}/{condition}/shard-{shard}/transcripts.parquet",
        "One row per decoded utterance: greedy transcript and Whisper's fallback statistics.",
        (
            Col("utt_id", _STR, "utterance id"),
            Col("speaker", _STR, "speaker id (for speaker-grouped cross-validation)"),
            Col("model", _STR, "model name (config key)"),
            Col("condition", _STR, "clean, time_stretch, speaker_mix or gaussian_noise"),
            Col("reference", _STR, "reference transcript"),
            Col("hypothesis", _STR, "greedy transcript"),
            Col(
                "token_ids", pa.list_(_I32), "generated token ids, without prompt and <|endoftext|>"
            ),
            Col("n_tokens", _I32, "len(token_ids)"),
            Col("hit_max_length", _BOOL, "stopped by decode.max_new_tokens, not by <|endoftext|>"),
            Col(
                "avg_logprob",
                _F64,
                "sum of chosen-token log-probs / (n_tokens + 1), as OpenAI",
                "nats",
            ),
            Col("compression_ratio", _F64, "len(text) / len(zlib(text)), as OpenAI's fallback"),
            Col(
                "no_speech_prob", _F64, "P(<|nospeech|>) at <|startoftranscript|>; NaN if no token"
            ),
            Col("wer", _F64, "jiwer WER after Whisper's English normaliser; may exceed 1"),
            Col("hallucination", _BOOL, "wer > decode.hallucination_wer"),
        ),
    )
)

_add(
    Contract(
        "spectra",
        "decode/{model}/{condition}/shard-{shard}/layer-{layer}.parquet",
        "Per utterance and component of one decoder layer: SVD spectrum of the T x d matrix of "
        "what the component adds to the residual stream (rows: the positions that emitted the "
        "decoded tokens and <|endoftext|>; prompt positions only with decode.include_prompt), "
        "and of its first L rows for each L in decode.prefix_lengths.",
        (
            Col("utt_id", _STR, "utterance id"),
            Col("model", _STR, "model name"),
            Col("condition", _STR, "condition"),
            Col("layer", _I32, "decoder layer, 0-based"),
            Col(
                "component",
                _STR,
                "cross_attn (encoder_attn out), self_attn (out), ffn (fc2 out), residual",
            ),
            Col("prefix", _I32, "0 = all T rows; L = the first L rows (present only if T >= L)"),
            Col("n_rows", _I32, "rows of the matrix whose spectrum this is (T, or L)"),
            Col("centered", _BOOL, "column mean removed before the SVD (decode.center)"),
            Col(
                "sv",
                pa.list_(_F64),
                "singular values, descending (float64 SVD)",
                "activation units",
            ),
            Col(
                "row_mean",
                pa.list_(_F32),
                "mean of the T rows (d values; null for prefix rows), for the pooled N x d scope",
                "activation units",
            ),
        ),
    )
)


def contract(name: str) -> Contract:
    try:
        return CONTRACTS[name]
    except KeyError:
        raise KeyError(f"no data contract named {name!r}; known: {sorted(CONTRACTS)}") from None


def conform(df: pl.DataFrame | pa.Table, name: str) -> pa.Table:
    """Return ``df`` as an Arrow table with exactly the contract's columns, order and types.

    Refuses missing or extra columns (a writer out of step with the contract is a bug), and
    casts only safely (no silent truncation of values).
    """
    c = contract(name)
    table = df.to_arrow() if isinstance(df, pl.DataFrame) else df
    want = [col.name for col in c.cols]
    have = table.column_names
    if sorted(have) != sorted(want):
        missing = sorted(set(want) - set(have))
        extra = sorted(set(have) - set(want))
        raise ValueError(
            f"frame does not match contract {name!r}: missing {missing}, extra {extra}"
        )
    return table.select(want).cast(c.arrow, safe=True)


def write_parquet(df: pl.DataFrame | pa.Table, name: str, path: str | os.PathLike) -> None:
    """Write ``df`` under contract ``name`` atomically, zstd-compressed."""
    table = conform(df, name)
    with atomic_path(path, suffix=".parquet.tmp") as tmp:
        pq.write_table(table, tmp, compression="zstd")


def to_markdown() -> str:
    """The contracts as Markdown, one table per file."""
    out = ["# Data contracts", ""]
    for c in CONTRACTS.values():
        out += [
            f"## `{c.name}`: `results/{c.path}`",
            "",
            c.doc,
            "",
            "| column | type | unit | meaning |",
            "|---|---|---|---|",
        ]
        out += [f"| `{col.name}` | {col.dtype} | {col.unit} | {col.doc} |" for col in c.cols]
        out.append("")
    return "\n".join(out)
