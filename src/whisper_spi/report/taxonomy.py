"""The report's taxonomy section: counts by type, the non-speech inputs, the bag of
hallucinations, and the detector's AUROC by type."""

from __future__ import annotations

import polars as pl

from whisper_spi.analysis.markdown import with_interval
from whisper_spi.captions import captions
from whisper_spi.registry import condition_order
from whisper_spi.report.html import _frame_html
from whisper_spi.taxonomy.labels import TYPES

__all__ = ["TAXONOMY_FIGURES", "taxonomy_html"]

TAXONOMY_FIGURES = captions("taxonomy")


def _counts(df: pl.DataFrame) -> str:
    order = {c: i for i, c in enumerate(condition_order(df["condition"]))}
    wide = (
        df.pivot(on="type", index=["model", "condition"], values="n")
        .with_columns(decodes=pl.sum_horizontal(list(TYPES)))
        .sort("model", pl.col("condition").replace_strict(order))
        .select("model", "condition", "decodes", *TYPES)
    )
    return _frame_html(
        wide,
        "Decodes per model x condition x error type (counts; the stacked bar below shows the "
        "shares). A speech condition's hallucinations by the paper's definition (WER > "
        "threshold) are every type but correct; on the non-speech inputs every type but "
        "correct is a non-empty transcript.",
    )


def _by_type(df: pl.DataFrame) -> str:
    cells = df.with_columns(
        contrast=pl.format("{} vs {}", "positive", "negative"),
        auroc=pl.struct("auroc", "auroc_lo", "auroc_hi").map_elements(
            lambda r: with_interval(r["auroc"], r["auroc_lo"], r["auroc_hi"], ".2f"),
            return_dtype=pl.String,
        ),
    )
    methods = list(dict.fromkeys(cells["method"]))
    wide = cells.pivot(
        on="method", index=["model", "setting", "contrast", "n_pos", "n_neg"], values="auroc"
    ).select("model", "setting", "contrast", "n_pos", "n_neg", *methods)
    return _frame_html(
        wide,
        "Can the scores tell the kinds of error apart? AUROC [95% CI] of each method's "
        "out-of-fold score at separating decodes of the first type (n_pos) from the second "
        "(n_neg); ours is trained on the configured hallucination definition, ours_no_T "
        "without the decoded length T, length is T alone. Intervals: bootstrap over speakers "
        "(resampled whole, within each class); '–' where a type has no decode.",
    )


def taxonomy_html(df: pl.DataFrame) -> str | None:
    """The section body of one of the taxonomy's tables, or None if ``df`` is none of them."""
    cols = set(df.columns)
    if {"type", "n", "share"} <= cols:
        return _counts(df)
    if {"n_hallucinated", "rate"} <= cols:
        return _frame_html(
            df,
            "Non-speech inputs (silence: digital zero or low-level noise; noise_only: white "
            "or pink noise; environmental: real recordings, by default music jingles and "
            "event sounds of Debian's oxygen-sounds and sound-theme-freedesktop, or the "
            "files of nonspeech.environmental.folder; each item's parameters and source file "
            "are in its stress manifest), each of a corpus utterance's length: nothing is "
            "said, so any non-empty transcript is a hallucination. rate = n_hallucinated / "
            "n_decodes; n_looping of those loop.",
        )
    if {"hypothesis", "n_decodes"} <= cols:
        return _frame_html(
            df,
            "Bag of hallucinations: the most frequent (normalised) transcripts Whisper writes "
            "for the non-speech inputs, per model x condition, with their count and share of "
            "that cell's decodes.",
        )
    if {"positive", "negative", "auroc"} <= cols:
        return _by_type(df)
    return None
