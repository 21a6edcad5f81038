rule theory_measure:
    input:
        stress=lambda wc: expand(
            rules.stress.output.manifest, condition=wc.condition, shard=SHARDS
        ),
        audio=lambda wc: expand(
            rules.stress.output.audio, condition=wc.condition, shard=SHARDS
        ),
        pairs=rules.pairs.output.pairs,
        transcripts=lambda wc: expand(
            f"{RESULTS}/decode/{{model}}/{{condition}}/shard-{{shard}}/transcripts.parquet",
            model=wc.model,
            condition=wc.condition,
            shard=SHARDS,
        ),
    output:
        f"{RESULTS}/theory/{{model}}/{{condition}}.parquet",
    log:
        get_log(RESULTS, "theory_measure", "{model}/{condition}"),
    benchmark:
        get_benchmark(RESULTS, "theory_measure", "{model}/{condition}")
    conda:
        "../../envs/gpu.yaml"
    threads: config["decode"]["threads"]
    resources:
        gpu=1,
        mem_mb=lambda wc, attempt: 6000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
    params:
        spec=lambda wc: MODELS[wc.model],
        cache=config["model_cache"] or "",
        opts=json.dumps(
            {k: v for k, v in config["theory"].items() if k != "n_boot"},
            sort_keys=True,
        ),
        seed=config["seed"],
    shell:
        "whisper-spi theory-measure"
        " --model-name {wildcards.model}"
        " --model {params.spec:q}"
        " --cache={params.cache:q}"
        " --condition {wildcards.condition}"
        " --stress-manifests {input.stress:q}"
        " --pairs {input.pairs:q}"
        " --transcripts {input.transcripts:q}"
        " --options {params.opts:q}"
        " --seed {params.seed}"
        " --threads {threads}"
        " --out {output:q}"
        " > {log:q} 2>&1"


rule theory_summary:
    input:
        expand(rules.theory_measure.output, model=MODELS, condition=CONDITIONS),
    output:
        table=report(
            f"{RESULTS}/theory/theory_table.csv",
            caption="../report/theory_table.rst",
            category="Theory",
        ),
        markdown=f"{RESULTS}/theory/theory_table.md",
        html=f"{RESULTS}/figures/theory_phase.html",
        png=report(
            f"{RESULTS}/figures/theory_phase.png",
            caption="../report/theory_phase.rst",
            category="Theory",
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
        "whisper-spi theory-summary"
        " --measurements {input:q}"
        " --seed {params.seed}"
        " --n-boot {params.n_boot}"
        " --out-dir {params.out_dir:q}"
        " --figure {params.stem:q}"
        " > {log:q} 2>&1"
