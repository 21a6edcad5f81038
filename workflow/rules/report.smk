# The project's own report: one self-contained page of every table and figure.
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
        get_report(result_path(RESULTS, "report"), "report", "Report"),
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
        "whisper-spi report --tables-dir {params.tables_dir:q}"
        " --figures-dir {params.figures_dir:q} --pair-counts {input.counts:q}"
        " --config-json {params.config:q} --rejected {input.rejected:q}"
        " --pairs {input.pairs:q} --comparison {input.comparisons:q}"
        " {params.extras} --out {output:q}"
        " > {log:q} 2>&1"
