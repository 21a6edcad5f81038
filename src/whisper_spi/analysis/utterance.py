"""Scope ``utterance``: per-pair deltas, their mean and median, a bootstrap CI over pairs."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from .. import schemas
from ..names import CLEAN, COMPONENTS, OBSERVABLES
from .bootstrap import TABLE_BLOCK, count_blocks, mean_replicates, percentile_interval, seeded_rng
from .frames import MEAN_LAYER, delta_expr, empty, ordered, summary_frame
from .options import MetricOptions

__all__ = ["utterance_summary"]


def utterance_summary(
    metrics_paths: Sequence[str | Path],
    pair_df: pl.DataFrame,
    options: MetricOptions | None = None,
    seed: int = 0,
) -> pl.DataFrame:
    """layer_summary rows of scope ``utterance``.

    Per model x condition x prefix (0 = full length, L = the first L rows), every layer,
    component, K and observable, plus ``layer = -1`` (per pair the mean over layers, then
    across pairs). One resampling of the pairs per (model, condition, prefix), keyed
    ``utterance/<model>/<condition>/prefix=<L>`` and shared by all its cells.
    """
    opts = options or MetricOptions()
    obs_cols = list(OBSERVABLES)
    lf = schemas.scan_parquet(metrics_paths, "layer_metrics")
    frames = []
    for model in sorted(pair_df["model"].unique().to_list()):
        P = (
            pair_df.filter(pl.col("model") == model)
            .select("condition", "stress", "utt_id")
            .sort("condition", "stress", "utt_id")
            .with_columns(pl.int_range(pl.len()).over("condition").alias("_pair"))
        )
        m = lf.filter((pl.col("model") == model) & pl.col("k").is_in(list(opts.k)))
        ms = m.filter(pl.col("condition") != CLEAN).select(
            pl.col("condition").alias("stress"),
            "utt_id", "layer", "component", "prefix", "k", *obs_cols,
        )  # fmt: skip
        mc = m.filter(pl.col("condition") == CLEAN).select(
            "utt_id", "layer", "component", "prefix", "k",
            *[pl.col(o).alias(f"{o}_clean") for o in obs_cols],
        )  # fmt: skip
        d = (
            P.lazy()
            .join(ms, on=["stress", "utt_id"], how="inner")
            .join(mc, on=["utt_id", "layer", "component", "prefix", "k"], how="inner")
            .with_columns(*[delta_expr(o).alias(f"{o}_delta") for o in obs_cols])
            .collect()
        )
        if d.height == 0:
            continue
        layers = sorted(d["layer"].unique().to_list())
        comps = ordered(d["component"].unique().to_list(), COMPONENTS)
        ks = sorted(d["k"].unique().to_list())
        for (condition, prefix), g in d.group_by("condition", "prefix", maintain_order=True):
            g = g.with_columns(
                (pl.col("_pair").rank("dense") - 1).cast(pl.Int64).alias("_i"),
                pl.col("layer").replace_strict({v: i for i, v in enumerate(layers)}).alias("_l"),
                pl.col("component").replace_strict({v: i for i, v in enumerate(comps)}).alias("_c"),
                pl.col("k").replace_strict({v: i for i, v in enumerate(ks)}).alias("_k"),
            )
            frames.append(
                _group(g, model, str(condition), int(prefix), layers, comps, ks, opts, seed)
            )
    if not frames:
        return empty("layer_summary")
    return pl.concat(frames)


def _group(
    g: pl.DataFrame,
    model: str,
    condition: str,
    prefix: int,
    layers: list[int],
    comps: list[str],
    ks: list[int],
    opts: MetricOptions,
    seed: int,
) -> pl.DataFrame:
    n = int(g["_i"].max()) + 1
    L, C, K, NO = len(layers), len(comps), len(ks), len(OBSERVABLES)
    V = np.full((n, L, C, K, NO, 3), np.nan)
    i, li, ci, ki = (g[c].to_numpy() for c in ("_i", "_l", "_c", "_k"))
    for oi, o in enumerate(OBSERVABLES):
        for qi, col in enumerate((f"{o}_clean", o, f"{o}_delta")):
            V[i, li, ci, ki, oi, qi] = g[col].to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        V = np.concatenate([V, np.nanmean(V, axis=1, keepdims=True)], axis=1)
        flat = V.reshape(n, -1)
        point = np.nanmean(flat, axis=0)
        median = np.nanmedian(flat, axis=0)
    count = np.isfinite(flat).sum(axis=0)
    if opts.n_boot > 0 and n > 0:
        rng = seeded_rng(seed, f"utterance/{model}/{condition}/prefix={prefix}")
        blocks = count_blocks(rng, n, opts.n_boot, TABLE_BLOCK)
        lo, hi = percentile_interval(mean_replicates(flat, blocks, opts.n_boot), opts.ci)
    else:
        lo = hi = np.full_like(point, np.nan)
    shape = (L + 1, C, K, NO, 3)
    return summary_frame(
        scope="utterance",
        model=model,
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
    )
