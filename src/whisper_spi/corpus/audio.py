"""Reading, checking and writing audio: everything downstream sees 16 kHz mono float32.

Whisper's feature extractor expects 16 kHz mono, so every stage loads audio through
:func:`load_audio`, which downmixes and resamples whatever the source file holds.
:func:`inspect_audio` tells the corpus reader whether a file is usable at all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf

from whisper_spi.errors import AudioError
from whisper_spi.io import atomic_path

TARGET_SR = 16000
MIN_DURATION_S = 0.1
WHISPER_WINDOW_S = 30.0
# Peak below which a file counts as silent: about -80 dBFS, i.e. nothing above the
# last few bits of 16-bit PCM (dither or DC offset of an empty recording).
SILENCE_PEAK = 1e-4
# int16 full scale as libsndfile writes float to PCM_16; |x| <= 1 never overflows.
_PCM16_SCALE = 32767


@dataclass(frozen=True)
class AudioReport:
    """What :func:`inspect_audio` found in one file.

    ``problems`` make the file unusable (the corpus rejects it); ``notes`` are remarks
    about conversions the loader will apply. Sample rate, channels and duration describe
    the source file (0 when it could not be read).
    """

    path: str
    sample_rate: int = 0
    channels: int = 0
    duration_s: float = 0.0
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


class _BadAudio(Exception):
    """A file that cannot be read at all; the message is the reason, without the path."""


def _read(path: Path) -> tuple[np.ndarray, int]:
    """Read all samples as float32 of shape (frames, channels)."""
    if not path.is_file():
        raise _BadAudio("missing")
    if path.stat().st_size == 0:
        raise _BadAudio("empty file (0 bytes)")
    try:
        data, sr = sf.read(path, dtype="float32", always_2d=True)
    except sf.LibsndfileError as exc:
        raise _BadAudio(f"unreadable ({exc.error_string})") from exc  # error without the path
    except (RuntimeError, ValueError) as exc:
        raise _BadAudio(f"unreadable ({exc})") from exc
    return data, int(sr)


def resample(wave: np.ndarray, sr: int, target_sr: int = TARGET_SR) -> np.ndarray:
    """Polyphase resampling of a mono wave to ``target_sr`` (identity if already there)."""
    if sr == target_sr:
        return wave.astype(np.float32, copy=False)
    g = gcd(sr, target_sr)
    from scipy.signal import resample_poly  # slow to import; parsing the DAG needs no resampling

    return resample_poly(wave, target_sr // g, sr // g).astype(np.float32)


def inspect_audio(path: str | os.PathLike, max_duration_s: float = WHISPER_WINDOW_S) -> AudioReport:
    """Check one file: unreadable, empty, non-finite, too short or silent is a problem;
    stereo, a rate other than 16 kHz or a length past ``max_duration_s`` is a note.
    """
    path = Path(path)
    try:
        data, sr = _read(path)
    except _BadAudio as exc:
        return AudioReport(str(path), problems=(str(exc),))
    frames, channels = data.shape
    duration = frames / sr
    problems: list[str] = []
    notes: list[str] = []
    if frames == 0:
        problems.append("empty (no samples)")
    elif not np.isfinite(data).all():
        problems.append("non-finite samples (NaN or inf)")
    else:
        if duration < MIN_DURATION_S:
            problems.append(f"too short: {duration:.3f} s < {MIN_DURATION_S} s")
        peak = float(np.abs(data).max())
        if peak < SILENCE_PEAK:
            problems.append(f"silent: peak {peak:.1e} < {SILENCE_PEAK:.0e}")
    if channels > 1:
        notes.append(f"downmixed {channels} channels to mono")
    if sr != TARGET_SR:
        notes.append(f"resampled {sr} Hz to {TARGET_SR} Hz")
    if duration > max_duration_s:
        notes.append(
            f"{duration:.1f} s long: truncated to {max_duration_s:g} s (Whisper's window) at decode"
        )
    return AudioReport(str(path), sr, channels, duration, tuple(problems), tuple(notes))


def load_audio(path: str | os.PathLike, target_sr: int = TARGET_SR) -> np.ndarray:
    """Load ``path`` as a mono float32 wave at ``target_sr``.

    Channels are averaged and the rate converted with a polyphase filter. Raises
    AudioError (naming the file) if the file is unreadable, empty or holds NaN/inf.
    """
    path = Path(path)
    try:
        data, sr = _read(path)
    except _BadAudio as exc:
        raise AudioError(f"audio file {exc}: {path}") from None
    if data.shape[0] == 0:
        raise AudioError(f"audio file holds no samples: {path}")
    if not np.isfinite(data).all():
        raise AudioError(f"audio file holds NaN or inf samples: {path}")
    return np.ascontiguousarray(resample(data.mean(axis=1), sr, target_sr))


def to_pcm16(wave: np.ndarray) -> np.ndarray:
    """Quantise a float wave in [-1, 1] to int16; refuses to clip."""
    wave = np.asarray(wave)
    if wave.ndim != 1:
        raise ValueError(f"expected a mono (1-D) wave, got shape {wave.shape}")
    if not np.isfinite(wave).all():
        raise ValueError("wave holds NaN or inf samples")
    peak = float(np.abs(wave).max(initial=0.0))
    if peak > 1.0:
        raise ValueError(f"wave peak {peak:.3f} exceeds full scale 1.0; scale it down first")
    return np.round(wave.astype(np.float64) * _PCM16_SCALE).astype(np.int16)


def save_flac(path: str | os.PathLike, wave: np.ndarray, sr: int = TARGET_SR) -> None:
    """Write a mono wave (float in [-1, 1], or int16 PCM as is) as 16-bit FLAC, atomically.

    The bytes depend only on the samples (libsndfile's FLAC writer embeds no time stamp),
    so the same wave always gives the same file.
    """
    pcm = wave if np.asarray(wave).dtype == np.int16 else to_pcm16(wave)
    with atomic_path(path, suffix=".flac") as tmp:
        # The temp name ends in .flac, but say so anyway: soundfile must not guess.
        sf.write(tmp, pcm, sr, format="FLAC", subtype="PCM_16")
