"""The non-speech inputs: digital silence or low-level noise, coloured noise, and real
recordings (the Debian sound themes, or a folder of the user's own), each of one corpus
utterance's length and (but for silence) its RMS shifted by a drawn level. Nothing is said
in them, so any transcript is a hallucination.

Randomness comes only from ``derive_seed(seed, condition, utt_id)`` and, for which recording
an item takes, from (seed, its rank among the utterances by utt_id): never from the shard
size, worker count or job order.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from whisper_spi.corpus.audio import SILENCE_PEAK, load_audio
from whisper_spi.corpus.waves import Item, Stressed, limit_peak, mono, rms_of
from whisper_spi.errors import AudioError, ConfigError, WhisperSpiError
from whisper_spi.io import derive_seed

__all__ = [
    "AUDIO_SUFFIXES",
    "RECORDINGS",
    "Recordings",
    "colored_noise",
    "environmental_item",
    "environmental_recordings",
    "folder_recordings",
    "noise_item",
    "noise_only",
    "recording",
    "recording_order",
    "recording_paths",
    "silence",
    "silent_item",
]

# Real non-speech recordings from Debian packages (installed by scripts/system-packages.sh):
# music jingles (oxygen-sounds, LGPL-3) and event sounds (sound-theme-freedesktop, CC-BY /
# CC-BY-SA / GPL); freedesktop's audio-channel-* files are speech and are left out.
RECORDINGS = {
    "oxygen-sounds": [
        "/usr/share/sounds/Oxygen-Sys-Log-In.ogg",
        "/usr/share/sounds/Oxygen-Sys-Log-In-Short.ogg",
        "/usr/share/sounds/Oxygen-Sys-Log-Out-Long.ogg",
        "/usr/share/sounds/Oxygen-Im-Phone-Ring.ogg",
    ],
    "sound-theme-freedesktop": [
        f"/usr/share/sounds/freedesktop/stereo/{name}.oga"
        for name in (
            "alarm-clock-elapsed",
            "phone-incoming-call",
            "phone-outgoing-busy",
            "camera-shutter",
            "trash-empty",
            "complete",
            "message-new-instant",
        )
    ],
}

# A folder of your own non-speech recordings (nonspeech.environmental.folder): the files
# libsndfile decodes, by suffix; none under a directory named speech (MUSAN's speech part).
AUDIO_SUFFIXES = frozenset(
    [
        ".wav",
        ".flac",
        ".ogg",
        ".oga",
        ".opus",
        ".mp3",
        ".aif",
        ".aiff",
        ".aifc",
        ".au",
        ".caf",
        ".w64",
        ".rf64",
    ]
)
SPEECH_DIR = "speech"
FOLDER_KEY = "nonspeech.environmental.folder"


def silence(n_samples: int, level_dbfs: float | None, *, rng: np.random.Generator) -> Stressed:
    """Digital zero (``level_dbfs`` None) or white noise at ``level_dbfs`` RMS re full scale."""
    if level_dbfs is None:
        return Stressed(np.zeros(n_samples, np.float32), 1.0)
    return noise_only(n_samples, "white", 10 ** (level_dbfs / 20), rng=rng)


def colored_noise(n_samples: int, color: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise: ``white`` (flat power spectrum) or ``pink`` (power ~ 1/f)."""
    white = rng.standard_normal(n_samples)
    if color == "pink":
        spectrum = np.fft.rfft(white)
        f = np.fft.rfftfreq(n_samples)
        spectrum[1:] /= np.sqrt(f[1:])  # amplitude ~ f^-1/2, so power ~ 1/f
        spectrum[0] = 0.0
        white = np.fft.irfft(spectrum, n_samples)
    elif color != "white":
        raise ConfigError(f"noise_only color must be 'white' or 'pink', got {color!r}")
    return white / rms_of(white)


def noise_only(n_samples: int, color: str, rms: float, *, rng: np.random.Generator) -> Stressed:
    """Noise with no speech in it, of realised RMS exactly ``rms``."""
    return limit_peak(colored_noise(n_samples, color, rng) * rms)


def recording(source: np.ndarray, n_samples: int, rms: float, offset: int = 0) -> Stressed:
    """A non-speech recording looped or trimmed to ``n_samples``, at RMS ``rms``, starting
    at sample ``offset`` of the recording (the loop wraps round to its start)."""
    fitted = np.resize(np.roll(mono(source, "recording"), -offset), n_samples)
    level = rms_of(fitted)
    if level == 0.0:
        raise ValueError("the recording is silent over the utterance's length")
    return limit_peak(fitted * (rms / level))


def recording_paths(packages: Sequence[str]) -> list[str]:
    """The recordings of the named Debian packages; a clear error if one is not installed."""
    unknown = sorted(set(packages) - set(RECORDINGS))
    if unknown:
        raise ConfigError(f"environmental packages {unknown} unknown; known: {sorted(RECORDINGS)}")
    paths = [path for name in packages for path in RECORDINGS[name]]
    missing = [path for path in paths if not Path(path).is_file()]
    if missing:
        raise WhisperSpiError(
            f"non-speech recording {missing[0]} not found: install the Debian packages "
            f"{' '.join(packages)} (scripts/system-packages.sh does)"
        )
    return paths


