# Hallucination detection from one decode pass's spectra, against Whisper's own heuristics.
rule detect:
    input:
        spectra=lambda wc: get_spectra(
            RESULTS,
            SHARDS,
            wc.model,
            [*CONDITIONS, *GRADED],
            range(N_LAYERS[wc.model]),
        ),
        transcripts=lambda wc: get_transcripts(
            RESULTS, SHARDS, wc.model, [*CONDITIONS, *GRADED]
        ),
        labels=rules.taxonomy.output.labels,
    output:
        results=get_report(
            result_path(RESULTS, "detect_results"),
            "detect",
            "Detection",
            subcategory="{model}",
        ),
        comparison=result_path(RESULTS, "detect_comparison"),
        oof=result_path(RESULTS, "detect_oof"),
        markdown=get_markdown(result_path(RESULTS, "detect_results")),
        detector=result_path(RESULTS, "detector"),
        roc=get_report(
            result_path(RESULTS, "roc_png"), "roc", "Detection", subcategory="{model}"
        ),
        roc_html=result_path(RESULTS, "roc_html"),
        by_type=result_path(RESULTS, "detect_by_type"),
    log:
        get_log(RESULTS, "detect", "{model}"),
    benchmark:
        get_benchmark(RESULTS, "detect", "{model}")
    priority: PRIORITY["gate"]
    conda:
        "../../envs/cpu.yaml"
    params:
        seed=config["seed"],
        options=get_metric_options(config, "detect"),
        n_boot=config["detect"]["n_boot"],
        definition=get_definition_args(config),
        out_dir=lambda wc, output: os.path.dirname(output.results),
    shell:
        "whisper-spi detect-eval --spectra {input.spectra:q}"
        " --transcripts {input.transcripts:q} --labels {input.labels:q}"
        " {params.definition} --seed {params.seed}"
        " --options {params.options:q} --n-boot {params.n_boot}"
        " --out-dir {params.out_dir:q}"
        " > {log:q} 2>&1"
