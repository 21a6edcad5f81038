# The corpus's manifest, then each condition's audio, shard by shard.
rule corpus:
    input:
        get_corpus_file(config),
    output:
        manifest=result_path(RESULTS, "manifest"),
        rejected=result_path(RESULTS, "rejected"),
    log:
        get_log(RESULTS, "corpus", "corpus"),
    conda:
        "../../envs/cpu.yaml"
    params:
        root=config["corpus"]["root"],
        splits=config["corpus"]["splits"],
        limit=config["corpus"]["limit"] or 0,
        on_bad_audio=config["corpus"]["on_bad_audio"],
    shell:
        "whisper-spi corpus --root {params.root:q} --splits {params.splits:q}"
        " --limit {params.limit} --on-bad-audio {params.on_bad_audio}"
        " --manifest {output.manifest:q} --rejected {output.rejected:q}"
        " > {log:q} 2>&1"


rule stress:
    input:
        manifest=rules.corpus.output.manifest,
    output:
        manifest=result_path(RESULTS, "stress_manifest"),
        audio=directory(result_path(RESULTS, "stress_audio")),
    log:
        get_log(RESULTS, "stress", "{condition}/shard-{shard}"),
    benchmark:
        get_benchmark(RESULTS, "stress", "{condition}/shard-{shard}")
    priority: PRIORITY["gate"]
    conda:
        "../../envs/cpu.yaml"
    params:
        shard_size=config["corpus"]["shard_size"],
        seed=config["seed"],
        stress=lambda wc: get_stress_params(config, wc.condition),
        limit=lambda wc: get_stress_limit(config, wc.condition),
    shell:
        "whisper-spi stress --manifest {input.manifest:q}"
        " --condition {wildcards.condition} --shard {wildcards.shard}"
        " --shard-size {params.shard_size} --seed {params.seed}"
        " --params {params.stress:q} --limit {params.limit}"
        " --audio-dir {output.audio:q} --out {output.manifest:q}"
        " > {log:q} 2>&1"
