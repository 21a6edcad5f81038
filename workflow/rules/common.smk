# Workflow-side helpers: config validation and the DAG's shape. Pure functions over config.
import json
import math
import os
import shlex

from snakemake.exceptions import WorkflowError

from whisper_spi import config as spi_config
from whisper_spi.corpus import list_utterances
from whisper_spi.errors import WhisperSpiError
from whisper_spi.models import decoder_layers

# Validate (and fill defaults) before any job is planned; errors name the key.
try:
    _validated = spi_config.validate(config)
except WhisperSpiError as exc:
    raise WorkflowError(str(exc)) from None
config.clear()  # refill in the schema's key order: params must not depend on YAML key order
config.update(_validated)

RESULTS = config["results_dir"]
CONDITIONS = spi_config.CONDITIONS
MODELS = config["models"]


def _plan():
    """Shards and per-model layer counts, known at parse time so `snakemake -n` sees all jobs."""
    try:
        ids = list_utterances(
            config["corpus"]["root"],
            config["corpus"]["splits"],
            config["corpus"]["limit"],
        )
        layers = {
            m: decoder_layers(spec, config["model_cache"]) for m, spec in MODELS.items()
        }
    except WhisperSpiError as exc:
        raise WorkflowError(str(exc)) from None
    n_shards = max(1, math.ceil(len(ids) / config["corpus"]["shard_size"]))
    return [f"{i:03d}" for i in range(n_shards)], layers


SHARDS, N_LAYERS = _plan()


wildcard_constraints:
    model="|".join(MODELS),
    condition="|".join(CONDITIONS),
    shard=r"\d{3}",
    layer=r"\d+",


def get_stress_params(condition):
    """The stress's parameters as JSON (clean has none)."""
    return json.dumps(config["stresses"].get(condition, {}), sort_keys=True)


def get_decode_flags():
    """The boolean decode options as CLI switches."""
    switches = {"--center": "center", "--include-prompt": "include_prompt"}
    return " ".join(flag for flag, key in switches.items() if config["decode"][key])


# The metrics options the per-layer observables depend on; the rest (bootstrap, pooled scope,
# figures) only affect the tables, so changing them does not rerun layer_metrics.
OBSERVABLE_KEYS = (
    "k",
    "neff_power",
    "alpha_start",
    "alpha_stop",
    "alpha_method",
    "rank_tol",
    "kf_floor",
    "kf_pad_to_k",
)


def get_metric_options(keys=None):
    """The metrics config (or its ``keys``) as JSON for the CLI's --options."""
    options = {k: v for k, v in config["metrics"].items() if keys is None or k in keys}
    return json.dumps(options, sort_keys=True)


def get_spectra(wildcards):
    """Decode spectra of one model: of the rule's condition and layer if it has those
    wildcards (layer_metrics: both; pooled: the layer, every condition; detect: all)."""
    return expand(
        f"{RESULTS}/decode/{{model}}/{{condition}}/shard-{{shard}}/layer-{{layer}}.parquet",
        model=wildcards.model,
        condition=getattr(wildcards, "condition", CONDITIONS),
        shard=SHARDS,
        layer=getattr(wildcards, "layer", range(N_LAYERS[wildcards.model])),
    )


def get_transcripts(wildcards):
    return expand(
        f"{RESULTS}/decode/{{model}}/{{condition}}/shard-{{shard}}/transcripts.parquet",
        model=wildcards.model,
        condition=CONDITIONS,
        shard=SHARDS,
    )


def get_all_layer_metrics():
    return [
        f"{RESULTS}/metrics/{m}/{c}/layer-{layer}.parquet"
        for m in MODELS
        for c in CONDITIONS
        for layer in range(N_LAYERS[m])
    ]


# The metrics options of the pooled scope: changing the utterance-scope bootstrap or the
# figures does not rerun it.
POOLED_KEYS = (
    *OBSERVABLE_KEYS,
    "pooled",
    "pooled_center",
    "pooled_n_boot",
    "pooled_boot_rank",
)


def get_pooled(kind):
    """Every (model, layer)'s pooled-scope output of ``kind`` (cells or profile); none when
    metrics.pooled is off."""
    if not config["metrics"]["pooled"]:
        return []
    suffix = {"cells": "", "profile": "-profile"}[kind]
    return [
        f"{RESULTS}/pooled/{m}/layer-{layer}{suffix}.parquet"
        for m in MODELS
        for layer in range(N_LAYERS[m])
    ]


def get_report_sections():
    """(title, table CSV, figure PNG) of the report's sections beyond the paper."""
    sections = [
        (
            f"Hallucination detection: {m}",
            f"{RESULTS}/detect/{m}/results.csv",
            f"{RESULTS}/detect/{m}/roc.png",
        )
        for m in MODELS
    ]
    if config["theory"]["n_utterances"] != 0:  # null = every kept pair
        sections.append(
            (
                "Theorem 1, measured",
                f"{RESULTS}/theory/theory_table.csv",
                f"{RESULTS}/figures/theory_phase.png",
            )
        )
    return sections


def get_report_extras(wildcards):
    return [path for _, table, png in get_report_sections() for path in (table, png)]


def get_report_extra_args(wildcards):
    return " ".join(
        f"--extra {shlex.quote(t)} {shlex.quote(c)} {shlex.quote(p)}"
        for t, c, p in get_report_sections()
    )


def get_final_output():
    return [f"{RESULTS}/report.html"]
