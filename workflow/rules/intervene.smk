# Interventions during decoding and the baselines (issues 17, 29): project's subspaces
# (fitted out of detector fold), one job per model x condition x shard decoding every
# intervention x strength with the model loaded once, and one per model x condition x shard
# decoding every baseline (OpenAI's fallback and transcribe(), faster-whisper's arms).
rule intervene_fit:
    input:
        spectra=lambda wc: get_spectra(
            RESULTS,
            SHARDS,
            wc.model,
            CONDITIONS,
            get_intervene_layers(config, N_LAYERS, wc.model),
        ),
        labels=rules.taxonomy.output.labels,
        oof=rules.detect.output.oof,
    output:
        directory(result_path(RESULTS, "subspaces")),
    log:
        get_log(RESULTS, "intervene_fit", "{model}"),
    priority: PRIORITY["gate"]
    conda:
        "../../envs/cpu.yaml"
    params:
        layers=lambda wc: get_intervene_layer_args(config, N_LAYERS, wc.model),
        component=config["intervene"]["component"],
        rank=config["intervene"]["rank"],
        definition=get_definition_args(config),
    shell:
        "whisper-spi intervene-fit --model-name {wildcards.model}"
        " --spectra {input.spectra:q} --labels {input.labels:q} {params.definition}"
        " --oof {input.oof:q} --layers {params.layers}"
        " --component {params.component} --rank {params.rank} --out-dir {output:q}"
        " > {log:q} 2>&1"


if config["intervene"]["methods"]:  # [] = no intervention jobs

    rule intervene:
        input:
            unpack(lambda wc: get_intervene_inputs(RESULTS, config, wc)),
            unpack(lambda wc: get_stress_inputs(RESULTS, config, SHARDS, wc.condition)),
            corpus=rules.corpus.output.manifest,
        output:
            get_intervene_outputs(RESULTS, config),
        log:
            get_log(RESULTS, "intervene", "{model}/{condition}/shard-{shard}"),
        benchmark:
            get_benchmark(RESULTS, "intervene", "{model}/{condition}/shard-{shard}")
        conda:
            "../../envs/gpu.yaml"
        threads: config["decode"]["threads"]
        resources:
            **GPU_RESOURCES("intervene"),
        params:
            spec=lambda wc: MODELS[wc.model],
            cache=config["model_cache"] or "",
            opts=config["decode"],
            select=get_intervene_selection(config),
            arms=get_intervene_arm_args(config),
            layers=lambda wc: get_intervene_layer_args(config, N_LAYERS, wc.model),
            extra=lambda wc, input: get_intervene_flags(config, input),
        shell:
            "whisper-spi intervene --model-name {wildcards.model}"
            + get_model_args(config)
            + get_stress_args()
            + " --shard {wildcards.shard} {params.select} {params.arms}"
            " --layers {params.layers} {params.extra}"
            + get_decode_args()
            + " --out {output:q} > {log:q} 2>&1"


if config["intervene"]["baselines"]:  # [] = no baseline decodes

    rule baselines:
        input:
            unpack(lambda wc: get_stress_inputs(RESULTS, config, SHARDS, wc.condition)),
            corpus=rules.corpus.output.manifest,
            plain=lambda wc: get_transcripts(
                RESULTS,
                get_condition_shards(config, SHARDS, wc.condition),
                wc.model,
                [wc.condition],
            ),
        output:
            expand(
                result_path(RESULTS, "baseline_transcripts"),
                baseline=config["intervene"]["baselines"],
                allow_missing=True,
            ),
        log:
            get_log(RESULTS, "baselines", "{model}/{condition}/shard-{shard}"),
        benchmark:
            get_benchmark(RESULTS, "baselines", "{model}/{condition}/shard-{shard}")
        conda:
            "../../envs/gpu.yaml"
        threads: config["decode"]["threads"]
        resources:
            **GPU_RESOURCES("baselines"),
        params:
            spec=lambda wc: MODELS[wc.model],
            cache=config["model_cache"] or "",
            opts=config["decode"],
            select=get_intervene_selection(config),
            methods=" ".join(config["intervene"]["baselines"]),
            seed=config["seed"],
        shell:
            "whisper-spi intervene --model-name {wildcards.model}"
            + get_model_args(config)
            + get_stress_args()
            + " --shard {wildcards.shard} {params.select} --method {params.methods}"
            " --plain {input.plain:q} --seed {params.seed}"
            + get_decode_args()
            + " --out {output:q} > {log:q} 2>&1"
