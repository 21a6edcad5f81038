"""OpenAI's temperature-fallback rule on constructed cases, thresholds crossed and not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from whisper_spi.decode.loop import Decoded, greedy_decode, row_generators
from whisper_spi.mitigation.fallback import (
    FallbackOptions,
    fallback_decode,
    is_silence,
    needs_fallback,
)

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


# --- the fallback loop on constructed decodes ------------------------------------------------


def _decoded(ratio: float, logprob: float, no_speech: float, text: str = "a b c") -> Decoded:
    return Decoded([5, 6], text, False, 3 * logprob, logprob, no_speech, ratio)


# per utterance: its decode at each temperature (None: must not be decoded again)
SCRIPT = {
    "good": [(1.5, -0.3, 0.01)],
    "repetitive_then_fine": [(3.0, -0.3, 0.01), (2.6, -0.5, 0.01), (1.4, -0.4, 0.01)],
    "always_bad": [(3.0, -2.0, 0.01)] * 6,
    "silence": [(1.5, -1.5, 0.9)],
    "confident_despite_no_speech": [(1.5, -0.2, 0.9)],
    "unlikely_then_silence": [(1.2, -1.3, 0.2), (1.0, -1.4, 0.7)],
}
# OpenAI: (temperature kept, dropped as silence)
EXPECTED = {
    "good": (0.0, False),
    "repetitive_then_fine": (0.4, False),
    "always_bad": (1.0, False),
    "silence": (0.0, True),
    "confident_despite_no_speech": (0.0, False),
    "unlikely_then_silence": (0.2, True),
}


@pytest.mark.parametrize("timestamps", [False, True], ids=["fallback", "transcribe"])
def test_fallback_decode_follows_openai_on_constructed_cases(monkeypatch, timestamps):
    """The fallback arm and the transcribe arm (every pass in timestamp mode) keep and drop
    what OpenAI's decode_with_fallback and segment skip would."""
    import whisper_spi.decode.loop as decode_module

    ids = list(SCRIPT)
    calls = []

    def fake(bundle, enc, max_new_tokens, temperature=0.0, generators=None, capture=None,
             timestamps=False):  # fmt: skip
        step = round(temperature / 0.2)
        rows = enc[:, 0].long().tolist()  # the test's encoder output carries the row index
        calls.append((temperature, [ids[r] for r in rows], timestamps))
        assert (generators is not None) == (temperature > 0)
        return [_decoded(*SCRIPT[ids[r]][step]) for r in rows]

    monkeypatch.setattr(decode_module, "greedy_decode", fake)
    enc = torch.arange(len(ids), dtype=torch.float64)[:, None].repeat(1, 3)
    out = fallback_decode(None, enc, ids, seed=1, timestamps=timestamps)
    assert all(mode == timestamps for _, _, mode in calls)
    assert {u: (r.temperature, r.dropped) for u, r in zip(ids, out, strict=True)} == EXPECTED
    # only the rows that still fail are decoded again
    assert calls[1][:2] == (0.2, ["repetitive_then_fine", "always_bad", "unlikely_then_silence"])
    assert [t for t, _, _ in calls] == list(OPENAI.temperatures)
    dropped = out[ids.index("silence")].decoded
    assert dropped.text == "" and dropped.token_ids == []
    if timestamps:  # the plain decode has no timestamps: it cannot be the first pass
        with pytest.raises(ValueError, match="timestamp"):
            fallback_decode(None, enc, ids, seed=1, first=[], timestamps=True)
        return
    # a known first pass is not recomputed
    calls.clear()
    first = [_decoded(*SCRIPT[u][0]) for u in ids]
    again = fallback_decode(None, enc, ids, seed=1, first=first)
    assert [r.temperature for r in again] == [r.temperature for r in out]
    assert calls[0][0] == 0.2


# --- temperature sampling in the decoder (a tiny random Whisper) ------------------------------


