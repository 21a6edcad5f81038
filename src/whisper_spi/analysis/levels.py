"""Graded stress: the hallucination rate and each observable's delta against the stress level.

Each stress is decoded at its own level (the paper's) and at the extra levels of
``stresses.<name>.levels`` (conditions ``<stress>@<level>``). Per model, stress and level:
the share of decodes that hallucinate (the run's definition) and, at the final decoder layer,
each observable's mean delta (stressed vs its clean twin) over every pair and over the
hallucinated pairs, with intervals that resample whole speakers. Where between clean and the
paper's level does the transition happen, and does the spectral signature grow with it?
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import altair as alt
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
from whisper_spi.analysis.frames import ordered
from whisper_spi.analysis.options import MetricOptions
from whisper_spi.analysis.pairs import pairs_and_counts
from whisper_spi.analysis.utterance import utterance_summary
from whisper_spi.registry import (
    CLEAN,
    COMPONENTS,
    GRADED_PARAM,
    HARSHER,
    HELL,
    NONSPEECH,
    OBSERVABLE_SPECS,
    OBSERVABLES,
    PAPER_OBSERVABLES,
    split_condition,
)
from whisper_spi.taxonomy.labels import HER_THRESHOLD, hallucination_expr
from whisper_spi.text import HALLUCINATION_WER

__all__ = ["RATE", "condition_levels", "level_summary", "levels_chart", "write_levels"]

RATE = "hallucination_rate"  # the ``quantity`` of the rate rows; the others are observables
EVERY, HALLUCINATED = "every", "hallucinated"  # the pair sets of the delta rows


def condition_levels(conditions: Sequence[str], stresses: Mapping) -> pl.DataFrame:
    """(condition, stress, level, paper) of every stressed condition: a plain stress name is
    at its configured level (``stresses``: the config's block), the paper's."""
    rows = []
    for condition in conditions:
        if condition == CLEAN or condition in NONSPEECH:
            continue
        stress, level = split_condition(condition)
        if stress not in GRADED_PARAM:
            raise ValueError(f"levels: {condition!r} is not a stress condition")
        paper = level is None
        if paper:
            level = float(stresses[stress][GRADED_PARAM[stress]])
        rows.append({"condition": condition, "stress": stress, "level": level, "paper": paper})
    return pl.DataFrame(
        rows, schema={"condition": pl.String, "stress": pl.String, "level": pl.Float64,
                      "paper": pl.Boolean},
    )  # fmt: skip


def _rates(
    labels: pl.DataFrame, levels: pl.DataFrame, opts: MetricOptions, seed: int
) -> pl.DataFrame:
    """The hallucination rate of each (model, condition) over every decode, its interval
    resampling whole speakers (or utterances: ``opts.resample_unit``)."""
    unit = "speaker" if opts.resample_unit == "speaker" else "utt_id"
    frames = []
    for (model, condition), g in labels.group_by("model", "condition", maintain_order=True):
        if condition not in set(levels["condition"]):
            continue
        y = g["hallucinated"].cast(pl.Float64).to_numpy()[:, None]
        lo = hi = math.nan
        if opts.n_boot > 0:
            _, groups = np.unique(g[unit].to_numpy().astype(str), return_inverse=True)
            rng = seeded_rng(seed, f"levels/{model}/{condition}/rate")
            blocks = count_blocks(rng, len(y), opts.n_boot, TABLE_BLOCK, groups=groups)
            (lo,), (hi,) = percentile_interval(mean_replicates(y, blocks, opts.n_boot), opts.ci)
        frames.append(
            {"model": model, "condition": condition, "quantity": RATE, "component": None,
             "pairs": None, "n": len(y), "value": float(np.nanmean(y)),
             "ci_low": float(lo), "ci_high": float(hi)}
        )  # fmt: skip
    return pl.DataFrame(frames, schema=_ROWS)


_ROWS = {
    "model": pl.String,
    "condition": pl.String,
    "quantity": pl.String,
    "component": pl.String,
    "pairs": pl.String,
    "n": pl.Int64,
    "value": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
}


def _deltas(
    metrics_paths: Sequence[str | Path],
    pairs: pl.DataFrame,
    pair_set: str,
    opts: MetricOptions,
    seed: int,
) -> pl.DataFrame:
    """Each observable's mean delta per (model, condition, component) at the K of the
    figures, full length; ``metrics_paths``: the final layer's (what the rule passes)."""
    pairs = pairs.filter(pl.col("condition") != HELL)
    if pairs.height == 0:
        return pl.DataFrame(schema=_ROWS)
    summary = utterance_summary(metrics_paths, pairs, opts, seed)
    return (
        summary.filter(
            (pl.col("pair_set") == "all")
            & (pl.col("prefix") == 0)
            & (pl.col("layer") >= 0)  # the layer-mean rows repeat the one layer given
            & (pl.col("k") == opts.figure_k)
        )
        .select(
            "model",
            "condition",
            pl.col("observable").alias("quantity"),
            "component",
            pl.lit(pair_set).alias("pairs"),
            "n",
            pl.col("delta").alias("value"),
            pl.col("delta_ci_low").alias("ci_low"),
            pl.col("delta_ci_high").alias("ci_high"),
        )
        .cast(_ROWS)
    )


def level_summary(
    transcript_paths: Sequence[str | Path],
    metrics_paths: Sequence[str | Path],
    labels_paths: Sequence[str | Path],
    stresses: Mapping,
    *,
    threshold: float = HALLUCINATION_WER,
    definition: str = "wer",
    her_threshold: float = HER_THRESHOLD,
    min_tokens: int = 0,
    options: MetricOptions | None = None,
    seed: int = 0,
) -> pl.DataFrame:
    """The ``levels`` table (contract ``levels``) of the transcripts of clean and every
    stressed condition (graded or not), their taxonomy labels and the final decoder layer's
    layer metrics. ``stresses``: the config's block (each stress's own level)."""
    opts = options or MetricOptions()
    labels = schemas.scan_parquet(labels_paths, "taxonomy").collect()
    levels = condition_levels(sorted(set(labels["condition"])), stresses)
    labels = labels.with_columns(
        hallucinated=hallucination_expr(definition, threshold, her_threshold).fill_null(False)
    )
    common = {"min_tokens": min_tokens, "labels": labels_paths, "her_threshold": her_threshold}
    # every pair: each stressed decode with its clean twin, whatever its WER
    every, _ = pairs_and_counts(transcript_paths, -math.inf, definition="wer", **common)
    kept, _ = pairs_and_counts(transcript_paths, threshold, definition=definition, **common)
    out = pl.concat(
        [
            _rates(labels, levels, opts, seed),
            _deltas(metrics_paths, every, EVERY, opts, seed),
            _deltas(metrics_paths, kept, HALLUCINATED, opts, seed),
        ]
    )
    quantity_rank = {q: i for i, q in enumerate((RATE, *OBSERVABLES))}
    out = (
        out.join(levels, on="condition", how="inner")
        .with_columns(
            _q=pl.col("quantity").replace_strict(quantity_rank, default=len(quantity_rank)),
            _h=pl.col("level")
            * pl.col("stress").replace_strict(dict(HARSHER), return_dtype=pl.Float64),
        )
        .sort("model", "stress", "_h", "_q", "component", "pairs", nulls_last=False)
        .drop("_q", "_h")
    )
    return out.select(schemas.contract("levels").names)


def write_levels(table: pl.DataFrame, csv: str | Path) -> None:
    """The table as CSV (contract ``levels``)."""
    schemas.write_csv(table, "levels", csv)


_W, _H = 190, 130
_AXIS = {
    "time_stretch": "speed factor",
    "speaker_mix": "speakers in the mix",
    "gaussian_noise": "SNR (dB), harsher to the right",
}


def _title(quantity: str) -> str:
    if quantity == RATE:
        return "hallucination rate"
    spec = OBSERVABLE_SPECS[quantity]
    return f"Δ{spec.symbol} %" if spec.percent else f"Δ{spec.symbol}"


def _panel(data: pl.DataFrame, stress: str, quantity: str, top: bool) -> alt.LayerChart:
    """One stress x quantity: the value against the level with its interval, a line per
    component (the rate: one), the paper's level ringed."""
    cell = data.filter((pl.col("stress") == stress) & (pl.col("quantity") == quantity))
    cell = cell.with_columns(pl.col("component").fill_null("all decodes"))
    x = alt.X(
        "level:Q",
        title=_AXIS[stress],
        scale=alt.Scale(reverse=HARSHER[stress] < 0, zero=False, nice=False),
    )
    y_title = _title(quantity)
    colors = ordered(cell["component"].unique().to_list(), [*COMPONENTS, "all decodes"])
    color = alt.Color("component:N", sort=colors, title="component")
    base = alt.Chart(cell).encode(x=x, color=color)
    tooltip = ["condition", "component", "n", alt.Tooltip("value:Q", format=".3g")]
    layers = [
        base.mark_errorbar().encode(y=alt.Y("ci_low:Q", title=y_title), y2="ci_high:Q"),
        base.mark_line(point=True).encode(y="value:Q", tooltip=tooltip),
        base.transform_filter("datum.paper").mark_point(size=140, filled=False).encode(y="value:Q"),
    ]
    if quantity != RATE:
        layers.append(alt.Chart(pl.DataFrame({"y": [0.0]})).mark_rule(color="gray").encode(y="y:Q"))
    title = stress if top else ""
    return alt.layer(*layers).properties(width=_W, height=_H, title=title)


def levels_chart(table: pl.DataFrame, pairs: str = EVERY) -> alt.VConcatChart:
    """Per model, a grid of panels: rows the hallucination rate and each observable's delta
    (over ``pairs``: every pair, so that each level shows the same utterances), columns the
    stresses, the level on x (harsher to the right), a line per component; the paper's
    level ringed."""
    data = table.filter(pl.col("quantity").eq(RATE) | pl.col("pairs").eq(pairs))
    stresses = ordered(data["stress"].unique().to_list(), list(GRADED_PARAM))
    shown = [RATE, *PAPER_OBSERVABLES]  # tail energy is in the CSV
    quantities = [q for q in shown if q in set(data["quantity"])]
    models = []
    for model in data["model"].unique(maintain_order=True).to_list():
        sub = data.filter(pl.col("model") == model)
        rows = [
            alt.hconcat(*[_panel(sub, s, q, top=i == 0) for s in stresses])
            for i, q in enumerate(quantities)
        ]
        models.append(alt.vconcat(*rows).properties(title=f"{model}: graded stress"))
    return alt.vconcat(*models).resolve_scale(color="shared")
