"""An utterance as a corpus reader finds it, before its audio is checked: the one record the
LibriSpeech reader (:mod:`whisper_spi.corpus.manifest`) and the manifest-file reader
(:mod:`whisper_spi.corpus.user_manifest`) both produce, so that both go through the same
ranking and checks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Candidate:
    """One utterance found on disk, in a transcript or in a manifest row, not yet checked."""

    utt_id: str
    split: str
    speaker: str
    chapter: str
    path: Path
    text: str | None  # None: no line in the transcript file
    problem: str | None = None  # found wrong before any audio is read
    where: str | None = None  # manifest row ("line 3") it comes from; None: a LibriSpeech file


__all__ = ["Candidate"]
