# The paper's analysis: spectral observables per layer, (clean, stressed) pairs, the pooled
# scope, Tables 1 and 2, and Figures 1 to 3.
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
        result_path(RESULTS, "layer_metrics"),
    log:
        get_log(RESULTS, "layer_metrics", "{model}/{condition}/layer-{layer}"),
    conda:
        "../../envs/cpu.yaml"
    params:
        options=get_metric_options(config, "layer_metrics"),
    shell:
        "whisper-spi layer-metrics --spectra {input:q}"
        " --options {params.options:q} --out {output:q}"
        " > {log:q} 2>&1"


rule pairs:
    input:
        transcripts=lambda wc: get_transcripts(RESULTS, SHARDS, wc.model, CONDITIONS),
        labels=rules.taxonomy.output.labels,
    output:
        pairs=result_path(RESULTS, "pairs"),
        counts=result_path(RESULTS, "pair_counts"),
    log:
        get_log(RESULTS, "pairs", "{model}"),
    priority: PRIORITY["gate"]
    conda:
        "../../envs/cpu.yaml"
    params:
        definition=get_definition_args(config),
        filters=get_pair_filters(config),
    shell:
        "whisper-spi pairs --transcripts {input.transcripts:q} --labels {input.labels:q}"
        " {params.definition} {params.filters}"
        " --pairs {output.pairs:q} --counts {output.counts:q}"
        " > {log:q} 2>&1"


rule pooled:
    input:
        spectra=lambda wc: get_spectra(RESULTS, SHARDS, wc.model, CONDITIONS, wc.layer),
        pairs=rules.pairs.output.pairs,
    output:
        cells=result_path(RESULTS, "pooled_cells"),
        profile=result_path(RESULTS, "pooled_profile"),
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
        "whisper-spi pooled --spectra {input.spectra:q} --pairs {input.pairs:q}"
        " --model {wildcards.model} --layer {wildcards.layer}"
        " --options {params.options:q} --seed {params.seed}"
        " --out {output.cells:q} --profile {output.profile:q}"
        " > {log:q} 2>&1"


rule tables:
    input:
        metrics=get_all_layer_metrics(RESULTS, N_LAYERS, CONDITIONS),
        pairs=expand(rules.pairs.output.pairs, model=MODELS),
        counts=expand(rules.pairs.output.counts, model=MODELS),
        pooled=get_pooled(RESULTS, config, N_LAYERS, "cells"),
        profiles=get_pooled(RESULTS, config, N_LAYERS, "profile"),
    output:
        summary=result_path(RESULTS, "layer_summary"),
        profile=result_path(RESULTS, "rank_profile"),
        tables=result_path(RESULTS, "tables"),
        table1=get_report(result_path(RESULTS, "table1"), "table1", "Tables"),
        table2=get_report(result_path(RESULTS, "table2"), "table2", "Tables"),
        counts=get_report(
            result_path(RESULTS, "pair_counts_table"), "pair_counts", "Tables"
        ),
        prefix_counts=result_path(RESULTS, "prefix_counts"),
        markdown=[
            get_markdown(result_path(RESULTS, name))
            for name in ["table1", "table2", "pair_counts_table", "prefix_counts"]
        ],
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
        "whisper-spi tables --metrics {input.metrics:q}"
        " --pairs {input.pairs:q} --counts {input.counts:q}"
        " --pooled {input.pooled:q} --profiles {input.profiles:q}"
        " --options {params.options:q} --seed {params.seed} --out-dir {params.out_dir:q}"
        " > {log:q} 2>&1"


rule figures:
    input:
        summary=rules.tables.output.summary,
        profile=rules.tables.output.profile,
    output:
        png=[
            get_report(result_path(RESULTS, "figure_png", name=name), name, "Figures")
            for name in FIGURES
        ],
        html=expand(result_path(RESULTS, "figure_html"), name=list(FIGURES)),
    log:
        get_log(RESULTS, "figures", "figures"),
    conda:
        "../../envs/cpu.yaml"
    params:
        options=get_metric_options(config, "figures"),
        out_dir=lambda wc, output: os.path.dirname(output.png[0]),
    shell:
        "whisper-spi figures --summary {input.summary:q} --profile {input.profile:q}"
        " --options {params.options:q} --out-dir {params.out_dir:q}"
        " > {log:q} 2>&1"
