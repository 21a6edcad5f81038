"""The paper's figures, as altair charts built from the tables stage's outputs.

* :func:`trajectories_chart`: Figure 1, layer-wise trajectories of the observables;
* :func:`phase_diagram`: Figure 2, N_eff against alpha at the final decoder layer;
* :func:`tail_energy_chart`: Figure 3, energy per rank, stressed over clean;
* :func:`scree_chart`: mean spectra, clean vs stressed, log-log.

Inputs are the ``layer_summary`` and ``rank_profile`` frames (see :mod:`whisper_spi.schemas`).
:func:`save_chart` writes each chart as a self-contained HTML page (Vega bundled, no CDN) and
a PNG rendered by vl-convert.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import altair as alt
import polars as pl

from whisper_spi.analysis.options import MetricOptions
from whisper_spi.captions import captions
from whisper_spi.charts import save_chart
from whisper_spi.registry import CLEAN, COMPONENTS, HELL, OBSERVABLE_SPECS, OBSERVABLES, STRESSES

__all__ = [
    "FIGURES",
    "make_figures",
    "phase_diagram",
    "scree_chart",
    "tail_energy_chart",
    "trajectories_chart",
]

FIGURES: dict[str, str] = captions("trajectories", "phase_diagram", "tail_energy", "scree")

SERIES_ORDER = [CLEAN, *STRESSES, HELL]
_WIDTH, _HEIGHT = 170, 130


def _comp_sort(present: list[str]) -> list[str]:
    return [c for c in COMPONENTS if c in present] + sorted(set(present) - set(COMPONENTS))


def _summary_view(
    summary: pl.DataFrame, k: int, scope: str = "utterance", prefix: int = 0
) -> pl.DataFrame:
    return summary.filter(
        (pl.col("scope") == scope)
        & (pl.col("k") == k)
        & (pl.col("prefix") == prefix)
        & (pl.col("pair_set") == "all")  # every kept pair; typed subsets are in the tables
    )


def _series(view: pl.DataFrame) -> pl.DataFrame:
    """Long (series, value, lo, hi) rows: the clean twins of the hell pairs as 'clean', and the
    stressed level of every condition under its own name."""
    keys = ["model", "component", "layer", "observable", "n"]
    clean = view.filter(pl.col("condition") == HELL).select(
        *keys,
        pl.lit("clean").alias("series"),
        pl.col("clean").alias("value"),
        pl.col("clean_ci_low").alias("lo"),
        pl.col("clean_ci_high").alias("hi"),
    )
    stressed = view.select(
        *keys,
        pl.col("condition").alias("series"),
        pl.col("stressed").alias("value"),
        pl.col("stressed_ci_low").alias("lo"),
        pl.col("stressed_ci_high").alias("hi"),
    )
    return pl.concat([clean, stressed])


def _final(df: pl.DataFrame) -> pl.DataFrame:
    """Rows at each model's final decoder layer (its highest layer >= 0)."""
    final = df.filter(pl.col("layer") >= 0).group_by("model").agg(pl.col("layer").max())
    return df.join(final, on=["model", "layer"], how="semi")


def _placeholder(title: str) -> alt.Chart:
    """A chart saying there is nothing to plot (no pair survived the threshold)."""
    return (
        alt.Chart(pl.DataFrame({"text": ["no kept pairs: nothing to plot"]}))
        .mark_text(size=14)
        .encode(text="text:N")
        .properties(width=300, height=60, title=title)
    )


def trajectories_chart(summary: pl.DataFrame, k: int = 50) -> alt.TopLevelMixin:
    """Figure 1: one row of panels per observable, x = layer, rows = model, columns = component."""
    data = _series(_summary_view(summary, k).filter(pl.col("layer") >= 0))
    if data.height == 0:
        return _placeholder(f"Layer trajectories, K={k}")
    comps = _comp_sort(data["component"].unique().to_list())
    series = [s for s in SERIES_ORDER if s in set(data["series"])]
    charts = []
    for obs in OBSERVABLES:
        d = data.filter(pl.col("observable") == obs)
        title = OBSERVABLE_SPECS[obs].title
        base = alt.Chart().encode(
            x=alt.X("layer:O", title="decoder layer"),
            color=alt.Color("series:N", sort=series, title="condition"),
        )
        line = base.mark_line(point=True).encode(
            y=alt.Y("value:Q", title=title, scale=alt.Scale(zero=False)),
            tooltip=["model", "component", "series", "layer", "value", "lo", "hi", "n"],
        )
        band = base.mark_errorband().encode(y=alt.Y("lo:Q", title=title), y2="hi:Q")
        charts.append(
            alt.layer(band, line, data=d)
            .properties(width=_WIDTH, height=_HEIGHT)
            .facet(
                row=alt.Row("model:N", title=None),
                column=alt.Column("component:N", sort=comps, title=f"{title}, K={k}"),
            )
            .resolve_scale(y="independent")
        )
    return alt.vconcat(*charts).properties(
        title=f"Layer trajectories (scope utterance, full length, K={k})"
    )


def phase_data(summary: pl.DataFrame, k: int = 50) -> pl.DataFrame:
    """One row per model x component x condition (clean included) at the final layer:
    neff and alpha with their CIs."""
    view = _final(_summary_view(summary, k).filter(pl.col("layer") >= 0))
    s = _series(view)
    wide = None
    for obs in ("neff", "alpha"):
        part = s.filter(pl.col("observable") == obs).select(
            "model",
            "component",
            "layer",
            pl.col("series").alias("condition"),
            pl.col("value").alias(obs),
            pl.col("lo").alias(f"{obs}_lo"),
            pl.col("hi").alias(f"{obs}_hi"),
            *([pl.col("n")] if obs == "neff" else []),
        )
        keys = ["model", "component", "layer", "condition"]
        wide = part if wide is None else wide.join(part, on=keys, how="full", coalesce=True)
    return wide


