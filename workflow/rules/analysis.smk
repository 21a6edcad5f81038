rule layer_metrics:
    input:
        lambda wc: get_spectra(
            RESULTS,
            get_condition_shards(config, SHARDS, wc.condition),
            wc.model,
            wc.condition,
            wc.layer,
        ),
    output:
        f"{RESULTS}/metrics/{{model}}/{{condition}}/layer-{{layer}}.parquet",
    log:
        get_log(RESULTS, "layer_metrics", "{model}/{condition}/layer-{layer}"),
    conda:
        "../../envs/cpu.yaml"
    params:
        options=get_metric_options(config, "layer_metrics"),
    shell:
        "whisper-spi layer-metrics"
        " --spectra {input:q}"
        " --options {params.options:q}"
        " --out {output:q}"
        " > {log:q} 2>&1"


rule pairs:
    input:
        transcripts=lambda wc: get_transcripts(RESULTS, SHARDS, wc.model, CONDITIONS),
        labels=rules.taxonomy.output.labels,
    output:
        pairs=f"{RESULTS}/pairs/{{model}}/pairs.parquet",
        counts=f"{RESULTS}/pairs/{{model}}/pair_counts.parquet",
    log:
        get_log(RESULTS, "pairs", "{model}"),
    conda:
        "../../envs/cpu.yaml"
    params:
        threshold=config["decode"]["hallucination_wer"],
        definition=config["hallucination"]["definition"],
        her_threshold=config["hallucination"]["her_threshold"],
        filters=get_pair_filters(config),
    shell:
        "whisper-spi pairs"
        " --transcripts {input.transcripts:q}"
        " --labels {input.labels:q}"
        " --definition {params.definition}"
        " --her-threshold {params.her_threshold}"
        " --threshold {params.threshold}"
        " {params.filters}"
        " --pairs {output.pairs:q}"
        " --counts {output.counts:q}"
        " > {log:q} 2>&1"


rule pooled:
    input:
        spectra=lambda wc: get_spectra(RESULTS, SHARDS, wc.model, CONDITIONS, wc.layer),
        pairs=rules.pairs.output.pairs,
    output:
        cells=f"{RESULTS}/pooled/{{model}}/layer-{{layer}}.parquet",
        profile=f"{RESULTS}/pooled/{{model}}/layer-{{layer}}-profile.parquet",
    log:
        get_log(RESULTS, "pooled", "{model}/layer-{layer}"),
    benchmark:
        get_benchmark(RESULTS, "pooled", "{model}/layer-{layer}")
    conda:
        "../../envs/cpu.yaml"
    params:
        options=get_metric_options(config, "pooled"),
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
        metrics=get_all_layer_metrics(RESULTS, N_LAYERS, CONDITIONS),
        pairs=expand(rules.pairs.output.pairs, model=MODELS),
        counts=expand(rules.pairs.output.counts, model=MODELS),
        pooled=get_pooled(RESULTS, config, N_LAYERS, "cells"),
        profiles=get_pooled(RESULTS, config, N_LAYERS, "profile"),
    output:
        summary=f"{RESULTS}/tables/layer_summary.parquet",
        profile=f"{RESULTS}/tables/rank_profile.parquet",
        tables=f"{RESULTS}/tables/tables.parquet",
        table1=report(
            f"{RESULTS}/tables/table1_final_layer.csv",
            caption="../report/table1.rst",
            category="Tables",
        ),
        table2=report(
            f"{RESULTS}/tables/table2_layer_mean.csv",
            caption="../report/table2.rst",
            category="Tables",
        ),
        counts=report(
            f"{RESULTS}/tables/pair_counts.csv",
            caption="../report/pair_counts.rst",
            category="Tables",
        ),
        prefix_counts=f"{RESULTS}/tables/prefix_counts.csv",
        markdown=expand(
            f"{RESULTS}/tables/{{name}}.md",
            name=[
                "table1_final_layer",
                "table2_layer_mean",
                "pair_counts",
                "prefix_counts",
            ],
        ),
    log:
        get_log(RESULTS, "tables", "tables"),
    benchmark:
        get_benchmark(RESULTS, "tables", "tables")
    conda:
        "../../envs/cpu.yaml"
    params:
        options=get_metric_options(config, "tables"),
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
        png=[
            report(
                f"{RESULTS}/figures/{name}.png",
                caption=f"../report/{name}.rst",
                category="Figures",
            )
            for name in ["trajectories", "phase_diagram", "tail_energy", "scree"]
        ],
        html=expand(
            f"{RESULTS}/figures/{{name}}.html",
            name=["trajectories", "phase_diagram", "tail_energy", "scree"],
        ),
    log:
        get_log(RESULTS, "figures", "figures"),
    conda:
        "../../envs/cpu.yaml"
    params:
        options=get_metric_options(config, "figures"),
        out_dir=lambda wc, output: os.path.dirname(output.png[0]),
    shell:
        "whisper-spi figures"
        " --summary {input.summary:q}"
        " --profile {input.profile:q}"
        " --options {params.options:q}"
        " --out-dir {params.out_dir:q}"
        " > {log:q} 2>&1"


