"""workflow/rules/common.smk imported as a Python module, and the paths the rules build."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import re
from pathlib import Path

import pytest
import yaml

from whisper_spi.analysis.options import stage_keys

from .snakemake_runner import CONFIG, ROOT, snakemake


@pytest.fixture(scope="module")
def common():
    path = ROOT / "workflow" / "rules" / "common.smk"
    loader = importlib.machinery.SourceFileLoader("common_smk", str(path))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def config(common):
    cfg = yaml.safe_load(CONFIG.read_text())
    common.validate_config(cfg)
    return cfg


def _plan(common, config):
    n = common.get_n_utterances(config)
    layers = common.get_layers(common.get_model_configs(config))
    return common.get_shards(n, config["corpus"]["shard_size"]), layers


def test_plan_and_inputs(common, config):
    shards, layers = _plan(common, config)
    assert shards == ["000", "001"] and layers == {"tiny-en": 4}  # 10 utterances, 5 a shard
    got = common.get_spectra("R", shards, "tiny-en", ["clean"], [2])
    assert got == [f"R/decode/tiny-en/clean/shard-{s}/layer-2.parquet" for s in shards]
    assert len(common.get_all_layer_metrics("R", layers, ["clean", "speaker_mix"])) == 8
    assert (
        common.get_pooled("R", config, layers, "profile")[0]
        == "R/pooled/tiny-en/layer-0-profile.parquet"
    )
    assert common.get_log("R", "pooled", "{model}") == "R/logs/pooled/{model}.log"
    assert common.get_benchmark("R", "tables", "tables") == "R/benchmarks/tables/tables.jsonl"
    assert common.get_final_output("R") == ["R/report.html"]
    assert common.get_tables("R", ["prefix_counts"]) == [
        "R/tables/prefix_counts.csv",
        "R/tables/prefix_counts.md",
    ]


def test_result_paths_come_from_one_template_each():
    from whisper_spi.schemas import CONTRACTS, FILES, result_path

    assert not set(CONTRACTS) & set(FILES)
    assert result_path("R", "spectra", model="m", layer=3) == (
        "R/decode/m/{condition}/shard-{shard}/layer-3.parquet"
    )
    assert result_path("R", "figure_png", name="scree") == "R/figures/scree.png"


def test_gpu_resources_fit_the_model_and_grow_with_each_retry(common, config):
    from types import SimpleNamespace

    from whisper_spi.plan import job_resources, parameter_count

    configs = {"small": {"d_model": 16, "vocab_size": 100, "num_mel_bins": 8,
                         "max_source_positions": 8, "max_target_positions": 8,
                         "encoder_layers": 1, "decoder_layers": 1,
                         "encoder_ffn_dim": 32, "decoder_ffn_dim": 32}}  # fmt: skip
    configs["big"] = {**configs["small"], "d_model": 4096, "decoder_layers": 8}
    on_gpu = {**config, "decode": {**config["decode"], "device": "auto"}}
    resources = common.get_gpu_resources(on_gpu, configs, 10)
    intervene = resources("intervene")
    assert intervene["gpu"] == 1
    # a run on the CPU asks for no GPU: its model jobs are limited by the cores alone
    on_cpu = {**config, "decode": {**config["decode"], "device": "cpu"}}
    assert "gpu" not in common.get_gpu_resources(on_cpu, configs, 10)("intervene")
    small, big = SimpleNamespace(model="small"), SimpleNamespace(model="big")
    n_arms = len(config["intervene"]["methods"]) * len(config["intervene"]["strengths"])
    mem, minutes = job_resources(
        "intervene", parameter_count(configs["big"]), config["intervene"]["shard_size"] * n_arms
    )
    assert [intervene["mem_mb"](big, a) for a in (1, 2, 3)] == [mem, 2 * mem, 3 * mem]
    assert [intervene["runtime"](big, a) for a in (1, 2, 3)] == [minutes, 2 * minutes, 3 * minutes]
    assert intervene["mem_mb"](small, 1) < mem and intervene["runtime"](small, 1) <= minutes
    decode = resources("decode", "big")  # a decode rule names its model
    assert decode["mem_mb"](SimpleNamespace(), 1) == intervene["mem_mb"](big, 1)


def test_captions_are_package_data_the_reports_share(common):
    from whisper_spi.analysis.figures import FIGURES
    from whisper_spi.report.sections import EXTRA_FIGURES

    for name, text in [*FIGURES.items(), ("roc", EXTRA_FIGURES["roc"])]:
        raw = Path(common.caption_file(name)).read_text("utf-8")
        assert " ".join(raw.split()) == text


def test_metric_options_are_the_stage_keys(common, config):
    for stage in ("layer_metrics", "pooled", "tables", "figures", "detect"):
        options = json.loads(common.get_metric_options(config, stage))
        assert set(options) == set(stage_keys(stage))


def test_bad_config_is_one_workflow_error(common):
    from snakemake.exceptions import WorkflowError

    with pytest.raises(WorkflowError, match="metrics.n_bootstrap|n_bootstrap"):
        common.validate_config({"metrics": {"n_bootstrap": 3}})


def test_logs_and_benchmarks_live_under_results_dir(tmp_path):
    """Two runs in one directory with different results_dir keep their own logs."""
    config = yaml.safe_load(CONFIG.read_text())
    config["results_dir"] = "run-a"
    changed = tmp_path / "config.yaml"
    changed.write_text(yaml.safe_dump(config))
    out = snakemake(tmp_path, "-n", config=changed).stdout
    paths = re.findall(r"^\s+(?:log|benchmark): (.+)$", out, re.M)
    assert len(paths) > 20 and any("/logs/theory_summary/" in p for p in paths)
    for p in paths:
        for one in p.split(", "):
            assert re.match(r"run-a/(logs|benchmarks)/\w+/", one), one


def test_non_speech_inputs_take_their_own_shards_and_parameters(common, config):
    shards, layers = _plan(common, config)
    cfg = {**config, "nonspeech": {**config["nonspeech"], "n_items": 2}}
    assert common.get_condition_shards(cfg, shards, "silence") == ["000"]  # 2 items, 5 a shard
    assert common.get_condition_shards(cfg, shards, "clean") == shards
    assert common.get_stress_limit(cfg, "silence") == 2
    assert common.get_stress_limit(cfg, "speaker_mix") == 0
    assert json.loads(common.get_stress_params(cfg, "noise_only")) == {
        "colors": ["white", "pink"],
        "level_range_db": [0.0, 0.0],
    }
    labelled = common.get_labelled_transcripts("R", cfg, shards, "tiny-en")
    assert len(labelled) == 4 * 2 + 3 * 1  # speech conditions on every shard, non-speech on one
    assert "R/decode/tiny-en/environmental/shard-000/transcripts.parquet" in labelled
    assert len(common.get_nonspeech_layer_metrics("R", cfg, layers)) == 3 * 4
    opts = json.loads(common.get_taxonomy_options(cfg))
    assert "bag_top" not in opts and set(opts) <= set(cfg["taxonomy"])
    titles = [t for t, _, _ in common.get_report_sections("R", cfg)]
    assert {"Hallucination types", "Non-speech inputs", "Bag of hallucinations"} <= set(titles)
    assert all(p is not None for p in common.get_report_extras("R", cfg))
    assert "'Non-speech inputs' R/tables/nonspeech_rate.csv -" in common.get_report_extra_args(
        "R", cfg
    )


def test_intervention_shards_and_decodes_per_condition(common, config):
    cfg = {
        **config,
        "nonspeech": {**config["nonspeech"], "n_items": 3},
        "intervene": {**config["intervene"], "n_utterances": 7, "shard_size": 2,
                      "methods": ["cross_gain"], "strengths": [0.5],
                      "baselines": ["fallback", "faster_vad"]},
    }  # fmt: skip
    # 7 of the 10 utterances in blocks of 2; a non-speech input has only its 3 items
    by_condition = common.get_intervene_shards(cfg, common.get_n_utterances(cfg))
    assert by_condition["clean"] == ["000", "001", "002", "003"]
    assert by_condition["silence"] == ["000", "001"]
    got = common.get_mitigated("R", cfg, by_condition, "tiny-en")
    assert len(got) == 3 * (4 * 4 + 3 * 2)  # cross_gain and 2 baselines: speech, non-speech
    assert "R/intervene/tiny-en/cross_gain/0.5/noise_only/shard-001.parquet" in got
    assert "R/intervene/tiny-en/fallback/environmental/shard-001.parquet" in got
    assert "R/intervene/tiny-en/faster_vad/clean/shard-003.parquet" in got
    assert not any("environmental/shard-002" in p for p in got)


def test_graded_stress_levels_are_conditions_of_their_own(common, config):
    cfg = {
        **config,
        "stresses": {
            **config["stresses"],
            "speaker_mix": {"n_speakers": 6, "levels": [4, 2]},
            "gaussian_noise": {"snr_db": 0.0, "levels": [10]},
        },
    }
    graded = common.get_graded_conditions(cfg)
    assert graded == ["speaker_mix@2", "speaker_mix@4", "gaussian_noise@10"]
    # each level's parameters: its own value, the other levels left out (no rerun when added)
    assert json.loads(common.get_stress_params(cfg, "speaker_mix@2")) == {"n_speakers": 2}
    assert json.loads(common.get_stress_params(cfg, "speaker_mix")) == {"n_speakers": 6}
    assert json.loads(common.get_stress_params(cfg, "gaussian_noise@10")) == {"snr_db": 10.0}
    pattern = re.compile(f"^(?:{common.get_condition_constraint(graded)})$")
    assert pattern.match("gaussian_noise@10") and pattern.match("silence")
    assert not pattern.match("gaussian_noise@100") and not pattern.match("gaussian_noise@1")
    mix = common.get_mix_manifests("R", ["000"], graded)
    assert mix == [f"R/stress/{c}/shard-000.parquet" for c in
                   ("speaker_mix", "speaker_mix@2", "speaker_mix@4")]  # fmt: skip
    shards = ["000", "001"]
    plain = common.get_labelled_transcripts("R", cfg, shards, "tiny-en")
    with_graded = common.get_labelled_transcripts("R", cfg, shards, "tiny-en", graded)
    assert len(with_graded) == len(plain) + 3 * 2
    inputs = common.get_levels_inputs("R", shards, {"tiny-en": 4}, graded, ["tiny-en"])
    assert len(inputs["transcripts"]) == (4 + 3) * 2
    assert "R/metrics/tiny-en/speaker_mix@2/layer-3.parquet" in inputs["metrics"]
    titles = [t for t, _, _ in common.get_report_sections("R", cfg)]
    assert "Graded stress" in titles
    flat = {**cfg, "stresses": {n: {**b, "levels": []} for n, b in cfg["stresses"].items()}}
    assert common.get_graded_conditions(flat) == []
    assert "Graded stress" not in [t for t, _, _ in common.get_report_sections("R", flat)]
