# The mitigation tables: every intervention, strength and Whisper mitigation against the plain
# decode, per model, then across models.
rule mitigation:
    input:
        transcripts=lambda wc: get_labelled_transcripts(
            RESULTS, config, SHARDS, wc.model
        ),
        mitigated=lambda wc: get_mitigated(RESULTS, config, INTERVENE_SHARDS, wc.model),
        stress=expand(rules.stress.output.manifest, condition=CONDITIONS, shard=SHARDS),
        corpus=rules.corpus.output.manifest,
    output:
        table=result_path(RESULTS, "model_mitigation"),
        summary=result_path(RESULTS, "mitigation_summary"),
        png=result_path(RESULTS, "dose_response_png"),
        html=result_path(RESULTS, "dose_response_html"),
    log:
        get_log(RESULTS, "mitigation", "{model}"),
    benchmark:
        get_benchmark(RESULTS, "mitigation", "{model}")
    conda:
        "../../envs/cpu.yaml"
    params:
        definition=get_definition_args(config),
        seed=config["seed"],
        n_boot=config["intervene"]["n_boot"],
        out_dir=lambda wc, output: os.path.dirname(output.table),
    shell:
        "whisper-spi mitigation --model-name {wildcards.model}"
        " --transcripts {input.transcripts:q} --mitigated {input.mitigated:q}"
        " --stress-manifests {input.stress:q} --corpus-manifest {input.corpus:q}"
        " {params.definition} --seed {params.seed}"
        " --n-boot {params.n_boot} --out-dir {params.out_dir:q}"
        " > {log:q} 2>&1"


rule mitigation_summary:
    input:
        expand(rules.mitigation.output.table, model=spi_config.intervene_models(config)),
    output:
        table=get_report(result_path(RESULTS, "mitigation"), "mitigation", "Mitigation"),
        markdown=get_markdown(result_path(RESULTS, "mitigation")),
        verdict=result_path(RESULTS, "mitigation_verdict"),
        png=get_report(result_path(RESULTS, "tradeoff_png"), "tradeoff", "Mitigation"),
        html=result_path(RESULTS, "tradeoff_html"),
    log:
        get_log(RESULTS, "mitigation_summary", "mitigation_summary"),
    conda:
        "../../envs/cpu.yaml"
    params:
        out_dir=lambda wc, output: os.path.dirname(output.table),
    shell:
        "whisper-spi mitigation-summary --tables {input:q} --out-dir {params.out_dir:q}"
        " > {log:q} 2>&1"
