"""The cost model: a Whisper's parameter count from its config, and job resources."""

from __future__ import annotations

import pytest

from whisper_spi.plan import COST_S, job_resources, parameter_count


@pytest.mark.parametrize(
    ("kw"),
    [
        dict(d_model=64, encoder_layers=2, decoder_layers=3, encoder_ffn_dim=96,
             decoder_ffn_dim=128, vocab_size=1000, num_mel_bins=80),
        dict(d_model=32, encoder_layers=1, decoder_layers=1, encoder_ffn_dim=64,
             decoder_ffn_dim=64, vocab_size=300, num_mel_bins=128),
    ],
)  # fmt: skip
def test_parameter_count_equals_torchs(kw):
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    config = WhisperConfig(
        **kw, max_source_positions=100, max_target_positions=40, encoder_attention_heads=2,
        decoder_attention_heads=2, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        decoder_start_token_id=3,
    )  # fmt: skip
    model = WhisperForConditionalGeneration(config)
    assert parameter_count(config.to_dict()) == sum(p.numel() for p in model.parameters())


def test_parameter_count_of_the_paper_models_matches_their_model_cards():
    """39 M, 242 M and 809 M (openai/whisper-tiny, -small, -large-v3-turbo)."""
    common = {"max_source_positions": 1500, "max_target_positions": 448}
    layouts = {
        39e6: dict(d_model=384, encoder_layers=4, decoder_layers=4, encoder_ffn_dim=1536,
                   decoder_ffn_dim=1536, vocab_size=51865, num_mel_bins=80),
        242e6: dict(d_model=768, encoder_layers=12, decoder_layers=12, encoder_ffn_dim=3072,
                    decoder_ffn_dim=3072, vocab_size=51865, num_mel_bins=80),
        809e6: dict(d_model=1280, encoder_layers=32, decoder_layers=4, encoder_ffn_dim=5120,
                    decoder_ffn_dim=5120, vocab_size=51866, num_mel_bins=128),
    }  # fmt: skip
    for published, layout in layouts.items():
        assert parameter_count({**common, **layout}) == pytest.approx(published, rel=0.04)


def test_job_resources_grow_with_the_model_and_the_work():
    for stage in COST_S:
        small_mem, small_min = job_resources(stage, 39_000_000, 16)
        big_mem, big_min = job_resources(stage, 809_000_000, 16)
        assert small_mem < big_mem and small_min < big_min
        assert job_resources(stage, 39_000_000, 1600)[1] > small_min
        assert job_resources(stage, 39_000_000, 1600)[0] == small_mem
    # the weights three times over in fp32: turbo's 3.2 GB of weights need > 9.6 GB
    assert job_resources("decode", 809_000_000, 1)[0] > 3 * 809e6 * 4 / 2**20


@pytest.mark.parametrize("config_name", ["config.yaml", "paper-shaped", "study.yaml"])
def test_the_plans_job_counts_are_snakemakes(tmp_path, config_name):
    """`whisper-spi plan`'s jobs per model stage equal Snakemake's own dry run (the demo
    config, a small config of the paper's shape: both splits' worth of sharding, every
    stage on, theory on a few pairs, graded stress; and the study's: graded stress, the
    interventions on one of its models)."""
    import yaml

    from tests.snakemake_runner import ROOT, job_counts, snakemake
    from whisper_spi.config import validate
    from whisper_spi.corpus.manifest import list_utterances
    from whisper_spi.decode.models import model_config
    from whisper_spi.plan import cost_plan

    name = "study.yaml" if config_name == "study.yaml" else "config.yaml"
    config = yaml.safe_load((ROOT / "config" / name).read_text())
    if config_name == "paper-shaped":
        config["stresses"]["gaussian_noise"]["levels"] = [10, 5]
        config["corpus"].update(limit=40, shard_size=12)
        config["models"] = {"tiny-en": config["models"]["tiny-en"]}
        config["nonspeech"]["n_items"] = 30
        config["intervene"].update(n_utterances=20, shard_size=7, strengths=[0.2, 0.5])
        config["theory"]["n_utterances"] = 2
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    counts = job_counts(snakemake(tmp_path, "-n", config=path))
    config = validate(config)
    corpus = config["corpus"]
    n = len(list_utterances(corpus["root"], corpus["splits"], corpus["limit"]))
    models = {m: model_config(s, config["model_cache"]) for m, s in config["models"].items()}
    plan = cost_plan(config, n, models)
    jobs = {(r["stage"], r["model"]): r["jobs"] for r in plan.iter_rows(named=True)}
    for model in models:
        assert jobs["decode", model] == counts[f"decode_{model.replace('-', '_')}"]
    for stage, rule in (("intervene", "intervene"), ("baselines", "baselines"),
                        ("theory", "theory_measure")):  # fmt: skip
        assert sum(jobs[stage, m] for m in models) == counts.get(rule, 0), stage


def test_every_decoded_baseline_has_a_cost_and_the_job_limit_is_the_dearest():
    from whisper_spi.plan import BASELINE_COST_S, COST_S
    from whisper_spi.registry import DECODED_BASELINES

    assert list(BASELINE_COST_S) == list(DECODED_BASELINES)
    assert COST_S["baselines"] == max(BASELINE_COST_S.values())
