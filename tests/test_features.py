"""The two log-mel front ends (config decode.features) against OpenAI's published algorithm,
written here in numpy from its description (whisper/audio.py: log_mel_spectrogram, and
transcribe()'s window), not from our code or transformers':

* STFT with a periodic 400-sample Hann window, hop 160, the wave reflect-padded by 200 at
  each end, the last frame dropped; power spectrum; Slaney mel filters (librosa's default,
  which OpenAI's mel_filters.npz holds); log10 floored at 1e-10 and at 8 below the maximum;
  (x + 4) / 4.
* ``openai``: transcribe() computes this on the wave followed by 30 s of zeros, keeps the
  clip's ``len(wave) // 160`` content frames and pads the 3,000-frame window with 0.0.
* ``transformers``: the wave zero-padded to 30 s, all 3,000 frames.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from whisper_spi.decode.loop import log_mel
from whisper_spi.registry import DEFAULT_FRONT_END, FRONT_ENDS

SR, N_FFT, HOP, N_SAMPLES, N_FRAMES = 16000, 400, 160, 480000, 3000


def _hz_to_mel(f):
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    lin = f / (200.0 / 3)
    log = 15.0 + np.log(np.maximum(f, 1e-12) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log, lin)


def _mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    lin = m * (200.0 / 3)
    log = 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0))
    return np.where(m >= 15.0, log, lin)


def _mel_filters(n_mels: int) -> np.ndarray:
    """Triangular filters between Slaney-spaced edges, area-normalised (norm='slaney')."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(SR / 2), n_mels + 2))
    freqs = np.linspace(0, SR / 2, N_FFT // 2 + 1)
    out = np.zeros((n_mels, freqs.size))
    for i in range(n_mels):
        lo, mid, hi = edges[i : i + 3]
        rising = (freqs - lo) / (mid - lo)
        falling = (hi - freqs) / (hi - mid)
        out[i] = np.maximum(0.0, np.minimum(rising, falling)) * 2.0 / (hi - lo)
    return out


def _openai_log_mel(wave: np.ndarray, n_mels: int, padding: int) -> np.ndarray:
    """whisper.audio.log_mel_spectrogram(wave, n_mels, padding), in float64 numpy."""
    x = np.concatenate([wave.astype(np.float64), np.zeros(padding)])
    x = np.pad(x, N_FFT // 2, mode="reflect")
    n = 1 + (x.size - N_FFT) // HOP
    frames = np.stack([x[i * HOP : i * HOP + N_FFT] for i in range(n)])
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic Hann
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    mel = _mel_filters(n_mels) @ power[:-1].T
    log = np.log10(np.maximum(mel, 1e-10))
    log = np.maximum(log, log.max() - 8.0)
    return (log + 4.0) / 4.0


def _reference(wave: np.ndarray, n_mels: int, front_end: str) -> np.ndarray:
    if front_end == "openai":
        mel = _openai_log_mel(wave, n_mels, padding=N_SAMPLES)
        content = mel[:, : mel.shape[1] - N_FRAMES][:, :N_FRAMES]
        return np.pad(content, [(0, 0), (0, N_FRAMES - content.shape[1])])
    return _openai_log_mel(np.pad(wave, (0, N_SAMPLES - wave.size)), n_mels, padding=0)


def _bundle(front_end: str, n_mels: int = 80):
    from transformers import WhisperFeatureExtractor

    fe = WhisperFeatureExtractor(feature_size=n_mels)
    return SimpleNamespace(
        processor=SimpleNamespace(feature_extractor=fe),
        features=front_end,
        device=torch.device("cpu"),
        dtype=torch.float32,
    )


def _clips() -> list[np.ndarray]:
    """Speech-like test waves of awkward lengths: a chirp with noise, a tone burst, noise."""
    rng = np.random.default_rng(7)
    t = np.arange(int(3.2 * SR)) / SR
    chirp = 0.3 * np.sin(2 * np.pi * (200 + 400 * t) * t) + 0.01 * rng.standard_normal(t.size)
    burst = np.zeros(int(1.01 * SR) + 37)
    burst[4000:9000] = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(5000) / SR)
    noise = 0.1 * rng.standard_normal(int(7.77 * SR))
    return [w.astype(np.float32) for w in (chirp, burst, noise)]


@pytest.mark.parametrize("n_mels", [80, 128])
@pytest.mark.parametrize("front_end", list(FRONT_ENDS))
def test_front_ends_equal_openais_algorithm(front_end, n_mels):
    clips = _clips()
    ours = log_mel(_bundle(front_end, n_mels), clips).numpy()  # one batch of three lengths
    assert ours.shape == (len(clips), n_mels, N_FRAMES)
    for got, wave in zip(ours, clips, strict=True):
        want = _reference(wave, n_mels, front_end)
        np.testing.assert_allclose(got, want, atol=2e-4)


def test_openai_pads_with_zero_past_the_clip_and_transformers_with_its_floor():
    wave = _clips()[0]  # 3.2 s: frames 320 on are padding
    content = wave.size // HOP
    openai = log_mel(_bundle("openai"), [wave])[0].numpy()
    hf = log_mel(_bundle("transformers"), [wave])[0].numpy()
    np.testing.assert_array_equal(openai[:, :content], hf[:, :content])
    assert (openai[:, content:] == 0.0).all()
    floor = hf[:, :content].max() - 2.0  # 8 log10 units below the maximum, scaled by 1/4
    np.testing.assert_allclose(hf[:, content + 2 :], floor, atol=1e-6)


def test_a_full_window_has_no_padding_under_either():
    wave = np.random.default_rng(3).standard_normal(N_SAMPLES + 1234).astype(np.float32) * 0.1
    a = log_mel(_bundle("openai"), [wave])
    b = log_mel(_bundle("transformers"), [wave])
    assert torch.equal(a, b)


def test_the_default_is_what_whisper_users_run():
    assert DEFAULT_FRONT_END == "openai"
    from whisper_spi.config import schema

    features = schema()["properties"]["decode"]["properties"]["features"]
    assert features["default"] == DEFAULT_FRONT_END and features["enum"] == list(FRONT_ENDS)


def test_load_model_takes_the_front_end_and_names_a_bad_one(tmp_path):
    from whisper_spi.decode.models import load_model
    from whisper_spi.errors import ModelSpecError

    with pytest.raises(ModelSpecError, match="features 'librosa' is not one of"):
        load_model(f"dir:{tmp_path}", features="librosa")


def test_every_model_subcommand_takes_the_front_end():
    from whisper_spi.cli import build_parser

    parser = build_parser()
    for command in ("transcribe", "detect", "decode", "theory-measure", "intervene"):
        sub = parser._subparsers._group_actions[0].choices[command]
        action = next(a for a in sub._actions if a.dest == "features")
        assert action.default == DEFAULT_FRONT_END and list(action.choices) == list(FRONT_ENDS)
