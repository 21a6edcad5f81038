"""The shared pieces of the analysis: the one observable kernel, the stage options, the
bootstrap count matrices and the readers' contract checks."""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest

from whisper_spi import detect, schemas
from whisper_spi.analysis import bootstrap
from whisper_spi.analysis.layer_metrics import layer_metrics
from whisper_spi.analysis.options import STAGES, MetricOptions, check_stages, stage_keys
from whisper_spi.analysis.spectra import ObservableOptions
from whisper_spi.errors import DataError
from whisper_spi.registry import OBSERVABLES

# --------------------------------------------------------------------------- the kernel


def _decode_files(tmp_path, centered: bool):
    """Spectra of real T x d matrices (centered or not) and their transcripts, 2 conditions."""
    rng = np.random.default_rng(4)
    spectra, transcripts = [], []
    for cond in ("clean", "speaker_mix"):
        rows, trs = [], []
        for i, T in enumerate((6, 30, 80)):
            utt = f"1-2-{i}"
            for comp in ("cross_attn", "ffn"):
                X = rng.normal(size=(T, 24)) * np.arange(1, 25) ** -0.7
                if centered:
                    X = X - X.mean(axis=0)
                rows.append(
                    {"utt_id": utt, "model": "tiny", "condition": cond, "layer": 0,
                     "component": comp, "prefix": 0, "n_rows": T, "centered": centered,
                     "sv": np.linalg.svd(X, compute_uv=False), "row_mean": X.mean(axis=0)}
                )  # fmt: skip
            trs.append(
                {"utt_id": utt, "speaker": f"s{i}", "model": "tiny", "condition": cond,
                 "reference": "a", "hypothesis": "b", "token_ids": [1], "n_tokens": 1,
                 "hit_max_length": False, "avg_logprob": -0.5, "compression_ratio": 1.0,
                 "no_speech_prob": 0.1, "wer": 0.1 + i, "hallucination": i > 0}
            )  # fmt: skip
        spectra.append(tmp_path / f"{cond}-layer-0.parquet")
        transcripts.append(tmp_path / f"{cond}-transcripts.parquet")
        schemas.write_rows(rows, "spectra", spectra[-1])
        schemas.write_rows(trs, "transcripts", transcripts[-1])
    return spectra, transcripts


@pytest.mark.parametrize("centered", [False, True])
def test_detector_features_equal_layer_metrics(tmp_path, centered):
    """The same spectra give the same values in the detector's features and in layer_metrics
    (the detector once skipped rank_tol, which matters for centered spectra)."""
    spectra, transcripts = _decode_files(tmp_path, centered)
    opts = ObservableOptions(k=(5, 20))
    lm = layer_metrics(spectra, opts)
    feats = detect.features(spectra, transcripts, opts)
    n = 0
    for r in lm.iter_rows(named=True):
        row = feats.filter(
            (pl.col("condition") == r["condition"]) & (pl.col("utt_id") == r["utt_id"])
        )
        for obs in OBSERVABLES:
            got = row[f"L0_{r['component']}_{obs}_k{r['k']}"].item()
            want = r[obs]
            if want is None or np.isnan(want):
                assert got is None or np.isnan(got)
            else:
                assert got == pytest.approx(want, rel=1e-12, abs=0), (r, obs)
                n += 1
    assert n > 50
    # the centered case is where rank_tol matters: without it alpha differs
    loose = layer_metrics(spectra, dataclasses.replace(opts, rank_tol=0.0))
    moved = (loose["alpha"] - lm["alpha"]).abs().max()
    assert (moved > 1e-3) if centered else (moved == 0)


# --------------------------------------------------------------------------- stage options


def test_every_option_says_which_stages_it_affects():
    check_stages(MetricOptions, STAGES)
    assert set(stage_keys("layer_metrics")) == {
        f.name for f in dataclasses.fields(ObservableOptions)
    }
    assert stage_keys("detect") == stage_keys("layer_metrics")
    assert "n_boot" in stage_keys("tables") and "n_boot" not in stage_keys("pooled")
    assert stage_keys("figures") == ("k", "figure_k")


def test_an_option_without_stages_is_refused():
    extended = dataclasses.make_dataclass(
        "Extended", [("new_option", int, dataclasses.field(default=0))], bases=(MetricOptions,),
        frozen=True,
    )  # fmt: skip
    with pytest.raises(TypeError, match="new_option"):
        check_stages(extended, STAGES)
    with pytest.raises(TypeError, match="nowhere"):
        check_stages(MetricOptions, {**STAGES, "k": ("nowhere",)})


