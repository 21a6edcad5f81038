rule layer_metrics:
    input:
        get_spectra,
    output:
        f"{RESULTS}/metrics/{{model}}/{{condition}}/layer-{{layer}}.parquet",
    log:
        "logs/layer_metrics/{model}/{condition}/layer-{layer}.log",
    params:
        options=get_metric_options(OBSERVABLE_KEYS),
    shell:
        "whisper-spi layer-metrics"
        " --spectra {input:q}"
        " --options {params.options:q}"
        " --out {output:q}"
        " > {log:q} 2>&1"


rule pairs:
    input:
        get_transcripts,
    output:
        pairs=f"{RESULTS}/pairs/{{model}}/pairs.parquet",
        counts=f"{RESULTS}/pairs/{{model}}/pair_counts.parquet",
    log:
        "logs/pairs/{model}.log",
    params:
        threshold=config["decode"]["hallucination_wer"],
    shell:
        "whisper-spi pairs"
        " --transcripts {input:q}"
        " --threshold {params.threshold}"
        " --pairs {output.pairs:q}"
        " --counts {output.counts:q}"
        " > {log:q} 2>&1"


rule pooled:
    input:
        spectra=get_spectra,
        pairs=rules.pairs.output.pairs,
    output:
        cells=f"{RESULTS}/pooled/{{model}}/layer-{{layer}}.parquet",
        profile=f"{RESULTS}/pooled/{{model}}/layer-{{layer}}-profile.parquet",
    log:
        "logs/pooled/{model}/layer-{layer}.log",
    benchmark:
        "benchmarks/pooled/{model}/layer-{layer}.jsonl"
    params:
        options=get_metric_options(POOLED_KEYS),
        seed=config["seed"],
    shell:
        "whisper-spi pooled"
        " --spectra {input.spectra:q}"
        " --pairs {input.pairs:q}"
        " --model {wildcards.model}"
        " --layer {wildcards.layer}"
        " --options {params.options:q}"
        " --seed {params.seed}"
        " --out {output.cells:q}"
        " --profile {output.profile:q}"
        " > {log:q} 2>&1"


rule tables:
    input:
        metrics=get_all_layer_metrics(),
        pairs=expand(rules.pairs.output.pairs, model=MODELS),
        counts=expand(rules.pairs.output.counts, model=MODELS),
        pooled=get_pooled("cells"),
        profiles=get_pooled("profile"),
    output:
        summary=f"{RESULTS}/tables/layer_summary.parquet",
        profile=f"{RESULTS}/tables/rank_profile.parquet",
        tables=f"{RESULTS}/tables/tables.parquet",
        csv=expand(
            f"{RESULTS}/tables/{{name}}.{{ext}}",
            name=["table1_final_layer", "table2_layer_mean", "pair_counts"],
            ext=["csv", "md"],
        ),
    log:
        "logs/tables/tables.log",
    benchmark:
        "benchmarks/tables/tables.jsonl"
    params:
        options=get_metric_options(),
        seed=config["seed"],
        out_dir=lambda wc, output: os.path.dirname(output.tables),
    shell:
        "whisper-spi tables"
        " --metrics {input.metrics:q}"
        " --pairs {input.pairs:q}"
        " --counts {input.counts:q}"
        " --pooled {input.pooled:q}"
        " --profiles {input.profiles:q}"
        " --options {params.options:q}"
        " --seed {params.seed}"
        " --out-dir {params.out_dir:q}"
        " > {log:q} 2>&1"


rule figures:
    input:
        summary=rules.tables.output.summary,
        profile=rules.tables.output.profile,
    output:
        expand(
            f"{RESULTS}/figures/{{name}}.{{ext}}",
            name=["trajectories", "phase_diagram", "tail_energy", "scree"],
            ext=["html", "png"],
        ),
    log:
        "logs/figures/figures.log",
    params:
        options=get_metric_options(),
        out_dir=lambda wc, output: os.path.dirname(output[0]),
    shell:
        "whisper-spi figures"
        " --summary {input.summary:q}"
        " --profile {input.profile:q}"
        " --options {params.options:q}"
        " --out-dir {params.out_dir:q}"
        " > {log:q} 2>&1"


rule detect:
    input:
        spectra=get_spectra,
        transcripts=get_transcripts,
    output:
        expand(
            f"{RESULTS}/detect/{{{{model}}}}/{{name}}",
            name=[
                "results.csv",
                "comparison.csv",
                "results.md",
                "detector.json",
                "roc.png",
            ],
        ),
    log:
        "logs/detect/{model}.log",
    params:
        seed=config["seed"],
        threshold=config["decode"]["hallucination_wer"],
        k=config["metrics"]["k"],
        n_boot=config["detect"]["n_boot"],
        out_dir=lambda wc, output: os.path.dirname(output[0]),
    shell:
        "whisper-spi detect-eval"
        " --spectra {input.spectra:q}"
        " --transcripts {input.transcripts:q}"
        " --seed {params.seed}"
        " --threshold {params.threshold}"
        " --k {params.k}"
        " --n-boot {params.n_boot}"
        " --out-dir {params.out_dir:q}"
        " > {log:q} 2>&1"


rule report:
    input:
        tables=rules.tables.output.tables,
        counts=f"{RESULTS}/tables/pair_counts.csv",
        figures=rules.figures.output,
        extras=get_report_extras,
        rejected=rules.corpus.output.rejected,
        pairs=expand(rules.pairs.output.pairs, model=MODELS),
        comparisons=expand(f"{RESULTS}/detect/{{model}}/comparison.csv", model=MODELS),
    output:
        f"{RESULTS}/report.html",
    log:
        "logs/report/report.log",
    params:
        tables_dir=lambda wc, input: os.path.dirname(input.tables),
        figures_dir=lambda wc, input: os.path.dirname(input.figures[0]),
        config=json.dumps(config, sort_keys=True),
        extras=get_report_extra_args,
    shell:
        "whisper-spi report"
        " --tables-dir {params.tables_dir:q}"
        " --figures-dir {params.figures_dir:q}"
        " --pair-counts {input.counts:q}"
        " --config-json {params.config:q}"
        " --rejected {input.rejected:q}"
        " --pairs {input.pairs:q}"
        " --comparison {input.comparisons:q}"
        " {params.extras}"
        " --out {output:q}"
        " > {log:q} 2>&1"
