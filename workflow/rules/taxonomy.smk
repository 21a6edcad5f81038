# The error type of every decode (speech and non-speech), and its summaries.
rule taxonomy:
    input:
        transcripts=lambda wc: get_labelled_transcripts(
            RESULTS, config, SHARDS, wc.model, GRADED
        ),
        mix=get_mix_manifests(RESULTS, SHARDS, GRADED),
        corpus=rules.corpus.output.manifest,
    output:
        labels=result_path(RESULTS, "taxonomy"),
    log:
        get_log(RESULTS, "taxonomy", "{model}"),
    priority: PRIORITY["gate"]
    conda:
        "../../envs/cpu.yaml"
    params:
        options=get_taxonomy_options(config),
        wer=config["decode"]["hallucination_wer"],
    shell:
        "whisper-spi taxonomy --transcripts {input.transcripts:q}"
        " --mix-manifests {input.mix:q} --corpus-manifest {input.corpus:q}"
        " --options {params.options:q} --wer-threshold {params.wer}"
        " --out {output.labels:q}"
        " > {log:q} 2>&1"


rule taxonomy_summary:
    input:
        expand(rules.taxonomy.output.labels, model=MODELS),
    output:
        tables=get_tables(
            RESULTS, ["taxonomy_counts", "nonspeech_rate", "bag_of_hallucinations"]
        ),
        figure=get_report(
            result_path(RESULTS, "figure_png", name="taxonomy"), "taxonomy", "Figures"
        ),
        html=result_path(RESULTS, "figure_html", name="taxonomy"),
    log:
        get_log(RESULTS, "taxonomy_summary", "summary"),
    conda:
        "../../envs/cpu.yaml"
    params:
        nonspeech=NONSPEECH,
        top=config["taxonomy"]["bag_top"],
        tables_dir=lambda wc, output: os.path.dirname(output.tables[0]),
        stem=lambda wc, output: os.path.splitext(output.figure)[0],
    shell:
        "whisper-spi taxonomy-summary --labels {input:q}"
        " --nonspeech {params.nonspeech:q} --top {params.top}"
        " --tables-dir {params.tables_dir:q} --figure {params.stem:q}"
        " > {log:q} 2>&1"
