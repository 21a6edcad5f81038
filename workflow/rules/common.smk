# Workflow-side helpers: pure functions of what they are given (config, paths, the plan), so
# tests/test_common.py can import this file as a Python module. The Snakefile calls them.
import json
import math
import os  # the rules' params use os.path
import shlex

from snakemake.exceptions import WorkflowError
from snakemake.io import expand, report

from whisper_spi import config as spi_config
from whisper_spi import registry
from whisper_spi.analysis.figures import FIGURES
from whisper_spi.analysis.options import stage_options
from whisper_spi.captions import caption_file
from whisper_spi.corpus.manifest import list_utterances
from whisper_spi.errors import WhisperSpiError
from whisper_spi.decode.models import model_config
from whisper_spi.plan import job_resources, parameter_count, planned_shards
from whisper_spi.schemas import result_path

# Job priorities (the schedulers start the highest first): the cheap jobs that open others
# (stress, taxonomy, pairs, detect, intervene_fit) as soon as they can run, then the theory's
# model jobs, which wait on the pairs and would otherwise run last of all. Everything else
# stays level, so the light jobs run between the model jobs: held back, they wait in the
# ready queue, whose input files Snakemake stats at every scheduling round (in the demo that
# doubled its own CPU time and cost a minute of wall time, issue 28).
PRIORITY = {"gate": 20, "theory": 10}


def validate_config(config):
    """Validate ``config`` in place (defaults filled, keys in the schema's order: params must
    not depend on YAML key order); an error names the key."""
    try:
        validated = spi_config.validate(config)
    except WhisperSpiError as exc:
        raise WorkflowError(str(exc)) from None
    config.clear()
    config.update(validated)


# The plan is known at parse time, so `snakemake -n` sees every job.
def get_n_utterances(config):
    """The corpus's utterances (the one listing of the corpus a parse makes)."""
    corpus = config["corpus"]
    try:
        return len(list_utterances(corpus["root"], corpus["splits"], corpus["limit"]))
    except WhisperSpiError as exc:
        raise WorkflowError(str(exc)) from None


def get_run_summary(config, n_utterances, layers):
    """The resolved run in a few lines: the models with their decoder depth, the corpus
    (root, splits, limit) and how many utterances it holds."""
    corpus = config["corpus"]
    models = "\n".join(
        f"  {name}: {spec} ({layers[name]} decoder layers)"
        for name, spec in config["models"].items()
    )
    limit = "every utterance" if corpus["limit"] is None else f"limit {corpus['limit']}"
    return (
        f"whisper-spi: models\n{models}\n"
        f"whisper-spi: corpus {corpus['root']} splits {', '.join(corpus['splits'])} "
        f"({limit}): {n_utterances} utterances; results in {config['results_dir']}\n"
        f"whisper-spi: decode on {config['decode']['device']}, {config['decode']['features']}"
        " log-mel front end"
    )


def get_shards(n, shard_size):
    """Shard names ("000", ...) of ``n`` items in blocks of ``shard_size`` (one at least)."""
    return [f"{i:03d}" for i in range(planned_shards(n, shard_size))]


def get_model_configs(config):
    """model -> its config.json (as a dict), read once at parse time."""
    try:
        return {
            m: model_config(spec, config["model_cache"])
            for m, spec in config["models"].items()
        }
    except WhisperSpiError as exc:
        raise WorkflowError(str(exc)) from None


def get_layers(model_configs):
    """model -> its decoder's layer count."""
    return {m: int(c["decoder_layers"]) for m, c in model_configs.items()}


def get_job_items(config, stage, n_utterances):
    """Utterances one job of a model ``stage`` decodes (times its arms, for intervene)."""
    if stage == "decode":
        return config["corpus"]["shard_size"]
    if stage == "theory":
        return config["theory"]["n_utterances"] or n_utterances
    items = config["intervene"]["shard_size"]
    if stage == "baselines":
        return items * len(config["intervene"]["baselines"])
    return items * len(get_intervene_arms(config)) if stage == "intervene" else items


def get_corpus_file(config):
    """corpus.root when it is a manifest file (editing it reruns the corpus rule), else none."""
    root = config["corpus"]["root"]
    return [root] if os.path.isfile(root) else []


def get_log(results, rule, name):
    """The log of one job: <results>/logs/<rule>/<name>.log (``name`` may hold wildcards)."""
    return f"{results}/logs/{rule}/{name}.log"


def get_benchmark(results, rule, name):
    return f"{results}/benchmarks/{rule}/{name}.jsonl"


