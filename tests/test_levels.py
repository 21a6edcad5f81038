"""Graded stress: condition names, parameters, config checks, and the levels table's rates
and intervals on synthetic labels with a known answer."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest

from whisper_spi import config as spi_config
from whisper_spi.analysis.levels import RATE, _rates, condition_levels
from whisper_spi.analysis.options import MetricOptions
from whisper_spi.corpus.stress import apply_stress, base_condition
from whisper_spi.errors import ConfigError
from whisper_spi.registry import graded_condition, split_condition


def test_graded_names_round_trip():
    assert graded_condition("gaussian_noise", -5.0) == "gaussian_noise@-5"
    assert graded_condition("time_stretch", 1.5) == "time_stretch@1.5"
    assert graded_condition("speaker_mix", 2) == "speaker_mix@2"
    assert split_condition("gaussian_noise@-5") == ("gaussian_noise", -5.0)
    assert split_condition("gaussian_noise") == ("gaussian_noise", None)
    assert split_condition("silence") == ("silence", None)
    with pytest.raises(ValueError, match="silence"):
        split_condition("silence@3")
    with pytest.raises(ValueError, match="'gaussian_noise@loud': the level 'loud' is not"):
        split_condition("gaussian_noise@loud")


def test_graded_condition_takes_its_level_from_its_name():
    rng = np.random.default_rng(0)
    wave = rng.standard_normal(16000).astype(np.float32) * 0.1
    noisy, _, params = apply_stress("gaussian_noise@10", wave, 16000, "1-1-0000", 7, {})
    assert json.loads(params) == {"snr_db": 10.0}
    noise = noisy.astype(np.float64) - wave
    snr = 10 * math.log10(np.mean(wave.astype(np.float64) ** 2) / np.mean(noise**2))
    assert snr == pytest.approx(10.0, abs=1e-3)
    # the same noise as the paper's level, scaled: the levels differ in the parameter alone
    paper, _, _ = apply_stress("gaussian_noise", wave, 16000, "1-1-0000", 7, {"snr_db": 0.0})
    other = paper.astype(np.float64) - wave
    assert np.corrcoef(noise, other)[0, 1] == pytest.approx(1.0, abs=1e-6)
    assert base_condition("speaker_mix@2") == "speaker_mix"


def test_graded_condition_refuses_a_contradicting_parameter():
    wave = np.ones(1600, np.float32) * 0.1
    with pytest.raises(ConfigError, match="snr_db = 10"):
        apply_stress("gaussian_noise@10", wave, 16000, "u", 0, {"snr_db": 5.0})
    with pytest.raises(ConfigError, match="integer"):
        apply_stress("speaker_mix@2.5", wave, 16000, "u", 0, {})
    with pytest.raises(ConfigError, match="'reverb' is not a stress"):
        base_condition("reverb@3")
    with pytest.raises(ConfigError, match="unknown stress condition 'reverb'"):
        base_condition("reverb")


def test_config_levels_checked_and_ordered_mildest_first():
    cfg = spi_config.validate(
        {
            "stresses": {
                "gaussian_noise": {"levels": [-5, 20, 10]},
                "time_stretch": {"levels": [2.5, 1.5]},
            }
        }
    )
    assert spi_config.graded_conditions(cfg) == [
        "time_stretch@1.5",
        "time_stretch@2.5",
        "gaussian_noise@20",
        "gaussian_noise@10",
        "gaussian_noise@-5",
    ]
    with pytest.raises(ConfigError, match=r"stresses\.gaussian_noise\.levels.*0"):
        spi_config.validate({"stresses": {"gaussian_noise": {"levels": [0.0, 5]}}})
    with pytest.raises(ConfigError, match="speaker_mix.levels"):
        spi_config.validate({"stresses": {"speaker_mix": {"levels": [1]}}})


def test_condition_levels_gives_the_paper_level_its_configured_value():
    stresses = {"gaussian_noise": {"snr_db": 0.0}, "speaker_mix": {"n_speakers": 6}}
    got = condition_levels(
        ["clean", "gaussian_noise", "gaussian_noise@20", "speaker_mix@2", "silence"], stresses
    )
    assert got.rows() == [
        ("gaussian_noise", "gaussian_noise", 0.0, True),
        ("gaussian_noise@20", "gaussian_noise", 20.0, False),
        ("speaker_mix@2", "speaker_mix", 2.0, False),
    ]


def _labels(rng, p, n_speakers, per_speaker, spread):
    """Decodes whose hallucination probability varies by speaker around ``p``."""
    rows = []
    for s in range(n_speakers):
        ps = float(np.clip(p + spread * rng.standard_normal(), 0.01, 0.99))
        for u in range(per_speaker):
            rows.append((f"{s}", f"{s}-{u}", bool(rng.random() < ps)))
    speakers, utts, y = zip(*rows, strict=True)
    return pl.DataFrame(
        {
            "model": "m",
            "condition": "gaussian_noise@10",
            "speaker": speakers,
            "utt_id": utts,
            "hallucinated": y,
        }
    )


def test_rate_interval_covers_the_true_rate_when_speakers_differ():
    """Speakers differ in their rate, so an utterance bootstrap would be too narrow; the
    speaker bootstrap's 90% interval covers the population rate about 90% of the time."""
    rng = np.random.default_rng(3)
    levels = condition_levels(["gaussian_noise@10"], {})
    opts = MetricOptions(n_boot=300, ci=0.9)
    p, hits, trials = 0.4, 0, 150
    for t in range(trials):
        df = _labels(rng, p, n_speakers=20, per_speaker=8, spread=0.2)
        row = _rates(df, levels, opts, seed=t).row(0, named=True)
        assert row["quantity"] == RATE and row["n"] == 160
        assert row["ci_low"] <= row["value"] <= row["ci_high"]
        # the population rate: the clipped speaker rates' mean, near p (clipping is rare)
        hits += row["ci_low"] <= p <= row["ci_high"]
    assert 0.80 <= hits / trials <= 0.97


def test_condition_order_puts_each_level_after_its_stress_mildest_first():
    from whisper_spi.registry import condition_order

    got = condition_order(
        ["silence", "gaussian_noise@5", "gaussian_noise", "gaussian_noise@20", "clean",
         "speaker_mix@4", "speaker_mix@2", "zzz", "speaker_mix", "silence"]
    )  # fmt: skip
    assert got == ["clean", "speaker_mix", "speaker_mix@2", "speaker_mix@4", "gaussian_noise",
                   "gaussian_noise@20", "gaussian_noise@5", "silence", "zzz"]  # fmt: skip
