# Graded stress: the hallucination rate and the deltas against each stress's level.
rule levels:
    input:
        **get_levels_inputs(RESULTS, SHARDS, N_LAYERS, GRADED, MODELS),
    output:
        table=result_path(RESULTS, "levels"),
        png=get_report(
            result_path(RESULTS, "figure_png", name="levels"), "levels", "Figures"
        ),
        html=result_path(RESULTS, "figure_html", name="levels"),
    log:
        get_log(RESULTS, "levels", "levels"),
    benchmark:
        get_benchmark(RESULTS, "levels", "levels")
    conda:
        "../../envs/cpu.yaml"
    params:
        stresses=json.dumps(config["stresses"], sort_keys=True),
        definition=get_definition_args(config),
        min_tokens=config["pairs"]["min_tokens"],
        options=get_metric_options(config, "levels"),
        seed=config["seed"],
        stem=lambda wc, output: os.path.splitext(output.png)[0],
    shell:
        "whisper-spi levels --transcripts {input.transcripts:q}"
        " --metrics {input.metrics:q} --labels {input.labels:q}"
        " --stresses {params.stresses:q} {params.definition}"
        " --min-tokens {params.min_tokens} --options {params.options:q}"
        " --seed {params.seed} --out {output.table:q} --figure {params.stem:q}"
        " > {log:q} 2>&1"