def phase_diagram(summary: pl.DataFrame, k: int = 50) -> alt.TopLevelMixin:
    """Figure 2: N_eff vs alpha at the final decoder layer, one panel per component."""
    data = phase_data(summary, k)
    if data.height == 0:
        return _placeholder(f"Spectral phase diagram, K={k}")
    comps = _comp_sort(data["component"].unique().to_list())
    conds = [c for c in SERIES_ORDER if c in set(data["condition"])]
    base = alt.Chart().encode(
        color=alt.Color("model:N", title="model"),
    )
    points = base.mark_point(size=90, filled=True).encode(
        x=alt.X("alpha:Q", title="alpha (spectral slope)", scale=alt.Scale(zero=False)),
        y=alt.Y("neff:Q", title="N_eff (effective rank)", scale=alt.Scale(zero=False)),
        shape=alt.Shape("condition:N", sort=conds, title="condition"),
        tooltip=["model", "component", "condition", "layer", "neff", "alpha", "n"],
    )
    xbar = base.mark_rule().encode(x="alpha_lo:Q", x2="alpha_hi:Q", y="neff:Q")
    ybar = base.mark_rule().encode(y="neff_lo:Q", y2="neff_hi:Q", x="alpha:Q")
    return (
        alt.layer(xbar, ybar, points, data=data)
        .properties(width=220, height=200)
        .facet(column=alt.Column("component:N", sort=comps, title=None))
        .resolve_scale(x="independent", y="independent")
        .properties(title=f"Spectral phase diagram, final decoder layer, K={k}")
    )


def _profile_final(profile: pl.DataFrame, condition: str) -> pl.DataFrame:
    return _final(profile.filter(pl.col("condition") == condition))


def tail_energy_chart(profile: pl.DataFrame, condition: str = HELL) -> alt.TopLevelMixin:
    """Figure 3: stressed / clean mean normalised energy per rank, final decoder layer."""
    data = _profile_final(profile, condition).filter(
        pl.col("energy_ratio").is_not_null() & (pl.col("clean_energy") > 0)
    )
    if data.height == 0:
        return _placeholder(f"Energy per rank, {condition} over clean")
    comps = _comp_sort(data["component"].unique().to_list())
    line = (
        alt.Chart()
        .mark_line()
        .encode(
            x=alt.X("rank:Q", scale=alt.Scale(type="log"), title="rank i"),
            y=alt.Y("energy_ratio:Q", scale=alt.Scale(type="log"), title=f"{condition} / clean"),
            color=alt.Color("model:N"),
            tooltip=["model", "component", "layer", "rank", "energy_ratio", "n"],
        )
    )
    one = alt.Chart().mark_rule(strokeDash=[4, 4], color="gray").encode(y=alt.datum(1))
    return (
        alt.layer(one, line, data=data)
        .properties(width=220, height=180)
        .facet(column=alt.Column("component:N", sort=comps, title=None))
        .properties(title=f"Energy per rank, {condition} over clean, final decoder layer")
    )


def scree_chart(profile: pl.DataFrame, condition: str = HELL) -> alt.TopLevelMixin:
    """Mean singular value per rank, clean twins vs stressed, log-log, final decoder layer."""
    d = _profile_final(profile, condition)
    data = pl.concat(
        [
            d.select(
                "model",
                "component",
                "rank",
                pl.lit("clean").alias("series"),
                pl.col("clean_sv").alias("sv"),
            ),  # fmt: skip
            d.select(
                "model",
                "component",
                "rank",
                pl.lit(condition).alias("series"),
                pl.col("stressed_sv").alias("sv"),
            ),  # fmt: skip
        ]
    ).filter(pl.col("sv").is_not_null() & (pl.col("sv") > 0))
    if data.height == 0:
        return _placeholder(f"Scree plots, clean vs {condition}")
    comps = _comp_sort(data["component"].unique().to_list())
    return (
        alt.Chart(data)
        .mark_line()
        .encode(
            x=alt.X("rank:Q", scale=alt.Scale(type="log"), title="rank i"),
            y=alt.Y("sv:Q", scale=alt.Scale(type="log"), title="mean s_i"),
            color=alt.Color("series:N", sort=["clean", condition], title=None),
            tooltip=["model", "component", "series", "rank", "sv"],
        )
        .properties(width=_WIDTH, height=_HEIGHT)
        .facet(
            row=alt.Row("model:N", title=None),
            column=alt.Column("component:N", sort=comps, title=None),
        )
        .resolve_scale(y="independent")
        .properties(title=f"Scree plots, clean vs {condition}, final decoder layer")
    )


def make_figures(
    summary: pl.DataFrame,
    profile: pl.DataFrame,
    out_dir: str | Path | None = None,
    options: MetricOptions | None = None,
) -> dict[str, alt.TopLevelMixin]:
    """All figures (keys of :data:`FIGURES`); saved as ``out_dir/<name>.{html,png}`` if given."""
    opts = options or MetricOptions()
    charts: Mapping[str, alt.TopLevelMixin] = {
        "trajectories": trajectories_chart(summary, opts.figure_k),
        "phase_diagram": phase_diagram(summary, opts.figure_k),
        "tail_energy": tail_energy_chart(profile),
        "scree": scree_chart(profile),
    }
    if out_dir is not None:
        for name, chart in charts.items():
            save_chart(chart, Path(out_dir) / name)
    return dict(charts)
