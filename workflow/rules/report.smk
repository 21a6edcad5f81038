# The project's own report: one self-contained page of every table and figure, opening with
# the findings (one line per claim and its verdict), also written to findings.csv / .md.
rule report:
    input:
        tables=rules.tables.output.tables,
        counts=rules.tables.output.counts,
        figures=rules.figures.output.png,
        extras=get_report_extras(RESULTS, config),
        rejected=rules.corpus.output.rejected,
        pairs=expand(rules.pairs.output.pairs, model=MODELS),
        comparisons=expand(rules.detect.output.comparison, model=MODELS),
        by_type=expand(rules.detect.output.by_type, model=MODELS),
        theory=get_findings_input(RESULTS, config, "theory_table"),
        mitigation=get_findings_input(RESULTS, config, "mitigation"),
    output:
        report=get_report(result_path(RESULTS, "report"), "report", "Report"),
        findings=result_path(RESULTS, "findings"),
        findings_md=get_markdown(result_path(RESULTS, "findings")),
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
        " --by-type {input.by_type:q} --theory-table {input.theory:q}"
        " --mitigation {input.mitigation:q} --findings {output.findings:q}"
        " {params.extras} --out {output.report:q}"
        " > {log:q} 2>&1"
