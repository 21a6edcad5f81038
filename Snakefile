# whisper-spi: spectral dynamics of Whisper hallucination (arXiv 2604.08591).
# Table of contents; the rules live in workflow/rules, all logic in the whisper_spi package.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


validate_config(config)  # before any job is planned; an error names the key
RESULTS = config["results_dir"]
MODELS = config["models"]
CONDITIONS = registry.CONDITIONS
NONSPEECH = config["nonspeech"]["conditions"]  # decoded and labelled, in no pair
N_UTTERANCES = get_n_utterances(config)
SHARDS = get_shards(N_UTTERANCES, config["corpus"]["shard_size"])
N_LAYERS = get_layers(config)
INTERVENE_SHARDS = get_intervene_shards(config, N_UTTERANCES)


wildcard_constraints:
    model="|".join(MODELS),
    condition="|".join([*registry.CONDITIONS, *registry.NONSPEECH]),
    method="|".join(registry.INTERVENTIONS),
    shard=r"\d{3}",
    layer=r"\d+",
    strength=r"[0-9.]+",


include: "workflow/rules/corpus.smk"
include: "workflow/rules/decode.smk"
include: "workflow/rules/taxonomy.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/detect.smk"
include: "workflow/rules/theory.smk"
include: "workflow/rules/intervene.smk"
include: "workflow/rules/mitigation.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        get_final_output(RESULTS),
        get_nonspeech_layer_metrics(RESULTS, config, N_LAYERS),


# A SLURM-profile run with no reachable cluster stops here, before it submits any job.
onstart:
    if workflow.executor_plugin.name == "slurm":
        from whisper_spi.cluster import slurm_problem

        if problem := slurm_problem():
            raise WorkflowError(problem)


# What the run left out (rejected audio, unreached prefix lengths), where the user looks.
onsuccess:
    print_end_of_run(RESULTS, config, MODELS)


onerror:
    print_end_of_run(RESULTS, config, MODELS)
