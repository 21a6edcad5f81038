"""whisper_spi.analysis on synthetic spectra with planted, known effects.

The synthetic decode output (contracts ``transcripts`` and ``spectra``) plants:

* clean spectra: exact power laws s_i = c * i**-a (a per utterance, component and layer);
* time_stretch: the same with a + 0.3 (Delta alpha = +0.3 for every pair);
* gaussian_noise: a + 0.3 + e_u, e_u summing to zero over the kept pairs (mean +0.3, a CI);
* speaker_mix: the clean spectrum times 10 (Delta log10 Kf = -2, Delta N_eff = Delta alpha = 0);
* every stressed row mean = 2 x the clean one (pooled: Delta log10 Kf = log10(1/4)).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from whisper_spi import schemas
from whisper_spi.analysis import bootstrap, gram, pooled, tables
from whisper_spi.analysis import layer_metrics as lm
from whisper_spi.analysis.options import MetricOptions
from whisper_spi.analysis.pairs import pairs_and_counts, write_pairs
from whisper_spi.analysis.spectra import effective_rank
from whisper_spi.registry import OBSERVABLES

MODELS = {"tiny-en": 2, "small": 3}  # model -> decoder layers
COMPONENTS = ("cross_attn", "self_attn", "ffn")
CONDITIONS = ("clean", "time_stretch", "speaker_mix", "gaussian_noise")
N_UTT = 24
D = 64
T_LONG = 80
SHORT = (20, 21)  # clean twins with only T = 12 rows: no prefix-16 spectrum
PREFIX = 16
THRESHOLD = 0.5


def utt(i: int) -> str:
    return f"{100 + i % 3}-7-{i:04d}"


def stressed_wer(condition: str, i: int) -> float:
    if condition == "time_stretch":
        return 0.9 if i < 16 else (0.5 if i == 16 else 0.3)  # 0.5 itself is not > 0.5
    if condition == "speaker_mix":
        return 1.4 if i < 20 else 0.2
    return float("nan") if i == 3 else (0.8 if i >= 4 else 0.1)  # gaussian_noise


def kept(condition: str) -> list[int]:
    return [i for i in range(N_UTT) if stressed_wer(condition, i) > THRESHOLD]


def noise_offsets() -> np.ndarray:
    """e_u of gaussian_noise: random, zero mean over its kept pairs, zero elsewhere."""
    e = np.zeros(N_UTT)
    k = kept("gaussian_noise")
    r = np.random.default_rng(7).normal(0, 0.1, len(k))
    e[k] = r - r.mean()
    return e


def base_exponent(i: int, comp: int, layer: int) -> float:
    return 0.6 + 0.02 * i + 0.1 * comp + 0.05 * layer


def planted(condition: str, i: int, comp: int, layer: int, n: int) -> np.ndarray:
    a = base_exponent(i, comp, layer)
    c = 3.0 + 0.1 * i
    if condition == "time_stretch":
        a += 0.3
    elif condition == "gaussian_noise":
        a += 0.3 + noise_offsets()[i]
    elif condition == "speaker_mix":
        c *= 10
    return c * np.arange(1, n + 1, dtype=np.float64) ** -a


def log10_kf(condition: str, i: int, comp: int, layer: int, k: int) -> float:
    """The planted log10 Kf: K * sum (T - 1) / s_j**2 over the top K (zeros padded, n = K)."""
    T = 12 if (condition == "clean" and i in SHORT) else T_LONG
    s = planted(condition, i, comp, layer, min(T, D))[:k]
    return math.log10(k * np.sum((T - 1) / s**2))


def clean_row_mean(model: str, i: int, comp: int, layer: int) -> np.ndarray:
    rng = np.random.default_rng([list(MODELS).index(model), i, comp, layer])
    return rng.normal(size=D).astype(np.float32)


def write_dataset(root: Path) -> dict[str, list[str]]:
    """Transcripts and spectra files as the decode job writes them; returns the paths."""
    paths: dict[str, list[str]] = {"transcripts": [], "spectra": []}
    for model, n_layers in MODELS.items():
        for cond in CONDITIONS:
            rows = []
            for i in range(N_UTT):
                wer = 0.05 if cond == "clean" else stressed_wer(cond, i)
                rows.append(
                    {
                        "utt_id": utt(i),
                        "speaker": utt(i).split("-")[0],
                        "model": model,
                        "condition": cond,
                        "reference": "a b c",
                        "hypothesis": "a b c",
                        "token_ids": [1, 2, 3],
                        "n_tokens": 3,
                        "hit_max_length": cond != "clean" and i % 2 == 0,
                        "avg_logprob": -0.1,
                        "compression_ratio": 1.0,
                        "no_speech_prob": 0.0,
                        "wer": wer,
                        "hallucination": bool(wer > THRESHOLD),
                    }
                )
            p = root / "decode" / model / cond / "shard-0" / "transcripts.parquet"
            schemas.write_parquet(pl.DataFrame(rows), "transcripts", p)
            paths["transcripts"].append(str(p))
            for layer in range(n_layers):
                rows = []
                for i in range(N_UTT):
                    T = 12 if (cond == "clean" and i in SHORT) else T_LONG
                    for ci, comp in enumerate(COMPONENTS):
                        rm = clean_row_mean(model, i, ci, layer)
                        if cond != "clean":
                            rm = 2 * rm
                        for prefix in (0, PREFIX):
                            if prefix and prefix > T:
                                continue
                            n_rows = T if prefix == 0 else prefix
                            rows.append(
                                {
                                    "utt_id": utt(i),
                                    "model": model,
                                    "condition": cond,
                                    "layer": layer,
                                    "component": comp,
                                    "prefix": prefix,
                                    "n_rows": n_rows,
                                    "centered": False,
                                    "sv": planted(cond, i, ci, layer, min(n_rows, D)).tolist(),
                                    "row_mean": rm.tolist() if prefix == 0 else None,
                                }
                            )
                p = root / "decode" / model / cond / "shard-0" / f"layer-{layer}.parquet"
                schemas.write_parquet(pl.DataFrame(rows), "spectra", p)
                paths["spectra"].append(str(p))
    return paths


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> dict[str, list[str]]:
    return write_dataset(tmp_path_factory.mktemp("decode"))


OPTS = MetricOptions(n_boot=300, pooled_n_boot=40)


def run_pipeline(root: Path, paths: dict[str, list[str]], opts=OPTS, seed=11, threshold=THRESHOLD):
    """The workflow's stages: metrics per (model, condition, layer), pairs per model, the
    pooled scope per (model, layer), tables once."""
    groups: dict[tuple[str, str, int], list[str]] = {}
    for p in paths["spectra"]:
        parts = Path(p).parts
        groups.setdefault((parts[-4], parts[-3], int(parts[-1][6:-8])), []).append(p)
    metric_paths = []
    for (model, cond, layer), files in sorted(groups.items()):
        out = root / "metrics" / model / cond / f"layer-{layer}.parquet"
        lm.write_layer_metrics(lm.layer_metrics(files, opts), out)
        metric_paths.append(str(out))
    pair_paths, count_paths = [], []
    for model in MODELS:
        files = [p for p in paths["transcripts"] if f"/{model}/" in p]
        pr, cn = pairs_and_counts(files, threshold)
        write_pairs(
            pr, cn, root / "pairs" / model / "pairs.parquet",
            root / "pairs" / model / "pair_counts.parquet",
        )  # fmt: skip
        pair_paths.append(str(root / "pairs" / model / "pairs.parquet"))
        count_paths.append(str(root / "pairs" / model / "pair_counts.parquet"))
    pooled_paths, profile_paths = [], []
    for model, layer in sorted({(m, lay) for m, _, lay in groups}):
        files = [p for (m, _, lay), fs in groups.items() if (m, lay) == (model, layer) for p in fs]
        pairs_of_model = pl.read_parquet(root / "pairs" / model / "pairs.parquet")
        cells, profile = pooled.pooled_layer(files, pairs_of_model, model, layer, opts, seed)
        base = root / "pooled" / model / f"layer-{layer}"
        pooled.write_pooled_layer(cells, profile, f"{base}.parquet", f"{base}-profile.parquet")
        pooled_paths.append(f"{base}.parquet")
        profile_paths.append(f"{base}-profile.parquet")
    return tables.build_tables(
        metric_paths,
        pair_paths,
        count_paths,
        root / "tables",
        pooled_paths=pooled_paths,
        profile_paths=profile_paths,
        options=opts,
        seed=seed,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory, dataset):
    root = tmp_path_factory.mktemp("results")
    return root, run_pipeline(root, dataset)


def cell(t: pl.DataFrame, **keys) -> dict:
    sel = t.filter(*[pl.col(k) == v for k, v in keys.items()])
    assert sel.height == 1, (keys, sel)
    return sel.row(0, named=True)


# --------------------------------------------------------------------------- options


def test_options_defaults_and_validation():
    o = MetricOptions()
    assert o.k == (10, 50) and o.neff_power == 1 and o.n_boot == 1000 and o.ci == 0.95
    assert o.paper_models["tiny-en"] == "tiny"
    assert MetricOptions.from_dict({"k": [5, 20], "figure_k": 20}).k == (5, 20)
    with pytest.raises(ValueError, match="unknown metrics option"):
        MetricOptions.from_dict({"n_bootstrap": 5})
    with pytest.raises(ValueError):
        MetricOptions(k=(1,))
    with pytest.raises(ValueError):
        MetricOptions(figure_k=20)
    assert MetricOptions.from_dict(o.to_dict()) == o


# --------------------------------------------------------------------------- layer metrics


def test_layer_metrics_rows_and_values(dataset):
    files = [p for p in dataset["spectra"] if "/small/gaussian_noise/" in p and "layer-1" in p]
    df = lm.layer_metrics(files, OPTS)
    assert df.columns == [c.name for c in schemas.contract("layer_metrics").cols]
    assert df.height == N_UTT * len(COMPONENTS) * 2 * len(OPTS.k)  # both prefixes exist
    e = noise_offsets()
    r = df.filter((pl.col("utt_id") == utt(5)) & (pl.col("component") == "self_attn"))
    a = base_exponent(5, 1, 1) + 0.3 + e[5]
    assert np.allclose(r["alpha"].to_numpy(), a, atol=1e-9)  # exact power law, any K
    full = r.filter((pl.col("prefix") == 0) & (pl.col("k") == 50)).row(0, named=True)
    s = planted("gaussian_noise", 5, 1, 1, D)
    assert full["neff"] == pytest.approx(float(effective_rank(s[:50])))
    kf = 50 * np.sum((T_LONG - 1) / s[:50] ** 2)
    assert full["log10_kf"] == pytest.approx(math.log10(kf))
    assert full["tail_energy"] == pytest.approx(float(np.sum(s[50:] ** 2) / np.sum(s**2)))
    assert full["n_sv"] == D and full["n_rows"] == T_LONG


def test_kf_pads_short_spectra_with_zero_eigenvalues(dataset):
    files = [p for p in dataset["spectra"] if "/tiny-en/clean/" in p and "layer-0" in p]
    df = lm.layer_metrics(files, OPTS).filter(
        (pl.col("utt_id") == utt(SHORT[0])) & (pl.col("component") == "ffn") & (pl.col("k") == 50)
    )
    row = df.row(0, named=True)
    s = planted("clean", SHORT[0], 2, 0, 12)
    assert row["n_sv"] == 12
    assert row["log10_kf"] == pytest.approx(math.log10(50 * np.sum(11 / s**2)))  # n = K
    unpadded = MetricOptions(kf_pad_to_k=False)
    row2 = lm.layer_metrics(files, unpadded).filter(
        (pl.col("utt_id") == utt(SHORT[0])) & (pl.col("component") == "ffn") & (pl.col("k") == 50)
    )
    assert row2["log10_kf"][0] == pytest.approx(math.log10(12 * np.sum(11 / s**2)))


# --------------------------------------------------------------------------- pairs


def test_pairs_threshold_and_hell_union(dataset):
    files = [p for p in dataset["transcripts"] if "/small/" in p]
    pr, counts = pairs_and_counts(files, THRESHOLD)
    assert pr.columns == [c.name for c in schemas.contract("pairs").cols]
    for cond in ("time_stretch", "speaker_mix", "gaussian_noise"):
        got = pr.filter(pl.col("condition") == cond)
        assert sorted(got["utt_id"]) == sorted(utt(i) for i in kept(cond))
        assert (got["wer_stressed"] > THRESHOLD).all()
        c = cell(counts, condition=cond)
        assert (c["n_pairs"], c["n_total"]) == (len(kept(cond)), N_UTT)
    assert utt(16) not in pr.filter(pl.col("condition") == "time_stretch")["utt_id"]  # wer 0.5
    assert utt(3) not in pr.filter(pl.col("condition") == "gaussian_noise")["utt_id"]  # NaN
    hell = pr.filter(pl.col("condition") == "hell")
    union = sum(len(kept(c)) for c in ("time_stretch", "speaker_mix", "gaussian_noise"))
    assert hell.height == union
    assert set(hell.select("stress", "utt_id").iter_rows()) == set(
        pr.filter(pl.col("condition") != "hell").select("stress", "utt_id").iter_rows()
    )
    h = cell(counts, condition="hell")
    assert (h["n_pairs"], h["n_total"]) == (union, 3 * N_UTT)
    assert h["frac_kept"] == pytest.approx(union / (3 * N_UTT))
    strict = pairs_and_counts(files, 1.0)[0]
    assert set(strict["stress"]) == {"speaker_mix"}


# --------------------------------------------------------------------------- tables


def test_planted_effects_recovered(built):
    _, out = built
    t1 = out["tables"].filter(pl.col("table") == "table1_final_layer")
    for model in MODELS:
        final = MODELS[model] - 1
        for comp in COMPONENTS:
            for k in OPTS.k:
                key = {"scope": "utterance", "prefix": 0, "model": model, "component": comp}
                ts = cell(t1, condition="time_stretch", k=k, **key)
                assert ts["layer"] == final
                assert ts["n"] == len(kept("time_stretch"))
                assert ts["d_alpha"] == pytest.approx(0.3, abs=1e-9)
                assert ts["d_alpha_ci_low"] == pytest.approx(0.3, abs=1e-9)
                assert ts["d_alpha_ci_high"] == pytest.approx(0.3, abs=1e-9)

                gn = cell(t1, condition="gaussian_noise", k=k, **key)
                assert gn["n"] == len(kept("gaussian_noise"))
                assert gn["d_alpha"] == pytest.approx(0.3, abs=1e-9)
                assert gn["d_alpha_ci_low"] < 0.3 < gn["d_alpha_ci_high"]
                assert gn["d_alpha_ci_high"] - gn["d_alpha_ci_low"] < 0.2
                # independent truth for N_eff: the mean of the per-pair percent changes
                ci_ = COMPONENTS.index(comp)
                truth = np.mean(
                    [
                        100
                        * (
                            effective_rank(planted("gaussian_noise", i, ci_, final, D)[:k])
                            / effective_rank(
                                planted("clean", i, ci_, final, 12 if i in SHORT else D)[:k]
                            )  # fmt: skip
                            - 1
                        )
                        for i in kept("gaussian_noise")
                    ]
                )
                assert gn["d_neff_pct"] == pytest.approx(truth, rel=1e-9)
                assert gn["d_neff_pct_ci_low"] <= truth <= gn["d_neff_pct_ci_high"]
                assert gn["d_neff_pct"] < 0  # steeper spectrum, fewer effective dimensions

                sm = cell(t1, condition="speaker_mix", k=k, **key)
                # -2 for every pair of equal length; the two short clean twins add the
                # covariance normalisation log10((80 - 1) / (12 - 1)) and their shorter sums
                truth = np.mean(
                    [
                        log10_kf("speaker_mix", i, ci_, final, k)
                        - log10_kf("clean", i, ci_, final, k)
                        for i in kept("speaker_mix")
                    ]
                )
                assert sm["d_log10_kf"] == pytest.approx(truth, abs=1e-9)
                assert log10_kf("speaker_mix", 5, ci_, final, k) - log10_kf(
                    "clean", 5, ci_, final, k
                ) == pytest.approx(-2.0, abs=1e-12)
                assert sm["d_neff_pct"] == pytest.approx(0.0, abs=1e-9)
                assert sm["d_alpha"] == pytest.approx(0.0, abs=1e-9)

                hell = cell(t1, condition="hell", k=k, **key)
                n_h = sum(len(kept(c)) for c in ("time_stretch", "speaker_mix", "gaussian_noise"))
                assert hell["n"] == n_h
                want = 0.3 * (len(kept("time_stretch")) + len(kept("gaussian_noise"))) / n_h
                assert hell["d_alpha"] == pytest.approx(want, abs=1e-9)
                assert hell["d_alpha_ci_low"] <= want <= hell["d_alpha_ci_high"]


def test_layer_mean_table(built):
    _, out = built
    t2 = out["tables"].filter(pl.col("table") == "table2_layer_mean")
    assert (t2["layer"] == -1).all()
    r = cell(t2, scope="utterance", prefix=0, model="small", component="ffn",
             condition="gaussian_noise", k=50)  # fmt: skip
    assert r["d_alpha"] == pytest.approx(0.3, abs=1e-9)
    assert r["d_alpha_ci_low"] < 0.3 < r["d_alpha_ci_high"]
    sm = cell(t2, scope="utterance", prefix=0, model="small", component="ffn",
              condition="speaker_mix", k=10)  # fmt: skip
    assert sm["d_log10_kf"] == pytest.approx(-2.0, abs=1e-9)


def test_length_matched_rows(built):
    _, out = built
    t1 = out["tables"]
    lm = t1.filter((pl.col("scope") == "utterance") & (pl.col("prefix") == PREFIX))
    assert lm.height > 0
    r = cell(lm.filter(pl.col("table") == "table1_final_layer"), model="tiny-en",
             component="cross_attn", condition="gaussian_noise", k=10)  # fmt: skip
    # the two clean twins with T = 12 < 16 have no prefix spectrum
    rest = [i for i in kept("gaussian_noise") if i not in SHORT]
    assert r["n"] == len(rest) == len(kept("gaussian_noise")) - len(SHORT)
    assert r["d_alpha"] == pytest.approx(0.3 + noise_offsets()[rest].mean(), abs=1e-9)
    ts = cell(lm.filter(pl.col("table") == "table1_final_layer"), model="tiny-en",
              component="cross_attn", condition="time_stretch", k=50)  # fmt: skip
    assert ts["n"] == len(kept("time_stretch"))
    assert ts["d_alpha"] == pytest.approx(0.3, abs=1e-9)
    assert r["paper_model"] is None  # paper values only beside full-length rows


def test_pooled_scope(built):
    _, out = built
    t = out["tables"].filter(pl.col("scope") == "pooled")
    assert t.height > 0 and set(t["prefix"]) == {0}
    for cond in ("time_stretch", "speaker_mix", "gaussian_noise", "hell"):
        for table in ("table1_final_layer", "table2_layer_mean"):
            r = cell(t.filter(pl.col("table") == table), model="small", component="self_attn",
                     condition=cond, k=10)  # fmt: skip
            assert r["d_log10_kf"] == pytest.approx(math.log10(0.25), abs=1e-9)
            assert r["d_neff_pct"] == pytest.approx(0.0, abs=1e-8)
            assert r["d_alpha"] == pytest.approx(0.0, abs=1e-9)
            assert r["d_log10_kf_ci_low"] == pytest.approx(math.log10(0.25), abs=1e-6)
            assert r["d_log10_kf_ci_high"] == pytest.approx(math.log10(0.25), abs=1e-6)
            assert r["d_neff_pct_median"] is None
    n_h = sum(len(kept(c)) for c in ("time_stretch", "speaker_mix", "gaussian_noise"))
    assert cell(t.filter(pl.col("table") == "table1_final_layer"), model="small",
                component="ffn", condition="hell", k=50)["n"] == n_h  # fmt: skip


def test_pooled_bootstrap_spectra_match_direct_svd():
    rng = np.random.default_rng(0)
    # N < d; N > d with fewer distinct rows drawn than d (the N x N Gram); N >> d (d x d)
    for N, d in ((7, 12), (15, 12), (15, 6)):
        X = rng.normal(size=(N, d))
        for center in (False, True):
            blocks = list(bootstrap.count_blocks(np.random.default_rng(3), N, 5, 5))
            got, total = gram.replicate_spectra(X, iter(blocks), center)
            assert total is None
            for b in range(5):
                Xb = np.repeat(X, blocks[0][b], axis=0)  # each row as often as it is drawn
                if center:
                    Xb = Xb - Xb.mean(axis=0)
                want = np.linalg.svd(Xb, compute_uv=False)
                # numerical zeros (duplicated rows) come out ~1e-8 * s_1 via the Gram matrix,
                # far below MetricOptions.rank_tol = 1e-6, which zeroes them
                assert np.allclose(got[b, : len(want)], want, atol=1e-7 * want[0])
                assert got[b, 0] == pytest.approx(want[0], rel=1e-12)


def test_pooled_bootstrap_projection_is_close_to_exact():
    """The rank-r Rayleigh-Ritz replicates agree with the exact ones on a decaying spectrum."""
    rng = np.random.default_rng(1)
    N, d, r = 400, 160, 80
    X = rng.normal(size=(N, d)) * np.arange(1, d + 1) ** -0.8 + rng.normal(size=d)
    opts = MetricOptions(k=(10, 20), figure_k=20, pooled_n_boot=4, pooled_boot_rank=r)
    for center in (False, True):
        blocks = list(bootstrap.subsample_blocks(np.random.default_rng(5), N, 4, 4, 0.5))
        exact, none = gram.replicate_spectra(X, iter(blocks), center, 0)
        approx, total = gram.replicate_spectra(X, iter(blocks), center, r)
        assert none is None and approx.shape == (4, r)
        assert np.allclose(approx[:, :20], exact[:, :20], rtol=2e-2)
        assert np.all(approx[:, :20] <= exact[:, :20] * (1 + 1e-12))  # Ritz values: lower bounds
        assert np.allclose(total, (exact**2).sum(axis=1), rtol=1e-10)
        a = pooled.observable_array(approx, N // 2, opts, total)
        e = pooled.observable_array(exact, N // 2, opts)
        assert np.allclose(a, e, rtol=5e-2, atol=1e-2)


def test_paper_columns(built):
    _, out = built
    t = out["tables"]
    r = cell(t.filter(pl.col("table") == "table1_final_layer"), scope="utterance", prefix=0,
             model="tiny-en", component="cross_attn", condition="hell", k=50)  # fmt: skip
    assert (r["paper_model"], r["paper_match"]) == ("tiny", "approx")
    assert r["paper_d_neff_pct"] == pytest.approx(-11.98)
    assert r["paper_d_alpha"] == pytest.approx(0.17)
    assert r["sign_agrees_alpha"] is True  # ours: hell Delta alpha > 0
    assert r["sign_agrees_log10_kf"] == (r["d_log10_kf"] > 0)
    s = cell(t.filter(pl.col("table") == "table1_final_layer"), scope="utterance", prefix=0,
             model="small", component="ffn", condition="hell", k=50)  # fmt: skip
    assert (s["paper_model"], s["paper_match"]) == ("small", "exact")
    none = cell(t.filter(pl.col("table") == "table1_final_layer"), scope="utterance", prefix=0,
                model="small", component="self_attn", condition="hell", k=50)  # fmt: skip
    assert none["paper_model"] is None and none["sign_agrees_alpha"] is None
    k10 = cell(t.filter(pl.col("table") == "table1_final_layer"), scope="utterance", prefix=0,
               model="small", component="ffn", condition="hell", k=10)  # fmt: skip
    assert k10["paper_d_alpha"] is None


def test_outputs_written(built):
    root, out = built
    d = root / "tables"
    table_cols = [c.name for c in schemas.contract("tables").cols if c.name != "table"]
    for name in ("table1_final_layer", "table2_layer_mean"):
        csv = pl.read_csv(d / f"{name}.csv")
        assert csv.columns == table_cols
        assert csv.height == out["tables"].filter(pl.col("table") == name).height
        md = (d / f"{name}.md").read_text()
        assert "scope utterance, pairs all, full length" in md and "scope pooled" in md
        assert "Scope utterance: a row is" in md and "Scope pooled: a row is" in md
        assert "Δα (lsq fit, ranks 2..K)" in md and "Δlog10 Kf (uncentred second moments)" in md
        assert "length-matched, first 16 rows" in md
        for model in MODELS:
            assert f"| {model} |" in md
    for name in ("layer_summary", "tables", "rank_profile"):
        df = pl.read_parquet(d / f"{name}.parquet")
        assert df.columns == [c.name for c in schemas.contract(name).cols]
        assert df.height > 0
    counts = pl.read_csv(d / "pair_counts.csv")
    assert counts.height == len(MODELS) * 4
    assert "| tiny-en | hell |" in (d / "pair_counts.md").read_text()
    prefixes = schemas.read_csv(d / "prefix_counts.csv", "prefix_counts")
    r = prefixes.filter(
        (pl.col("model") == "tiny-en") & (pl.col("condition") == "gaussian_noise")
    ).row(0, named=True)
    assert (r["prefix"], r["n_pairs"], r["n_full"]) == (PREFIX, 18, 20)  # two short twins
    assert r["median_stressed_rows"] == T_LONG and r["shown"]
    summary = out["layer_summary"]
    assert set(summary["scope"]) == {"utterance", "pooled"}
    assert set(summary["prefix"]) == {0, PREFIX}
    prof = out["rank_profile"]
    r = prof.filter(
        (pl.col("model") == "small") & (pl.col("condition") == "speaker_mix")
        & (pl.col("layer") == 2) & (pl.col("component") == "ffn")
    )  # fmt: skip
    assert np.allclose(r["energy_ratio"].drop_nulls().to_numpy()[:12], 1.0)  # scale only


def test_pooled_layer_files(built):
    """One pooled job's output per (model, layer): the contract's columns, the point estimate
    and every replicate of each cell; the tables refuse cells made with other options."""
    root, out = built
    K, B = len(OPTS.k), OPTS.pooled_n_boot
    cells = pl.read_parquet(root / "pooled" / "small" / "layer-2.parquet")
    assert cells.columns == [c.name for c in schemas.contract("pooled_cells").cols]
    assert set(cells["layer"]) == {2}
    per_cell = cells.group_by("condition", "component").agg(
        pl.col("replicate").n_unique().alias("reps"), pl.len().alias("rows")
    )
    assert per_cell.height == 4 * 3  # 3 stresses + hell x 3 components
    assert set(per_cell["reps"]) == {B + 1}
    assert set(per_cell["rows"]) == {(B + 1) * K * len(OBSERVABLES)}
    profile = pl.read_parquet(root / "pooled" / "small" / "layer-2-profile.parquet")
    assert profile.columns == [c.name for c in schemas.contract("rank_profile").cols]
    whole = out["rank_profile"].filter((pl.col("model") == "small") & (pl.col("layer") == 2))
    assert profile.sort(profile.columns).equals(whole.sort(whole.columns))
    with pytest.raises(ValueError, match="metrics.pooled_n_boot"):
        pooled.pooled_summary(cells, MetricOptions(n_boot=300, pooled_n_boot=B + 1))
    with pytest.raises(ValueError, match="k=10"):
        pooled.pooled_summary(cells, MetricOptions(k=(20, 50), figure_k=50, pooled_n_boot=B))


def test_bootstrap_deterministic(tmp_path, dataset, built):
    _, out = built
    opts = MetricOptions(n_boot=300, pooled_n_boot=40)
    again = run_pipeline(tmp_path / "a", dataset, opts, seed=11)["tables"]
    assert again.equals(out["tables"])
    other = run_pipeline(tmp_path / "b", dataset, opts, seed=12)["tables"]
    col = "d_alpha_ci_low"
    key = (pl.col("condition") == "gaussian_noise") & (pl.col("scope") == "utterance")
    assert not other.filter(key)[col].equals(out["tables"].filter(key)[col])


def test_pooled_hell_lies_within_its_stresses(tmp_path):
    """Planted: three stresses reshape the clean row means differently (steeper, flatter,
    noisier). hell's pooled delta lies within the range of its stresses' deltas in every
    cell; the old definition (one matrix stacking each clean twin once per stress) does not."""
    rng = np.random.default_rng(4)
    scale = np.arange(1, D + 1, dtype=np.float64)
    clean = rng.normal(size=(N_UTT, D)) * scale**-0.5
    stressed = {
        "time_stretch": clean * scale**-0.4,
        "speaker_mix": clean * scale**0.3,
        "gaussian_noise": clean + 0.3 * rng.normal(size=(N_UTT, D)),
    }
    rows, pairs = [], []
    for cond, X in [("clean", clean), *stressed.items()]:
        for i in range(N_UTT):
            rows.append({"utt_id": utt(i), "model": "m", "condition": cond, "layer": 0,
                         "component": "cross_attn", "prefix": 0, "n_rows": T_LONG,
                         "centered": True, "sv": [1.0, 0.5],
                         "row_mean": X[i].tolist()})  # fmt: skip
    for cond in stressed:
        for c in (cond, "hell"):
            pairs += [{"model": "m", "condition": c, "stress": cond, "utt_id": utt(i),
                       "speaker": utt(i).split("-")[0]} for i in kept(cond)]  # fmt: skip
    path = tmp_path / "layer-0.parquet"
    schemas.write_parquet(pl.DataFrame(rows), "spectra", path)
    opts = MetricOptions(pooled_n_boot=20, resample_unit="utterance")
    cells, _ = pooled.pooled_layer([str(path)], pl.DataFrame(pairs), "m", 0, opts, 3)
    point = cells.filter(pl.col("replicate") == -1)
    parts = (
        point.filter(pl.col("condition") != "hell")
        .group_by("k", "observable")
        .agg(pl.col("delta").min().alias("lo"), pl.col("delta").max().alias("hi"))
    )
    hell = point.filter(pl.col("condition") == "hell").join(parts, on=["k", "observable"])
    assert hell.height == len(opts.k) * len(OBSERVABLES)
    assert ((hell["lo"] - 1e-9 <= hell["delta"]) & (hell["delta"] <= hell["hi"] + 1e-9)).all()
    # the stacked matrix puts the 24 distinct clean rows against 56 stressed ones
    order = list(stressed)
    Xc = np.concatenate([clean[kept(c)] for c in order])
    Xs = np.concatenate([stressed[c][kept(c)] for c in order])
    stacked, _ = pooled._cell(Xc, Xs, None, True, opts)
    neff = list(OBSERVABLES).index("neff")
    p = hell.filter((pl.col("observable") == "neff") & (pl.col("k") == 50)).row(0, named=True)
    assert not p["lo"] <= stacked[list(opts.k).index(50), neff, 2] <= p["hi"]


def test_pair_filters_clean_wer_and_min_tokens(dataset):
    """Every decode of the fixture has 3 tokens and a clean WER of 0.05."""
    files = [p for p in dataset["transcripts"] if "/small/" in p]
    n_kept = {c: len(kept(c)) for c in ("time_stretch", "speaker_mix", "gaussian_noise")}
    for kwargs, survives in (
        ({"min_tokens": 3}, True),
        ({"min_tokens": 4}, False),
        ({"clean_max_wer": 0.05}, True),
        ({"clean_max_wer": 0.01}, False),
    ):
        pr, counts = pairs_and_counts(files, THRESHOLD, **kwargs)
        for cond, n in n_kept.items():
            c = cell(counts, condition=cond)
            assert (c["n_pairs"], c["n_excluded"]) == ((n, 0) if survives else (0, n)), kwargs
        assert pr.height == (2 * sum(n_kept.values()) if survives else 0)


def test_prefixes_longer_than_the_median_stressed_decode_are_not_shown(built):
    _, out = built
    summary = out["layer_summary"]
    short = pl.DataFrame({"model": ["tiny-en"] * 3, "stress": ["time_stretch"] * 3,
                          "utt_id": ["a", "b", "c"], "n_rows": [10, 12, 40]})  # fmt: skip
    counts = tables.prefix_counts(summary, short)
    mine = counts.filter(pl.col("model") == "tiny-en")
    assert (mine["median_stressed_rows"] == 12).all() and not mine["shown"].any()
    assert counts.filter(pl.col("model") == "small")["shown"].not_().all()  # no lengths: none
    shown = tables._shown(summary, counts)
    assert set(shown["prefix"]) == {0}
    assert tables.final_layer_table(shown, OPTS)["prefix"].unique().to_list() == [0]
