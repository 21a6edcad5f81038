"""Word error rate as the Whisper papers compute it: jiwer after Whisper's English normaliser."""

from __future__ import annotations

import functools

import jiwer


@functools.cache
def _normalizer():
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalize(text: str) -> str:
    return _normalizer()(text)


def wer(reference: str, hypothesis: str) -> float:
    """WER of ``hypothesis`` against ``reference``, both normalised; NaN if the reference is empty.

    Can exceed 1 (insertions): hallucinated repetition loops do.
    """
    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref.strip():
        return float("nan")
    return float(jiwer.wer(ref, hyp))
