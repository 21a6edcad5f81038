"""The decoder-state probe (method ``probe``): an L2 logistic regression on the row means of
every layer and component, on the same speaker folds as every other method (issue 30)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from whisper_spi import detect
from whisper_spi.detect import crossval
from whisper_spi.detect import model as dmodel
from whisper_spi.detect.by_type import METHODS_BY_TYPE, auroc_by_type
from whisper_spi.detect.figure import FIGURE_METHODS
from whisper_spi.report import findings as fd
from whisper_spi.report import verdicts as vd

LAYERS, COMPS, D = (0, 1), ("cross_attn", "ffn"), 6


def probe_frame(
    rng: np.random.Generator,
    *,
    probe_signal: float,
    spectral_signal: float,
    n_speakers: int = 16,
    per_speaker: int = 8,
) -> pl.DataFrame:
    """A features-shaped frame. The label moves the row means of layer 1's ffn along one
    direction by ``probe_signal`` noise SDs, and one spectral feature by ``spectral_signal``;
    everything else is noise. One decode has no row mean at all (null), one an empty decode's
    (NaN, T = 0)."""
    n = n_speakers * per_speaker
    y = np.zeros(n, bool)
    y[rng.permutation(n)[: int(0.4 * n)]] = True
    u = rng.normal(size=D)
    u /= np.linalg.norm(u)
    frame = {
        "model": ["m"] * n,
        "condition": np.where(y, "gaussian_noise", "clean"),
        "utt_id": [f"u{i:03d}" for i in range(n)],
        "speaker": [f"s{i // per_speaker:02d}" for i in range(n)],
        "hallucination": y,
        "wer": np.where(y, 0.9, 0.1),
        "n_tokens": rng.integers(5, 50, n),
        "hit_max_length": np.zeros(n, bool),
        "avg_logprob": rng.normal(-0.5, 0.2, n),
        "compression_ratio": rng.normal(1.5, 0.2, n),
        "no_speech_prob": rng.random(n),
        "n_rows": rng.integers(5, 50, n),
        "L0_ffn_neff_k10": spectral_signal * y + rng.normal(size=n),
        "L1_ffn_alpha_k10": rng.normal(size=n),
    }
    for layer in LAYERS:
        for comp in COMPS:
            X = rng.normal(size=(n, D)).astype(np.float32)
            if (layer, comp) == (1, "ffn"):
                X += (probe_signal * y)[:, None] * u[None, :]
            rows: list = [x.tolist() for x in X]
            rows[3] = None  # no row mean for this decode (a layer not captured)
            rows[5] = [float("nan")] * D  # an empty decode: the mean of no rows
            frame[f"L{layer}_{comp}_row_mean"] = pl.Series(rows, dtype=pl.List(pl.Float32))
    return pl.DataFrame(frame)


def _auroc(res: pl.DataFrame, method: str) -> dict:
    return res.filter(pl.col("method") == method).row(0, named=True)


def _probe_row(cmp: pl.DataFrame, method: str = "ours") -> dict:
    rows = cmp.filter((pl.col("method") == method) & (pl.col("baseline") == "probe"))
    assert rows.height == 1
    return rows.row(0, named=True)


# --------------------------------------------------------------------------- known answers


def test_probe_finds_a_direction_the_spectra_do_not_carry():
    df = probe_frame(np.random.default_rng(0), probe_signal=5.0, spectral_signal=0.0)
    oof = detect.cross_validate(df, settings=("all",), methods=["ours", "probe"], seed=2)
    assert oof["score"].is_finite().all()  # null and NaN row means are imputed
    res, cmp = detect.evaluate(oof, seed=2, n_boot=300)
    probe, ours = _auroc(res, "probe"), _auroc(res, "ours")
    assert probe["auroc"] > 0.95 and probe["auroc_lo"] > 0.85
    assert ours["auroc_lo"] <= 0.5 <= ours["auroc_hi"]
    row = _probe_row(cmp)
    assert not row["best_baseline"]  # the probe is no heuristic
    assert row["d_auroc"] == pytest.approx(ours["auroc"] - probe["auroc"], abs=1e-12)
    assert row["d_auroc_hi"] < 0  # the probe is better, and the interval says so
    claim = [r for r in fd.detector_claims(cmp) if "probe" in r["claim"]]
    assert [r["verdict"] for r in claim] == [vd.FAILS]


def test_noise_row_means_give_a_chance_probe():
    df = probe_frame(np.random.default_rng(1), probe_signal=0.0, spectral_signal=4.0)
    oof = detect.cross_validate(df, settings=("all",), methods=["ours", "probe"], seed=2)
    res, cmp = detect.evaluate(oof, seed=2, n_boot=300)
    probe = _auroc(res, "probe")
    assert probe["auroc_lo"] <= 0.5 <= probe["auroc_hi"]
    assert _auroc(res, "ours")["auroc"] > 0.9
    row = _probe_row(cmp)
    assert row["d_auroc_lo"] > 0
    claim = [r for r in fd.detector_claims(cmp) if "probe" in r["claim"]]
    assert [r["verdict"] for r in claim] == [vd.HOLDS]


# --------------------------------------------------------------------------- folds, order


def test_probe_folds_are_speaker_grouped_and_shared():
    df = probe_frame(np.random.default_rng(2), probe_signal=2.0, spectral_signal=1.0)
    oof = detect.cross_validate(df, methods=["ours", "avg_logprob", "probe"], seed=5)
    for (setting,), g in oof.filter(pl.col("method") == "probe").group_by("setting"):
        assert g["fold"].n_unique() > 1, setting
        for f in g["fold"].unique():
            test = set(g.filter(pl.col("fold") == f)["speaker"])
            train = set(g.filter(pl.col("fold") != f)["speaker"])
            assert test and train and not test & train, (setting, f)
    folds = oof.pivot(on="method", index=["setting", "utt_id"], values="fold")
    assert (folds["probe"] == folds["ours"]).all()  # paired: the same folds as ours
    assert (folds["probe"] == folds["avg_logprob"]).all()


def test_probe_scores_do_not_depend_on_row_order():
    df = probe_frame(np.random.default_rng(3), probe_signal=1.5, spectral_signal=0.0)
    shuffled = df.sample(fraction=1.0, shuffle=True, seed=11)
    assert not shuffled["utt_id"].equals(df["utt_id"])
    a, b = (
        detect.cross_validate(f, methods=["probe"], seed=4).sort("setting", "utt_id")
        for f in (df, shuffled)
    )
    assert a.select("setting", "utt_id", "speaker", "fold").equals(
        b.select("setting", "utt_id", "speaker", "fold")
    )
    np.testing.assert_allclose(a["score"].to_numpy(), b["score"].to_numpy(), atol=1e-6)


# --------------------------------------------------------------------------- reference


def _newton_l2_logistic(Z: np.ndarray, y: np.ndarray, C: float) -> tuple[np.ndarray, float]:
    """min_w,b ½|w|² + C Σ log(1 + exp(-(2y-1)(Zw + b))), the intercept unpenalised, by
    Newton's method (numpy only, independent of scikit-learn)."""
    n, p = Z.shape
    A = np.hstack([Z, np.ones((n, 1))])
    theta = np.zeros(p + 1)
    reg = np.eye(p + 1)
    reg[p, p] = 0.0
    for _ in range(100):
        prob = 1.0 / (1.0 + np.exp(-(A @ theta)))
        grad = reg @ theta + C * A.T @ (prob - y)
        H = reg + C * (A.T * (prob * (1 - prob))) @ A
        step = np.linalg.solve(H, grad)
        theta -= step
        if np.abs(step).max() < 1e-12:
            break
    return theta[:p], float(theta[p])


