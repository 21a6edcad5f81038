"""Interventions in the decoder: identity at strength 0, exact projection, no leaked hooks."""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np
import polars as pl
import pytest
import torch

from whisper_spi.decode.capture import Capture
from whisper_spi.decode.loop import encode, greedy_decode, log_mel
from whisper_spi.errors import WhisperSpiError
from whisper_spi.mitigation.intervene import (
    Intervene,
    Intervention,
    fit_subspace,
    load_intervention,
    save_intervention,
)

from .conftest import random_whisper

COMPONENTS = ("cross_attn", "self_attn", "ffn")


@pytest.fixture(scope="module")
def tiny_random():
    """A 3+3-layer random Whisper (d = 16) in float64 and one teacher-forced input."""
    model = random_whisper(decoder_layers=3)
    with torch.no_grad():
        enc = model.model.encoder(torch.randn(2, 8, 16, dtype=torch.float64)).last_hidden_state
    ids = torch.tensor([[3, 5, 6, 7, 8, 9], [3, 9, 8, 7, 6, 5]])
    return model, enc, ids


def _captured(model, enc, ids, intervention=None):
    """Every component's output of one teacher-forced pass, with the intervention if given."""
    edit = Intervene(model, intervention) if intervention else contextlib.nullcontext()
    with edit, Capture(model, COMPONENTS) as cap, torch.no_grad():
        model(encoder_outputs=(enc,), decoder_input_ids=ids)
    return cap.matrices()


def _orthonormal(d: int, r: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, r)))
    return q.T


def test_project_at_full_strength_is_orthogonal_and_touches_nothing_else(tiny_random):
    model, enc, ids = tiny_random
    basis = _orthonormal(16, 3, seed=1)
    spec = Intervention("project", 1.0, layers=(1,), component="cross_attn", basis={1: basis})
    plain = _captured(model, enc, ids)
    edited = _captured(model, enc, ids, spec)
    hooked = edited[1, "cross_attn"].numpy()
    # orthogonal to the subspace, to 1e-5 relative
    assert np.linalg.norm(hooked @ basis.T) / np.linalg.norm(hooked) < 1e-5
    # exactly the plain output minus its projection (the hooked module's input is unchanged)
    raw = plain[1, "cross_attn"].numpy()
    np.testing.assert_allclose(hooked, raw - (raw @ basis.T) @ basis, atol=1e-12)
    # everything computed before it is untouched; what follows sees the edited residual
    for key in [(0, c) for c in COMPONENTS] + [(1, "self_attn")]:
        torch.testing.assert_close(edited[key], plain[key], rtol=0, atol=0)
    assert not torch.allclose(edited[1, "ffn"], plain[1, "ffn"])


@pytest.mark.parametrize(
    ("kind", "component", "factor"),
    [("cross_gain", "cross_attn", 1.4), ("self_damp", "self_attn", 0.6)],
)
def test_gains_scale_their_component(tiny_random, kind, component, factor):
    model, enc, ids = tiny_random
    plain = _captured(model, enc, ids)
    edited = _captured(model, enc, ids, Intervention(kind, 0.4, layers=(0,)))
    torch.testing.assert_close(edited[0, component], factor * plain[0, component])


def test_partial_strength_removes_that_share_of_the_projection(tiny_random):
    model, enc, ids = tiny_random
    basis = _orthonormal(16, 2, seed=2)
    spec = Intervention("project", 0.25, layers=(0,), component="ffn", basis={0: basis})
    plain = _captured(model, enc, ids)[0, "ffn"].numpy()
    edited = _captured(model, enc, ids, spec)[0, "ffn"].numpy()
    np.testing.assert_allclose(edited @ basis.T, 0.75 * (plain @ basis.T), atol=1e-12)


def test_hooks_are_removed_on_exit_even_after_an_error(tiny_random):
    model, enc, ids = tiny_random
    modules = [layer.encoder_attn for layer in model.model.decoder.layers]
    spec = Intervention("cross_gain", 1.0, layers=(0, 1, 2))
    with pytest.raises(RuntimeError, match="boom"), Intervene(model, spec):
        assert all(len(m._forward_hooks) == 1 for m in modules)
        raise RuntimeError("boom")
    assert all(len(m._forward_hooks) == 0 for m in modules)


