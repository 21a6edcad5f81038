"""The mitigation figures (altair), from the ``mitigation`` table.

* :func:`tradeoff_chart`: stressed hallucination rate against clean WER, one curve per
  intervention over its strengths (from the plain decode at strength 0), the baselines as
  points, one panel per model (captions: whisper_spi.report.sections.EXTRA_FIGURES);
* :func:`dose_response_chart`: one model's hallucination rate per condition against strength,
  one line per intervention, the fallback as a dashed level.
"""

from __future__ import annotations

import altair as alt
import polars as pl

from whisper_spi.analysis.frames import ordered
from whisper_spi.registry import (
    BASELINES,
    CLEAN,
    CONDITIONS,
    NO_SPEECH,
    NONSPEECH,
    PLAIN,
    STRESSED,
)

__all__ = ["dose_response_chart", "tradeoff_chart"]

_W, _H = 260, 200
# panels: clean, each stress, the stresses pooled, each non-speech input, those pooled
_PANEL_ORDER = (*CONDITIONS, STRESSED, *NONSPEECH, NO_SPEECH)


def _curves(table: pl.DataFrame, condition: str, metric: str) -> pl.DataFrame:
    """Each intervention's rows at ``condition``/``metric``, with the plain decode prepended
    as its strength-0 point."""
    cell = table.filter((pl.col("condition") == condition) & (pl.col("metric") == metric))
    plain = cell.filter(pl.col("method") == PLAIN)
    kinds = [m for m in cell["method"].unique().sort().to_list() if m not in BASELINES]
    parts = [cell.filter(pl.col("method") == k) for k in kinds]
    parts += [plain.with_columns(pl.lit(k).alias("method")) for k in kinds]
    return pl.concat(parts) if parts else cell.clear()


def _xy(hall: pl.DataFrame, wer: pl.DataFrame) -> pl.DataFrame:
    key = ["model", "method", "strength"]
    return hall.select(
        *key, pl.col("value").alias("hall"), pl.col("lo").alias("hall_lo"),
        pl.col("hi").alias("hall_hi"),
    ).join(
        wer.select(*key, pl.col("value").alias("wer")), on=key, nulls_equal=True
    )  # fmt: skip


def _finite(df: pl.DataFrame) -> pl.DataFrame:
    """NaN and infinite floats as null (an arm without a strength has NaN): JSON has neither."""
    floats = [name for name, dtype in df.schema.items() if dtype.is_float()]
    return df.with_columns(pl.when(pl.col(c).is_finite()).then(pl.col(c)).alias(c) for c in floats)


def _at(table: pl.DataFrame, condition: str, metric: str) -> pl.DataFrame:
    return table.filter((pl.col("condition") == condition) & (pl.col("metric") == metric))


def tradeoff_chart(table: pl.DataFrame) -> alt.TopLevelMixin:
    hall, wer = "hallucination_rate", "wer"
    curves = _xy(_curves(table, STRESSED, hall), _curves(table, CLEAN, wer))
    base_rows = table.filter(pl.col("method").is_in(BASELINES))
    points = _xy(_at(base_rows, STRESSED, hall), _at(base_rows, CLEAN, wer))
    data = _finite(
        pl.concat(
            [curves.with_columns(kind=pl.lit("curve")), points.with_columns(kind=pl.lit("point"))]
        )
    )
    x = alt.X("wer:Q", title="WER on clean audio")
    y = alt.Y("hall:Q", title="hallucination rate, stressed")
    base = alt.Chart(data)
    is_curve, is_point = alt.datum.kind == "curve", alt.datum.kind == "point"
    color = alt.Color("method:N", title="intervention")
    line = (
        base.transform_filter(is_curve)
        .mark_line(point=True)
        .encode(
            x=x, y=y, color=color, order="strength:Q", tooltip=["method", "strength", "hall", "wer"]
        )
    )
    bars = (
        base.transform_filter(is_curve)
        .mark_rule(opacity=0.4)
        .encode(
            x=x,
            y=alt.Y("hall_lo:Q", title="hallucination rate, stressed"),
            y2="hall_hi:Q",
            color=color,
        )
    )
    marks = (
        base.transform_filter(is_point)
        .mark_point(size=90, filled=True, color="black")
        .encode(
            x=x,
            y=y,
            shape=alt.Shape("method:N", title="baseline"),
            tooltip=["method", "hall", "wer"],
        )
    )
    pbars = (
        base.transform_filter(is_point)
        .mark_rule(color="black", opacity=0.5)
        .encode(x=x, y=alt.Y("hall_lo:Q", title="hallucination rate, stressed"), y2="hall_hi:Q")
    )
    return (
        alt.layer(bars, line, pbars, marks, data=data)
        .properties(width=_W, height=_H)
        .facet(column=alt.Column("model:N", title=None))
        .resolve_scale(x="independent", y="independent")
        .properties(title="Mitigation trade-off: stressed hallucination vs clean WER")
    )


def dose_response_chart(table: pl.DataFrame, model: str) -> alt.TopLevelMixin:
    mine = table.filter(pl.col("model") == model)
    metric = "hallucination_rate"
    conditions = ordered(mine["condition"].to_list(), _PANEL_ORDER)
    curves = pl.concat([_curves(mine, c, metric) for c in conditions])
    best = next(iter(mine["best"]), "")  # the dashed level: the best baseline users have
    level = mine.filter((pl.col("method") == best) & (pl.col("metric") == metric))
    data = _finite(
        pl.concat(
            [curves.with_columns(kind=pl.lit("curve")), level.with_columns(kind=pl.lit("best"))]
        )
    )
    x = alt.X("strength:Q", title="strength")
    y = alt.Y("value:Q", title="hallucination rate")
    base = alt.Chart(data)
    is_curve = alt.datum.kind == "curve"
    color = alt.Color("method:N", title="intervention")
    line = (
        base.transform_filter(is_curve)
        .mark_line(point=True)
        .encode(x=x, y=y, color=color, tooltip=["method", "strength", "value", "lo", "hi"])
    )
    band = (
        base.transform_filter(is_curve)
        .mark_errorband(opacity=0.2)
        .encode(x=x, y=alt.Y("lo:Q", title="hallucination rate"), y2="hi:Q", color=color)
    )
    fb = (
        base.transform_filter(alt.datum.kind == "best")
        .mark_rule(strokeDash=[4, 3], color="black")
        .encode(y="value:Q")
    )
    return (
        alt.layer(band, line, fb, data=data)
        .properties(width=150, height=150)
        .facet(facet=alt.Facet("condition:N", title=None, sort=conditions), columns=4)
        .properties(
            title=f"Dose-response, {model}: hallucination rate by strength (dashed: {best or '-'})"
        )
    )
