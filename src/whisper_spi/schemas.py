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


_add(Contract(
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
        Col("note", _STR, "non-fatal remark: resampled, downmixed, truncated to 30 s; empty if none"),
    ),
))

_add(Contract(
    "rejected",
    "corpus/rejected.parquet",
    "Audio files skipped under on_bad_audio: skip, with the reason.",
    (
        Col("path", _STR, "file that was skipped"),
        Col("reason", _STR, "why: unreadable, empty, silent, too short, non-finite, no transcript, ..."),
    ),
))

_add(Contract(
    "stress_manifest",
    "stress/{condition}/shard-{shard}.parquet",
    "One row per utterance of a shard under one condition (clean included).",
    (
        Col("utt_id", _STR, "utterance id"),
        Col("stress", _STR, "condition: clean, time_stretch, speaker_mix, gaussian_noise"),
        Col("path", _STR, "16 kHz mono FLAC written by the stress rule"),
        Col("params", _STR, "JSON of the stress parameters (factor, snr_db, mixed utt_ids, ...)"),
        Col("gain", _F64, "scale applied after stressing to avoid clipping (1.0 = none)"),
        Col("seed", _I64, "seed derived from (global seed, stress, utt_id)"),
    ),
))


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
        raise ValueError(f"frame does not match contract {name!r}: missing {missing}, extra {extra}")
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
        out += [f"## `{c.name}`: `results/{c.path}`", "", c.doc, "",
                "| column | type | unit | meaning |", "|---|---|---|---|"]
        out += [f"| `{col.name}` | {col.dtype} | {col.unit} | {col.doc} |" for col in c.cols]
        out.append("")
    return "\n".join(out)
