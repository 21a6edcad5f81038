"""Non-speech inputs from a folder of the user's own recordings, and varied items: every
file used in a seeded turn (none under speech/), items that are not copies, the same items
whatever the shard size, level draws, and config errors that name the key."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import soundfile as sf

from whisper_spi.config import validate
from whisper_spi.corpus import nonspeech, stress
from whisper_spi.corpus.manifest import write_manifest
from whisper_spi.corpus.stress import apply_stress, n_shards, write_stress_shard
from whisper_spi.errors import AudioError, ConfigError
from whisper_spi.io import derive_seed

SR = 16000
SEED = 11
N_UTTERANCES = 9
KEY = r"nonspeech\.environmental\.folder"


def _sound(seconds: float, sr: int, freq: float, seed: int) -> np.ndarray:
    """A tone in noise with a decaying envelope: no two files alike."""
    t = np.arange(round(seconds * sr)) / sr
    rng = np.random.default_rng(seed)
    wave = np.sin(2 * np.pi * freq * t) * np.exp(-t) + 0.1 * rng.standard_normal(t.size)
    return (0.2 * wave).astype(np.float32)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Four non-speech files (.wav and .flac, nested, two sample rates), plus what must be
    left out: a speech/ subtree, a metadata file and a hidden file."""
    root = tmp_path_factory.mktemp("sounds")
    files = {
        "noise/a.wav": (0.7, 16000, 440.0),
        "noise/deep/b.flac": (1.3, 22050, 660.0),
        "music/c.flac": (0.4, 16000, 220.0),
        "d.wav": (1.0, 8000, 330.0),
        "speech/en/s.wav": (0.5, 16000, 150.0),
        "music/speech/t.flac": (0.5, 16000, 150.0),
    }
    for i, (rel, (seconds, sr, freq)) in enumerate(files.items()):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / rel, _sound(seconds, sr, freq, i), sr)
    (root / "README.txt").write_text("not audio\n")
    (root / "noise" / ".hidden.wav").write_bytes(b"AppleDouble junk")
    return root


def _used(folder: Path) -> list[str]:
    return [str(folder.resolve() / rel) for rel in ("d.wav", "music/c.flac", "noise/a.wav")] + [
        str(folder.resolve() / "noise/deep/b.flac")
    ]


@pytest.fixture(scope="module")
def manifest_path(tmp_path_factory) -> Path:
    """Nine utterances of different lengths, as a manifest parquet."""
    tmp = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    for i in range(N_UTTERANCES):
        speaker = 300 + i
        chapter = tmp / "LS" / "test-clean" / str(speaker) / "7"
        chapter.mkdir(parents=True)
        wave = 0.1 * rng.standard_normal(round((0.6 + 0.1 * i) * SR))
        sf.write(chapter / f"{speaker}-7-0000.flac", wave.astype(np.float32), SR)
        (chapter / f"{speaker}-7.trans.txt").write_text(f"{speaker}-7-0000 WORDS\n")
    path = tmp / "manifest.parquet"
    write_manifest(tmp / "LS", ["test-clean"], None, "skip", path, tmp / "rejected.parquet")
    return path


def _write_all(manifest: Path, out: Path, size: int, params: dict, condition="environmental"):
    """Every shard of ``size`` utterances: the rows in utt_id order."""
    frames = [
        write_stress_shard(
            manifest, condition, shard, size, SEED, params, out / "audio", out / f"{shard}.pq"
        )
        for shard in range(n_shards(N_UTTERANCES, size))
    ]
    return pl.concat(frames).sort("utt_id")


def test_folder_listing_leaves_out_speech_hidden_and_other_files(folder: Path):
    listing = nonspeech.folder_recordings(folder)
    assert listing.paths == _used(folder)  # sorted by relative path
    assert (listing.speech, listing.other) == (2, 2)


def test_every_file_is_used_in_its_turn(folder: Path, manifest_path: Path, tmp_path: Path, capsys):
    table = _write_all(manifest_path, tmp_path, 3, {"folder": str(folder)})
    log = capsys.readouterr().err
    assert log.count("named 'speech'") == n_shards(N_UTTERANCES, 3)  # once per shard job
    sources = [json.loads(p)["source"] for p in table["params"]]
    paths = _used(folder)
    order = nonspeech.recording_order(SEED, len(paths))
    assert sorted(order) == list(range(len(paths)))
    assert sources == [paths[order[i % len(paths)]] for i in range(N_UTTERANCES)]
    counts = Counter(sources)
    assert set(counts) == set(paths)  # n_items >= files: every file decoded
    assert sorted(counts.values()) == [2, 2, 2, 3]
    assert len(set(sources[: len(paths)])) == len(paths)  # no repeat before all are used
    for source in sources:
        assert Path(source).is_file() and Path(source).is_relative_to(folder.resolve())
        assert "speech" not in Path(source).relative_to(folder.resolve()).parts


