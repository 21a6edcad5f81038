"""What a run will cost, from the models' configs and the config alone: each model's size,
and the memory and time a job of a model stage asks the scheduler for.

Per-utterance costs are CPU seconds of a tiny-sized model (39 M parameters) measured on 2
cores by the benches (bench/bench_decode.py, bench/bench_intervene.py, bench/bench_theory.py,
the README has their tables), scaled linearly with the parameter count: an upper bound for a
GPU node, where the same work runs faster. A job that still runs out is resubmitted with
twice, then three times, the memory and time (profiles/slurm: ``retries``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["COST_S", "job_resources", "parameter_count"]

REFERENCE_PARAMS = 39e6  # whisper-tiny, on which COST_S was measured
# CPU seconds per utterance (per arm for intervene) of the reference model, rounded up
COST_S = {"decode": 0.6, "intervene": 1.5, "fallback": 1.2, "theory": 7.0}
BASE_MB = 2500  # python, torch and the libraries, audio and spectra of one batch
BASE_MIN = 10  # start-up, model loading, writing


def parameter_count(config: Mapping[str, Any]) -> int:
    """Parameters of a WhisperForConditionalGeneration with ``config`` (a config.json as a
    dict): convolutions, positions, attention (no key bias), layer norms, FFN and the token
    embedding, whose output projection is tied to it."""
    d, v, mels = config["d_model"], config["vocab_size"], config["num_mel_bins"]
    attn = 4 * d * d + 3 * d

    def ffn(width: int) -> int:
        return 2 * d * width + width + d

    encoder = (
        mels * d * 3 + d + d * d * 3 + d  # the two convolutions
        + config["max_source_positions"] * d
        + config["encoder_layers"] * (attn + 4 * d + ffn(config["encoder_ffn_dim"]))
        + 2 * d
    )  # fmt: skip
    decoder = (
        v * d + config["max_target_positions"] * d
        + config["decoder_layers"] * (2 * attn + 6 * d + ffn(config["decoder_ffn_dim"]))
        + 2 * d
    )  # fmt: skip
    return encoder + decoder


def job_resources(stage: str, n_params: int, n_items: int) -> tuple[int, int]:
    """(memory in MB, wall time in minutes) of one job of ``stage`` (a key of
    :data:`COST_S`) decoding ``n_items`` utterances (times arms) with a model of ``n_params``
    parameters: the weights three times over (loading, the model, conversion or the
    optimizer's copies), and the measured per-utterance cost scaled to the model's size."""
    weights_mb = 4 * n_params / 2**20
    minutes = n_items * COST_S[stage] * n_params / REFERENCE_PARAMS / 60
    return math.ceil(BASE_MB + 3 * weights_mb), math.ceil(BASE_MIN + minutes)
