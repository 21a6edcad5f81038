"""Rule pairs: each stressed utterance joined with its clean twin, kept at the WER threshold."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from whisper_spi import schemas
from whisper_spi.analysis.frames import condition_rank
from whisper_spi.registry import CLEAN, HELL
from whisper_spi.taxonomy.labels import HER_THRESHOLD, hallucination_expr
from whisper_spi.text import HALLUCINATION_WER

__all__ = ["pairs_and_counts", "write_pairs"]

_READ = ("utt_id", "speaker", "model", "condition", "wer", "n_tokens", "hit_max_length")
_LABELS = ("model", "condition", "utt_id", "type", "her", "n_ref_words")


def pairs_and_counts(
    transcript_paths: Sequence[str | Path],
    threshold: float = HALLUCINATION_WER,
    clean_max_wer: float | None = None,
    min_tokens: int = 0,
    *,
    labels: Sequence[str | Path] = (),
    definition: str = "wer",
    her_threshold: float = HER_THRESHOLD,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(pairs, counts) from the transcripts (contracts ``pairs`` and ``pair_counts``).

    A pair (same model and utt_id) is kept when its stressed decode is a hallucination under
    ``definition`` (:func:`whisper_spi.taxonomy.labels.hallucination_expr`; ``wer``, the paper's:
    stressed WER > ``threshold``, NaN never passes; ``fabrication`` and ``ungrounded`` need
    the taxonomy ``labels``, whose type of the stressed decode every pair carries) and, if
    ``clean_max_wer`` is set, the clean WER is <= it (the paper sets none).
    ``hell`` repeats every kept pair of the three stresses. Counts: pairs existing
    (``n_total``) and kept (``n_pairs``) per model and condition; hell sums them.
    """
    if not transcript_paths:
        raise ValueError("pairs: no transcript files given")
    lf = schemas.scan_parquet(transcript_paths, "transcripts", _READ).select(_READ)
    clean = lf.filter(pl.col("condition") == CLEAN).select(
        "model",
        "utt_id",
        "speaker",
        pl.col("wer").alias("wer_clean"),
        pl.col("n_tokens").alias("n_tokens_clean"),
        pl.col("hit_max_length").alias("hit_max_length_clean"),
    )
    stressed = lf.filter(pl.col("condition") != CLEAN).select(
        "model",
        "utt_id",
        pl.col("condition").alias("stress"),
        pl.col("wer").alias("wer_stressed"),
        pl.col("n_tokens").alias("n_tokens_stressed"),
        pl.col("hit_max_length").alias("hit_max_length_stressed"),
    )
    if labels:
        types = schemas.scan_parquet(labels, "taxonomy", _LABELS).select(
            "model",
            "utt_id",
            pl.col("condition").alias("stress"),
            pl.col("type").alias("hallucination_type"),
            "her",
            "n_ref_words",
        )
        stressed = stressed.join(types, on=["model", "stress", "utt_id"], how="left")
    elif definition != "wer":
        raise ValueError(f"pairs: definition {definition!r} needs the taxonomy labels")
    else:
        stressed = stressed.with_columns(
            hallucination_type=pl.lit(None, pl.String),
            her=pl.lit(None, pl.Float64),
            n_ref_words=pl.lit(None, pl.Int32),  # unknown: the speech rule (WER) decides
        )
    # the definition reads the taxonomy's column names (wer, type, her) of the stressed decode
    stressed = stressed.with_columns(wer=pl.col("wer_stressed"), type=pl.col("hallucination_type"))
    stressed = stressed.with_columns(
        hallucinated=hallucination_expr(definition, threshold, her_threshold)
    ).drop("wer", "type", "her", "n_ref_words")
    above = pl.col("hallucinated")
    usable = pl.lit(True)
    if clean_max_wer is not None:
        usable = pl.col("wer_clean").is_not_nan() & (pl.col("wer_clean") <= clean_max_wer)
    if min_tokens > 0:
        usable = usable & (pl.col("n_tokens_clean") >= min_tokens)
        usable = usable & (pl.col("n_tokens_stressed") >= min_tokens)
    joined = stressed.join(clean, on=["model", "utt_id"], how="inner", validate="m:1").with_columns(
        kept=(above & usable).fill_null(False),
        excluded=(above & ~usable).fill_null(False),
        threshold=pl.lit(float(threshold)),
    )
    kept_pairs = joined.filter(pl.col("kept")).drop("kept", "excluded")
    pair_lf = pl.concat(
        [
            kept_pairs.with_columns(condition=pl.col("stress")),
            kept_pairs.with_columns(condition=pl.lit(HELL)),
        ]
    )
    per_stress = joined.group_by("model", pl.col("stress").alias("condition")).agg(
        pl.len().cast(pl.Int64).alias("n_total"),
        pl.col("kept").sum().cast(pl.Int64).alias("n_pairs"),
        pl.col("excluded").sum().cast(pl.Int64).alias("n_excluded"),
        (pl.col("kept") & pl.col("hit_max_length_stressed").fill_null(False))
        .sum()
        .cast(pl.Int64)
        .alias("n_hit_max_length"),
    )
    hell = per_stress.group_by("model").agg(
        pl.lit(HELL).alias("condition"),
        pl.col("n_total").sum(),
        pl.col("n_pairs").sum(),
        pl.col("n_excluded").sum(),
        pl.col("n_hit_max_length").sum(),
    )
    counts_lf = (
        pl.concat([per_stress, hell.select(per_stress.collect_schema().names())])
        .with_columns(
            frac_kept=pl.when(pl.col("n_total") > 0)
            .then(pl.col("n_pairs") / pl.col("n_total"))
            .otherwise(None),
            threshold=pl.lit(float(threshold)),
        )
        .sort("model", condition_rank(), "condition")
    )
    pair_lf = pair_lf.sort("model", condition_rank(), "condition", "stress", "utt_id")
    pair_df, counts_df = pl.collect_all([pair_lf, counts_lf])
    return (
        pair_df.select(schemas.contract("pairs").names),
        counts_df.select(schemas.contract("pair_counts").names),
    )


def write_pairs(
    pair_df: pl.DataFrame, counts: pl.DataFrame, pairs_path: str | Path, counts_path: str | Path
) -> None:
    """Write the outputs of :func:`pairs_and_counts` (contracts ``pairs``, ``pair_counts``)."""
    schemas.write_parquet(pair_df, "pairs", pairs_path)
    schemas.write_parquet(counts, "pair_counts", counts_path)
