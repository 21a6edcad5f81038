# One decode rule per model: its outputs name every decoder layer, and models differ in depth.
for _model, _spec in MODELS.items():

    rule:
        name:
            f"decode_{_model.replace('-', '_')}"
        input:
            stress=f"{RESULTS}/stress/{{condition}}/shard-{{shard}}.parquet",
            audio=f"{RESULTS}/stress/{{condition}}/shard-{{shard}}",
            corpus=rules.corpus.output.manifest,
        output:
            transcripts=f"{RESULTS}/decode/{_model}/{{condition}}/shard-{{shard}}/transcripts.parquet",
            spectra=[
                f"{RESULTS}/decode/{_model}/{{condition}}/shard-{{shard}}/layer-{layer}.parquet"
                for layer in range(N_LAYERS[_model])
            ],
        log:
            get_log(RESULTS, "decode", f"{_model}/{{condition}}/shard-{{shard}}"),
        benchmark:
            get_benchmark(RESULTS, "decode", f"{_model}/{{condition}}/shard-{{shard}}")
        conda:
            "../../envs/gpu.yaml"
        threads: config["decode"]["threads"]
        resources:
            gpu=1,
            mem_mb=lambda wc, attempt: 6000 * attempt,
            runtime=lambda wc, attempt: 60 * attempt,
        params:
            name=_model,
            spec=_spec,
            cache=config["model_cache"] or "",
            opts=config["decode"],
            flags=get_decode_flags(config),
        shell:
            "whisper-spi decode"
            " --model-name {params.name:q}"
            " --model {params.spec:q}"
            " --cache={params.cache:q}"
            " --condition {wildcards.condition}"
            " --stress-manifest {input.stress:q}"
            " --corpus-manifest {input.corpus:q}"
            " --transcripts {output.transcripts:q}"
            " --spectra {output.spectra:q}"
            " --threads {threads}"
            " --device {params.opts[device]}"
            " --dtype {params.opts[dtype]}"
            " --batch-size {params.opts[batch_size]}"
            " --max-new-tokens {params.opts[max_new_tokens]}"
            " --hallucination-wer {params.opts[hallucination_wer]}"
            " --tokens {params.opts[tokens]}"
            " --components {params.opts[components]}"
            " --prefix-lengths {params.opts[prefix_lengths]}"
            " {params.flags}"
            " > {log:q} 2>&1"
