"""The stress functions, the mix-partner draw and the shard writer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import soundfile as sf

from whisper_spi import schemas
from whisper_spi.corpus import nonspeech, stress
from whisper_spi.corpus.manifest import write_manifest
from whisper_spi.corpus.stress import (
    apply_stress,
    clean,
    draw_mix_partners,
    gaussian_noise,
    n_shards,
    speaker_mix,
    time_stretch,
    write_stress_shard,
)
from whisper_spi.corpus.waves import MAX_PEAK
from whisper_spi.errors import ConfigError, WhisperSpiError
from whisper_spi.io import derive_seed

SR = 16000


def tone(freq: float, seconds: float, amp: float = 0.1) -> np.ndarray:
    t = np.arange(round(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def speechy(seconds: float, seed: int = 0, amp: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    envelope = np.repeat(rng.random(int(seconds * 50)), SR // 50)  # syllable-rate bursts
    return (tone(150 + 10 * seed, seconds, amp) * envelope).astype(np.float32)


def snr_db(signal: np.ndarray, noisy: np.ndarray, gain: float) -> float:
    signal = signal.astype(np.float64)
    noise = noisy.astype(np.float64) / gain - signal
    return 10 * np.log10(np.mean(signal**2) / np.mean(noise**2))


def dominant_hz(wave: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(wave.size)))
    return float(np.fft.rfftfreq(wave.size, 1 / SR)[spectrum.argmax()])


@pytest.mark.parametrize("target", [0.0, 5.0, -5.0])
def test_noise_snr_is_exact(target: float):
    wave = speechy(2.0)
    out, gain = gaussian_noise(wave, target, rng=np.random.default_rng(1))
    assert out.dtype == np.float32 and out.shape == wave.shape
    assert abs(snr_db(wave, out, gain) - target) < 0.1


def test_noise_depends_on_seed_and_utt_id_only():
    wave = speechy(1.0)
    a = apply_stress("gaussian_noise", wave, SR, "1-2-0000", seed=7)
    b = apply_stress("gaussian_noise", wave.copy(), SR, "1-2-0000", seed=7)
    c = apply_stress("gaussian_noise", wave, SR, "1-2-0001", seed=7)
    d = apply_stress("gaussian_noise", wave, SR, "1-2-0000", seed=8)
    assert a[0].tobytes() == b[0].tobytes()
    assert not np.allclose(a[0], c[0]) and not np.allclose(a[0], d[0])
    assert json.loads(a[2]) == {"snr_db": 0.0}


def test_stretch_speeds_up_by_factor_keeping_pitch():
    wave = tone(440, 3.5)
    fast, gain = time_stretch(wave, SR, factor=3.5)
    assert gain == 1.0 and fast.dtype == np.float32
    assert fast.size / (wave.size / 3.5) == pytest.approx(1.0, rel=0.01)
    assert dominant_hz(fast) == pytest.approx(440, abs=5)  # tempo changed, not pitch
    slow, _ = time_stretch(wave[:SR], SR, factor=0.5)  # below 1 slows down
    assert slow.size == pytest.approx(2 * SR, rel=0.01)


def test_stretch_is_deterministic_and_needs_rubberband(monkeypatch):
    wave = speechy(1.0)
    assert time_stretch(wave)[0].tobytes() == time_stretch(wave)[0].tobytes()
    monkeypatch.setattr(stress.shutil, "which", lambda name: None)
    with pytest.raises(WhisperSpiError, match="rubberband-cli"):
        time_stretch(wave)


def test_mix_holds_every_voice_once_at_the_target_rms():
    freqs = [300, 500, 700, 900, 1100, 1300]  # whole cycles in 1 s: clean FFT bins
    target = tone(freqs[0], 1.0, amp=0.05)
    others = [
        tone(500, 0.5, 0.2),  # shorter: looped (0.5 s holds whole cycles too)
        tone(700, 2.0, 0.01),  # longer: trimmed
        tone(900, 1.0, 0.3),
        tone(1100, 1.0, 0.07),
        tone(1300, 1.0, 0.02),
    ]
    mix, gain = speaker_mix(target, others)
    assert gain == 1.0 and mix.size == target.size
    spectrum = np.abs(np.fft.rfft(mix.astype(np.float64))) * np.sqrt(2) / mix.size
    peaks = np.flatnonzero(spectrum > 1e-3)
    assert peaks.tolist() == freqs  # exactly six voices, each once
    rms_target = np.sqrt(np.mean(target.astype(np.float64) ** 2))
    np.testing.assert_allclose(spectrum[freqs], rms_target, rtol=1e-3)


def synthetic_manifest(n_speakers: int, per_speaker: int = 3) -> pl.DataFrame:
    rows = [
        {"utt_id": f"{s}-1-{u:04d}", "speaker": str(s)}
        for s in range(100, 100 + n_speakers)
        for u in range(per_speaker)
    ]
    return pl.DataFrame(rows)


def test_partners_are_distinct_other_speakers_and_order_independent():
    manifest = synthetic_manifest(8)
    shuffled = manifest.sample(fraction=1.0, shuffle=True, seed=3)
    speaker_of = dict(manifest.select("utt_id", "speaker").iter_rows())
    draws = set()
    for utt_id in manifest["utt_id"]:
        partners = draw_mix_partners(manifest, utt_id, n_speakers=6, seed=11)
        speakers = [speaker_of[p] for p in partners]
        assert len(partners) == 5 and len(set(speakers)) == 5
        assert speaker_of[utt_id] not in speakers
        assert draw_mix_partners(shuffled, utt_id, 6, seed=11) == partners
        draws.add(tuple(partners))
    assert len(draws) > 1
    assert draw_mix_partners(manifest, "100-1-0000", 6, seed=12) != draw_mix_partners(
        manifest, "100-1-0000", 6, seed=11
    )


def test_partners_need_enough_speakers():
    with pytest.raises(ConfigError, match="needs 5 speakers other than 100"):
        draw_mix_partners(synthetic_manifest(5), "100-1-0000", n_speakers=6, seed=0)
    with pytest.raises(ConfigError, match="not in the manifest"):
        draw_mix_partners(synthetic_manifest(8), "999-1-0000", seed=0)


def test_anti_clipping_scales_down_and_records_gain():
    loud = tone(200, 1.0, amp=0.9)
    mix, gain = speaker_mix(loud, [tone(300, 1.0, 0.5)] * 5)
    assert gain < 1.0 and np.abs(mix).max() == pytest.approx(MAX_PEAK, abs=1e-6)
    unscaled = loud + 5 * tone(300, 1.0, amp=0.9)  # partners brought to the target's RMS
    np.testing.assert_allclose(mix / gain, unscaled, atol=1e-4)
    noisy, gain = gaussian_noise(loud, 0.0, rng=np.random.default_rng(0))
    assert gain < 1.0 and np.abs(noisy).max() <= MAX_PEAK + 1e-6
    assert clean(loud).gain == 1.0


def test_dispatcher_validates_condition_and_params():
    wave = speechy(1.0)
    with pytest.raises(ConfigError, match="unknown stress condition"):
        apply_stress("reverb", wave, SR, "u", 0)
    with pytest.raises(ConfigError, match="snr"):
        apply_stress("gaussian_noise", wave, SR, "u", 0, {"snr": 3})
    with pytest.raises(ValueError, match="partner waves"):
        apply_stress("speaker_mix", wave, SR, "u", 0)
    out, gain, params = apply_stress("clean", wave, SR, "u", 0)
    assert out.tobytes() == wave.tobytes() and gain == 1.0 and params == "{}"


def test_n_shards():
    assert [n_shards(n, 3) for n in (0, 1, 3, 4, 7)] == [0, 1, 1, 2, 3]
    with pytest.raises(ConfigError):
        n_shards(5, 0)


@pytest.fixture(scope="module")
def manifest_path(tmp_path_factory) -> Path:
    """Seven speakers, one utterance each, as a manifest parquet."""
    tmp = tmp_path_factory.mktemp("corpus")
    for i, speaker in enumerate(range(200, 207)):
        chapter_dir = tmp / "LS" / "test-clean" / str(speaker) / "5"
        chapter_dir.mkdir(parents=True)
        sf.write(chapter_dir / f"{speaker}-5-0000.flac", speechy(0.8 + 0.1 * i, seed=i), SR)
        (chapter_dir / f"{speaker}-5.trans.txt").write_text(f"{speaker}-5-0000 WORDS\n")
    path = tmp / "manifest.parquet"
    write_manifest(tmp / "LS", ["test-clean"], None, "skip", path, tmp / "rejected.parquet")
    return path


@pytest.mark.parametrize("condition", ["speaker_mix", "gaussian_noise", "time_stretch"])
def test_shards_are_independent_of_shard_size(manifest_path: Path, tmp_path: Path, condition: str):
    audio, tables = {}, {}
    for size in (2, 3):
        frames = []
        for shard in range(n_shards(7, size)):
            out_dir = tmp_path / f"size{size}"
            out_manifest = tmp_path / f"size{size}-shard{shard}.parquet"
            write_stress_shard(
                manifest_path, condition, shard, size, 42, None, out_dir, out_manifest
            )
            frames.append(pl.read_parquet(out_manifest))
        table = pl.concat(frames)
        assert table.columns == [c.name for c in schemas.contract("stress_manifest").cols]
        audio[size] = {
            u: Path(p).read_bytes() for u, p in table.select("utt_id", "path").iter_rows()
        }
        tables[size] = table.drop("path")
    assert len(audio[2]) == 7 and audio[2] == audio[3]
    assert tables[2].equals(tables[3])
    row = tables[2].row(0, named=True)
    assert row["seed"] == derive_seed(42, condition, row["utt_id"])
    if condition == "speaker_mix":
        partners = json.loads(row["params"])["partners"]
        assert len(partners) == 5 and row["utt_id"] not in partners


def test_shard_writer_records_gain(manifest_path: Path, tmp_path: Path):
    shard = write_stress_shard(
        manifest_path,
        "gaussian_noise",
        0,
        7,
        0,
        {"snr_db": -30.0},
        tmp_path / "loud",
        tmp_path / "loud.parquet",
    )
    assert (shard["gain"] < 1.0).all()  # 30 dB more noise than signal overflows full scale
    wave, sr = sf.read(shard["path"][0], dtype="float32")
    assert sr == SR and np.abs(wave).max() <= MAX_PEAK + 1e-4


def test_shard_past_the_end_is_empty_and_bad_indices_fail(manifest_path: Path, tmp_path: Path):
    out_dir, out = tmp_path / "shard-003", tmp_path / "shard-003.parquet"
    write_stress_shard(manifest_path, "clean", 3, 3, 0, None, out_dir, out)
    assert pl.read_parquet(out).height == 0 and out_dir.is_dir()
    for index, size in ((-1, 3), (0, 0)):
        with pytest.raises(ConfigError, match="shard"):
            write_stress_shard(manifest_path, "clean", index, size, 0, None, out_dir, out)


def _log_log_slope(wave: np.ndarray) -> float:
    """Slope of log power on log frequency, over 50-5000 Hz, from averaged periodograms."""
    segments = wave[: wave.size // 4096 * 4096].reshape(-1, 4096)
    power = (np.abs(np.fft.rfft(segments * np.hanning(4096), axis=1)) ** 2).mean(axis=0)
    f = np.fft.rfftfreq(4096, 1 / SR)
    band = (f >= 50) & (f <= 5000)
    return float(np.polyfit(np.log(f[band]), np.log(power[band]), 1)[0])


@pytest.mark.parametrize(("color", "slope"), [("white", 0.0), ("pink", -1.0)])
def test_noise_only_has_its_spectrum_and_the_utterances_rms(color: str, slope: float):
    out, gain = nonspeech.noise_only(20 * SR, color, 0.05, rng=np.random.default_rng(3))
    assert gain == 1.0 and out.size == 20 * SR
    assert np.sqrt(np.mean(out.astype(np.float64) ** 2)) == pytest.approx(0.05, rel=1e-4)
    assert _log_log_slope(out.astype(np.float64)) == pytest.approx(slope, abs=0.1)
    with pytest.raises(ConfigError, match="brown"):
        nonspeech.noise_only(SR, "brown", 0.05, rng=np.random.default_rng(3))


def test_silence_digital_zero_and_low_level():
    zero, _ = nonspeech.silence(SR, None, rng=np.random.default_rng(0))
    assert not zero.any()
    low, _ = nonspeech.silence(SR, -60.0, rng=np.random.default_rng(0))
    assert 20 * np.log10(np.sqrt(np.mean(low.astype(np.float64) ** 2))) == pytest.approx(
        -60, abs=0.01
    )


def test_recording_is_looped_or_trimmed_to_the_utterance_at_its_rms():
    source = tone(300, 0.5, amp=0.5)
    out, _ = nonspeech.recording(source, 3 * SR // 2, 0.01)
    assert out.size == 3 * SR // 2
    assert np.array_equal(out[: source.size], out[source.size : 2 * source.size])  # looped
    assert np.allclose(out[: source.size], source * (out[1] / source[1]), atol=1e-6)
    assert np.sqrt(np.mean(out.astype(np.float64) ** 2)) == pytest.approx(0.01, rel=1e-4)
    with pytest.raises(ValueError, match="silent"):
        nonspeech.recording(np.zeros(100), SR, 0.01)


@pytest.mark.parametrize("condition", ["silence", "noise_only", "environmental"])
def test_nonspeech_variant_depends_on_seed_and_utt_id_only(condition: str):
    wave = speechy(1.0)
    drawn = {}
    for utt in [f"1-2-{i:04d}" for i in range(8)]:
        a = apply_stress(condition, wave, SR, utt, seed=5)
        b = apply_stress(condition, wave.copy(), SR, utt, seed=5)
        assert a[0].tobytes() == b[0].tobytes() and a[2] == b[2]
        assert a[0].size == wave.size
        drawn[utt] = json.loads(a[2])
    variant = {"silence": "level_dbfs", "noise_only": "color", "environmental": "source"}[condition]
    assert len({str(p[variant]) for p in drawn.values()}) > 1  # both kinds occur


def test_environmental_needs_its_packages(monkeypatch):
    monkeypatch.setitem(nonspeech.RECORDINGS, "oxygen-sounds", ["/nonexistent/jingle.ogg"])
    with pytest.raises(WhisperSpiError, match="jingle.ogg.*oxygen-sounds"):
        nonspeech.recording_paths(["oxygen-sounds"])
    with pytest.raises(ConfigError, match="unknown"):
        nonspeech.recording_paths(["no-such-package"])


def test_limit_keeps_the_first_utterances_and_partners_from_all(
    manifest_path: Path, tmp_path: Path
):
    ids = sorted(pl.read_parquet(manifest_path)["utt_id"])
    first = write_stress_shard(
        manifest_path, "noise_only", 0, 2, 0, None, tmp_path / "a", tmp_path / "a.parquet", 3
    )
    second = write_stress_shard(
        manifest_path, "noise_only", 1, 2, 0, None, tmp_path / "b", tmp_path / "b.parquet", 3
    )
    assert first["utt_id"].to_list() + second["utt_id"].to_list() == ids[:3]
    # the items are the same as without the limit: only which utterances are taken changes
    full = write_stress_shard(
        manifest_path, "noise_only", 0, 2, 0, None, tmp_path / "c", tmp_path / "c.parquet"
    )
    assert full["params"].to_list() == first["params"].to_list()
