"""Our decoder step (decode.decoder_logits + DecoderCache) against transformers' own forward.

The decode loop calls the decoder layers directly and keeps its own key/value cache; these
tests catch a transformers upgrade that changes what WhisperDecoder or WhisperAttention
compute or how they read the cache. Tiny random float64 Whisper (d = 16, 2 layers).
"""

from __future__ import annotations

import pytest
import torch

from whisper_spi.decode.capture import Capture
from whisper_spi.decode.loop import DecoderCache, decoder_logits

from .conftest import random_whisper

ATOL = 1e-5
BATCH, STEPS, N_PROMPT = 3, 9, 3


@pytest.fixture(params=["sdpa", "eager"])
def setup(request):
    model = random_whisper(decoder_layers=2, init_std=0.2, seed=1)
    model.set_attn_implementation(request.param)
    gen = torch.Generator().manual_seed(2)
    features = torch.randn(BATCH, 8, 16, generator=gen, dtype=torch.float64)
    with torch.inference_mode():
        enc = model.model.encoder(features).last_hidden_state
    tokens = torch.randint(0, model.config.vocab_size, (BATCH, N_PROMPT + STEPS), generator=gen)
    with torch.inference_mode():
        ref = model(encoder_outputs=(enc,), decoder_input_ids=tokens).logits
    return model, enc, tokens, ref


def test_without_cache_equals_the_model_forward(setup):
    model, enc, tokens, ref = setup
    with torch.inference_mode():
        mine = decoder_logits(model, tokens, enc, None, slice(None))
    assert ref.abs().max() > 1.0  # not a degenerate near-zero comparison
    torch.testing.assert_close(mine, ref, atol=ATOL, rtol=0)


def test_cached_steps_equal_the_model_forward_also_after_rows_leave(setup):
    """Prompt at once, then one token per step; row 1 leaves the batch half way."""
    model, enc, tokens, ref = setup
    cache = DecoderCache(model.config, BATCH, N_PROMPT + STEPS, model.dtype, enc.device)
    rows = list(range(BATCH))
    with torch.inference_mode():
        first = decoder_logits(model, tokens[:, :N_PROMPT], enc, cache, [0, N_PROMPT - 1])
        torch.testing.assert_close(first, ref[:, [0, N_PROMPT - 1]], atol=ATOL, rtol=0)
        for pos in range(N_PROMPT, N_PROMPT + STEPS):
            if pos == N_PROMPT + STEPS // 2:
                rows = [0, 2]
                index = torch.tensor([0, 2])
                cache.select(index)
                enc = enc.index_select(0, index)
            step = decoder_logits(model, tokens[rows, pos : pos + 1], enc, cache, -1)
            torch.testing.assert_close(step, ref[rows, pos], atol=ATOL, rtol=0)
    assert cache.get_seq_length() == N_PROMPT + STEPS


def test_hooks_see_what_they_see_under_the_model_forward(setup):
    """Capture (forward hooks on the layers' own submodules) records the same outputs."""
    model, enc, tokens, _ = setup
    comps = ("cross_attn", "self_attn", "ffn", "residual")
    with Capture(model, comps) as theirs, torch.inference_mode():
        model(encoder_outputs=(enc,), decoder_input_ids=tokens)
    cache = DecoderCache(model.config, BATCH, N_PROMPT + STEPS, model.dtype, enc.device)
    with Capture(model, comps) as mine, torch.inference_mode():
        decoder_logits(model, tokens[:, :N_PROMPT], enc, cache, -1)
        for pos in range(N_PROMPT, N_PROMPT + STEPS):
            decoder_logits(model, tokens[:, pos : pos + 1], enc, cache, -1)
    want, got = theirs.matrices(), mine.matrices()
    assert set(got) == set(want) and len(want) == 2 * len(comps)
    for key in want:
        torch.testing.assert_close(got[key], want[key], atol=ATOL, rtol=0)