def test_probe_matches_a_numpy_reference_fit(monkeypatch):
    """With the C grid pinned to one value, every fold's out-of-fold scores are those of a
    hand-built model: the row means concatenated in (layer, component) order, training-fold
    medians for the missing values, training-fold standardisation, L2 logistic regression."""
    C = 0.05
    monkeypatch.setattr(dmodel, "CS_GRID", (C,))
    df = probe_frame(np.random.default_rng(4), probe_signal=1.0, spectral_signal=0.0)
    oof = detect.cross_validate(df, settings=("all",), methods=["probe"], seed=6)
    names = [f"L{layer}_{c}_row_mean" for layer in LAYERS for c in COMPS]
    assert detect.row_mean_names(df) == names

    def block(col: pl.Series) -> np.ndarray:
        return np.array([[np.nan] * D if v is None else v for v in col.to_list()], float)

    X = np.hstack([block(df[c]) for c in names])
    np.testing.assert_array_equal(
        crossval.matrix(df, names), X
    )  # list columns flatten in order, null -> NaN
    y = df["hallucination"].to_numpy().astype(float)
    order = oof.select("utt_id", "fold", "score")
    assert order["utt_id"].equals(df["utt_id"])
    fold, got = order["fold"].to_numpy(), order["score"].to_numpy()
    for f in np.unique(fold):
        tr, te = fold != f, fold == f
        med = np.nanmedian(X[tr], axis=0)
        Xtr = np.where(np.isnan(X[tr]), med, X[tr])
        mu, sd = Xtr.mean(0), Xtr.std(0)
        w, b = _newton_l2_logistic((Xtr - mu) / sd, y[tr], C)
        Xte = np.where(np.isnan(X[te]), med, X[te])
        want = ((Xte - mu) / sd) @ w + b
        np.testing.assert_allclose(got[te], want, atol=2e-3 * max(1.0, np.abs(want).max()))


