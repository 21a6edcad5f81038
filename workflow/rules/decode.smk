# One decode rule per model: its outputs name every decoder layer, and models differ in depth.
for _model, _spec in MODELS.items():

    rule:
        name:
            f"decode_{_model.replace('-', '_')}"
        input:
            stress=result_path(RESULTS, "stress_manifest"),
            audio=result_path(RESULTS, "stress_audio"),
            corpus=rules.corpus.output.manifest,
        output:
            transcripts=result_path(RESULTS, "transcripts", model=_model),
            spectra=[
                result_path(RESULTS, "spectra", model=_model, layer=layer)
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
            **GPU_RESOURCES("decode", _model),
        params:
            name=_model,
            spec=_spec,
            cache=config["model_cache"] or "",
            opts=config["decode"],
            flags=get_decode_flags(config),
        shell:
            "whisper-spi decode --model-name {params.name:q}"
            + get_model_args(config)
            + get_stress_args()
            + " --transcripts {output.transcripts:q} --spectra {output.spectra:q}"
            + get_decode_args()
            + " --tokens {params.opts[tokens]} --components {params.opts[components]}"
            " --prefix-lengths {params.opts[prefix_lengths]} {params.flags}"
            " > {log:q} 2>&1"