def get_stress_params(config, condition):
    """The stress's parameters as JSON (clean has none; a graded condition's level is in
    its name). Its other levels are left out: adding one reruns no other level's jobs.
    """
    if condition in registry.NONSPEECH:
        return json.dumps(config["nonspeech"][condition], sort_keys=True)
    stress, level = registry.split_condition(condition)
    params = {
        k: v for k, v in config["stresses"].get(stress, {}).items() if k != "levels"
    }
    if level is not None:
        key = registry.GRADED_PARAM[stress]
        params[key] = type(params[key])(level)  # n_speakers stays an integer
    return json.dumps(params, sort_keys=True)


def get_graded_conditions(config):
    """The graded stress's extra conditions (<stress>@<level>), mildest first."""
    return spi_config.graded_conditions(config)


def get_condition_constraint(graded):
    """The {condition} wildcard's regex: every registered condition and the graded ones."""
    import re

    names = [*registry.CONDITIONS, *registry.NONSPEECH, *graded]
    return "|".join(re.escape(name) for name in names)


def get_stress_limit(config, condition):
    """Utterances a stress shard may draw from (0 = all): non-speech takes nonspeech.n_items."""
    return config["nonspeech"]["n_items"] if condition in registry.NONSPEECH else 0


def get_condition_shards(config, shards, condition):
    """The shards of ``condition``: all of them, or for a non-speech input those its
    nonspeech.n_items items fill."""
    if condition not in registry.NONSPEECH:
        return shards
    return shards[
        : math.ceil(config["nonspeech"]["n_items"] / config["corpus"]["shard_size"])
    ]


def get_decode_flags(config):
    """The boolean decode options as CLI switches."""
    switches = {"--center": "center", "--include-prompt": "include_prompt"}
    return " ".join(flag for flag, key in switches.items() if config["decode"][key])


# Shell fragments the model-loading rules share; Snakemake fills them in, so each rule's
# command (and its recorded code) stays the same text.
def get_model_args(config):
    """The model, its cache, device and front end, and the condition decoded."""
    return (
        " --model {params.spec:q} --cache={params.cache:q} --condition {wildcards.condition}"
        f" --device {config['decode']['device']} --features {config['decode']['features']}"
    )


def get_stress_args():
    """The audio decoded: the condition's stress manifests, and the corpus's."""
    return " --stress-manifest {input.stress:q} --corpus-manifest {input.corpus:q}"


def get_decode_args():
    """The decode options every decoding rule passes (decode, intervene, fallback)."""
    return (
        " --threads {threads} --dtype {params.opts[dtype]}"
        " --batch-size {params.opts[batch_size]}"
        " --max-new-tokens {params.opts[max_new_tokens]}"
        " --hallucination-wer {params.opts[hallucination_wer]}"
    )


def get_gpu_resources(config, model_configs, n_utterances):
    """``resources(stage, model=None)``: a GPU job's resources, one GPU (the profiles map it
    to the machine or to sbatch) and memory (MB) and time (min) for the job's model
    (``model``, else the {model} wildcard) and its utterances (:func:`get_job_items`;
    whisper_spi.plan.job_resources), growing with each retry.

    A run with ``decode.device: cpu`` asks for no GPU (its jobs never use one): its model
    jobs are limited by their ``threads`` and the cores alone, so two one-thread jobs share
    a 2-core machine rather than queueing for a GPU slot it does not have."""

    def resources(stage, model=None):
        items = get_job_items(config, stage, n_utterances)

        def need(wc, attempt, which):
            n_params = parameter_count(model_configs[model or wc.model])
            return attempt * job_resources(stage, n_params, items)[which]

        gpu = {} if config["decode"]["device"] == "cpu" else {"gpu": 1}
        return {
            **gpu,
            "mem_mb": lambda wc, attempt: need(wc, attempt, 0),
            "runtime": lambda wc, attempt: need(wc, attempt, 1),
        }

    return resources


def get_metric_options(config, stage):
    """The metric options ``stage`` depends on (whisper_spi.analysis.options.STAGES), as
    JSON for the CLI's --options: a changed option reruns exactly the stages it affects.
    """
    return stage_options(config["metrics"], stage)


def get_definition_args(config):
    """What counts as a hallucination (config hallucination.*, decode.hallucination_wer) as
    CLI flags: every rule that decides it (pairs, detect, intervene_fit, mitigation) passes
    these to whisper_spi.taxonomy.labels.hallucination_expr, so changing it reruns them all.
    """
    h = config["hallucination"]
    return (
        f"--definition {h['definition']} --her-threshold {h['her_threshold']}"
        f" --threshold {config['decode']['hallucination_wer']}"
    )


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
        result_path(results, "spectra"),
        model=model,
        condition=conditions,
        shard=shards,
        layer=layers,
    )


def get_transcripts(results, shards, model, conditions):
    return expand(
        result_path(results, "transcripts"),
        model=model,
        condition=conditions,
        shard=shards,
    )