def test_column_medians_equal_nanmedian():
    rng = np.random.default_rng(5)
    for _ in range(50):
        X = np.round(rng.normal(size=(rng.integers(1, 25), rng.integers(1, 8))), 1)
        X[rng.random(X.shape) < 0.3] = np.nan
        X[rng.random(X.shape) < 0.05] = np.inf  # non-finite counts as missing
        X[:, 0] = np.nan  # an all-missing column
        want = np.full(X.shape[1], np.nan)
        for j in range(X.shape[1]):
            v = X[:, j][np.isfinite(X[:, j])]
            want[j] = np.median(v) if v.size else np.nan
        np.testing.assert_array_equal(dmodel.column_medians(X), want)


# --------------------------------------------------------------------------- wiring


def test_probe_is_compared_against_not_a_baseline():
    probe = crossval.METHODS["probe"]
    assert probe.kind == "lr" and not probe.baseline and probe.reference and probe.C == "cv"
    assert "probe" not in detect.BASELINES and detect.REFERENCES == ("probe",)
    assert "probe" in FIGURE_METHODS and "probe" in METHODS_BY_TYPE


def test_tables_markdown_and_by_type_include_the_probe():
    df = probe_frame(np.random.default_rng(6), probe_signal=5.0, spectral_signal=0.0)
    methods = ["ours", "ours_no_T", "avg_logprob", "heuristics_lr", "probe"]
    oof = detect.cross_validate(df, settings=("all",), methods=methods, seed=1)
    res, cmp = detect.evaluate(oof, seed=1, n_boot=50)
    assert "probe" in set(res["method"])
    # probe rows only as the thing compared against; best_baseline stays among heuristics
    assert "probe" not in set(cmp["method"])
    assert set(cmp.filter(pl.col("baseline") == "probe")["method"]) == {"ours", "ours_no_T"}
    assert set(cmp.filter(pl.col("best_baseline"))["baseline"]) <= set(detect.BASELINES)
    md = detect.markdown_report(res, cmp)
    assert "## Ours minus the decoder-state probe" in md
    assert "| m | all | ours | probe |" in md
    types = np.where(df["hallucination"].to_numpy(), "fabrication", "correct")
    labels = df.select("model", "condition", "utt_id", type=pl.Series(types))
    by_type = auroc_by_type(oof, labels, seed=1, n_boot=50)
    fab = by_type.filter((pl.col("method") == "probe") & (pl.col("positive") == "fabrication"))
    assert fab.height and fab["auroc"][0] > 0.9
    chart = detect.roc_figure(oof).to_dict()
    assert "probe" in chart["spec"]["encoding"]["color"]["sort"]


def test_matrix_reads_list_and_array_row_means_alike():
    df = probe_frame(np.random.default_rng(7), probe_signal=1.0, spectral_signal=0.0)
    names = detect.row_mean_names(df)
    dense = df.with_columns(pl.col(n).fill_null([0.0] * D) for n in names)
    as_array = dense.with_columns(pl.col(n).cast(pl.Array(pl.Float32, D)) for n in names)
    np.testing.assert_array_equal(
        crossval.matrix(dense, [*names, "n_rows"]), crossval.matrix(as_array, [*names, "n_rows"])
    )
    assert crossval.matrix(dense, names).shape == (df.height, len(names) * D)


def test_probe_needs_row_means_and_is_not_saved_as_a_detector():
    df = probe_frame(np.random.default_rng(8), probe_signal=1.0, spectral_signal=0.0)
    with pytest.raises(ValueError, match="no feature column"):
        detect.cross_validate(df.drop(detect.row_mean_names(df)), methods=["probe"])
    with pytest.raises(ValueError, match="not saved as a detector"):
        detect.fit_detector(df, method="probe")
