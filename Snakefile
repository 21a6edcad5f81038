# whisper-spi: spectral dynamics of Whisper hallucination (arXiv 2604.08591).
# Table of contents; the rules live in workflow/rules, all logic in the whisper_spi package.
from snakemake.utils import min_version

min_version("9.0")


# The demo's config only when no --configfile is given: a user's config is the whole config
# (every key it leaves out takes the schema's default), never merged over the demo's models
# and corpus limit.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


validate_config(config)  # before any job is planned; an error names the key
RESULTS = config["results_dir"]
MODELS = config["models"]
CONDITIONS = registry.CONDITIONS
GRADED = get_graded_conditions(
    config
)  # graded stress: decoded, labelled, detected, plotted
NONSPEECH = config["nonspeech"]["conditions"]  # decoded and labelled, in no pair
N_UTTERANCES = get_n_utterances(config)
SHARDS = get_shards(N_UTTERANCES, config["corpus"]["shard_size"])
MODEL_CONFIGS = get_model_configs(config)
N_LAYERS = get_layers(MODEL_CONFIGS)
GPU_RESOURCES = get_gpu_resources(config, MODEL_CONFIGS, N_UTTERANCES)
INTERVENE_SHARDS = get_intervene_shards(config, N_UTTERANCES)
if workflow.is_main_process:  # what this run is, before any job (dry runs too)
    print(get_run_summary(config, N_UTTERANCES, N_LAYERS))


wildcard_constraints:
    model="|".join(MODELS),
    condition=get_condition_constraint(GRADED),
    shard=r"\d{3}",
    layer=r"\d+",
    baseline="|".join(registry.DECODED_BASELINES),


include: "workflow/rules/corpus.smk"
include: "workflow/rules/decode.smk"
include: "workflow/rules/taxonomy.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/levels.smk"
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
