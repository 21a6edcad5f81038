# Theorem 1's quantities measured on the real decoders (a GPU stage), and their summary.
rule theory_measure:
    input:
        stress=lambda wc: expand(
            rules.stress.output.manifest, condition=wc.condition, shard=SHARDS
        ),
        audio=lambda wc: expand(
            rules.stress.output.audio, condition=wc.condition, shard=SHARDS
        ),
        pairs=rules.pairs.output.pairs,
        transcripts=lambda wc: get_transcripts(
            RESULTS, SHARDS, wc.model, [wc.condition]
        ),
    output:
        result_path(RESULTS, "theory_measurements"),
    log:
        get_log(RESULTS, "theory_measure", "{model}/{condition}"),
    benchmark:
        get_benchmark(RESULTS, "theory_measure", "{model}/{condition}")
    priority: PRIORITY["theory"]
    conda:
        "../../envs/gpu.yaml"
    threads: config["decode"]["threads"]
    resources:
        **GPU_RESOURCES("theory"),
    params:
        spec=lambda wc: MODELS[wc.model],
        cache=config["model_cache"] or "",
        opts=get_theory_options(config),
        seed=config["seed"],
    shell:
        "whisper-spi theory-measure --model-name {wildcards.model}"
        + get_model_args(config)
        + " --stress-manifests {input.stress:q} --pairs {input.pairs:q}"
        " --transcripts {input.transcripts:q} --options {params.opts:q}"
        " --seed {params.seed} --threads {threads} --out {output:q}"
        " > {log:q} 2>&1"


rule theory_summary:
    input:
        expand(rules.theory_measure.output, model=MODELS, condition=CONDITIONS),
    output:
        table=get_report(result_path(RESULTS, "theory_table"), "theory_table", "Theory"),
        markdown=get_markdown(result_path(RESULTS, "theory_table")),
        html=result_path(RESULTS, "figure_html", name="theory_phase"),
        png=get_report(
            result_path(RESULTS, "figure_png", name="theory_phase"),
            "theory_phase",
            "Theory",
        ),
    log:
        get_log(RESULTS, "theory_summary", "theory_summary"),
    conda:
        "../../envs/cpu.yaml"
    params:
        seed=config["seed"],
        n_boot=config["theory"]["n_boot"],
        out_dir=lambda wc, output: os.path.dirname(output.table),
        stem=lambda wc, output: os.path.splitext(output.html)[0],
    shell:
        "whisper-spi theory-summary --measurements {input:q}"
        " --seed {params.seed} --n-boot {params.n_boot}"
        " --out-dir {params.out_dir:q} --figure {params.stem:q}"
        " > {log:q} 2>&1"
