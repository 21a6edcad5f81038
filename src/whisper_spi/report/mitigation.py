"""The report's mitigation section: per model the arms' stressed hallucination rate and clean
WER against the best baseline users have, and the verdicts on the causal questions."""

from __future__ import annotations

import polars as pl

from whisper_spi.captions import captions
from whisper_spi.report.html import _frame_html

__all__ = ["MITIGATION_FIGURES", "mitigation_html"]

MITIGATION_FIGURES = captions("tradeoff", "dose_response")
# The summary as shown (the differences to the fallback stay in summary.csv and .md): ten
# columns of intervals fit the page's 1,400 px
_SHOWN = ("model", "method", "strength", "hall_stressed", "d_hall_vs_best", "wer_clean",
          "d_wer_clean_vs_best", "hall_nonspeech", "best", "tokens_stressed")  # fmt: skip


def mitigation_html(df: pl.DataFrame) -> str | None:
    """The section body of a mitigation summary or verdict table, or None if ``df`` is
    neither."""
    cols = set(df.columns)
    if {"hall_stressed", "wer_clean"} <= cols:
        return _frame_html(
            df.select(_SHOWN),
            "Every arm on the same utterances: hallucination rate on the stressed audio "
            "(every stress pooled) and mean WER on clean audio, value [95% CI], each with its "
            "difference to the model's best baseline users have (column best: the gating or "
            "decoded baseline with the lowest stressed rate; paired: the same speaker-bootstrap "
            "replicates for every arm; the differences to OpenAI's fallback are in "
            "mitigation/<model>/summary.csv); hall_nonspeech: share of the non-speech inputs "
            "with any word (items resampled); strength 0 is the plain greedy decode; "
            "tokens_stressed is the mean decoded length, the known confounder.",
        )
    if {"question", "answer"} <= cols:
        return _frame_html(
            df,
            "The causal questions answered from the mitigation table: does any intervention "
            "lower the stressed hallucination rate below the best baseline's without a higher "
            "clean WER, which way each regime's intervention moves it against the plain "
            "decode, and what each arm does on the non-speech inputs against the best "
            "baseline (95% CIs of the paired differences).",
        )
    return None
