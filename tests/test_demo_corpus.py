"""The embedded demo corpus is clean speech Whisper understands: tiny.en WER <= 15 %."""

from __future__ import annotations

import jiwer
import pytest

from whisper_spi.corpus.audio import load_audio
from whisper_spi.corpus.manifest import build_manifest
from whisper_spi.decode.loop import transcribe
from whisper_spi.text import normalize

pytestmark = pytest.mark.slow


def test_demo_corpus_shape():
    manifest, rejected = build_manifest("demo", ["test-clean"])
    assert rejected.height == 0
    assert manifest.height >= 40 and manifest["speaker"].n_unique() >= 7
    assert manifest["duration_s"].min() >= 3.0 and manifest["duration_s"].max() <= 12.0


def test_demo_corpus_clean_wer_with_tiny_en(tiny_en):
    manifest, _ = build_manifest("demo", ["test-clean"])
    waves = [load_audio(p) for p in manifest["path"]]
    hyps = [d.text for d in transcribe(tiny_en, waves, batch_size=8)]
    refs = [normalize(t) for t in manifest["text"]]
    # corpus-level WER: total errors over total reference words, as jiwer computes on lists
    wer = jiwer.wer(refs, [normalize(h) for h in hyps])
    assert wer <= 0.15, wer
