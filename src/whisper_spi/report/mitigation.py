"""The report's mitigation section: per model the arms' stressed hallucination rate and clean
WER against Whisper's fallback, and the verdicts on the causal questions."""

from __future__ import annotations

import polars as pl

from whisper_spi.captions import captions
from whisper_spi.report.html import _frame_html

__all__ = ["MITIGATION_FIGURES", "mitigation_html"]

MITIGATION_FIGURES = captions("tradeoff", "dose_response")


def mitigation_html(df: pl.DataFrame) -> str | None:
    """The section body of a mitigation summary or verdict table, or None if ``df`` is
    neither."""
    cols = set(df.columns)
    if {"hall_stressed", "wer_clean"} <= cols:
        return _frame_html(
            df,
            "Every arm on the same utterances: hallucination rate on the stressed audio "
            "(every stress pooled) and mean WER on clean audio, value [95% CI], each with its "
            "difference to Whisper's temperature fallback (paired: the same speaker-bootstrap "
            "replicates for every arm); hall_nonspeech: share of the non-speech inputs with any "
            "word (items resampled); strength 0 is the plain greedy decode; tokens_stressed "
            "is the mean decoded length, the known confounder.",
        )
    if {"question", "answer"} <= cols:
        return _frame_html(
            df,
            "The causal questions answered from the mitigation table: does any intervention "
            "lower the stressed hallucination rate below the fallback's without a higher "
            "clean WER, which way each regime's intervention moves it against the plain "
            "decode, and what each arm does on the non-speech inputs against the fallback "
            "(95% CIs of the paired differences).",
        )
    return None