def get_decoded_conditions(config):
    """Every condition decoded: clean, the stresses and the non-speech inputs."""
    return [*registry.CONDITIONS, *config["nonspeech"]["conditions"]]


def get_labelled_transcripts(results, config, shards, model, graded=()):
    """Every transcript of one model (the taxonomy labels them, the mitigation table reads
    them): speech and non-speech conditions, each on its own shards, and the ``graded``
    conditions."""
    return [
        path
        for c in [*get_decoded_conditions(config), *graded]
        for path in get_transcripts(
            results, get_condition_shards(config, shards, c), model, [c]
        )
    ]


def get_mix_manifests(results, shards, graded):
    """The stress manifests of speaker_mix at every level (the taxonomy's partners)."""
    mixes = [
        c for c in ["speaker_mix", *graded] if c.partition("@")[0] == "speaker_mix"
    ]
    return expand(
        result_path(results, "stress_manifest"), condition=mixes, shard=shards
    )


def get_levels_inputs(results, shards, n_layers, graded, model_names):
    """The levels rule's inputs: every model's transcripts and final-layer metrics of clean
    and every stress at every level, and its taxonomy labels."""
    conditions = [*registry.CONDITIONS, *graded]
    return {
        "transcripts": [
            p
            for m in model_names
            for p in get_transcripts(results, shards, m, conditions)
        ],
        "metrics": [
            result_path(
                results, "layer_metrics", model=m, condition=c, layer=n_layers[m] - 1
            )
            for m in model_names
            for c in conditions
        ],
        "labels": [result_path(results, "taxonomy", model=m) for m in model_names],
    }


def get_markdown(path):
    """The Markdown the CLIs write beside a table's CSV."""
    return os.path.splitext(path)[0] + ".md"


def get_tables(results, names):
    """Each table's CSV (its contract's path), then its Markdown."""
    csvs = [result_path(results, name) for name in names]
    return [p for csv in csvs for p in (csv, get_markdown(csv))]


def get_report(path, caption, category, **kwargs):
    """``path`` flagged for the Snakemake report, with a caption of whisper_spi.captions."""
    return report(path, caption=caption_file(caption), category=category, **kwargs)


def get_taxonomy_options(config):
    """The taxonomy's thresholds as JSON for --options (bag_top is the summary's: changing
    it must not relabel)."""
    opts = {k: v for k, v in config["taxonomy"].items() if k != "bag_top"}
    return json.dumps(opts, sort_keys=True)


def get_theory_options(config):
    """The theory stage's measurement options as JSON for --options (n_boot is the
    summary's: changing it must not remeasure)."""
    opts = {k: v for k, v in config["theory"].items() if k != "n_boot"}
    return json.dumps(opts, sort_keys=True)


def get_nonspeech_layer_metrics(results, config, n_layers):
    """The non-speech inputs' layer metrics: computed for every layer, read by no table."""
    return get_all_layer_metrics(results, n_layers, config["nonspeech"]["conditions"])


def get_all_layer_metrics(results, n_layers, conditions):
    return [
        result_path(results, "layer_metrics", model=m, condition=c, layer=layer)
        for m in n_layers
        for c in conditions
        for layer in range(n_layers[m])
    ]


def get_pooled(results, config, n_layers, kind):
    """Every (model, layer)'s pooled output of ``kind`` (cells or profile); none when
    metrics.pooled is off."""
    if not config["metrics"]["pooled"]:
        return []
    name = {"cells": "pooled_cells", "profile": "pooled_profile"}[kind]
    return [
        result_path(results, name, model=m, layer=layer)
        for m in n_layers
        for layer in range(n_layers[m])
    ]


def get_intervene_shards(config, n_speech):
    """condition -> the intervention stage's shards, for every decoded condition:
    intervene.n_utterances (or every one of the ``n_speech`` utterances; a non-speech input
    has nonspeech.n_items) in blocks of intervene.shard_size."""
    iv = config["intervene"]
    out = {}
    for condition in get_decoded_conditions(config):
        n = (
            config["nonspeech"]["n_items"]
            if condition in registry.NONSPEECH
            else n_speech
        )
        if iv["n_utterances"] is not None:
            n = min(n, iv["n_utterances"])
        out[condition] = get_shards(n, iv["shard_size"])
    return out


