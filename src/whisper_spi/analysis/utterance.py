"""Scope ``utterance``: per-pair deltas, raw and length-adjusted, their mean and median, and
intervals that resample speakers (or utterances), never single pairs.

Length adjustment: over the clean twins of the model's pairs, each observable (log N_eff for
N_eff) is fitted on log T (T = decoded positions, full length) per layer x component x K, by
least squares; a pair's adjusted delta removes the fitted effect of its length difference,
``(s - c) - b (log T_s - log T_c)``, or for N_eff ``100 ((s / c) (T_c / T_s)**b - 1)``. With
a prefix L both sides have T = L, so the adjusted delta equals the raw one. The fit is redone
in every replicate, on the clean twins the replicate draws (its effect on the mean taken to
first order in the slope, see :func:`_adjusted_replicates`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from whisper_spi import schemas
from whisper_spi.analysis.bootstrap import (
    TABLE_BLOCK,
    count_blocks,
    mean_replicates,
    percentile_interval,
    seeded_rng,
)
from whisper_spi.analysis.frames import (
    MEAN_LAYER,
    delta_expr,
    empty,
    ordered,
    pair_sets,
    summary_frame,
)
from whisper_spi.analysis.options import MetricOptions
from whisper_spi.registry import CLEAN, COMPONENTS, OBSERVABLE_SPECS, OBSERVABLES

__all__ = ["length_slopes", "utterance_summary"]

_PERCENT = np.array([OBSERVABLE_SPECS[o].percent for o in OBSERVABLES])


def length_slopes(Y: np.ndarray, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted least-squares slopes of every column of Y (n x G, NaN = missing) on x (n,),
    one row of weights w (b x n) per fit: (b, G); NaN where x does not vary."""
    F = np.isfinite(Y).astype(np.float64)
    Y0 = np.where(F > 0, Y, 0.0)
    w = w.astype(np.float64)
    with np.errstate(all="ignore"):
        sw, sx, sy = w @ F, w @ (F * x[:, None]), w @ Y0
        sxx, sxy = w @ (F * (x**2)[:, None]), w @ (Y0 * x[:, None])
        var = sxx - sx**2 / sw
        b = (sxy - sx * sy / sw) / var
    return np.where(var > 1e-12 * np.maximum(sxx, 1e-300), b, np.nan)