def test_bad_specs_are_clear_errors(tiny_random):
    model, _, _ = tiny_random
    with pytest.raises(WhisperSpiError, match="strength"):
        Intervention("cross_gain", 1.5, layers=(0,))
    with pytest.raises(WhisperSpiError, match="unknown intervention"):
        Intervention("steer", 0.5, layers=(0,))
    with pytest.raises(WhisperSpiError, match="no subspace for layers"):
        Intervention("project", 0.5, layers=(0,), component="ffn")
    outside = Intervention("self_damp", 0.5, layers=(7,))
    with pytest.raises(WhisperSpiError, match="the decoder has 3"), Intervene(model, outside):
        pass


def test_fit_subspace_recovers_a_planted_shift():
    rng = np.random.default_rng(0)
    direction = _orthonormal(32, 1, seed=3)[0]
    clean = rng.standard_normal((40, 32))
    hallucinated = clean + 5.0 * direction + 0.05 * rng.standard_normal((40, 32))
    basis = fit_subspace(hallucinated, clean, rank=2)
    assert basis.shape == (2, 32)
    np.testing.assert_allclose(basis @ basis.T, np.eye(2), atol=1e-10)
    assert abs(basis[0] @ direction) > 0.999
    with pytest.raises(WhisperSpiError, match="paired rows"):
        fit_subspace(hallucinated[:1], clean[:1], rank=2)


def test_save_and_load_round_trip_without_pickle(tmp_path):
    basis = {0: _orthonormal(16, 2, 4).astype(np.float32), 2: _orthonormal(16, 2, 5)}
    spec = Intervention("project", 0.5, layers=(0, 2), component="self_attn", basis=basis)
    save_intervention(spec, tmp_path / "iv.json", model="tiny", folds=[0, 1])
    assert (tmp_path / "iv.safetensors").is_file()
    back = load_intervention(tmp_path / "iv.json")
    assert back == spec
    np.testing.assert_allclose(back.basis[2], basis[2], atol=1e-7)
    assert load_intervention(tmp_path / "iv.json", strength=1.0).strength == 1.0
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(WhisperSpiError, match="bad.json"):
        load_intervention(tmp_path / "bad.json")


@pytest.mark.slow
def test_strength_zero_and_after_exit_decode_equals_plain(tiny_en, librivox):
    waves = [w for _, w, _ in librivox[:2]]
    enc = encode(tiny_en, log_mel(tiny_en, waves))
    plain = [d.token_ids for d in greedy_decode(tiny_en, enc)]
    basis = {3: _orthonormal(384, 2, 6)}
    specs = [
        Intervention("project", 0.0, layers=(3,), component="cross_attn", basis=basis),
        Intervention("cross_gain", 0.0, layers=(0, 1, 2, 3)),
        Intervention("self_damp", 0.0, layers=(0, 1, 2, 3)),
    ]
    for spec in specs:
        with Intervene(tiny_en.model, spec):
            assert [d.token_ids for d in greedy_decode(tiny_en, enc)] == plain
    # a real edit changes the decode; after the context the plain decode is back
    with Intervene(tiny_en.model, dataclasses.replace(specs[2], strength=1.0)):
        assert [d.token_ids for d in greedy_decode(tiny_en, enc)] != plain
    assert [d.token_ids for d in greedy_decode(tiny_en, enc)] == plain


def _spectra_rows(utt, condition, layer, mean):
    return {"utt_id": utt, "model": "m", "condition": condition, "layer": layer,
            "component": "self_attn", "prefix": 0, "n_rows": 3, "centered": False,
            "sv": [1.0], "row_mean": mean.astype(np.float32).tolist()}  # fmt: skip


