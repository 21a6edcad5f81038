"""Word error rate as the Whisper papers compute it: jiwer after Whisper's English normaliser
(the whisper-normalizer package, pinned: tests/test_text.py checks it on OpenAI's published
normaliser cases)."""

from __future__ import annotations

import functools

import jiwer

# The paper's threshold: a decode hallucinates when its WER exceeds it (config
# decode.hallucination_wer, whose schema default this is; every signature's default).
HALLUCINATION_WER = 0.5


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


def spoke(hypothesis: str) -> bool:
    """Whether a transcript says anything: any letter or digit, before normalisation. On a
    non-speech input any transcript that does is a hallucination, a filler ("hmm hmm hmm",
    which the English normaliser deletes) too; punctuation alone ("." on silence) is not."""
    return any(c.isalnum() for c in hypothesis)


def hallucinated(reference: str, hypothesis: str, err: float, threshold: float) -> bool:
    """The decode contract's ``hallucination`` flag: WER ``err`` > ``threshold``; with an empty
    reference (a non-speech input: nothing is said) any transcript that says a word."""
    if not normalize(reference).strip():
        return spoke(hypothesis)
    return bool(err > threshold)