def get_stress_inputs(results, config, shards, condition):
    """The stress manifests and audio directories of ``condition`` (its own shards)."""
    shards = get_condition_shards(config, shards, condition)
    return {
        "stress": expand(
            result_path(results, "stress_manifest"), condition=condition, shard=shards
        ),
        "audio": expand(
            result_path(results, "stress_audio"), condition=condition, shard=shards
        ),
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


def get_intervene_layer_args(config, n_layers, model):
    return " ".join(map(str, get_intervene_layers(config, n_layers, model)))


def get_intervene_arms(config):
    """(method, strength) of every intervention arm, in the one order of its job's outputs."""
    iv = config["intervene"]
    return [(m, s) for m in iv["methods"] for s in get_strengths(config)]


def get_intervene_outputs(results, config):
    """An intervention job's outputs: one file per arm (model, condition, shard wildcards)."""
    return [
        result_path(results, "mitigation_transcripts", method=m, strength=s)
        for m, s in get_intervene_arms(config)
    ]


def get_intervene_arm_args(config):
    arms = get_intervene_arms(config)
    return f"--method {' '.join(m for m, _ in arms)} --strength {' '.join(s for _, s in arms)}"


def get_intervene_inputs(results, config, wc):
    """project's subspaces and the detector's folds (the other interventions need neither)."""
    if "project" not in config["intervene"]["methods"]:
        return {}
    return {
        "subspaces": result_path(results, "subspaces", model=wc.model),
        "oof": result_path(results, "detect_oof", model=wc.model),
    }


def get_intervene_flags(config, input):
    if "project" not in config["intervene"]["methods"]:
        return ""
    return f"--subspaces {shlex.quote(input.subspaces)} --oof {shlex.quote(input.oof)}"


def get_strengths(config):
    """intervene.strengths as path components (0.5, 1)."""
    return [f"{s:g}" for s in config["intervene"]["strengths"]]


def get_mitigated(results, config, shards_by_condition, model):
    """Every intervention x strength and decoded baseline of ``model``, on every decoded
    condition (``shards_by_condition``: :func:`get_intervene_shards`): on a non-speech input
    an intervention or a gate should leave nothing."""
    iv = config["intervene"]
    out = []
    for condition, shards in shards_by_condition.items():
        out += expand(
            result_path(results, "mitigation_transcripts"),
            model=model,
            method=iv["methods"],
            strength=get_strengths(config),
            condition=condition,
            shard=shards,
        )
        out += expand(
            result_path(results, "baseline_transcripts"),
            model=model,
            baseline=iv["baselines"],
            condition=condition,
            shard=shards,
        )
    return out


def get_report_sections(results, config):
    """(title, table CSV, figure PNG) of the report's sections beyond the paper."""

    def at(name, /, **wildcards):
        return result_path(results, name, **wildcards)

    models = config["models"]
    sections = [
        (
            f"Hallucination detection: {m}",
            at("detect_results", model=m),
            at("roc_png", model=m),
        )
        for m in models
    ]
    sections += [
        (f"Detection by hallucination type: {m}", at("detect_by_type", model=m), None)
        for m in models
    ]
    sections.append(
        (
            "Hallucination types",
            at("taxonomy_counts"),
            at("figure_png", name="taxonomy"),
        )
    )
    if config["nonspeech"]["conditions"]:
        sections += [
            ("Non-speech inputs", at("nonspeech_rate"), None),
            ("Bag of hallucinations", at("bag_of_hallucinations"), None),
        ]
    if get_graded_conditions(config):
        sections.append(
            ("Graded stress", at("levels"), at("figure_png", name="levels"))
        )
    if config["theory"]["n_utterances"] != 0:  # null = every kept pair
        sections.append(
            (
                "Theorem 1, measured",
                at("theory_table"),
                at("figure_png", name="theory_phase"),
            )
        )
    if config["intervene"]["methods"] or config["intervene"]["baselines"]:
        sections += [
            (
                f"Mitigation: {m}",
                at("mitigation_summary", model=m),
                at("dose_response_png", model=m),
            )
            for m in spi_config.intervene_models(config)
        ]
        sections.append(
            (
                "Mitigation vs the baselines users run",
                at("mitigation_verdict"),
                at("tradeoff_png"),
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


def get_findings_input(results, config, name):
    """The report's findings read ``name`` (theory_table or mitigation) when its stage runs:
    [its path], else []."""
    iv = config["intervene"]
    runs = {
        "theory_table": config["theory"]["n_utterances"] != 0,
        "mitigation": bool(iv["methods"] or iv["baselines"]),
    }
    return [result_path(results, name)] if runs[name] else []


def get_report_extra_args(results, config):
    return " ".join(
        f"--extra {shlex.quote(t)} {shlex.quote(c)} {shlex.quote(p or '-')}"
        for t, c, p in get_report_sections(results, config)
    )


def get_final_output(results):
    return [result_path(results, "report")]


def print_end_of_run(results, config, models):
    """What the run left out (rejected audio, unreached prefix lengths), one line each."""
    from whisper_spi.skipped import end_of_run_lines

    for line in end_of_run_lines(results, config["decode"]["prefix_lengths"], models):
        print(line)
