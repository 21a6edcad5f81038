"""OpenAI's temperature-fallback rule on constructed cases, thresholds crossed and not."""

from __future__ import annotations

import pytest

from whisper_spi.fallback import FallbackOptions, is_silence, needs_fallback

OPENAI = FallbackOptions()


@pytest.mark.parametrize(
    ("ratio", "logprob", "no_speech", "expected"),
    [
        (1.5, -0.3, 0.01, False),  # a good decode
        (2.4, -0.3, 0.01, False),  # at the threshold: not above it
        (2.41, -0.3, 0.01, True),  # too repetitive
        (1.5, -1.0, 0.01, False),  # at the log-prob threshold: not below it
        (1.5, -1.01, 0.01, True),  # too unlikely
        (3.0, -1.5, 0.01, True),  # both
        (1.5, -1.5, 0.61, False),  # silence: low log-prob with high no-speech stops the loop
        (3.0, -1.5, 0.61, False),  # ... even when also repetitive
        (3.0, -0.5, 0.61, True),  # high no-speech but a confident, repetitive decode
        (1.5, -1.5, 0.6, True),  # no-speech at the threshold is not above it
    ],
)
def test_needs_fallback(ratio, logprob, no_speech, expected):
    assert needs_fallback(ratio, logprob, no_speech, OPENAI) is expected


@pytest.mark.parametrize(
    ("logprob", "no_speech", "expected"),
    [
        (-1.5, 0.9, True),  # no speech, not confident: dropped
        (-1.0, 0.9, True),  # log-prob at the threshold is not above it
        (-0.5, 0.9, False),  # confident enough to keep despite the no-speech probability
        (-1.5, 0.6, False),  # no-speech not above the threshold
        (-1.5, 0.1, False),
    ],
)
def test_is_silence(logprob, no_speech, expected):
    assert is_silence(logprob, no_speech, OPENAI) is expected


def test_disabled_thresholds():
    off = FallbackOptions(
        compression_ratio_threshold=None, logprob_threshold=None, no_speech_threshold=None
    )
    assert not needs_fallback(9.0, -9.0, 0.99, off)
    assert not is_silence(-9.0, 0.99, off)
    # without a log-prob threshold, a high no-speech probability alone drops the segment
    assert is_silence(-9.0, 0.99, FallbackOptions(logprob_threshold=None))