class Recordings(NamedTuple):
    """The environmental input's recordings and, for a folder, what was left out of it."""

    paths: list[str]  # in order: the packages' lists, or the folder's by relative path
    speech: int = 0  # files under a directory named speech
    other: int = 0  # hidden files and files with no audio suffix (metadata, README)


def folder_recordings(folder: str | os.PathLike) -> Recordings:
    """Every audio file under ``folder``, recursively, sorted by relative path (absolute
    paths); hidden files and those under a directory named ``speech`` are left out. A
    ConfigError naming the key if the folder does not exist or holds no such file."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise ConfigError(f"config key '{FOLDER_KEY}': directory {str(folder)!r} does not exist")
    root = root.resolve()
    found: list[Path] = []
    speech = other = 0
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or (
            path.suffix.lower() not in AUDIO_SUFFIXES
        ):
            other += 1
        elif any(part.lower() == SPEECH_DIR for part in rel.parts[:-1]):
            speech += 1
        else:
            found.append(rel)
    if not found:
        suffixes = " ".join(sorted(AUDIO_SUFFIXES))
        raise ConfigError(
            f"config key '{FOLDER_KEY}': {str(folder)!r} holds no audio file ({suffixes}) "
            f"outside directories named {SPEECH_DIR!r}"
        )
    found.sort(key=lambda rel: rel.as_posix())
    return Recordings([str(root / rel) for rel in found], speech, other)


def environmental_recordings(params: Mapping) -> Recordings:
    """The recordings of the environmental input's resolved ``params``: its folder's, or
    the Debian packages' when ``folder`` is null."""
    folder = params.get("folder")
    if folder is None:
        return Recordings(recording_paths(params["packages"]))
    return folder_recordings(folder)


@functools.lru_cache(maxsize=16)
def recording_order(seed: int, n_recordings: int) -> tuple[int, ...]:
    """The permutation of the recordings that items take in turn: item i (by rank) takes
    recording ``order[i % n]``, so none repeats before all n are used. It depends only on
    (seed, n): never on the shard size or job order."""
    rng = np.random.default_rng(derive_seed(seed, "environmental", "recording-order"))
    return tuple(int(i) for i in rng.permutation(n_recordings))


def load_recording(path: str) -> np.ndarray:
    """A recording, 16 kHz mono, its leading and trailing digital silence trimmed; an
    AudioError naming the file if it cannot be decoded or is silent."""
    try:
        wave = load_audio(path)
    except AudioError as exc:
        raise AudioError(
            f"non-speech recording cannot be used: {exc} (remove or convert it)"
        ) from None
    sound = np.flatnonzero(np.abs(wave) >= SILENCE_PEAK)
    if sound.size == 0:
        raise AudioError(f"non-speech recording is silent (peak < {SILENCE_PEAK:g}): {path}")
    return wave[sound[0] : sound[-1] + 1]


def silent_item(item: Item) -> Stressed:
    rng = item.rng()
    levels = item.params["levels_dbfs"]
    level = item.params["level_dbfs"] = levels[rng.integers(len(levels))]
    return silence(mono(item.wave).size, level, rng=rng)


def draw_level(item: Item, rng: np.random.Generator) -> float:
    """The item's level in dB re its utterance's RMS, uniform in ``level_range_db``
    (recorded as ``level_db``); [0, 0] gives exactly 0."""
    low, high = (float(v) for v in item.params["level_range_db"])
    if low > high:
        raise ConfigError(
            f"{item.condition} level_range_db must be [low, high] with low <= high, "
            f"got {[low, high]}"
        )
    level = item.params["level_db"] = float(rng.uniform(low, high))
    return level


def noise_item(item: Item) -> Stressed:
    wave, rng = mono(item.wave), item.rng()
    colors = item.params["colors"]
    color = item.params["color"] = colors[rng.integers(len(colors))]
    noise = colored_noise(wave.size, color, rng)  # drawn before the level: [0, 0] as before
    return limit_peak(noise * (rms_of(wave) * 10 ** (draw_level(item, rng) / 20)))


def environmental_item(item: Item) -> Stressed:
    wave, rng = mono(item.wave), item.rng()
    paths = item.recordings
    if paths is None:
        paths = environmental_recordings(item.params).paths
    if item.rank is None:
        index = int(rng.integers(len(paths)))
    else:
        index = recording_order(item.seed, len(paths))[item.rank % len(paths)]
    path = item.params["source"] = paths[index]
    source = load_recording(path)
    offset = int(rng.integers(source.size))
    level_db = draw_level(item, rng)
    window = np.resize(np.roll(source, -offset), wave.size)
    if np.abs(window).max() < SILENCE_PEAK:
        offset = 0  # a silent stretch inside the recording: start at its first sound
    item.params["offset_s"] = offset / item.sr
    return recording(source, wave.size, rms_of(wave) * 10 ** (level_db / 20), offset)