rule detect:
    input:
        spectra=lambda wc: get_spectra(
            RESULTS, SHARDS, wc.model, CONDITIONS, range(N_LAYERS[wc.model])
        ),
        transcripts=lambda wc: get_transcripts(RESULTS, SHARDS, wc.model, CONDITIONS),
        labels=rules.taxonomy.output.labels,
    output:
        results=report(
            f"{RESULTS}/detect/{{model}}/results.csv",
            caption="../report/detect.rst",
            category="Detection",
            subcategory="{model}",
        ),
        comparison=f"{RESULTS}/detect/{{model}}/comparison.csv",
        oof=f"{RESULTS}/detect/{{model}}/oof_scores.csv",
        markdown=f"{RESULTS}/detect/{{model}}/results.md",
        detector=f"{RESULTS}/detect/{{model}}/detector.json",
        roc=report(
            f"{RESULTS}/detect/{{model}}/roc.png",
            caption="../report/roc.rst",
            category="Detection",
            subcategory="{model}",
        ),
        roc_html=f"{RESULTS}/detect/{{model}}/roc.html",
        by_type=f"{RESULTS}/detect/{{model}}/by_type.csv",
    log:
        get_log(RESULTS, "detect", "{model}"),
    benchmark:
        get_benchmark(RESULTS, "detect", "{model}")
    conda:
        "../../envs/cpu.yaml"
    params:
        seed=config["seed"],
        threshold=config["decode"]["hallucination_wer"],
        options=get_metric_options(config, "detect"),
        n_boot=config["detect"]["n_boot"],
        definition=config["hallucination"]["definition"],
        her_threshold=config["hallucination"]["her_threshold"],
        out_dir=lambda wc, output: os.path.dirname(output.results),
    shell:
        "whisper-spi detect-eval"
        " --spectra {input.spectra:q}"
        " --transcripts {input.transcripts:q}"
        " --labels {input.labels:q}"
        " --definition {params.definition}"
        " --her-threshold {params.her_threshold}"
        " --seed {params.seed}"
        " --threshold {params.threshold}"
        " --options {params.options:q}"
        " --n-boot {params.n_boot}"
        " --out-dir {params.out_dir:q}"
        " > {log:q} 2>&1"


rule report:
    input:
        tables=rules.tables.output.tables,
        counts=rules.tables.output.counts,
        figures=rules.figures.output.png,
        extras=get_report_extras(RESULTS, config),
        rejected=rules.corpus.output.rejected,
        pairs=expand(rules.pairs.output.pairs, model=MODELS),
        comparisons=expand(rules.detect.output.comparison, model=MODELS),
    output:
        report(
            f"{RESULTS}/report.html", caption="../report/report.rst", category="Report"
        ),
    log:
        get_log(RESULTS, "report", "report"),
    conda:
        "../../envs/cpu.yaml"
    params:
        tables_dir=lambda wc, input: os.path.dirname(input.tables),
        figures_dir=lambda wc, input: os.path.dirname(input.figures[0]),
        config=json.dumps(config, sort_keys=True),
        extras=get_report_extra_args(RESULTS, config),
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