def _adjusted(Vc: np.ndarray, Vs: np.ndarray, dx: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Length-adjusted deltas (n, L, C, K, O) for slopes b (L, C, K, O), dx = log Ts / Tc."""
    shift = b[None] * dx.reshape(-1, 1, 1, 1, 1)
    out = np.empty(np.broadcast_shapes(Vc.shape, shift.shape))
    p = _PERCENT
    with np.errstate(all="ignore"):
        out[..., p] = 100.0 * (Vs[..., p] / Vc[..., p] * np.exp(-shift[..., p]) - 1.0)
        out[..., ~p] = (Vs[..., ~p] - Vc[..., ~p]) - shift[..., ~p]
    return out


def _adjusted_replicates(
    adj0: np.ndarray, dx: np.ndarray, W: np.ndarray, db: np.ndarray
) -> np.ndarray:
    """Replicate means (B, (L + 1) C K O) of the adjusted deltas, the last layer block the
    per-pair layer mean, for slopes b0 + db (B, L, C, K, O) of each replicate.

    Linear in the slope around the point fit b0 (exact for the differences; for N_eff the
    relative error is about (db dx)^2 / 2, negligible at the slopes' spread), so a few matrix
    products instead of a pass over the pairs per replicate:
    d adj / d b is -dx, and -(adj + 100) dx for the percent delta.
    """
    n, L = adj0.shape[:2]
    F = np.isfinite(adj0)
    D = np.where(_PERCENT, -(adj0 + 100.0), -1.0) * dx.reshape(-1, 1, 1, 1, 1)
    A0, D0 = np.where(F, adj0, 0.0), np.where(F, D, 0.0)
    Wf = W.astype(np.float64)
    with np.errstate(all="ignore"):
        cnt = Wf @ F.reshape(n, -1)
        per_layer = Wf @ A0.reshape(n, -1) + (Wf @ D0.reshape(n, -1)) * db.reshape(len(W), -1)
        per_layer = (per_layer / cnt).reshape(len(W), L, *adj0.shape[2:])
        nF = F.sum(axis=1)  # finite layers per pair and cell
        lm0 = A0.sum(axis=1) / nF
        has = nF > 0
        lm_num = Wf @ np.where(has, lm0, 0.0).reshape(n, -1)
        H = (D0 / np.where(has, nF, 1)[:, None]).reshape(n, -1)  # per pair, layer, cell
        WH = (Wf @ H).reshape(len(W), L, -1)
        lm_num += (WH * db.reshape(len(W), L, -1)).sum(axis=1)
        lm = (lm_num / (Wf @ has.reshape(n, -1))).reshape(len(W), 1, *adj0.shape[2:])
    return np.concatenate([per_layer, lm], axis=1).reshape(len(W), -1)


def _with_layer_mean(A: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.concatenate([A, np.nanmean(A, axis=1, keepdims=True)], axis=1)


def utterance_summary(
    metrics_paths: Sequence[str | Path],
    pair_df: pl.DataFrame,
    options: MetricOptions | None = None,
    seed: int = 0,
) -> pl.DataFrame:
    """layer_summary rows of scope ``utterance``.

    Per model x pair set x condition x prefix (0 = full length, L = the first L rows), every
    layer, component, K and observable, plus ``layer = -1`` (per pair the mean over layers,
    then across pairs). One resampling per (model, pair set, condition, prefix), keyed
    ``utterance/<model>/<pair set>/<condition>/prefix=<L>``, shared by all its cells: whole
    speakers (``options.resample_unit``), each drawn with all its pairs and clean twins.
    """
    opts = options or MetricOptions()
    obs_cols = list(OBSERVABLES)
    lf = schemas.scan_parquet(metrics_paths, "layer_metrics")
    unit_col = "speaker" if opts.resample_unit == "speaker" else "utt_id"
    frames = []
    for model in sorted(pair_df["model"].unique().to_list()):
        P_all = pair_df.filter(pl.col("model") == model)
        m = lf.filter((pl.col("model") == model) & pl.col("k").is_in(list(opts.k)))
        ms = m.filter(pl.col("condition") != CLEAN).select(
            pl.col("condition").alias("stress"),
            "utt_id", "layer", "component", "prefix", "k", "n_rows", *obs_cols,
        )  # fmt: skip
        mc_lazy = m.filter(pl.col("condition") == CLEAN).select(
            "utt_id", "layer", "component", "prefix", "k",
            pl.col("n_rows").alias("n_rows_clean"),
            *[pl.col(o).alias(f"{o}_clean") for o in obs_cols],
        )  # fmt: skip
        twins = P_all.select("utt_id", unit_col).unique(maintain_order=True).sort("utt_id")
        fit = _fit_data(mc_lazy.collect(), twins, unit_col)
        for pair_set, P in pair_sets(P_all).items():
            P = (
                P.select(*dict.fromkeys(("condition", "stress", "utt_id", unit_col)))
                .sort("condition", "stress", "utt_id")
                .with_columns(pl.int_range(pl.len()).over("condition").alias("_pair"))
            )
            d = (
                P.lazy()
                .join(ms, on=["stress", "utt_id"], how="inner")
                .join(mc_lazy, on=["utt_id", "layer", "component", "prefix", "k"], how="inner")
                .with_columns(*[delta_expr(o).alias(f"{o}_delta") for o in obs_cols])
                .collect()
            )
            if d.height == 0:
                continue
            for (condition, prefix), g in d.group_by("condition", "prefix", maintain_order=True):
                key = f"utterance/{model}/{pair_set}/{condition}/prefix={prefix}"
                frames.append(
                    _group(
                        g,
                        fit,
                        model,
                        pair_set,
                        str(condition),
                        int(prefix),
                        unit_col,
                        opts,
                        seeded_rng(seed, key),
                    )  # fmt: skip
                )
    if not frames:
        return empty("layer_summary")
    return pl.concat(frames)


def _fit_data(mc: pl.DataFrame, twins: pl.DataFrame, unit_col: str) -> dict:
    """The clean twins' full-length observables (log N_eff) and log T, as arrays."""
    mc = mc.filter(pl.col("prefix") == 0).join(twins, on="utt_id", how="inner")
    layers = sorted(mc["layer"].unique().to_list())
    comps = ordered(mc["component"].unique().to_list(), COMPONENTS)
    ks = sorted(mc["k"].unique().to_list())
    utts = mc["utt_id"].unique().sort().to_list()
    maps = {
        "utt_id": utts,
        "layer": layers,
        "component": comps,
        "k": ks,
    }
    pos = [mc[c].replace_strict({v: i for i, v in enumerate(vals)}).to_numpy()
           for c, vals in maps.items()]  # fmt: skip
    Y = np.full((len(utts), len(layers), len(comps), len(ks), len(OBSERVABLES)), np.nan)
    for oi, o in enumerate(OBSERVABLES):
        v = mc[f"{o}_clean"].to_numpy().astype(np.float64)
        with np.errstate(all="ignore"):
            Y[(*pos, oi)] = np.log(v) if _PERCENT[oi] else v
    x = np.full(len(utts), np.nan)
    with np.errstate(all="ignore"):
        x[pos[0]] = np.log(mc["n_rows_clean"].to_numpy().astype(np.float64))
    unit_of = dict(twins.iter_rows())
    return {"Y": Y, "x": x, "units": [unit_of[u] for u in utts], "layers": layers,
            "comps": comps, "ks": ks}  # fmt: skip


def _group(
    g: pl.DataFrame,
    fit: dict,
    model: str,
    pair_set: str,
    condition: str,
    prefix: int,
    unit_col: str,
    opts: MetricOptions,
    rng: np.random.Generator,
) -> pl.DataFrame:
    layers, comps, ks = fit["layers"], fit["comps"], fit["ks"]
    g = g.filter(
        pl.col("layer").is_in(layers) & pl.col("component").is_in(comps) & pl.col("k").is_in(ks)
    ).with_columns(
        (pl.col("_pair").rank("dense") - 1).cast(pl.Int64).alias("_i"),
        pl.col("layer").replace_strict({v: i for i, v in enumerate(layers)}).alias("_l"),
        pl.col("component").replace_strict({v: i for i, v in enumerate(comps)}).alias("_c"),
        pl.col("k").replace_strict({v: i for i, v in enumerate(ks)}).alias("_k"),
    )
    n = int(g["_i"].max()) + 1
    L, C, K, NO = len(layers), len(comps), len(ks), len(OBSERVABLES)
    V = np.full((n, L, C, K, NO, 3), np.nan)
    i, li, ci, ki = (g[c].to_numpy() for c in ("_i", "_l", "_c", "_k"))
    for oi, o in enumerate(OBSERVABLES):
        for qi, col in enumerate((f"{o}_clean", o, f"{o}_delta")):
            V[i, li, ci, ki, oi, qi] = g[col].to_numpy()
    per_pair = (
        g.group_by("_i")
        .agg(pl.col(unit_col).first(), pl.col("n_rows").first(), pl.col("n_rows_clean").first())
        .sort("_i")
    )
    with np.errstate(all="ignore"):
        dx = np.log(per_pair["n_rows"].to_numpy() / per_pair["n_rows_clean"].to_numpy())
    Y, x = fit["Y"], fit["x"]
    nc = len(x)
    Yf = Y.reshape(nc, -1)
    b0 = length_slopes(Yf, x, np.ones((1, nc)))[0].reshape(L, C, K, NO)
    adj = _with_layer_mean(_adjusted(V[..., 0], V[..., 1], dx, b0)).reshape(n, -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        V = np.concatenate([V, np.nanmean(V, axis=1, keepdims=True)], axis=1)
        flat = V.reshape(n, -1)
        point, median = np.nanmean(flat, axis=0), np.nanmedian(flat, axis=0)
        adj_point = np.nanmean(adj, axis=0)
    count = np.isfinite(flat).sum(axis=0)
    shape = (L + 1, C, K, NO, 3)
    lo = hi = np.full_like(point, np.nan)
    adj_lo = adj_hi = np.full_like(adj_point, np.nan)
    if opts.n_boot > 0 and n > 0:
        labels = np.asarray([*per_pair[unit_col].to_list(), *fit["units"]], dtype=object)
        _, groups = np.unique(labels.astype(str), return_inverse=True)
        blocks = list(count_blocks(rng, n + nc, opts.n_boot, TABLE_BLOCK, groups=groups))
        W = np.concatenate(blocks)
        Wp, Wc = W[:, :n], W[:, n:]
        lo, hi = percentile_interval(mean_replicates(flat, iter([Wp]), opts.n_boot), opts.ci)
        db = length_slopes(Yf, x, Wc).reshape(-1, L, C, K, NO) - b0[None]
        adj0 = _adjusted(V[:, :L, ..., 0], V[:, :L, ..., 1], dx, b0)
        reps = _adjusted_replicates(adj0, dx, Wp, db)
        adj_lo, adj_hi = percentile_interval(reps, opts.ci)
    b_full = np.concatenate([b0, np.full((1, C, K, NO), np.nan)], axis=0)
    return summary_frame(
        scope="utterance",
        model=model,
        pair_set=pair_set,
        condition=condition,
        prefix=prefix,
        layers=[*layers, MEAN_LAYER],
        comps=comps,
        ks=ks,
        point=point.reshape(shape),
        lo=lo.reshape(shape),
        hi=hi.reshape(shape),
        median=median.reshape(shape),
        n=count.reshape(shape)[..., 2],
        n_boot=opts.n_boot,
        adjusted=(adj_point, adj_lo, adj_hi),
        length_slope=b_full,
    )
