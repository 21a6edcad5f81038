"""The theory figure: measured points on the simulated (gamma, rho) phase diagram, and the
per-layer quantities with their intervals and chance levels."""

from __future__ import annotations

import numpy as np
import polars as pl

from whisper_spi.theory.simulate import REGIMES

__all__ = ["layers_figure", "phase_figure"]


def _edges(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cell edges of sorted positive grid values, at geometric midpoints (log axes)."""
    v = np.sort(np.unique(values))
    if len(v) == 1:
        return v / 1.5, v * 1.5
    mid = np.sqrt(v[1:] * v[:-1])
    lo = np.concatenate([[v[0] ** 2 / mid[0]], mid])
    hi = np.concatenate([mid, [v[-1] ** 2 / mid[-1]]])
    return lo, hi


def phase_figure(sim_grid: pl.DataFrame, measured: pl.DataFrame, value: str = "sv_ratio"):
    """The simulated phase diagram over gamma x rho (log axes; heatmap of ``value``:
    "sv_ratio" or "regime") with the measured points overlaid: x = gamma_median,
    y = rho_median of the pooled rows (layer null) of :func:`theory_table`, or of every row if
    it has no layer column; colour = model, shape = condition."""
    import altair as alt

    if value not in ("sv_ratio", "regime"):
        raise ValueError("value must be 'sv_ratio' or 'regime'")
    cells = sim_grid
    for col, (lo, hi) in (
        ("gamma", _edges(cells["gamma"].to_numpy())),
        ("rho", _edges(cells["rho"].to_numpy())),
    ):
        keys = np.sort(np.unique(cells[col].to_numpy()))
        edges = pl.DataFrame({col: keys, f"{col}_lo": lo, f"{col}_hi": hi})
        cells = cells.join(edges, on=col, how="left")
    eps, depth = cells["eps"][0], cells["depth"][0]
    pts = measured
    if "layer" in pts.columns:
        pts = pts.filter(pl.col("layer").is_null())
    pts = pts.filter((pl.col("gamma_median") > 0) & (pl.col("rho_median") > 0))
    for col in ("model", "condition"):
        if col not in pts.columns:
            pts = pts.with_columns(pl.lit("measured").alias(col))
    # Tight log domains around the grid and the points (vega's nice rounding adds decades).
    x_all = np.concatenate([cells["gamma_lo"], cells["gamma_hi"], pts["gamma_median"]])
    y_all = np.concatenate([cells["rho_lo"], cells["rho_hi"], pts["rho_median"]])
    xs = alt.Scale(type="log", domain=[float(x_all.min()), float(x_all.max())], nice=False)
    ys = alt.Scale(type="log", domain=[float(y_all.min()), float(y_all.max())], nice=False)
    if value == "sv_ratio":
        color = alt.Color(
            "sv_ratio:Q", title="sigma2/sigma1 of J_L", scale=alt.Scale(scheme="viridis")
        )
    else:
        color = alt.Color(
            "regime:N",
            title="simulated regime",
            scale=alt.Scale(domain=list(REGIMES), range=["#9ecae1", "#fdae6b", "#d9d9d9"]),
        )
    heat = (
        alt.Chart(cells)
        .mark_rect()
        .encode(
            x=alt.X("gamma_lo:Q", scale=xs, title="gamma = s * rho (per layer)"),
            x2="gamma_hi:Q",
            y=alt.Y("rho_lo:Q", scale=ys, title="rho = |<v_l, u_(l-1)>|"),
            y2="rho_hi:Q",
            color=color,
            tooltip=["gamma", "rho", "regime", "sv_ratio", "norm_j", "growth", "transfer_rate"],
        )
    )
    points = (
        alt.Chart(pts)
        .mark_point(filled=True, size=90, stroke="white", strokeWidth=1)
        .encode(
            x=alt.X("gamma_median:Q", scale=xs),
            y=alt.Y("rho_median:Q", scale=ys),
            color=alt.Color("model:N", title="model", scale=alt.Scale(scheme="set1")),
            shape=alt.Shape("condition:N", title="condition"),
            tooltip=[
                c
                for c in (
                    "model",
                    "condition",
                    "gamma_median",
                    "rho_median",
                    "eps_median",
                    "n_utts",
                )
                if c in pts.columns
            ],
        )
    )
    return (
        alt.layer(heat, points)
        .resolve_scale(color="independent")
        .properties(
            width=360,
            height=300,
            title=f"Simulated phase diagram (eps = {eps:.3g}, L = {depth}) and measured decoders",
        )
    )


_PANELS = (  # (quantity, chance-level column or None), top to bottom
    ("s", None),
    ("eps", None),
    ("gamma", None),
    ("rho", "rho_chance_median"),
    ("align", "align_chance_median"),
    ("j_ratio", None),
)


def layers_figure(table: pl.DataFrame):
    """Per-layer medians with their speaker-grouped intervals (error bars) of s, eps, gamma,
    rho and the subspace alignment (chance level dashed), and sigma_2/sigma_1 of J_L; one
    column per model, colour = condition."""
    import altair as alt

    rows = table.filter(pl.col("layer").is_not_null())
    long = []
    for name, chance in _PANELS:
        long.append(
            rows.select(
                "model",
                "condition",
                "layer",
                "n_utts",
                pl.lit(name).alias("quantity"),
                pl.col(f"{name}_median").alias("median"),
                pl.col(f"{name}_lo").alias("lo"),
                pl.col(f"{name}_hi").alias("hi"),
                (pl.col(chance) if chance else pl.lit(None, pl.Float64)).alias("chance"),
            )
        )
    data = pl.concat(long).drop_nulls("median")
    base = alt.Chart(data).encode(
        x=alt.X("layer:O", title="decoder layer"),
        color=alt.Color("condition:N", scale=alt.Scale(scheme="tableau10")),
    )
    points = base.mark_point(filled=True).encode(
        y=alt.Y("median:Q", title=None, scale=alt.Scale(zero=False)),
        tooltip=[
            "model",
            "condition",
            "layer",
            "quantity",
            "median",
            "lo",
            "hi",
            "chance",
            "n_utts",
        ],
    )
    bars = base.mark_errorbar().encode(y="lo:Q", y2="hi:Q")
    chance = base.mark_tick(color="black", strokeDash=[3, 2], thickness=1).encode(
        y="chance:Q", color=alt.value("black")
    )
    return (
        alt.layer(bars, points, chance, data=data)
        .facet(row=alt.Row("quantity:N", sort=[p for p, _ in _PANELS]), column="model:N")
        .resolve_scale(y="independent")
        .properties(
            title="Theorem 1's quantities per layer: medians, 95% speaker-bootstrap "
            "intervals, chance level (black)"
        )
    )