class _Tokenizer:
    def decode(self, ids, skip_special_tokens=True):
        return " ".join(f"w{i}" for i in ids)


@pytest.fixture(scope="module")
def random_bundle():
    from types import SimpleNamespace

    from whisper_spi.decode.models import WhisperBundle

    from .conftest import random_whisper

    model = random_whisper(decoder_layers=2, init_std=0.3, seed=3)
    bundle = WhisperBundle(
        spec="random",
        model=model,
        processor=SimpleNamespace(tokenizer=_Tokenizer()),
        generation_config=None,
        prompt_ids=[3],
        eot_id=2,
        no_speech_id=4,
        # a vocabulary of 10 live tokens: <|endoftext|> is likely enough that rows end early
        suppress_ids=[0, 1, *range(12, 100)],
        suppress_ids_begin=[2],
    )
    with torch.no_grad():
        enc = model.model.encoder(torch.randn(8, 8, 16, dtype=torch.float64)).last_hidden_state
    return bundle, enc


def test_sampled_rows_do_not_depend_on_their_batch(random_bundle):
    bundle, enc = random_bundle
    ids = [f"u{i}" for i in range(8)]
    batch = greedy_decode(
        bundle, enc, 20, temperature=0.8, generators=row_generators(7, "t", ids, 0.8)
    )
    alone = [
        greedy_decode(
            bundle, enc[i : i + 1], 20, temperature=0.8, generators=row_generators(7, "t", [u], 0.8)
        )[0]
        for i, u in enumerate(ids)
    ]
    assert [d.token_ids for d in batch] == [d.token_ids for d in alone]
    np.testing.assert_allclose([d.sum_logprob for d in batch], [d.sum_logprob for d in alone])
    lengths = {d.n_tokens for d in batch}
    assert len(lengths) > 1  # rows left the batch at different steps: the pruning path ran
    greedy = greedy_decode(bundle, enc, 20)
    assert [d.token_ids for d in batch] != [d.token_ids for d in greedy]


def test_temperature_zero_is_greedy_exactly(random_bundle):
    bundle, enc = random_bundle
    ids = [f"u{i}" for i in range(8)]
    greedy = greedy_decode(bundle, enc, 20)
    zero = greedy_decode(
        bundle, enc, 20, temperature=0.0, generators=row_generators(7, "t", ids, 0)
    )
    assert [d.token_ids for d in zero] == [d.token_ids for d in greedy]
    assert [d.sum_logprob for d in zero] == [d.sum_logprob for d in greedy]
    with pytest.raises(ValueError, match="one generator per row"):
        greedy_decode(bundle, enc, 20, temperature=0.5)


def test_first_token_follows_the_tempered_softmax(random_bundle):
    """Empirical first-token frequencies over 4,000 seeds vs softmax(logits / T) computed
    directly from the model (chi-square, df <= 8: 99.9 % quantile 26.1)."""
    bundle, enc = random_bundle
    n, t = 4000, 0.7
    rows = enc[:1].repeat(n, 1, 1)
    ids = [f"s{i}" for i in range(n)]
    got = greedy_decode(bundle, rows, 1, temperature=t, generators=row_generators(1, "t", ids, t))
    first = np.array([d.token_ids[0] if d.token_ids else bundle.eot_id for d in got])
    with torch.no_grad():
        logits = bundle.model(encoder_outputs=(enc[:1],), decoder_input_ids=torch.tensor([[3]]))
    logits = logits.logits[0, -1].clone()
    masked = [*bundle.suppress_ids, *bundle.suppress_ids_begin]
    logits[masked] = float("-inf")  # what the decoder masks at the first step
    p = torch.softmax(logits / t, -1).numpy()
    counts = np.bincount(first, minlength=len(p))
    assert counts[masked].sum() == 0
    big = p * n >= 5
    expected = p[big] * n
    chi2 = (((counts[big] - expected) ** 2) / expected).sum()
    assert chi2 < 26.1, chi2
    assert big.sum() >= 3  # a real distribution, not one token
