"""Whisper's own mitigation, the baseline for the interventions: OpenAI's temperature fallback.

``transcribe()`` in OpenAI's whisper decodes greedily, then again at each higher temperature
while the result looks like a failure: too repetitive (compression ratio > 2.4) or too
unlikely (average log-probability < -1.0), unless it looks like silence (no-speech probability
> 0.6 with the low log-probability), which ends the loop. The last decode is kept; it is then
dropped (empty output) if its no-speech probability is > 0.6 and its log-probability is not
above the threshold. One sample per temperature (the Python API's default, ``best_of`` None
and ``beam_size`` None: greedy at 0, one draw at each higher temperature; the command line's
beam 5 / best_of 5 is what faster-whisper's arms run). :func:`fallback_decode` runs the rule
on our decoder, without timestamps (the ``fallback`` arm, the paper's decoding mode) or with
them (the ``transcribe`` arm: transcribe() on one 30 s window); :func:`is_silence` alone on
a plain decode is the no-speech gating baseline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from whisper_spi.decode.loop import Decoded
from whisper_spi.decode.models import MAX_NEW_TOKENS


@dataclass(frozen=True)
class FallbackOptions:
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    compression_ratio_threshold: float | None = 2.4
    logprob_threshold: float | None = -1.0
    no_speech_threshold: float | None = 0.6


OPENAI = FallbackOptions()  # transcribe()'s defaults


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


@dataclass(frozen=True)
class FallbackResult:
    decoded: Decoded  # the kept decode; text and token_ids emptied when dropped
    temperature: float  # the temperature of the kept decode
    dropped: bool  # dropped as no speech (is_silence)


def fallback_decode(
    bundle,
    encoder_out,
    utt_ids: Sequence[str],
    seed: int,
    opts: FallbackOptions = OPENAI,
    max_new_tokens: int = MAX_NEW_TOKENS,
    first: Sequence[Decoded] | None = None,
    timestamps: bool = False,
) -> list[FallbackResult]:
    """OpenAI's ``decode_with_fallback`` then its no-speech skip, for a batch of utterances.

    Only the rows that still need it are decoded again at the next temperature; a sample at
    temperature t uses the generator of (seed, "fallback", utt_id, t), so a row's result
    does not depend on the batch. ``first``: the rows' greedy decodes if already known (the
    plain decode is exactly the temperature-0 pass without timestamps), which are then not
    recomputed. ``timestamps``: every pass in Whisper's timestamp mode.
    """
    from whisper_spi.decode.loop import greedy_decode, row_generators

    if first is not None and timestamps:
        raise ValueError("the plain decode has no timestamps: it is not a timestamp-mode pass")
    stage = "transcribe" if timestamps else "fallback"  # the arms' draws are independent

    kept: list[tuple[Decoded, float] | None] = [None] * len(utt_ids)
    pending = list(range(len(utt_ids)))
    for t in opts.temperatures:
        if not pending:
            break
        if t == 0 and first is not None:
            decoded = [first[i] for i in pending]
        else:
            index = torch.tensor(pending, device=encoder_out.device)
            decoded = greedy_decode(
                bundle,
                encoder_out.index_select(0, index),
                max_new_tokens,
                temperature=t,
                generators=(
                    row_generators(seed, stage, [utt_ids[i] for i in pending], t) if t > 0 else None
                ),
                timestamps=timestamps,
            )
        for i, d in zip(pending, decoded, strict=True):
            kept[i] = (d, t)
        pending = [
            i
            for i, d in zip(pending, decoded, strict=True)
            if needs_fallback(d.compression_ratio, d.avg_logprob, d.no_speech_prob, opts)
        ]
    out = []
    for d, t in kept:
        drop = is_silence(d.avg_logprob, d.no_speech_prob, opts)
        if drop:
            d = replace(d, token_ids=[], text="", compression_ratio=0.0)
        out.append(FallbackResult(d, t, drop))
    return out