def test_project_subspace_is_fitted_on_the_other_folds_only(tmp_path):
    """Speakers of fold 0 hallucinate along one direction, fold 1's along another: the
    subspace applied to fold 0 is fold 1's direction (and vice versa), never its own."""
    from whisper_spi import schemas
    from whisper_spi.mitigation.fit import (
        ALL_FOLDS,
        fit_fold_subspaces,
        hallucinated_stressed,
        load_subspaces,
        save_subspaces,
    )

    rng = np.random.default_rng(0)
    planted = {0: _orthonormal(16, 1, 10)[0], 1: _orthonormal(16, 1, 11)[0]}
    folds = {"s0": 0, "s1": 0, "s2": 1, "s3": 1}
    spectra, labels = [], []
    for speaker, fold in folds.items():
        for k in range(4):
            utt = f"{speaker}-{k}"
            clean = rng.standard_normal(16)
            spectra.append(_spectra_rows(utt, "clean", 0, clean))
            shifted = clean + 4 * planted[fold] + 0.01 * rng.standard_normal(16)
            spectra.append(_spectra_rows(utt, "speaker_mix", 0, shifted))
            # a non-hallucinated stressed decode with a shift elsewhere: never used
            spectra.append(
                _spectra_rows(utt, "time_stretch", 0, clean + 9 * rng.standard_normal(16))
            )
            # speaker_mix hallucinates by WER (a grounded error); time_stretch is a
            # fabrication below the WER threshold: only the definition "fabrication" takes it
            for cond, wer, kind in (
                ("clean", 0.0, "correct"),
                ("speaker_mix", 0.9, "grounded_error"),
                ("time_stretch", 0.4, "fabrication"),
            ):
                labels.append({"utt_id": utt, "speaker": speaker, "condition": cond,
                               "wer": wer, "type": kind, "n_ref_words": 8})  # fmt: skip
        # a non-speech input with the length of s*-0: said words, but no clean twin to fit on
        labels.append({"utt_id": f"{speaker}-0", "speaker": speaker, "condition": "silence",
                       "wer": float("nan"), "type": "fabrication", "n_ref_words": 0})  # fmt: skip
    schemas.write_rows(spectra, "spectra", tmp_path / "layer-0.parquet")
    lab = pl.DataFrame(labels)
    cols = schemas.contract("taxonomy").names
    full = lab.with_columns(*[pl.lit(None).alias(c) for c in cols if c not in lab.columns])
    schemas.write_parquet(full.select(cols), "taxonomy", tmp_path / "labels.parquet")
    by_wer = hallucinated_stressed([tmp_path / "labels.parquet"])
    assert set(by_wer["condition"]) == {"speaker_mix"} and by_wer.height == 16
    by_type = hallucinated_stressed([tmp_path / "labels.parquet"], definition="fabrication")
    assert set(by_type["condition"]) == {"time_stretch"} and by_type.height == 16
    subspaces = fit_fold_subspaces(
        [tmp_path / "layer-0.parquet"], [tmp_path / "labels.parquet"], folds, [0],
        "self_attn", rank=1,
    )  # fmt: skip
    assert set(subspaces) == {0, 1, ALL_FOLDS}
    assert abs(subspaces[0].basis[0][0] @ planted[1]) > 0.999
    assert abs(subspaces[1].basis[0][0] @ planted[0]) > 0.999
    save_subspaces(subspaces, tmp_path / "subspace", model="m")
    back = load_subspaces(tmp_path / "subspace", strength=0.5)
    assert set(back) == {0, 1} and back[0].strength == 0.5
    np.testing.assert_allclose(back[1].basis[0], subspaces[1].basis[0], atol=1e-7)
    assert (tmp_path / "subspace" / "all.json").is_file()
    with pytest.raises(WhisperSpiError, match="fewer than intervene.rank"):
        fit_fold_subspaces(
            [tmp_path / "layer-0.parquet"], [tmp_path / "labels.parquet"], folds, [0],
            "self_attn", rank=9,
        )  # fmt: skip


