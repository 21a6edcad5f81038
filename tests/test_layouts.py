"""The paper's three layouts as random-weight dirs: loadable, shaped and tokenised as the paper's
models, and decoded + captured at every decoder layer."""

from __future__ import annotations

import numpy as np
import pytest

from whisper_spi.decode.capture import DecodeOptions, decode_shard
from whisper_spi.decode.layouts import LAYOUTS, write_layout
from whisper_spi.decode.models import decoder_layers, load_model

# Written out from /work/shared/notes/paper-models.md (the models' published config.json and
# tokenizer facts), not derived from the code under test.
MULTILINGUAL_IDS = {
    "<|endoftext|>": 50257,
    "<|startoftranscript|>": 50258,
    "<|en|>": 50259,
    "<|translate|>": 50358,
    "<|transcribe|>": 50359,
    "<|nocaptions|>": 50362,
    "<|notimestamps|>": 50363,
    "<|0.00|>": 50364,
}
V3_IDS = {
    "<|endoftext|>": 50257,
    "<|startoftranscript|>": 50258,
    "<|en|>": 50259,
    "<|yue|>": 50358,
    "<|translate|>": 50359,
    "<|transcribe|>": 50360,
    "<|nospeech|>": 50363,
    "<|notimestamps|>": 50364,
    "<|0.00|>": 50365,
}
PAPER = {
    # name: (encoder layers, decoder layers, mel bins, vocab, special ids, no-speech token)
    "tiny": (4, 4, 80, 51865, MULTILINGUAL_IDS, "<|nocaptions|>"),
    "small": (12, 12, 80, 51865, MULTILINGUAL_IDS, "<|nocaptions|>"),
    "large-v3-turbo": (32, 4, 128, 51866, V3_IDS, "<|nospeech|>"),
}
# large-v3's generation_config.json suppress_tokens ends so (88 ids in all)
V3_SUPPRESS_TAIL = [50254, 50258, 50359, 50360, 50361, 50362, 50363]
WIDTH, WINDOW_S = 64, 4  # shrunk for speed; layer counts, mels and vocabulary stay


@pytest.fixture(scope="module", params=sorted(PAPER))
def layout(request, tmp_path_factory):
    name = request.param
    path = write_layout(name, tmp_path_factory.mktemp(name), d_model=WIDTH, window_s=WINDOW_S)
    return name, path, load_model(f"dir:{path}", device="cpu")


def test_registry_is_the_papers_three():
    assert set(LAYOUTS) == set(PAPER)


def test_config_has_the_papers_shape(layout):
    name, path, bundle = layout
    enc, dec, mels, vocab, _, _ = PAPER[name]
    cfg = bundle.model.config
    assert (cfg.encoder_layers, cfg.decoder_layers) == (enc, dec)
    assert (cfg.num_mel_bins, cfg.vocab_size, cfg.d_model) == (mels, vocab, WIDTH)
    assert len(bundle.processor.tokenizer) == vocab
    assert bundle.processor.feature_extractor.feature_size == mels
    assert decoder_layers(f"dir:{path}") == dec  # the DAG planner reads config.json alone


def test_special_token_ids_are_the_papers(layout):
    name, _, bundle = layout
    ids, no_speech = PAPER[name][4], PAPER[name][5]
    tok = bundle.processor.tokenizer
    assert {t: tok.convert_tokens_to_ids(t) for t in ids} == ids
    assert bundle.prompt_ids == [
        ids["<|startoftranscript|>"],
        ids["<|en|>"],
        ids["<|transcribe|>"],
        ids["<|notimestamps|>"],
    ]
    assert bundle.eot_id == ids["<|endoftext|>"]
    assert bundle.no_speech_id == ids[no_speech]
    gen = bundle.generation_config
    assert gen.decoder_start_token_id == ids["<|startoftranscript|>"]
    assert gen.no_timestamps_token_id == ids["<|notimestamps|>"]
    assert gen.is_multilingual
    assert gen.task_to_id == {
        "transcribe": ids["<|transcribe|>"],
        "translate": ids["<|translate|>"],
    }
    assert gen.lang_to_id["<|en|>"] == ids["<|en|>"]
    assert bundle.suppress_ids_begin == [220, 50257]
    assert len(bundle.suppress_ids) == 88
    # its tail: <|startoftranscript|>, <|translate|>, <|transcribe|>, <|startoflm|>,
    # <|startofprev|> and the no-speech token (shifted by one in v3)
    tail = bundle.suppress_ids[-7:]
    if name == "large-v3-turbo":
        assert tail == V3_SUPPRESS_TAIL
        assert "<|yue|>" in gen.lang_to_id and len(gen.lang_to_id) == 100
    else:
        assert tail == [50254, 50258, 50358, 50359, 50360, 50361, 50362]
        assert len(gen.lang_to_id) == 99


def test_decode_and_capture_every_decoder_layer(layout):
    name, _, bundle = layout
    rng = np.random.default_rng(0)
    utts = [
        {
            "utt_id": f"synthetic-{i}",
            "speaker": "0",
            "text": "a short sentence",
            "wave": (0.1 * rng.standard_normal(16000 * 2)).astype(np.float32),
        }
        for i in range(2)
    ]
    transcripts, spectra = decode_shard(
        bundle, utts, name, "clean", DecodeOptions(max_new_tokens=4), batch_size=2
    )
    assert [t["utt_id"] for t in transcripts] == ["synthetic-0", "synthetic-1"]
    assert all(1 <= len(t["token_ids"]) + (not t["hit_max_length"]) <= 4 for t in transcripts)
    assert sorted(spectra) == list(range(PAPER[name][1]))
    for layer, rows in spectra.items():
        full = {(r["utt_id"], r["component"]) for r in rows if r["prefix"] == 0}
        assert full == {
            (u["utt_id"], c) for u in utts for c in ("cross_attn", "self_attn", "ffn")
        }, layer
        assert all(len(r["sv"]) and np.isfinite(r["sv"]).all() for r in rows)
