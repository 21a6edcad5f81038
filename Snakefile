# whisper-spi: spectral dynamics of Whisper hallucination (arXiv 2604.08591).
# Table of contents; the rules live in workflow/rules, all logic in the whisper_spi package.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/corpus.smk"
include: "workflow/rules/decode.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/theory.smk"


rule all:
    default_target: True
    input:
        get_final_output(),


# A SLURM-profile run with no reachable cluster stops here, before it submits any job.
onstart:
    if workflow.executor_plugin.name == "slurm":
        from whisper_spi.cluster import slurm_problem

        if problem := slurm_problem():
            raise WorkflowError(problem)


# What the run left out (rejected audio, unreached prefix lengths), where the user looks.
def print_end_of_run():
    from whisper_spi.skipped import end_of_run_lines

    for line in end_of_run_lines(RESULTS, config["decode"]["prefix_lengths"], MODELS):
        print(line)


onsuccess:
    print_end_of_run()


onerror:
    print_end_of_run()
