"""What a run left out, said where a user looks: rejected audio and unreached prefix lengths.

The report's summary shows both, and the workflow's end-of-run handler prints
:func:`end_of_run_lines` to the terminal, so neither stays buried in a job's log.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from whisper_spi import schemas
from whisper_spi.schemas import result_path

__all__ = [
    "end_of_run_lines",
    "read_rejected",
    "rejected_line",
    "unreached_line",
    "unreached_prefixes",
]


def read_rejected(path: str | Path) -> pl.DataFrame:
    """corpus/rejected.parquet (contract ``rejected``): path, reason."""
    return (
        schemas.scan_parquet([path], "rejected", ["path", "reason"])
        .select("path", "reason")
        .collect()
    )


def rejected_line(rejected: pl.DataFrame, where: str | Path) -> str:
    """One line: how many audio files were rejected, the first with its reason, and where the
    list is (``where``: the rejected.parquet path)."""
    n = rejected.height
    if n == 0:
        return "whisper-spi: no input audio was rejected."
    first = rejected.row(0, named=True)
    files = "file was" if n == 1 else "files were"
    more = "" if n == 1 else f"; {n - 1} more"
    return (
        f"whisper-spi: {n} input audio {files} rejected and left out "
        f"({Path(first['path']).name}: {first['reason']}{more}); "
        f"all listed in {where} and in the report."
    )


def unreached_prefixes(
    tables: pl.DataFrame, prefix_lengths: Sequence[int], pairs: pl.DataFrame
) -> list[dict[str, Any]]:
    """The configured length-matched prefixes L without a single row in the tables, per model.

    A spectrum of the first L rows exists only when a decode has at least L rows, and a pair
    needs it on both sides; rows are the positions that emitted the decoded tokens and
    ``<|endoftext|>``. Each entry: model, prefix, n_pairs (kept pairs of the model) and
    longest (the largest, over the kept pairs, of the shorter side's decoded tokens; None
    without kept pairs).
    """
    have = set(
        tables.filter(pl.col("scope") == "utterance").select("model", "prefix").unique().iter_rows()
    )
    kept = pairs.filter(pl.col("condition") != "hell")
    out = []
    for model in sorted(set(pairs["model"]) | set(tables["model"])):
        mine = kept.filter(pl.col("model") == model)
        shorter = mine.select(pl.min_horizontal("n_tokens_clean", "n_tokens_stressed"))
        longest = None if mine.height == 0 else int(shorter.to_series().max())
        for prefix in sorted(set(prefix_lengths)):
            if prefix > 0 and (model, prefix) not in have:
                out.append(
                    {"model": model, "prefix": prefix, "n_pairs": mine.height, "longest": longest}
                )
    return out


def unreached_line(entry: Mapping[str, Any]) -> str:
    """One sentence on one :func:`unreached_prefixes` entry."""
    head = f"decode.prefix_lengths {entry['prefix']}: no length-matched rows for {entry['model']}, "
    if not entry["n_pairs"]:
        return head + "which has no kept pair."
    if entry["longest"] is not None and entry["longest"] >= entry["prefix"]:
        return head + (
            f"since it is longer than the median stressed decode of its {entry['n_pairs']} "
            "kept pairs, which the tables require (pairs per prefix: tables/prefix_counts.csv)."
        )
    return head + (
        f"since none of its {entry['n_pairs']} kept pairs has {entry['prefix']} rows on both "
        f"sides (the longest has {entry['longest']} decoded tokens on its shorter side)."
    )


def end_of_run_lines(
    results_dir: str | Path, prefix_lengths: Sequence[int], models: Sequence[str]
) -> list[str]:
    """What to print when a run ends: rejected audio, unreached prefix lengths, the report.

    Reads only what exists under ``results_dir`` (a run of one target may have built none).
    """
    lines = []
    rejected = Path(result_path(results_dir, "rejected"))
    if rejected.is_file():
        lines.append(rejected_line(read_rejected(rejected), rejected))
    tables = Path(result_path(results_dir, "tables"))
    pairs = [p for m in models if (p := Path(result_path(results_dir, "pairs", model=m))).is_file()]
    if tables.is_file() and pairs:
        found = unreached_prefixes(
            schemas.scan_parquet([tables], "tables").collect(),
            prefix_lengths,
            schemas.scan_parquet(pairs, "pairs").collect(),
        )
        lines += [f"whisper-spi: {unreached_line(e)}" for e in found]
    report = Path(result_path(results_dir, "report"))
    if report.is_file():
        lines.append(f"whisper-spi: report at {report}")
    return lines