def test_items_are_not_copies(folder: Path, manifest_path: Path, tmp_path: Path):
    table = _write_all(manifest_path, tmp_path, N_UTTERANCES, {"folder": str(folder)})
    waves = [sf.read(p, dtype="float64")[0] for p in table["path"]]
    offsets = [json.loads(p)["offset_s"] for p in table["params"]]
    assert len(set(offsets)) == len(offsets)
    for a, b in itertools.combinations(waves, 2):
        n = min(a.size, b.size)
        a, b = a[:n] / np.sqrt(np.mean(a[:n] ** 2)), b[:n] / np.sqrt(np.mean(b[:n] ** 2))
        assert not np.allclose(a, b, atol=1e-2)


def test_same_items_whatever_the_shard_size(folder: Path, manifest_path: Path, tmp_path: Path):
    params = {"folder": str(folder), "level_range_db": [-6.0, 3.0]}
    got = {}
    for size in (1, 3):
        table = _write_all(manifest_path, tmp_path / f"size{size}", size, params)
        audio = [Path(p).read_bytes() for p in table["path"]]
        got[size] = (table.drop("path"), audio)
    assert got[1][0].equals(got[3][0]) and got[1][1] == got[3][1]


def test_default_recordings_take_turns_too():
    """The Debian packages' recordings follow the same permutation."""
    paths = nonspeech.environmental_recordings(stress.DEFAULT_PARAMS["environmental"]).paths
    wave = np.full(SR // 2, 0.1, np.float32)
    sources = [
        json.loads(apply_stress("environmental", wave, SR, f"u{i}", SEED, rank=i)[2])["source"]
        for i in range(len(paths))
    ]
    assert sorted(sources) == sorted(paths)


@pytest.mark.parametrize("level_range", [[-12.0, 6.0], [0.0, 0.0]])
@pytest.mark.parametrize("condition", ["noise_only", "environmental"])
def test_level_draws_and_realised_rms(folder: Path, condition: str, level_range: list):
    wave = (0.05 * np.random.default_rng(3).standard_normal(SR)).astype(np.float32)
    rms = np.sqrt(np.mean(wave.astype(np.float64) ** 2))
    params = {"level_range_db": level_range}
    if condition == "environmental":
        params["folder"] = str(folder)
    levels = []
    for i in range(12):
        out, gain, applied = apply_stress(condition, wave, SR, f"u{i}", SEED, params, rank=i)
        level = json.loads(applied)["level_db"]
        assert level_range[0] <= level <= level_range[1]
        realised = np.sqrt(np.mean(out.astype(np.float64) ** 2)) / gain
        assert realised == pytest.approx(rms * 10 ** (level / 20), rel=1e-4)
        levels.append(level)
    if level_range[0] < level_range[1]:
        assert len(set(levels)) == len(levels)
    else:
        assert set(levels) == {0.0}


def test_zero_level_range_leaves_noise_as_it_was():
    """[0, 0] (the default) draws the same noise as before the level existed."""
    wave = (0.05 * np.random.default_rng(4).standard_normal(SR)).astype(np.float32)
    out, _, applied = apply_stress("noise_only", wave, SR, "u", SEED)
    rng = np.random.default_rng(derive_seed(SEED, "noise_only", "u"))
    color = ["white", "pink"][rng.integers(2)]
    rms = float(np.sqrt(np.mean(wave.astype(np.float64) ** 2)))
    assert out.tobytes() == nonspeech.noise_only(wave.size, color, rms, rng=rng).wave.tobytes()
    assert json.loads(applied)["color"] == color


@pytest.mark.parametrize(
    ("content", "message"), [(b"RIFF not a wave", "cannot be used"), (None, "silent")]
)
def test_unusable_file_is_an_error_naming_it(tmp_path: Path, content, message: str):
    bad = tmp_path / "sub" / "bad.wav"
    bad.parent.mkdir()
    if content is None:
        sf.write(bad, np.zeros(SR // 4, np.float32), SR)
    else:
        bad.write_bytes(content)
    wave = np.full(SR // 2, 0.1, np.float32)
    with pytest.raises(AudioError, match=f"{message}.*bad.wav|bad.wav.*{message}"):
        apply_stress("environmental", wave, SR, "u", SEED, {"folder": str(tmp_path)}, rank=0)


def test_config_errors_name_the_key(folder: Path, tmp_path: Path):
    with pytest.raises(ConfigError, match=f"{KEY}.*does not exist"):
        validate({"nonspeech": {"environmental": {"folder": str(tmp_path / "missing")}}})
    empty = tmp_path / "no-audio"
    (empty / "speech").mkdir(parents=True)
    sf.write(empty / "speech" / "s.wav", _sound(0.2, SR, 200.0, 0), SR)
    (empty / "meta.csv").write_text("filename,category\n")
    with pytest.raises(ConfigError, match=f"{KEY}.*no audio file"):
        validate({"nonspeech": {"environmental": {"folder": str(empty)}}})
    with pytest.raises(ConfigError, match=r"nonspeech\.noise_only\.level_range_db': low 3"):
        validate({"nonspeech": {"noise_only": {"level_range_db": [3, -3]}}})
    cfg = validate({"nonspeech": {"environmental": {"folder": str(folder)}}})
    assert cfg["nonspeech"]["environmental"]["folder"] == str(folder)
    assert validate({})["nonspeech"]["environmental"]["folder"] is None
    # not decoded, not checked
    validate({"nonspeech": {"conditions": ["silence"], "environmental": {"folder": "/nope"}}})
