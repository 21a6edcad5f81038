# Interventions during decoding and Whisper's own mitigations (issue 17): project's subspaces
# (fitted out of detector fold), one decode per model x intervention x strength x condition
# x shard, OpenAI's fallback per model x condition x shard, then the mitigation tables.


INTERVENE_SHARDS = get_intervene_shards(config)


wildcard_constraints:
    method="project|cross_gain|self_damp",
    strength=r"[0-9.]+",


rule intervene_fit:
    input:
        spectra=lambda wc: get_spectra(
            RESULTS,
            SHARDS,
            wc.model,
            CONDITIONS,
            get_intervene_layers(config, N_LAYERS, wc.model),
        ),
        transcripts=lambda wc: get_transcripts(RESULTS, SHARDS, wc.model, CONDITIONS),
        oof=rules.detect.output.oof,
    output:
        directory(f"{RESULTS}/intervene/{{model}}/subspace"),
    log:
        get_log(RESULTS, "intervene_fit", "{model}"),
    conda:
        "../../envs/cpu.yaml"
    params:
        layers=lambda wc: " ".join(
            map(str, get_intervene_layers(config, N_LAYERS, wc.model))
        ),
        component=config["intervene"]["component"],
        rank=config["intervene"]["rank"],
    shell:
        "whisper-spi intervene-fit"
        " --model-name {wildcards.model}"
        " --spectra {input.spectra:q}"
        " --transcripts {input.transcripts:q}"
        " --oof {input.oof:q}"
        " --layers {params.layers}"
        " --component {params.component}"
        " --rank {params.rank}"
        " --out-dir {output:q}"
        " > {log:q} 2>&1"


rule intervene:
    input:
        unpack(lambda wc: get_intervene_inputs(RESULTS, wc)),
        unpack(
            lambda wc: get_stress_inputs(
                config,
                SHARDS,
                wc.condition,
                rules.stress.output.manifest,
                rules.stress.output.audio,
            )
        ),
        corpus=rules.corpus.output.manifest,
    output:
        f"{RESULTS}/intervene/{{model}}/{{method}}/{{strength}}/{{condition}}/shard-{{shard}}.parquet",
    log:
        get_log(
            RESULTS,
            "intervene",
            "{model}/{method}/{strength}/{condition}/shard-{shard}",
        ),
    benchmark:
        get_benchmark(
            RESULTS,
            "intervene",
            "{model}/{method}/{strength}/{condition}/shard-{shard}",
        )
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
        opts=config["decode"],
        select=get_intervene_selection(config),
        layers=lambda wc: " ".join(
            map(str, get_intervene_layers(config, N_LAYERS, wc.model))
        ),
        extra=lambda wc, input: get_intervene_flags(wc, input),
    shell:
        "whisper-spi intervene"
        " --model-name {wildcards.model}"
        " --model {params.spec:q}"
        " --cache={params.cache:q}"
        " --condition {wildcards.condition}"
        " --stress-manifest {input.stress:q}"
        " --corpus-manifest {input.corpus:q}"
        " --shard {wildcards.shard}"
        " {params.select}"
        " --method {wildcards.method}"
        " --strength {wildcards.strength}"
        " --layers {params.layers}"
        " {params.extra}"
        " --threads {threads}"
        " --device {params.opts[device]}"
        " --dtype {params.opts[dtype]}"
        " --batch-size {params.opts[batch_size]}"
        " --max-new-tokens {params.opts[max_new_tokens]}"
        " --hallucination-wer {params.opts[hallucination_wer]}"
        " --out {output:q}"
        " > {log:q} 2>&1"


