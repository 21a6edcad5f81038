"""What every condition's implementation shares: the stressed wave with its anti-clipping
gain, the peak limit, mono and RMS, and the item (one utterance to stress) they are given."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from whisper_spi.io import derive_seed

__all__ = ["MAX_PEAK", "Item", "Stressed", "limit_peak", "mono", "rms_of"]

MAX_PEAK = 0.99


class Stressed(NamedTuple):
    wave: np.ndarray  # float32, mono
    gain: float  # anti-clipping scale applied to the whole output (1.0 = none)


def limit_peak(wave: np.ndarray) -> Stressed:
    """Scale the whole wave down to peak MAX_PEAK if it exceeds full scale 1.0."""
    wave = np.asarray(wave, dtype=np.float64)
    peak = float(np.abs(wave).max(initial=0.0))
    gain = MAX_PEAK / peak if peak > 1.0 else 1.0
    return Stressed((wave * gain).astype(np.float32), gain)


def mono(wave: np.ndarray, what: str = "wave") -> np.ndarray:
    wave = np.asarray(wave)
    if wave.ndim != 1 or wave.size == 0:
        raise ValueError(f"{what} must be a non-empty 1-D (mono) array, got shape {wave.shape}")
    return wave.astype(np.float64)


def rms_of(wave: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(wave))))


class Item(NamedTuple):
    """One utterance to stress, as the condition's implementation sees it; ``params`` is the
    resolved parameters, where an implementation records what it drew."""

    wave: np.ndarray
    sr: int
    utt_id: str
    seed: int
    condition: str
    params: dict
    partners: Mapping[str, np.ndarray]
    rank: int | None = None  # among the utterances by utt_id (environmental's recording)
    recordings: Sequence[str] | None = None  # environmental's files (None: from params)

    def rng(self) -> np.random.Generator:
        return np.random.default_rng(derive_seed(self.seed, self.condition, self.utt_id))
