"""Decode-and-capture: the captured matrices are the right ones, and their spectra exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from whisper_spi.decode.capture import (
    Capture,
    DecodeOptions,
    SpectrumOptions,
    decode_batch,
    decode_shard,
    row_range,
)
from whisper_spi.decode.loop import encode, greedy_decode, log_mel
from whisper_spi.text import wer


@pytest.fixture(scope="module")
def clips(librivox):
    return [{"utt_id": u, "speaker": "lv", "text": t, "wave": w} for u, w, t in librivox]


def test_components_reconstruct_each_layer_output(tiny_en, clips):
    """residual-in + self_attn + cross_attn + ffn = the layer's output, for every layer."""
    bundle = tiny_en
    enc = encode(bundle, log_mel(bundle, [clips[0]["wave"]]))
    seq = torch.tensor([bundle.prompt_ids + greedy_decode(bundle, enc)[0].token_ids])
    outputs = {}
    hooks = [
        layer.register_forward_hook(lambda m, i, o, k=k: outputs.__setitem__(k, o))
        for k, layer in enumerate(bundle.model.model.decoder.layers)
    ]
    try:
        with (
            Capture(bundle.model, ("cross_attn", "self_attn", "ffn")) as cap,
            torch.inference_mode(),
        ):
            hidden = bundle.model(
                encoder_outputs=(enc,), decoder_input_ids=seq, output_hidden_states=True
            ).decoder_hidden_states
    finally:
        for h in hooks:
            h.remove()
    mats = cap.matrices()
    for layer in range(bundle.n_decoder_layers):
        rebuilt = hidden[layer] + sum(mats[(layer, c)] for c in ("self_attn", "cross_attn", "ffn"))
        want = outputs[layer]
        if layer + 1 < bundle.n_decoder_layers:  # the last entry of hidden_states is post-norm
            torch.testing.assert_close(want, hidden[layer + 1])
        rel = (rebuilt - want).norm() / want.norm()
        assert rel < 1e-4, (layer, float(rel))


def test_capture_during_generation_equals_teacher_forced_pass(tiny_en, clips, looping_mix):
    """Every row, also those that left the batch early while one decode looped to the cap."""
    bundle = tiny_en
    waves = [c["wave"] for c in clips[:2]] + [looping_mix]
    decoded, mats = decode_batch(bundle, waves, ["", "", ""], DecodeOptions())
    assert decoded[-1].hit_max_length and decoded[0].n_tokens < 60
    n_prompt = len(bundle.prompt_ids)
    for i, dec in enumerate(decoded):
        enc = encode(bundle, log_mel(bundle, waves[i : i + 1]))
        seq = bundle.prompt_ids + dec.token_ids + ([] if dec.hit_max_length else [bundle.eot_id])
        with Capture(bundle.model, ("ffn", "cross_attn")) as cap, torch.inference_mode():
            bundle.model(encoder_outputs=(enc,), decoder_input_ids=torch.tensor([seq]))
        emitted = dec.n_tokens + (0 if dec.hit_max_length else 1)
        for key in ((2, "ffn"), (0, "cross_attn")):
            tf = cap.matrices()[key][0, row_range(n_prompt, emitted, False)]
            got = mats[i][key]
            assert got.shape == tf.shape == (emitted, 384)
            torch.testing.assert_close(got, tf, rtol=1e-4, atol=1e-4)


def test_spectra_equal_numpy_float64_svd(tiny_en, clips):
    opts = DecodeOptions(spectra=SpectrumOptions(center=False, prefix_lengths=(4, 8)))
    decoded, mats = decode_batch(tiny_en, [clips[1]["wave"]], [clips[1]["text"]], opts)
    _, spectra = decode_shard(tiny_en, clips[1:2], "tiny-en", "clean", opts)
    for row in spectra[3]:
        matrix = mats[0][(3, row["component"])].double().numpy()
        if row["prefix"]:
            matrix = matrix[: row["prefix"]]
        ref = np.linalg.svd(matrix, compute_uv=False)
        assert row["n_rows"] == matrix.shape[0]
        np.testing.assert_allclose(row["sv"], ref, rtol=1e-4, atol=1e-8 * ref[0])
        if row["prefix"] == 0:
            np.testing.assert_allclose(row["row_mean"], matrix.mean(0), rtol=1e-4, atol=1e-5)


