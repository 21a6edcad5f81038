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
from whisper_spi.corpus.manifest import list_utterances
from whisper_spi.errors import WhisperSpiError
from whisper_spi.decode.models import decoder_layers


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
    if condition in spi_config.NONSPEECH:
        return json.dumps(config["nonspeech"][condition], sort_keys=True)
    return json.dumps(config["stresses"].get(condition, {}), sort_keys=True)


def get_stress_limit(config, condition):
    """Utterances a stress shard may draw from (0 = all): non-speech takes nonspeech.n_items."""
    return config["nonspeech"]["n_items"] if condition in spi_config.NONSPEECH else 0


def get_condition_shards(config, shards, condition):
    """The shards of ``condition``: all of them, or for a non-speech input those its
    nonspeech.n_items items fill."""
    if condition not in spi_config.NONSPEECH:
        return shards
    return shards[
        : math.ceil(config["nonspeech"]["n_items"] / config["corpus"]["shard_size"])
    ]


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


def get_decoded_conditions(config):
    """Every condition decoded: clean, the stresses and the non-speech inputs."""
    return [*spi_config.CONDITIONS, *config["nonspeech"]["conditions"]]


def get_labelled_transcripts(results, config, shards, model):
    """Every transcript of one model (the taxonomy labels them, the mitigation table reads
    them): speech and non-speech conditions, each on its own shards."""
    return [
        path
        for c in get_decoded_conditions(config)
        for path in get_transcripts(
            results, get_condition_shards(config, shards, c), model, [c]
        )
    ]


def get_taxonomy_options(config):
    """The taxonomy's thresholds as JSON for --options (bag_top is the summary's: changing
    it must not relabel)."""
    opts = {k: v for k, v in config["taxonomy"].items() if k != "bag_top"}
    return json.dumps(opts, sort_keys=True)


def get_nonspeech_layer_metrics(results, config, n_layers):
    """The non-speech inputs' layer metrics: computed for every layer, read by no table."""
    return get_all_layer_metrics(results, n_layers, config["nonspeech"]["conditions"])


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


def get_intervene_shards(config):
    """condition -> the intervention stage's shards, for every decoded condition:
    intervene.n_utterances (or every utterance; a non-speech input has nonspeech.n_items)
    in blocks of intervene.shard_size. The corpus is listed once."""
    corpus, iv = config["corpus"], config["intervene"]
    try:
        n_speech = len(
            list_utterances(corpus["root"], corpus["splits"], corpus["limit"])
        )
    except WhisperSpiError as exc:
        raise WorkflowError(str(exc)) from None
    out = {}
    for condition in get_decoded_conditions(config):
        n = (
            config["nonspeech"]["n_items"]
            if condition in spi_config.NONSPEECH
            else n_speech
        )
        if iv["n_utterances"] is not None:
            n = min(n, iv["n_utterances"])
        out[condition] = [
            f"{i:03d}" for i in range(max(1, math.ceil(n / iv["shard_size"])))
        ]
    return out


def get_stress_inputs(config, shards, condition, manifest, audio):
    """The stress manifests and audio directories of ``condition`` (its own shards), from
    the stress rule's output patterns."""
    shards = get_condition_shards(config, shards, condition)
    return {
        "stress": expand(manifest, condition=condition, shard=shards),
        "audio": expand(audio, condition=condition, shard=shards),
    }


def get_intervene_selection(config):
    """The stage's utterance selection as CLI flags."""
    iv = config["intervene"]
    n = "" if iv["n_utterances"] is None else f" --n-utterances {iv['n_utterances']}"
    return f"--shard-size {iv['shard_size']}{n}"


def get_intervene_layers(config, n_layers, model):
    """intervene.layers resolved for ``model``'s decoder (a list of layer indices)."""
    from whisper_spi.mitigation.run import layer_list

    try:
        return list(layer_list(config["intervene"]["layers"], n_layers[model]))
    except WhisperSpiError as exc:
        raise WorkflowError(str(exc)) from None


def get_intervene_inputs(results, wc):
    """project's subspaces and the detector's folds (the other interventions need neither)."""
    if wc.method != "project":
        return {}
    return {
        "subspaces": f"{results}/intervene/{wc.model}/subspace",
        "oof": f"{results}/detect/{wc.model}/oof_scores.csv",
    }


def get_intervene_flags(wc, input):
    if wc.method != "project":
        return ""
    return f"--subspaces {shlex.quote(input.subspaces)} --oof {shlex.quote(input.oof)}"


def get_strengths(config):
    """intervene.strengths as path components (0.5, 1)."""
    return [f"{s:g}" for s in config["intervene"]["strengths"]]


def get_mitigated(results, config, shards_by_condition, model):
    """Every intervention x strength and fallback decode of ``model``, on every decoded
    condition (``shards_by_condition``: :func:`get_intervene_shards`): on a non-speech input
    an intervention or a gate should leave nothing."""
    iv = config["intervene"]
    out = []
    for condition, shards in shards_by_condition.items():
        out += expand(
            f"{results}/intervene/{{model}}/{{method}}/{{strength}}/{{condition}}/shard-{{shard}}.parquet",
            model=model,
            method=iv["methods"],
            strength=get_strengths(config),
            condition=condition,
            shard=shards,
        )
        if iv["fallback"]:
            out += expand(
                f"{results}/intervene/{{model}}/fallback/{{condition}}/shard-{{shard}}.parquet",
                model=model,
                condition=condition,
                shard=shards,
            )
    return out


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
    sections += [
        (
            f"Detection by hallucination type: {m}",
            f"{results}/detect/{m}/by_type.csv",
            None,
        )
        for m in config["models"]
    ]
    sections += [
        (
            "Hallucination types",
            f"{results}/tables/taxonomy_counts.csv",
            f"{results}/figures/taxonomy.png",
        ),
    ]
    if config["nonspeech"]["conditions"]:
        sections += [
            ("Non-speech inputs", f"{results}/tables/nonspeech_rate.csv", None),
            (
                "Bag of hallucinations",
                f"{results}/tables/bag_of_hallucinations.csv",
                None,
            ),
        ]
    if config["theory"]["n_utterances"] != 0:  # null = every kept pair
        sections.append(
            (
                "Theorem 1, measured",
                f"{results}/theory/theory_table.csv",
                f"{results}/figures/theory_phase.png",
            )
        )
    if config["intervene"]["methods"] or config["intervene"]["fallback"]:
        sections += [
            (
                f"Mitigation: {m}",
                f"{results}/mitigation/{m}/summary.csv",
                f"{results}/mitigation/{m}/dose_response.png",
            )
            for m in config["models"]
        ]
        sections.append(
            (
                "Mitigation vs Whisper's fallback",
                f"{results}/mitigation/verdict.csv",
                f"{results}/mitigation/tradeoff.png",
            )
        )
    return sections


def get_report_extras(results, config):
    return [
        p
        for _, table, png in get_report_sections(results, config)
        for p in (table, png)
        if p is not None
    ]


def get_report_extra_args(results, config):
    return " ".join(
        f"--extra {shlex.quote(t)} {shlex.quote(c)} {shlex.quote(p or '-')}"
        for t, c, p in get_report_sections(results, config)
    )


def get_final_output(results):
    return [f"{results}/report.html"]


def print_end_of_run(results, config, models):
    """What the run left out (rejected audio, unreached prefix lengths), one line each."""
    from whisper_spi.skipped import end_of_run_lines

    for line in end_of_run_lines(results, config["decode"]["prefix_lengths"], models):
        print(line)
