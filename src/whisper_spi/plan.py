"""What a run will cost, from the models' configs and the config alone: each model's size,
the memory and time a job of a model stage asks the scheduler for, and the whole run's plan
(jobs, decodes, hours and disk per model stage).

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

import polars as pl

from whisper_spi.config import graded_conditions, intervene_models
from whisper_spi.registry import CONDITIONS

__all__ = [
    "BASELINE_COST_S",
    "COST_S",
    "cost_plan",
    "job_resources",
    "parameter_count",
    "planned_shards",
]

REFERENCE_PARAMS = 39e6  # whisper-tiny, on which COST_S was measured
# CPU seconds per decode of each baseline arm on the reference model: the fallback's bench
# figure, the others at their ratio to it measured side by side in the demo (README):
# faster-whisper's beam 5 / best_of 5 through every temperature is what costs where it
# hallucinates
BASELINE_COST_S = {
    "fallback": 1.2,
    "transcribe": 2.3,
    "faster": 5.3,
    "faster_vad": 4.0,
    "faster_silence": 6.0,
}
# CPU seconds per utterance (per arm for intervene and baselines: the dearest arm, for job
# time limits) of the reference model, rounded up
COST_S = {
    "decode": 0.6,
    "intervene": 1.5,
    "baselines": max(BASELINE_COST_S.values()),
    "theory": 7.0,
}
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


def planned_shards(n: int, size: int) -> int:
    """Shards of ``size`` that the workflow plans for ``n`` items: one at least."""
    return max(1, math.ceil(n / size))


def cost_plan(
    config: Mapping[str, Any],
    n_utterances: int,
    model_configs: Mapping[str, Mapping[str, Any]],
    mean_tokens: int = 60,
) -> pl.DataFrame:
    """One row per model stage x model: its jobs, its utterance decodes (per arm), the CPU
    hours they take at :data:`COST_S` scaled to the model (an upper bound for a GPU), and
    the disk its outputs take (the decode's spectra shards: every layer and component,
    ``mean_tokens`` rows on average; the others' transcripts are small).

    ``config`` is a validated config; ``n_utterances`` the corpus's usable utterances.
    Theory's decodes are an upper bound: it measures up to theory.n_utterances kept pairs.
    """
    corpus, ns, iv = config["corpus"], config["nonspeech"], config["intervene"]
    speech = len(CONDITIONS) * [n_utterances]
    graded = len(graded_conditions(config)) * [n_utterances]  # decoded, not intervened on
    nonspeech = len(ns["conditions"]) * [min(ns["n_items"], n_utterances)]
    decoded = speech + graded + nonspeech
    cap = iv["n_utterances"] or n_utterances
    chosen = [min(n, cap) for n in speech + nonspeech]
    arms = len(iv["methods"]) * len(iv["strengths"])
    theory = config["theory"]["n_utterances"]
    theory_n = n_utterances if theory is None else min(theory, n_utterances)
    iv_jobs = sum(planned_shards(n, iv["shard_size"]) for n in chosen)
    baselines = len(iv["baselines"])
    per_arm = sum(BASELINE_COST_S[b] for b in iv["baselines"]) / max(baselines, 1)
    stages = {  # stage -> (jobs, decodes)
        "decode": (sum(planned_shards(n, corpus["shard_size"]) for n in decoded), sum(decoded)),
        "intervene": (iv_jobs if arms else 0, arms * sum(chosen)),
        "baselines": (iv_jobs if baselines else 0, baselines * sum(chosen)),
        "theory": (len(CONDITIONS) if theory_n else 0, len(CONDITIONS) * theory_n),
    }  # fmt: skip
    cost = {**COST_S, "baselines": per_arm}  # the configured arms' mean per decode
    prefixes = sum(config["decode"]["prefix_lengths"])
    rows = []
    for model, model_config in model_configs.items():
        n_params = parameter_count(model_config)
        d, layers = model_config["d_model"], model_config["decoder_layers"]
        # float64 singular values of the full rows and the prefixes, a float32 row mean
        per_decode = (
            layers
            * len(config["decode"]["components"])
            * (8 * (min(mean_tokens, d) + prefixes) + 4 * d)
        )
        for stage, (jobs, decodes) in stages.items():
            if stage in ("intervene", "baselines") and model not in intervene_models(config):
                jobs = decodes = 0
            rows.append(
                {
                    "stage": stage,
                    "model": model,
                    "jobs": jobs,
                    "decodes": decodes,
                    "cpu_hours": decodes * cost[stage] * n_params / REFERENCE_PARAMS / 3600,
                    "disk_gb": decodes * per_decode / 1e9 if stage == "decode" else 0.0,
                }
            )
    return pl.DataFrame(rows)