@pytest.mark.slow
def test_transcribe_cli_applies_an_intervention_file(tmp_path, tiny_en, librivox, capsys):
    """`whisper-spi transcribe --intervention FILE` on a tiny random Whisper (d = 16, the
    tiny.en vocabulary and processor): strength 0 prints the plain transcript, strength 1
    what the Python API gives under the same intervention."""
    import soundfile as sf
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    from whisper_spi.cli import main
    from whisper_spi.decode.loop import transcribe
    from whisper_spi.decode.models import load_model

    ref = tiny_en.model.config
    cfg = WhisperConfig(
        vocab_size=ref.vocab_size, d_model=16, encoder_layers=1, decoder_layers=2,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
        decoder_ffn_dim=32, num_mel_bins=ref.num_mel_bins,
        max_source_positions=ref.max_source_positions, max_target_positions=64,
        pad_token_id=ref.pad_token_id, bos_token_id=ref.bos_token_id,
        eos_token_id=ref.eos_token_id, decoder_start_token_id=ref.decoder_start_token_id,
        init_std=0.5,
    )  # fmt: skip
    torch.manual_seed(0)
    model_dir = tmp_path / "random"
    WhisperForConditionalGeneration(cfg).save_pretrained(model_dir)
    tiny_en.processor.save_pretrained(model_dir)
    tiny_en.generation_config.save_pretrained(model_dir)
    wav = tmp_path / "a.wav"
    sf.write(wav, librivox[0][1], 16000)
    basis = {0: _orthonormal(16, 3, 7), 1: _orthonormal(16, 3, 8)}
    spec = Intervention("project", 1.0, (0, 1), "self_attn", basis)
    save_intervention(spec, tmp_path / "iv.json")

    def cli(*extra):
        assert main(["transcribe", "--model", f"dir:{model_dir}", "--device", "cpu", *extra,
                     str(wav)]) == 0  # fmt: skip
        return capsys.readouterr().out.split("\t", 1)[1].rstrip("\n")

    bundle = load_model(f"dir:{model_dir}", device="cpu")
    plain = transcribe(bundle, [librivox[0][1]], max_new_tokens=30)[0].text
    with Intervene(bundle.model, spec):
        edited = transcribe(bundle, [librivox[0][1]], max_new_tokens=30)[0].text
    assert edited != plain
    assert cli("--intervention", str(tmp_path / "iv.json"), "--max-new-tokens", "30") == edited
    assert cli("--intervention", str(tmp_path / "iv.json"), "--strength", "0",
               "--max-new-tokens", "30") == plain  # fmt: skip
    bad = Intervention("project", 1.0, (0,), "self_attn", {0: _orthonormal(24, 2, 9)})
    save_intervention(bad, tmp_path / "bad.json")
    assert main(["transcribe", "--model", f"dir:{model_dir}", "--device", "cpu",
                 "--intervention", str(tmp_path / "bad.json"), str(wav)]) == 2  # fmt: skip
    assert "d_model" in capsys.readouterr().err


def test_one_job_decodes_every_arm_as_separate_jobs_would(tmp_path, tiny_en):
    """The intervention job decodes its arms in turn with the model loaded once; each arm's
    file equals that arm decoded alone."""
    from whisper_spi.cli import main
    from whisper_spi.corpus.manifest import write_manifest
    from whisper_spi.corpus.stress import write_stress_shard
    from whisper_spi.mitigation.run import run_shard

    corpus, shard = tmp_path / "manifest.parquet", tmp_path / "shard-000.parquet"
    write_manifest("demo", ["test-clean"], 3, "skip", corpus, tmp_path / "rejected.parquet")
    write_stress_shard(corpus, "gaussian_noise", 0, 3, 0, None, tmp_path / "audio", shard)
    common = dict(model_name="tiny-en", condition="gaussian_noise", stress_manifests=[shard],
                  corpus_manifest=corpus, max_new_tokens=32)  # fmt: skip
    arms = [("cross_gain", 0.5, tmp_path / "a.parquet"), ("self_damp", 0.2, tmp_path / "b.parquet")]
    run_shard(tiny_en, arms=arms, **common)
    for method, strength, together in arms:
        alone = tmp_path / f"alone-{method}.parquet"
        run_shard(tiny_en, arms=[(method, strength, alone)], **common)
        assert pl.read_parquet(together).equals(pl.read_parquet(alone))
        assert pl.read_parquet(alone)["method"].unique().to_list() == [method]
    # arms and outputs must pair up, before any model is loaded
    bad = ["intervene", "--model-name", "m", "--model", "dir:/none", "--condition", "clean",
           "--stress-manifest", str(shard), "--corpus-manifest", str(corpus),
           "--method", "cross_gain", "self_damp", "--strength", "0.1", "0.2", "0.3",
           "--out", "a.parquet", "b.parquet"]  # fmt: skip
    assert main(bad) == 2
