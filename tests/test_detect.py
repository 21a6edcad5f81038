"""whisper_spi.detect: features, speaker-grouped CV, bootstrap metrics, JSON detector."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score

from whisper_spi import detect, schemas
from whisper_spi.analysis.spectra import (
    ObservableOptions,
    covariance_eigenvalues,
    effective_rank,
    kirchhoff_index,
    spectral_alpha,
    tail_energy,
)
from whisper_spi.detect.evaluate import _weighted_auc_ap

CONDITIONS = ("clean", "time_stretch", "speaker_mix", "gaussian_noise")


def synthetic_frame(
    rng: np.random.Generator, n_speakers: int = 12, per_speaker: int = 8, signal: float = 3.0
) -> pl.DataFrame:
    """A features-shaped frame: one spectral feature carries the label, the rest is noise."""
    n = n_speakers * per_speaker
    y = rng.random(n) < 0.4
    cond = np.where(y, "gaussian_noise", "clean")
    return pl.DataFrame(
        {
            "model": ["m"] * n,
            "condition": cond,
            "utt_id": [f"u{i}" for i in range(n)],
            "speaker": [f"s{i // per_speaker}" for i in range(n)],
            "hallucination": y,
            "wer": np.where(y, 0.9, 0.1),
            "n_tokens": rng.integers(5, 50, n),
            "hit_max_length": np.zeros(n, bool),
            "avg_logprob": rng.normal(-0.5, 0.2, n),
            "compression_ratio": rng.normal(1.5, 0.2, n),
            "no_speech_prob": np.where(rng.random(n) < 0.1, np.nan, rng.random(n)),
            "n_rows": rng.integers(5, 50, n),
            "L0_ffn_neff_k10": signal * y + rng.normal(size=n),
            "L0_ffn_alpha_k10": rng.normal(size=n),
            "L1_cross_attn_neff_k10": np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n)),
        }
    )


# --------------------------------------------------------------------------- folds


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(4, 120),
    n_speakers=st.integers(2, 15),
    n_splits=st.integers(2, 7),
    seed=st.integers(0, 2**40),
)
def test_speaker_folds_never_share_a_speaker(n, n_speakers, n_splits, seed):
    rng = np.random.default_rng(seed)
    speakers = rng.integers(0, n_speakers, n).astype(str)
    labels = rng.random(n) < 0.3
    if len(np.unique(speakers)) < 2:
        with pytest.raises(ValueError, match="2 speakers"):
            detect.speaker_folds(speakers, labels, n_splits, seed)
        return
    fold = detect.speaker_folds(speakers, labels, n_splits, seed)
    assert fold.shape == (n,) and (fold >= 0).all()
    assert len(np.unique(fold)) <= min(n_splits, len(np.unique(speakers)))
    for f in np.unique(fold):
        assert not set(speakers[fold == f]) & set(speakers[fold != f])


def test_speaker_folds_need_two_speakers():
    with pytest.raises(ValueError, match="2 speakers"):
        detect.speaker_folds(["a"] * 5, [0, 1, 0, 1, 0])
    # two speakers: two folds, not five
    assert len(np.unique(detect.speaker_folds(list("aabb"), [0, 1, 0, 1]))) == 2


def test_cross_validate_folds_are_speaker_disjoint_and_shared():
    df = synthetic_frame(np.random.default_rng(0))
    oof = detect.cross_validate(df, settings=("all",), methods=["ours", "avg_logprob"], seed=3)
    for _, g in oof.group_by("method"):
        for f in g["fold"].unique():
            test = set(g.filter(pl.col("fold") == f)["speaker"])
            train = set(g.filter(pl.col("fold") != f)["speaker"])
            assert not test & train
    a, b = (
        oof.filter(pl.col("method") == m).sort("utt_id")["fold"] for m in ("ours", "avg_logprob")
    )
    assert a.equals(b)  # every method sees the same folds
    assert oof.filter(pl.col("method") == "ours").height == df.height


# --------------------------------------------------------------------------- metrics


def test_weighted_metrics_match_sklearn():
    rng = np.random.default_rng(1)
    y = rng.random(60) < 0.3
    s = np.round(rng.normal(size=60), 1)  # ties on purpose
    W = rng.integers(0, 4, size=(5, 60)).astype(float)
    W[:, np.flatnonzero(y)[0]] += 1
    W[:, np.flatnonzero(~y)[0]] += 1
    auc, ap = _weighted_auc_ap(s, y, W)
    for b in range(5):
        assert auc[b] == pytest.approx(roc_auc_score(y, s, sample_weight=W[b]), abs=1e-12)
        assert ap[b] == pytest.approx(average_precision_score(y, s, sample_weight=W[b]), 1e-12)


def test_planted_signal_and_shuffled_labels():
    rng = np.random.default_rng(2)
    df = synthetic_frame(rng, n_speakers=20, per_speaker=10)
    methods = ["ours", "avg_logprob", "avg_logprob_lr", "heuristics_lr"]
    oof = detect.cross_validate(df, settings=("all",), methods=methods, seed=1)
    res, cmp = detect.evaluate(oof, seed=1, n_boot=300)
    ours = res.filter(pl.col("method") == "ours").row(0, named=True)
    assert ours["auroc"] > 0.9 and ours["auroc_lo"] > 0.8
    assert ours["auroc_lo"] <= ours["auroc"] <= ours["auroc_hi"]
    assert ours["n"] == df.height and ours["n_pos"] == int(df["hallucination"].sum())
    best = cmp.filter(pl.col("best_baseline") & (pl.col("method") == "ours"))
    assert best.height == 1 and best["d_auroc_lo"][0] > 0  # ours beats noise baselines

    shuffled = df.with_columns(pl.Series("hallucination", rng.permutation(df["hallucination"])))
    oof = detect.cross_validate(shuffled, settings=("all",), methods=["ours"], seed=1)
    r = detect.results_table(oof, seed=1, n_boot=300).row(0, named=True)
    assert r["auroc_lo"] <= 0.5 <= r["auroc_hi"]


def test_stressed_setting_drops_clean():
    df = synthetic_frame(np.random.default_rng(3))
    df = df.with_columns(
        condition=pl.when(pl.arange(0, df.height) % 3 == 0)
        .then(pl.lit("clean"))
        .otherwise(pl.lit("speaker_mix"))
    )
    oof = detect.cross_validate(df, methods=["ours", "no_speech_prob"])
    assert set(oof["setting"]) == {"all", "stressed"}
    assert "clean" not in set(oof.filter(pl.col("setting") == "stressed")["condition"])
    assert oof["score"].is_finite().all()  # NaN heuristics and features are imputed
    res = detect.results_table(oof, n_boot=50)
    assert res.columns == [
        "model", "setting", "method", "auroc", "auroc_lo", "auroc_hi",
        "auprc", "auprc_lo", "auprc_hi", "n", "n_pos",
    ]  # fmt: skip
    chart = detect.roc_figure(oof)
    assert chart.to_dict()["facet"]["column"]["field"] == "model"


# --------------------------------------------------------------------------- detector


def test_detector_json_round_trip(tmp_path):
    df = synthetic_frame(np.random.default_rng(4))
    det = detect.fit_detector(df, C=0.5)
    path = tmp_path / "detector.json"
    detect.save_detector(det, path)
    assert "pickle" not in path.read_text()
    json.loads(path.read_text())  # plain JSON
    loaded = detect.load_detector(path)
    assert loaded == det
    np.testing.assert_array_equal(detect.score(loaded, df), detect.score(det, df))

    # the same model in scikit-learn: median-impute, standardise, L2 logistic regression
    names = det["feature_names"]
    assert names == [*detect.spectral_feature_names(df), "n_rows"]
    X = df.select(names).to_numpy().astype(float)
    med = np.nanmedian(X, axis=0)
    X = np.where(np.isnan(X), med, X)
    Z = (X - X.mean(0)) / X.std(0)
    lr = LogisticRegression(C=0.5, max_iter=2000).fit(Z, df["hallucination"].to_numpy())
    np.testing.assert_allclose(detect.score(loaded, df), lr.decision_function(Z), atol=1e-6)

    row = df.row(7, named=True)
    assert detect.score(loaded, row) == pytest.approx(detect.score(det, df)[7], abs=1e-12)
    assert 0 < detect.probability(loaded, row) < 1
    with pytest.raises(KeyError):
        detect.score(loaded, {n: 1.0 for n in names[1:]})


# --------------------------------------------------------------------------- features


def _spectra_rows(rng, utt, condition, T, layers=(0, 1), comps=("cross_attn", "ffn")):
    rows = []
    for layer in layers:
        for comp in comps:
            sv = np.sort(rng.gamma(2.0, size=min(T, 64)))[::-1]
            for prefix in (0, 16):
                if prefix and prefix > T:
                    continue
                rows.append(
                    {
                        "utt_id": utt,
                        "model": "tiny",
                        "condition": condition,
                        "layer": layer,
                        "component": comp,
                        "prefix": prefix,
                        "n_rows": prefix or T,
                        "centered": False,
                        # prefix rows get a different spectrum: they must not leak in
                        "sv": sv if prefix == 0 else sv[: min(prefix, len(sv))] * 7,
                        "row_mean": None if prefix else rng.normal(size=4).astype(np.float32),
                    }
                )
    return rows


def _transcript(utt, speaker, condition, wer):
    return {
        "utt_id": utt,
        "speaker": speaker,
        "model": "tiny",
        "condition": condition,
        "reference": "a b",
        "hypothesis": "a c",
        "token_ids": [1, 2],
        "n_tokens": 2,
        "hit_max_length": False,
        "avg_logprob": -0.3 - wer,
        "compression_ratio": 1.2 + wer,
        "no_speech_prob": 0.01,
        "wer": wer,
        "hallucination": wer > 0.5,
    }


@pytest.fixture
def decoded(tmp_path):
    """Spectra files (one per condition and layer) and transcripts of 3 utterances x 2 conds."""
    rng = np.random.default_rng(5)
    T = {"clean": [3, 20, 70], "speaker_mix": [1, 40, 225]}  # T=1: NaN Kf/alpha; 225 > 64 sv
    spectra, transcripts, rows_by_cond = [], [], {}
    for cond, ts in T.items():
        rows, trs = [], []
        for i, t in enumerate(ts):
            rows += _spectra_rows(rng, f"1-2-{i}", cond, t)
            trs.append(_transcript(f"1-2-{i}", f"s{i}", cond, 0.1 if cond == "clean" else 0.6 + i))
        rows_by_cond[cond] = (rows, trs)
        for layer in (0, 1):
            p = tmp_path / f"{cond}-layer-{layer}.parquet"
            schemas.write_rows([r for r in rows if r["layer"] == layer], "spectra", p)
            spectra.append(str(p))
        p = tmp_path / f"{cond}-transcripts.parquet"
        schemas.write_rows(trs, "transcripts", p)
        transcripts.append(str(p))
    return spectra, transcripts, rows_by_cond


def test_features_against_direct_calls(decoded):
    spectra, transcripts, rows_by_cond = decoded
    df = detect.features(spectra, transcripts, ObservableOptions(k=(10, 50)))
    assert df.height == 6
    feats = detect.spectral_feature_names(df)
    assert len(feats) == 2 * 2 * 4 * 2
    assert feats[:4] == [
        "L0_cross_attn_neff_k10", "L0_cross_attn_neff_k50",
        "L0_cross_attn_log10_kf_k10", "L0_cross_attn_log10_kf_k50",
    ]  # fmt: skip
    assert df.columns[: len(detect.KEYS) + len(detect.META)] == [*detect.KEYS, *detect.META]
    means = [f"L{layer}_{c}_row_mean" for layer in (0, 1) for c in ("cross_attn", "ffn")]
    assert detect.row_mean_names(df) == means
    assert df.columns[len(detect.KEYS) + len(detect.META) :] == [*feats, *means]
    for cond, (rows, trs) in rows_by_cond.items():
        for r in (r for r in rows if r["prefix"] == 0):
            got = df.filter((pl.col("condition") == cond) & (pl.col("utt_id") == r["utt_id"]))
            got = got.row(0, named=True)
            sv, T = r["sv"], r["n_rows"]
            assert got["n_rows"] == T
            name = f"L{r['layer']}_{r['component']}"
            np.testing.assert_array_equal(got[f"{name}_row_mean"], r["row_mean"])
            for K in (10, 50):
                eig = covariance_eigenvalues(sv[:K], T)
                eig = np.pad(eig, (0, K - len(eig)))
                want = {
                    "neff": effective_rank(sv, k=K),
                    "alpha": spectral_alpha(sv, k=K, start=ObservableOptions().alpha_start),
                    "log10_kf": np.log10(kirchhoff_index(eig)) if T >= 2 else np.nan,
                    "tail_energy": tail_energy(sv, K),
                }
                for obs, w in want.items():
                    v = got[f"{name}_{obs}_k{K}"]
                    if np.isnan(w):
                        assert v is None or np.isnan(v), (name, obs, K)
                    else:
                        assert v == pytest.approx(w, rel=1e-12), (name, obs, K)
        for t in trs:
            got = df.filter((pl.col("condition") == cond) & (pl.col("utt_id") == t["utt_id"]))
            got = got.row(0, named=True)
            assert got["hallucination"] == (t["wer"] > 0.5)
            assert got["speaker"] == t["speaker"]
            assert got["avg_logprob"] == t["avg_logprob"]

    only = detect.features(spectra, transcripts, stressed_only=True)
    assert set(only["condition"]) == {"speaker_mix"}
    assert_frame_equal(only, df.filter(pl.col("condition") == "speaker_mix"))

    with pytest.raises(ValueError, match="more than one"):
        detect.features(spectra + spectra[:1], transcripts)


def test_features_from_capture_matches_features(decoded):
    spectra, transcripts, rows_by_cond = decoded
    df = detect.features(spectra, transcripts)
    rows, trs = rows_by_cond["speaker_mix"]
    by_layer = {layer: [r for r in rows if r["layer"] == layer] for layer in (0, 1)}
    for t in trs:
        mine = [r for rs in by_layer.values() for r in rs if r["utt_id"] == t["utt_id"]]
        one = detect.features_from_capture(mine, t)
        want = df.filter((pl.col("condition") == "speaker_mix") & (pl.col("utt_id") == t["utt_id"]))
        assert_frame_equal(one, want)  # NaN (undefined observable) == NaN here
    # decode_shard's {layer: rows} mapping, several utterances, no wer (unlabelled audio)
    unlabelled = [{k: v for k, v in t.items() if k != "wer"} for t in trs]
    many = detect.features_from_capture(by_layer, unlabelled)
    assert many.height == 3 and many["hallucination"].is_null().all()
    det = detect.fit_detector(synthetic_frame(np.random.default_rng(6)), method="ours_no_T")
    assert np.isfinite(detect.score(det, many)).all()  # its features are a subset: fine
    with pytest.raises(KeyError):  # a feature the detector needs is absent: refused
        detect.score(det, many.drop("L1_cross_attn_neff_k10"))


def test_run_detect_writes_everything(decoded, tmp_path):
    spectra, transcripts, _ = decoded
    paths = detect.run_detect(
        spectra, transcripts, tmp_path / "out", seed=7, n_boot=20, n_splits=3, figure=False
    )
    for p in paths.values():
        assert p.is_file()
    det = detect.load_detector(paths["detector"])
    df = detect.features(spectra, transcripts, **detect.feature_kwargs(det))
    assert np.isfinite(detect.score(det, df)).all()
    assert "| model |" in paths["markdown"].read_text()
    for key, name in (("results", "detect_results"), ("comparison", "detect_comparison"),
                      ("oof", "detect_oof")):  # fmt: skip
        frame = schemas.read_csv(paths[key], name)  # the writer matches its contract
        assert frame.columns == schemas.contract(name).names and frame.height > 0


def test_version_1_detector_loads_with_its_feature_options(tmp_path):
    """v1 files kept k apart and computed features without rank_tol."""
    det = detect.fit_detector(synthetic_frame(np.random.default_rng(2)), method="ours_no_T")
    old = {k: v for k, v in det.items() if k != "feature_options"}
    opts = det["feature_options"]
    old |= {"version": 1, "feature_k": opts["k"],
            "feature_options": {k: opts[k] for k in ("neff_power", "alpha_start", "alpha_stop",
                                                     "kf_floor")}}  # fmt: skip
    (tmp_path / "v1.json").write_text(json.dumps(old))
    kwargs = detect.feature_kwargs(detect.load_detector(tmp_path / "v1.json"))
    assert kwargs["options"] == ObservableOptions(k=tuple(opts["k"]), rank_tol=0.0)


# --------------------------------------------------------------------------- the detect CLI


def test_detect_cli_scores_audio_files(tmp_path, librivox):
    """`whisper-spi detect` on real clips with a hand-written detector on two features that
    CTranslate2 reports independently (decoded length and no-speech probability): the printed
    probability is sigmoid of the hand-computed log-odds, the transcript is CTranslate2's."""
    import subprocess
    import sys

    import ctranslate2
    import soundfile as sf
    from tokenizers import Tokenizer

    from whisper_spi.decode.loop import log_mel
    from whisper_spi.decode.models import load_model

    from .conftest import TINY_EN
    from .test_models import _ct2_dir

    clips = []
    for name, wave, _ in librivox[:2]:
        sf.write(tmp_path / f"{name}.wav", wave, 16000)
        clips.append(tmp_path / f"{name}.wav")
    clips.append(tmp_path / "silence.wav")  # a clip whose no-speech probability is high
    sf.write(clips[-1], np.zeros(32000, np.float32), 16000)
    coef, intercept = [0.15, 4.0], -3.0
    det = detect.fit_detector(synthetic_frame(np.random.default_rng(1)), method="ours_no_T")
    det.update(feature_names=["n_tokens", "no_speech_prob"], impute=[0.0, 0.0], mean=[0.0, 0.0],
               scale=[1.0, 1.0], coef=coef, intercept=intercept)  # fmt: skip
    detect.save_detector(det, tmp_path / "detector.json")

    cmd = [sys.executable, "-m", "whisper_spi.cli", "detect", "--model", TINY_EN,
           "--detector", str(tmp_path / "detector.json"), *map(str, clips)]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [line.split("\t") for line in run.stdout.rstrip("\n").split("\n")]
    assert [path for path, _, _ in lines] == [str(c) for c in clips]

    bundle = load_model(TINY_EN, device="cpu")
    ct2_dir = _ct2_dir(TINY_EN, tmp_path)
    engine = ctranslate2.models.Whisper(str(ct2_dir), compute_type="float32")
    waves = [sf.read(c, dtype="float32")[0] for c in clips]
    ref = engine.generate(
        ctranslate2.StorageView.from_array(log_mel(bundle, waves).float().numpy()),
        [bundle.prompt_ids] * len(clips),
        beam_size=1,
        return_no_speech_prob=True,
    )
    tokenizer = Tokenizer.from_file(str(ct2_dir / "tokenizer.json"))
    for (_, prob, text), r in zip(lines, ref, strict=True):
        ids = r.sequences_ids[0]
        logit = coef[0] * len(ids) + coef[1] * r.no_speech_prob + intercept
        assert float(prob) == pytest.approx(1 / (1 + np.exp(-logit)), abs=2e-3)
        assert text.strip() == tokenizer.decode(ids, skip_special_tokens=True).strip()
    assert float(lines[-1][1]) != float(lines[0][1])  # the features reach the score

    (tmp_path / "bad.json").write_text('{"format": "something else"}')
    bad = subprocess.run([*cmd[:7], str(tmp_path / "bad.json"), str(clips[0])],
                         capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "bad.json" in bad.stderr


# --------------------------------------------------------------------------- by type, speakers


def test_auroc_by_type_against_sklearn_and_empty_types():
    from whisper_spi.detect.by_type import auroc_by_type

    rng = np.random.default_rng(8)
    n = 60
    types = np.array(["correct", "grounded_error", "fabrication"] * (n // 3))
    score = np.where(types == "fabrication", 1.0, 0.0) + rng.normal(0, 0.8, n)
    oof = pl.DataFrame(
        {
            "model": "m", "setting": "all", "condition": "gaussian_noise",
            "utt_id": [f"u{i}" for i in range(n)], "speaker": [f"s{i % 10}" for i in range(n)],
            "hallucination": types != "correct", "fold": 0, "method": "ours", "score": score,
        }
    )  # fmt: skip
    labels = oof.select("model", "condition", "utt_id", type=pl.Series(types))
    res = auroc_by_type(oof, labels, seed=3, n_boot=200)
    assert res.columns == schemas.contract("detect_by_type").names
    row = res.filter(pl.col("positive") == "fabrication", pl.col("negative") == "grounded_error")
    r = row.row(0, named=True)
    both = np.isin(types, ["fabrication", "grounded_error"])
    want = roc_auc_score(types[both] == "fabrication", score[both])
    assert r["auroc"] == pytest.approx(want, abs=1e-12)
    assert r["auroc_lo"] <= r["auroc"] <= r["auroc_hi"]
    assert (r["n_pos"], r["n_neg"], r["n_speakers"]) == (20, 20, 10)
    looping = res.filter(pl.col("positive") == "looping").row(0, named=True)
    assert looping["n_pos"] == 0 and np.isnan(looping["auroc"])


def test_detector_intervals_resample_speakers():
    """Scores that vary between speakers, not within: the speaker bootstrap must be wider
    than one that treats the 10 utterances of a speaker as independent."""
    from whisper_spi.analysis.bootstrap import count_blocks, percentile_interval

    rng = np.random.default_rng(4)
    n_spk, per = 12, 10
    y = np.repeat(rng.random(n_spk) < 0.5, per)
    y[:per], y[per : 2 * per] = True, False  # both classes present
    score = np.repeat(rng.normal(size=n_spk), per) + 0.5 * y
    oof = pl.DataFrame(
        {
            "model": "m", "setting": "all", "condition": "gaussian_noise",
            "utt_id": [f"u{i}" for i in range(len(y))],
            "speaker": [f"s{i // per}" for i in range(len(y))], "hallucination": y,
            "fold": 0, "method": "ours", "score": score,
        }
    )  # fmt: skip
    r = detect.results_table(oof, seed=2, n_boot=400).row(0, named=True)
    W = np.concatenate(list(count_blocks(np.random.default_rng(2), len(y), 400, 400, strata=y)))
    lo, hi = percentile_interval(_weighted_auc_ap(score, y, W)[0], 0.95)
    assert r["auroc_hi"] - r["auroc_lo"] > 1.5 * (hi - lo)


def test_run_detect_with_labels_uses_the_definition_and_writes_by_type(decoded, tmp_path):
    spectra, transcripts, _ = decoded
    keys = pl.concat([pl.read_parquet(t) for t in transcripts]).select(
        "utt_id", "speaker", "model", "condition", "wer", "hit_max_length"
    )
    # clean decodes correct; of the mix, one fabrication and two grounded errors
    types = ["correct"] * 3 + ["fabrication", "grounded_error", "grounded_error"]
    labels = keys.with_columns(
        type=pl.Series(types), her=pl.Series([0.0] * 3 + [0.9, 0.2, 0.3]),
        grounded_share=0.5, target_share=0.5, partner_share=0.0,
        source_shares=pl.lit([0.5], pl.List(pl.Float64)), n_hyp_words=2,
        n_ref_words=2, loop_unit=pl.lit(""), loop_repeats=0, loop_share=0.0,
        hypothesis=pl.lit("a c"),
    )  # fmt: skip
    schemas.write_parquet(labels.select(schemas.contract("taxonomy").names), "taxonomy",
                          tmp_path / "labels.parquet")  # fmt: skip
    paths = detect.run_detect(
        spectra, transcripts, tmp_path / "out", seed=7, n_boot=20, n_splits=3, figure=False,
        labels_paths=[tmp_path / "labels.parquet"], definition="fabrication",
    )  # fmt: skip
    res = schemas.read_csv(paths["results"], "detect_results")
    assert set(res["n_pos"]) == {1}  # one fabrication, not the three WER > 0.5 decodes
    by_type = schemas.read_csv(paths["by_type"], "detect_by_type")
    fab = by_type.filter(pl.col("positive") == "fabrication", pl.col("negative") == "correct")
    assert set(fab["n_pos"]) == {1} and by_type.height > 0
    with pytest.raises(ValueError, match="needs the taxonomy labels"):
        detect.run_detect(spectra, transcripts, tmp_path / "x", definition="fabrication")