def test_centered_spectra_are_of_the_centered_matrix(tiny_en, clips):
    opts = DecodeOptions(spectra=SpectrumOptions(center=True, prefix_lengths=()))
    _, mats = decode_batch(tiny_en, [clips[2]["wave"]], [clips[2]["text"]], opts)
    _, spectra = decode_shard(tiny_en, clips[2:3], "tiny-en", "clean", opts)
    row = next(r for r in spectra[0] if r["component"] == "cross_attn")
    m = mats[0][(0, "cross_attn")].double().numpy()
    ref = np.linalg.svd(m - m.mean(0), compute_uv=False)
    np.testing.assert_allclose(row["sv"], ref, rtol=1e-4, atol=1e-8 * ref[0])
    assert row["centered"]


def test_batch_of_eight_equals_eight_batches_of_one(tiny_en, clips, looping_mix):
    utts = (clips * 2)[:7] + [dict(clips[0], wave=looping_mix)]  # the last loops to the cap
    utts = [dict(u, utt_id=f"{u['utt_id']}-{i}") for i, u in enumerate(utts)]
    opts = DecodeOptions()
    t8, s8 = decode_shard(tiny_en, utts, "tiny-en", "clean", opts, batch_size=8)
    t1, s1 = decode_shard(tiny_en, utts, "tiny-en", "clean", opts, batch_size=1)
    assert t8[-1]["hit_max_length"] and t8[-1]["n_tokens"] == 224
    assert [t["token_ids"] for t in t8] == [t["token_ids"] for t in t1]
    assert [t["hypothesis"] for t in t8] == [t["hypothesis"] for t in t1]
    for layer in s8:
        for a, b in zip(s8[layer], s1[layer], strict=True):
            assert (a["utt_id"], a["component"], a["prefix"]) == (
                b["utt_id"],
                b["component"],
                b["prefix"],
            )
            np.testing.assert_allclose(a["sv"], b["sv"], rtol=1e-4, atol=1e-6)
    # and a rerun is identical, bit for bit
    t8b, s8b = decode_shard(tiny_en, utts, "tiny-en", "clean", opts, batch_size=8)
    assert [(t["hypothesis"], t["avg_logprob"]) for t in t8] == [
        (t["hypothesis"], t["avg_logprob"]) for t in t8b
    ]
    for layer in s8:
        for a, b in zip(s8[layer], s8b[layer], strict=True):
            np.testing.assert_array_equal(a["sv"], b["sv"])


def test_wer_equals_jiwer_and_flags_a_hallucination(tiny_en, clips):
    import jiwer
    from whisper_normalizer.english import EnglishTextNormalizer

    norm = EnglishTextNormalizer()
    utt = clips[0]
    # 3.5x faster by naive decimation of a 16 kHz clip is far beyond what Whisper copes with
    fast = dict(utt, wave=np.ascontiguousarray(np.repeat(utt["wave"], 1)[::4]))
    rows, _ = decode_shard(tiny_en, [utt, fast], "tiny-en", "x", DecodeOptions())
    for row in rows:
        assert row["wer"] == pytest.approx(
            jiwer.wer(norm(row["reference"]), norm(row["hypothesis"]))
        )
        assert row["wer"] == pytest.approx(wer(row["reference"], row["hypothesis"]))
    assert not rows[0]["hallucination"] and rows[0]["wer"] < 0.2
    assert rows[1]["hallucination"] and rows[1]["wer"] > 0.5


def test_reference_tokens_option_captures_reference_length(tiny_en, clips):
    from whisper_spi.decode.capture import reference_ids

    opts = DecodeOptions(tokens="reference", spectra=SpectrumOptions(prefix_lengths=()))
    _, mats = decode_batch(
        tiny_en, [c["wave"] for c in clips[:2]], [c["text"] for c in clips[:2]], opts
    )
    for clip, m in zip(clips[:2], mats, strict=True):
        assert m[(0, "ffn")].shape[0] == len(reference_ids(tiny_en, clip["text"])) + 1