def test_stage_options_build_without_the_other_keys():
    """A stage gets only its keys: e.g. k without figure_k must still be valid options."""
    assert MetricOptions.from_dict({"k": [10, 40], "pooled_n_boot": 5}).figure_k == 40
    with pytest.raises(ValueError, match="figure_k"):
        MetricOptions.from_dict({"k": [10, 40], "figure_k": 50})


# --------------------------------------------------------------------------- bootstrap


def test_count_blocks_default_is_the_plain_row_bootstrap():
    """Independent reference: draws of rng.integers(0, n, (b, n)) counted per row."""
    n, B, block = 13, 250, 100
    got = np.concatenate(list(bootstrap.count_blocks(np.random.default_rng(9), n, B, block)))
    rng = np.random.default_rng(9)
    want = []
    for lo in range(0, B, block):
        idx = rng.integers(0, n, size=(min(block, B - lo), n))
        want.append(np.stack([np.bincount(r, minlength=n) for r in idx]))
    np.testing.assert_array_equal(got, np.concatenate(want))


def test_count_blocks_strata_and_groups():
    rng = np.random.default_rng(2)
    strata = np.array([0] * 7 + [1] * 5)
    groups = np.array([0, 0, 1, 1, 1, 2, 3, 4, 4, 5, 5, 5])
    W = np.concatenate(list(bootstrap.count_blocks(rng, 12, 300, 64, strata=strata)))
    assert (W[:, strata == 0].sum(axis=1) == 7).all() and (W[:, strata == 1].sum(axis=1) == 5).all()
    G = np.concatenate(list(bootstrap.count_blocks(rng, 12, 300, 64, groups=groups)))
    for g in np.unique(groups):  # every member of a group counted alike
        assert (G[:, groups == g] == G[:, groups == g][:, :1]).all()
    drawn = np.stack([G[:, groups == g][:, 0] for g in np.unique(groups)], 1)
    assert (drawn.sum(axis=1) == 6).all()  # six groups drawn per replicate


def test_group_bootstrap_covers_clustered_data():
    """Speakers share an offset: resampling speakers covers the mean at about the nominal
    rate, resampling rows (ignoring the clusters) does not."""
    rng = np.random.default_rng(0)
    n_groups, size, trials, B = 25, 6, 300, 300
    groups = np.repeat(np.arange(n_groups), size)
    hit = {"rows": 0, "groups": 0}
    for _ in range(trials):
        x = (rng.normal(size=n_groups)[groups] + 0.3 * rng.normal(size=groups.size))[:, None]
        for kind, g in (("rows", None), ("groups", groups)):
            blocks = bootstrap.count_blocks(rng, groups.size, B, B, groups=g)
            lo, hi = bootstrap.percentile_interval(bootstrap.mean_replicates(x, blocks, B), 0.95)
            hit[kind] += bool(lo[0] <= 0.0 <= hi[0])
    assert hit["groups"] / trials > 0.88
    assert hit["rows"] / trials < 0.75


# --------------------------------------------------------------------------- readers


def test_readers_name_the_file_and_the_column(tmp_path):
    spectra, transcripts = _decode_files(tmp_path, False)
    bad = tmp_path / "bad.parquet"
    pl.read_parquet(spectra[0]).drop("n_rows").write_parquet(bad)
    with pytest.raises(DataError, match=r"bad\.parquet: column 'n_rows'.*missing"):
        layer_metrics([spectra[1], bad])
    pl.read_parquet(spectra[0]).with_columns(pl.col("layer").cast(pl.String)).write_parquet(bad)
    with pytest.raises(DataError, match=r"bad\.parquet: column 'layer' is string"):
        detect.features([bad], transcripts)
    csv = tmp_path / "counts.csv"
    counts = {"model": ["m"], "condition": ["hell"], "n_total": ["x"], "n_pairs": [1],
              "frac_kept": [0.5], "n_excluded": [0], "n_hit_max_length": [0],
              "threshold": [0.5]}  # fmt: skip
    pl.DataFrame(counts).write_csv(csv)
    with pytest.raises(DataError, match=r"counts\.csv: column 'n_total' is not int64"):
        schemas.read_csv(csv, "pair_counts")
    pl.DataFrame({**counts, "n_total": [2]}).drop("threshold").write_csv(csv)
    with pytest.raises(DataError, match=r"counts\.csv: column 'threshold'.*missing"):
        schemas.read_csv(csv, "pair_counts")


def test_no_contract_is_declared_twice():
    with pytest.raises(ValueError, match="twice"):
        schemas._core.add(schemas.contract("spectra"))
