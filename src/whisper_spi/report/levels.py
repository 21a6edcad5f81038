"""The report's graded-stress section: one row per model x stress x level, the hallucination
rate and the final layer's N_eff delta per component over every pair, with intervals (the
whole table is tables/levels.csv)."""

from __future__ import annotations

import polars as pl

from whisper_spi.analysis.levels import EVERY, RATE
from whisper_spi.analysis.markdown import number
from whisper_spi.report.html import _frame_html

__all__ = ["levels_html"]

_SHOWN_OBSERVABLE = "neff"  # the paper's headline observable; the CSV holds every one


def _cell(value: float | None, lo: float | None, hi: float | None, fmt: str) -> str:
    if value is None:
        return "–"
    ci = "" if lo is None or hi is None else f" [{number(lo, fmt)}, {number(hi, fmt)}]"
    return f"{number(value, fmt)}{ci}"


def levels_html(df: pl.DataFrame) -> str | None:
    """The section's table, or None when ``df`` is not the levels table."""
    if not {"quantity", "level", "pairs", "paper"} <= set(df.columns):
        return None
    keys = ["model", "stress", "level", "paper"]
    shown = df.filter(
        (pl.col("quantity") == RATE)
        | ((pl.col("quantity") == _SHOWN_OBSERVABLE) & (pl.col("pairs") == EVERY))
    ).with_columns(
        column=pl.when(pl.col("quantity") == RATE)
        .then(pl.lit("hallucination rate"))
        .otherwise(pl.format("ΔN_eff % {}", pl.col("component"))),
        cell=pl.struct("quantity", "value", "ci_low", "ci_high").map_elements(
            lambda r: _cell(
                r["value"], r["ci_low"], r["ci_high"], ".2f" if r["quantity"] == RATE else "+.1f"
            ),
            return_dtype=pl.String,
        ),
    )
    n = shown.filter(pl.col("quantity") == RATE).select(*keys, pl.col("n").alias("decodes"))
    order = shown.select(*keys).unique(maintain_order=True)
    wide = shown.pivot("column", index=keys, values="cell", aggregate_function="first")
    table = (
        order.join(wide, on=keys, how="left", maintain_order="left")
        .join(n, on=keys, how="left", maintain_order="left")
        .with_columns(paper=pl.when(pl.col("paper")).then(pl.lit("yes")).otherwise(pl.lit("")))
        .rename({"paper": "paper's level"})
    )
    return _frame_html(
        table,
        "Graded stress: per model, stress and level (mildest first), the share of decodes "
        "that hallucinate and the final layer's N_eff delta per component over every pair, "
        "with 95% intervals resampling whole speakers. tables/levels.csv holds every "
        "observable, and the deltas over the hallucinated pairs alone.",
    )