rule fallback:
    input:
        unpack(
            lambda wc: get_stress_inputs(
                config,
                SHARDS,
                wc.condition,
                rules.stress.output.manifest,
                rules.stress.output.audio,
            )
        ),
        corpus=rules.corpus.output.manifest,
        plain=lambda wc: get_transcripts(
            RESULTS,
            get_condition_shards(config, SHARDS, wc.condition),
            wc.model,
            [wc.condition],
        ),
    output:
        f"{RESULTS}/intervene/{{model}}/fallback/{{condition}}/shard-{{shard}}.parquet",
    log:
        get_log(RESULTS, "fallback", "{model}/{condition}/shard-{shard}"),
    benchmark:
        get_benchmark(RESULTS, "fallback", "{model}/{condition}/shard-{shard}")
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
        opts=config["decode"],
        select=get_intervene_selection(config),
        seed=config["seed"],
    shell:
        "whisper-spi intervene"
        " --model-name {wildcards.model}"
        " --model {params.spec:q}"
        " --cache={params.cache:q}"
        " --condition {wildcards.condition}"
        " --stress-manifest {input.stress:q}"
        " --corpus-manifest {input.corpus:q}"
        " --shard {wildcards.shard}"
        " {params.select}"
        " --method fallback"
        " --plain {input.plain:q}"
        " --seed {params.seed}"
        " --threads {threads}"
        " --device {params.opts[device]}"
        " --dtype {params.opts[dtype]}"
        " --batch-size {params.opts[batch_size]}"
        " --max-new-tokens {params.opts[max_new_tokens]}"
        " --hallucination-wer {params.opts[hallucination_wer]}"
        " --out {output:q}"
        " > {log:q} 2>&1"


rule mitigation:
    input:
        transcripts=lambda wc: get_labelled_transcripts(
            RESULTS, config, SHARDS, wc.model
        ),
        mitigated=lambda wc: get_mitigated(RESULTS, config, INTERVENE_SHARDS, wc.model),
        stress=expand(
            f"{RESULTS}/stress/{{condition}}/shard-{{shard}}.parquet",
            condition=CONDITIONS,
            shard=SHARDS,
        ),
        corpus=rules.corpus.output.manifest,
    output:
        table=f"{RESULTS}/mitigation/{{model}}/mitigation.csv",
        summary=f"{RESULTS}/mitigation/{{model}}/summary.csv",
        png=f"{RESULTS}/mitigation/{{model}}/dose_response.png",
        html=f"{RESULTS}/mitigation/{{model}}/dose_response.html",
    log:
        get_log(RESULTS, "mitigation", "{model}"),
    benchmark:
        get_benchmark(RESULTS, "mitigation", "{model}")
    conda:
        "../../envs/cpu.yaml"
    params:
        threshold=config["decode"]["hallucination_wer"],
        seed=config["seed"],
        n_boot=config["intervene"]["n_boot"],
        out_dir=lambda wc, output: os.path.dirname(output.table),
    shell:
        "whisper-spi mitigation"
        " --model-name {wildcards.model}"
        " --transcripts {input.transcripts:q}"
        " --mitigated {input.mitigated:q}"
        " --stress-manifests {input.stress:q}"
        " --corpus-manifest {input.corpus:q}"
        " --threshold {params.threshold}"
        " --seed {params.seed}"
        " --n-boot {params.n_boot}"
        " --out-dir {params.out_dir:q}"
        " > {log:q} 2>&1"


rule mitigation_summary:
    input:
        expand(rules.mitigation.output.table, model=MODELS),
    output:
        table=report(
            f"{RESULTS}/mitigation/mitigation.csv",
            caption="../report/mitigation.rst",
            category="Mitigation",
        ),
        markdown=f"{RESULTS}/mitigation/mitigation.md",
        verdict=f"{RESULTS}/mitigation/verdict.csv",
        png=report(
            f"{RESULTS}/mitigation/tradeoff.png",
            caption="../report/mitigation.rst",
            category="Mitigation",
        ),
        html=f"{RESULTS}/mitigation/tradeoff.html",
    log:
        get_log(RESULTS, "mitigation_summary", "mitigation_summary"),
    conda:
        "../../envs/cpu.yaml"
    params:
        out_dir=lambda wc, output: os.path.dirname(output.table),
    shell:
        "whisper-spi mitigation-summary"
        " --tables {input:q}"
        " --out-dir {params.out_dir:q}"
        " > {log:q} 2>&1"
