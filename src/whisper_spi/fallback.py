"""Whisper's own mitigation, the baseline for the interventions: OpenAI's temperature fallback.

``transcribe()`` in OpenAI's whisper decodes greedily, then again at each higher temperature
while the result looks like a failure: too repetitive (compression ratio > 2.4) or too
unlikely (average log-probability < -1.0), unless it looks like silence (no-speech probability
> 0.6 with the low log-probability), which ends the loop. The last decode is kept; it is then
dropped (empty output) if its no-speech probability is > 0.6 and its log-probability is not
above the threshold. One sample per temperature (the Python API's default, ``best_of`` None).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FallbackOptions:
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    compression_ratio_threshold: float | None = 2.4
    logprob_threshold: float | None = -1.0
    no_speech_threshold: float | None = 0.6


def needs_fallback(
    compression_ratio: float, avg_logprob: float, no_speech_prob: float, opts: FallbackOptions
) -> bool:
    """Decode again at the next temperature?"""
    low_logprob = opts.logprob_threshold is not None and avg_logprob < opts.logprob_threshold
    if (
        opts.no_speech_threshold is not None
        and no_speech_prob > opts.no_speech_threshold
        and low_logprob
    ):
        return False  # silence: stop here, the result is dropped by is_silence
    too_repetitive = (
        opts.compression_ratio_threshold is not None
        and compression_ratio > opts.compression_ratio_threshold
    )
    return too_repetitive or low_logprob


def is_silence(avg_logprob: float, no_speech_prob: float, opts: FallbackOptions) -> bool:
    """Drop the kept result as no speech (OpenAI's segment skip)?"""
    if opts.no_speech_threshold is None or not no_speech_prob > opts.no_speech_threshold:
        return False
    return not (opts.logprob_threshold is not None and avg_logprob > opts.logprob_threshold)
