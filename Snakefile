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
