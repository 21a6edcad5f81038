# Workflow-side helpers: pure functions of what they are given (config, paths, the plan), so
# tests/test_common.py can import this file as a Python module. The Snakefile calls them.
import json
import math
import os  # the rules' params use os.path
import shlex

from snakemake.exceptions import WorkflowError
from snakemake.io import expand

from whisper_spi import config as spi_config
from whisper_spi.analysis.options import stage_options
from whisper_spi.corpus import list_utterances
from whisper_spi.errors import WhisperSpiError
from whisper_spi.models import decoder_layers


def validate_config(config):
    """Validate ``config`` in place (defaults filled, keys in the schema's order: params must
    not depend on YAML key order); an error names the key."""
    try:
        validated = spi_config.validate(config)
    except WhisperSpiError as exc:
        raise WorkflowError(str(exc)) from None
    config.clear()
    config.update(validated)


def get_plan(config):
    """(shards, per-model layer counts), known at parse time so `snakemake -n` sees all jobs."""
    corpus = config["corpus"]
    try:
        ids = list_utterances(corpus["root"], corpus["splits"], corpus["limit"])
        layers = {
            m: decoder_layers(spec, config["model_cache"])
            for m, spec in config["models"].items()
        }
    except WhisperSpiError as exc:
        raise WorkflowError(str(exc)) from None
    n_shards = max(1, math.ceil(len(ids) / corpus["shard_size"]))
    return [f"{i:03d}" for i in range(n_shards)], layers


def get_log(results, rule, name):
    """The log of one job: <results>/logs/<rule>/<name>.log (``name`` may hold wildcards)."""
    return f"{results}/logs/{rule}/{name}.log"


def get_benchmark(results, rule, name):
    return f"{results}/benchmarks/{rule}/{name}.jsonl"


def get_stress_params(config, condition):
    """The stress's parameters as JSON (clean has none)."""
    return json.dumps(config["stresses"].get(condition, {}), sort_keys=True)


def get_decode_flags(config):
    """The boolean decode options as CLI switches."""
    switches = {"--center": "center", "--include-prompt": "include_prompt"}
    return " ".join(flag for flag, key in switches.items() if config["decode"][key])


def get_metric_options(config, stage):
    """The metric options ``stage`` depends on (whisper_spi.analysis.options.STAGES), as
    JSON for the CLI's --options: a changed option reruns exactly the stages it affects.
    """
    return stage_options(config["metrics"], stage)


def get_pair_filters(config):
    """The pair filters of config ``pairs`` as CLI flags (whisper-spi pairs)."""
    p = config["pairs"]
    flags = f"--min-tokens {p['min_tokens']}"
    if p["clean_max_wer"] is not None:
        flags += f" --clean-max-wer {p['clean_max_wer']}"
    return flags


def get_spectra(results, shards, model, conditions, layers):
    """Decode spectra of one model for the given conditions and layers."""
    return expand(
        f"{results}/decode/{{model}}/{{condition}}/shard-{{shard}}/layer-{{layer}}.parquet",
        model=model,
        condition=conditions,
        shard=shards,
        layer=layers,
    )


def get_transcripts(results, shards, model, conditions):
    return expand(
        f"{results}/decode/{{model}}/{{condition}}/shard-{{shard}}/transcripts.parquet",
        model=model,
        condition=conditions,
        shard=shards,
    )


def get_all_layer_metrics(results, n_layers, conditions):
    return [
        f"{results}/metrics/{m}/{c}/layer-{layer}.parquet"
        for m in n_layers
        for c in conditions
        for layer in range(n_layers[m])
    ]


def get_pooled(results, config, n_layers, kind):
    """Every (model, layer)'s pooled output of ``kind`` (cells or profile); none when
    metrics.pooled is off."""
    if not config["metrics"]["pooled"]:
        return []
    suffix = {"cells": "", "profile": "-profile"}[kind]
    return [
        f"{results}/pooled/{m}/layer-{layer}{suffix}.parquet"
        for m in n_layers
        for layer in range(n_layers[m])
    ]


def get_report_sections(results, config):
    """(title, table CSV, figure PNG) of the report's sections beyond the paper."""
    sections = [
        (
            f"Hallucination detection: {m}",
            f"{results}/detect/{m}/results.csv",
            f"{results}/detect/{m}/roc.png",
        )
        for m in config["models"]
    ]
    if config["theory"]["n_utterances"] != 0:  # null = every kept pair
        sections.append(
            (
                "Theorem 1, measured",
                f"{results}/theory/theory_table.csv",
                f"{results}/figures/theory_phase.png",
            )
        )
    return sections


def get_report_extras(results, config):
    return [
        p
        for _, table, png in get_report_sections(results, config)
        for p in (table, png)
    ]


def get_report_extra_args(results, config):
    return " ".join(
        f"--extra {shlex.quote(t)} {shlex.quote(c)} {shlex.quote(p)}"
        for t, c, p in get_report_sections(results, config)
    )


def get_final_output(results):
    return [f"{results}/report.html"]


def print_end_of_run(results, config, models):
    """What the run left out (rejected audio, unreached prefix lengths), one line each."""
    from whisper_spi.skipped import end_of_run_lines

    for line in end_of_run_lines(results, config["decode"]["prefix_lengths"], models):
        print(line)
