"""Bad configuration fails before any job runs, with one message naming each bad key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from whisper_spi.config import load, validate
from whisper_spi.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

CASES = {
    "unknown key": ({"decode": {"batchsize": 4}}, r"unknown config key 'decode\.batchsize'"),
    "wrong type": ({"decode": {"batch_size": "eight"}}, r"'decode\.batch_size': 'eight' is not"),
    "missing LibriSpeech root": (
        {"corpus": {"root": "/no/such/LibriSpeech"}},
        r"'corpus\.root': directory '/no/such",
    ),
    "unknown model spec kind": ({"models": {"tiny": "onnx:tiny"}}, r"'models\.tiny': 'onnx:tiny'"),
    "empty model list": ({"models": {}}, r"'models': \{\} should be non-empty"),
    "SNR of the wrong type": (
        {"stresses": {"gaussian_noise": {"snr_db": "-3 dB"}}},
        r"'stresses\.gaussian_noise\.snr_db': '-3 dB' is not of type 'number'",
    ),
    "threshold below 0": (
        {"decode": {"hallucination_wer": -0.1}},
        r"'decode\.hallucination_wer': -0\.1 is less",
    ),
    "figure K not computed": ({"metrics": {"figure_k": 20}}, r"metrics\.figure_k \(20\)"),
}


def test_defaults_fill_every_key():
    cfg = validate({})
    assert cfg["decode"]["max_new_tokens"] == 224 and cfg["metrics"]["k"] == [10, 50]
    assert load(ROOT / "config" / "config.yaml")["models"]["tiny-en"].startswith("ct2:")


def test_paper_config_is_valid_apart_from_its_root(tmp_path):
    raw = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    for split in raw["corpus"]["splits"]:
        (tmp_path / split).mkdir()
    raw["corpus"]["root"] = str(tmp_path)
    assert set(validate(raw)["models"]) == {"tiny", "small", "large-v3-turbo"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_config_is_one_clear_error(case):
    config, message = CASES[case]
    with pytest.raises(ConfigError, match=message):
        validate(config)


# Two typos in different sections, a bad value and a cross-key rule: all in one error.
TWO_TYPOS = {
    "decode": {"batchsize": 4},
    "metrics": {"nboot": 10},
}
SEVERAL = {
    "decode": {"max_new_token": 5},
    "stresses": {"gaussian_noise": {"snr_db": "loud"}},
    "corpus": {"root": "/no/such/LibriSpeech"},
    "metrics": {"figure_k": 20},
}


def test_two_typos_are_reported_at_once():
    with pytest.raises(ConfigError) as info:
        validate(TWO_TYPOS)
    lines = str(info.value).splitlines()
    assert lines[0] == "2 config errors:"
    assert "unknown config key 'decode.batchsize'" in lines[1]
    assert "unknown config key 'metrics.nboot'" in lines[2]


def test_every_kind_of_error_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        validate(SEVERAL)
    message = str(info.value)
    assert message.startswith("4 config errors:")
    for part in ("'decode.max_new_token'", "'stresses.gaussian_noise.snr_db'",
                 "'corpus.root': directory '/no/such", "metrics.figure_k (20)"):  # fmt: skip
        assert part in message


@pytest.mark.parametrize(
    ("case", "override", "messages"),
    [
        ("wrong type", {"decode": {"batch_size": "eight"}}, ["decode.batch_size"]),
        (
            "unresolvable model",
            {"models": {"x": "ct2:no-such-whisper-package"}},
            ["ct2:no-such-whisper-package"],
        ),
        ("two typos", TWO_TYPOS, ["2 config errors", "decode.batchsize", "metrics.nboot"]),
    ],
)
def test_snakemake_stops_before_any_job(tmp_path, case, override, messages):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(override))
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    run = subprocess.run(
        [
            str(BIN / "snakemake"),
            "-n",
            "--snakefile",
            str(ROOT / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--configfile",
            str(config),
            "-j",
            "1",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert run.returncode != 0
    out = run.stdout + run.stderr
    for message in messages:
        assert message in out
    assert "Job stats" not in out and not (tmp_path / "results").exists()
