"""Decoded length as a confounder, and the tables' pair sets, on planted synthetic spectra.

Pure length effect: clean and stressed spectra are the same function of the decoded length
T only (s_i = i**-0.5, i <= T), the stressed decodes shorter. Every raw Delta N_eff is then
length alone; the length-adjusted one must be near zero.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from whisper_spi import schemas
from whisper_spi.analysis import layer_metrics as lm
from whisper_spi.analysis import tables
from whisper_spi.analysis.options import MetricOptions
from whisper_spi.analysis.spectra import effective_rank
from whisper_spi.analysis.utterance import length_slopes, utterance_summary

N_UTT, N_SPK, D = 40, 6, 64
OPTS = MetricOptions(k=(10, 50), figure_k=50, n_boot=200, pooled=False)


def lengths() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    clean = rng.integers(8, 49, N_UTT)
    return clean, np.maximum(4, np.round(clean * rng.uniform(0.3, 0.8, N_UTT))).astype(int)


def utt(i: int) -> str:
    return f"{i % N_SPK}-1-{i:03d}"


def spectrum(T: int) -> np.ndarray:
    return np.arange(1, min(T, D) + 1, dtype=np.float64) ** -0.5


def write(root: Path, types: list[str] | None = None) -> tuple[list[str], pl.DataFrame]:
    Tc, Ts = lengths()
    rows = []
    for cond, T in (("clean", Tc), ("time_stretch", Ts)):
        for i in range(N_UTT):
            rows.append({"utt_id": utt(i), "model": "m", "condition": cond, "layer": 0,
                         "component": "cross_attn", "prefix": 0, "n_rows": int(T[i]),
                         "centered": False, "sv": spectrum(int(T[i])).tolist(),
                         "row_mean": None})  # fmt: skip
    spectra = root / "spectra.parquet"
    schemas.write_parquet(pl.DataFrame(rows), "spectra", spectra)
    metrics = root / "metrics.parquet"
    lm.write_layer_metrics(lm.layer_metrics([str(spectra)], OPTS), metrics)
    pairs = pl.DataFrame(
        [
            {
                "model": "m",
                "condition": c,
                "stress": "time_stretch",
                "utt_id": utt(i),
                "speaker": utt(i).split("-")[0],
            }
            for c in ("time_stretch", "hell")
            for i in range(N_UTT)
        ]  # fmt: skip
    )
    if types is not None:
        pairs = pairs.with_columns(hallucination_type=pl.Series(types * 2, dtype=pl.String))
    return [str(metrics)], pairs


def row(summary: pl.DataFrame, **keys) -> dict:
    sel = summary.filter(*[pl.col(k) == v for k, v in keys.items()])
    assert sel.height == 1, keys
    return sel.row(0, named=True)


def test_length_slopes_match_numpy_polyfit():
    rng = np.random.default_rng(1)
    x = rng.normal(size=30)
    Y = np.stack([2 * x + rng.normal(size=30), -x + 1], axis=1)
    Y[3, 0] = np.nan
    w = rng.integers(0, 3, size=(4, 30))
    got = length_slopes(Y, x, w)
    for r in range(4):
        ok = np.isfinite(Y[:, 0])
        want = np.polyfit(x[ok], Y[ok, 0], 1, w=np.sqrt(w[r, ok]))[0]
        assert got[r, 0] == pytest.approx(want, rel=1e-9)
        assert got[r, 1] == pytest.approx(-1.0, rel=1e-9)
    assert np.isnan(length_slopes(Y, np.ones(30), w)).all()  # no length variation: no fit


def test_pure_length_effect_is_removed_by_the_adjustment(tmp_path):
    paths, pairs = write(tmp_path)
    s = utterance_summary(paths, pairs, OPTS, seed=5)
    Tc, Ts = lengths()
    for cond in ("time_stretch", "hell"):
        r = row(s, condition=cond, layer=0, component="cross_attn", k=50, observable="neff",
                prefix=0, pair_set="all")  # fmt: skip
        raw = np.mean([100 * (effective_rank(spectrum(t_s)[:50]) / effective_rank(
            spectrum(t_c)[:50]) - 1) for t_c, t_s in zip(Tc, Ts, strict=True)])  # fmt: skip
        assert r["delta"] == pytest.approx(raw, rel=1e-9)
        assert raw < -25  # shorter stressed decodes, fewer effective dimensions
        assert abs(r["delta_adj"]) < 3
        assert r["delta_adj_ci_low"] <= r["delta_adj"] <= r["delta_adj_ci_high"]
        assert r["delta_ci_high"] < -20  # the raw interval excludes 0, the adjusted one not
        assert r["delta_adj_ci_low"] < 0 < r["delta_adj_ci_high"] or abs(r["delta_adj"]) < 1
        kf = row(s, condition=cond, layer=0, component="cross_attn", k=50,
                 observable="log10_kf", prefix=0, pair_set="all")  # fmt: skip
        assert abs(kf["delta"]) > 5 * abs(kf["delta_adj"])


def test_pair_sets_when_pairs_carry_the_type(tmp_path):
    types = ["fabrication" if i % 3 == 0 else "looping" for i in range(N_UTT)]
    paths, pairs = write(tmp_path, types)
    s = utterance_summary(paths, pairs, OPTS, seed=5)
    t1 = tables.final_layer_table(s, OPTS)
    assert set(t1["pair_set"]) == {"all", "fabrication"}
    Tc, Ts = lengths()
    fab = [i for i in range(N_UTT) if types[i] == "fabrication"]
    r = row(t1, pair_set="fabrication", condition="hell", k=10, component="cross_attn")
    want = np.mean([100 * (effective_rank(spectrum(int(Ts[i]))[:10]) / effective_rank(
        spectrum(int(Tc[i]))[:10]) - 1) for i in fab])  # fmt: skip
    assert r["n"] == r["n_neff"] == len(fab)
    assert r["d_neff_pct"] == pytest.approx(want, rel=1e-9)
    assert r["d_neff_pct_ci_low"] <= r["d_neff_pct"] <= r["d_neff_pct_ci_high"]
    assert row(t1, pair_set="all", condition="hell", k=10, component="cross_attn")["n"] == N_UTT
    assert r["paper_model"] is None  # the paper's values sit beside pair set all only
    # one row per key: build_tables sorts on these, and ties would come out in any order
    keys = ["scope", "model", "pair_set", "condition", "prefix", "layer", "component", "k",
            "observable"]  # fmt: skip
    assert not s.select(keys).is_duplicated().any()
    with pytest.raises(ValueError, match="hallucination_type"):
        utterance_summary(paths, pairs.with_columns(pl.col("hallucination_type").cast(
            pl.Categorical)), OPTS)  # fmt: skip


def test_adjusted_replicates_match_the_direct_means():
    """The linearised replicate means equal a direct pass (exactly for the differences and
    at db = 0; to second order in db for N_eff), layer means and missing values included."""
    from whisper_spi.analysis import utterance as u

    rng = np.random.default_rng(2)
    n, L, C, K, NO = 30, 3, 2, 2, 4
    Vc = rng.uniform(1, 2, (n, L, C, K, NO))
    Vs = rng.uniform(1, 2, (n, L, C, K, NO))
    Vs[4, 1, 0, 0, 2] = np.nan
    Vs[7, :, 1, 1, 0] = np.nan
    dx = rng.normal(0, 0.5, n)
    b0 = rng.normal(size=(L, C, K, NO))
    W = rng.integers(0, 3, size=(5, n))
    for scale, tol in ((0.0, 1e-9), (1e-3, 1e-4)):  # deltas of tens of %: 1e-4 is 1e-6 of them
        db = scale * rng.normal(size=(5, L, C, K, NO))
        got = u._adjusted_replicates(u._adjusted(Vc, Vs, dx, b0), dx, W, db)
        for r in range(5):
            A = u._with_layer_mean(u._adjusted(Vc, Vs, dx, b0 + db[r])).reshape(n, -1)
            want = u.mean_replicates(A, iter([W[r : r + 1]]), 1)[0]
            np.testing.assert_allclose(got[r], want, rtol=tol, atol=tol)
