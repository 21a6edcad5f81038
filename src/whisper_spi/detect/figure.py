"""ROC curves of the detector, the decoder-state probe and the baselines."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from whisper_spi.detect.crossval import METHODS

__all__ = ["FIGURE_METHODS", "roc_figure"]

FIGURE_METHODS = (
    "ours", "ours_no_T", "probe", "avg_logprob", "compression_ratio", "no_speech_prob",
    "heuristics_lr", "length",
)  # fmt: skip


ROC_GRID = 200


def roc_figure(oof: pl.DataFrame, methods: Sequence[str] | None = FIGURE_METHODS):
    """ROC curves of ours and the baselines: one panel per model (columns) x setting (rows)."""
    import altair as alt
    from sklearn.metrics import roc_curve

    if methods is not None:
        oof = oof.filter(pl.col("method").is_in(list(methods)))
    parts = []
    for (model, setting, method), g in oof.group_by(
        ["model", "setting", "method"], maintain_order=True
    ):
        y = g["hallucination"].cast(pl.Int8).to_numpy()
        if len(np.unique(y)) < 2:
            continue
        fpr, tpr, _ = roc_curve(y, g["score"].to_numpy())
        # The step curve read on a fixed FPR grid: exact to 1/grid, and a few KB per curve
        # instead of one point per distinct score.
        grid = np.linspace(0.0, 1.0, ROC_GRID + 1)
        tpr = tpr[np.searchsorted(fpr, grid, side="right") - 1]
        fpr = grid
        parts.append(
            pl.DataFrame(
                {
                    "model": model,
                    "setting": setting,
                    "method": method,
                    "step": np.arange(len(fpr)),
                    "fpr": fpr,
                    "tpr": tpr,
                }
            )
        )
    data = (
        pl.concat(parts)
        if parts
        else pl.DataFrame(
            schema={
                "model": pl.String,
                "setting": pl.String,
                "method": pl.String,
                "step": pl.Int64,
                "fpr": pl.Float64,
                "tpr": pl.Float64,
            }  # fmt: skip
        )
    )
    order = [m for m in (methods or METHODS) if m in set(data["method"].to_list())]
    return (
        alt.Chart(data)
        .mark_line(interpolate="step-after", strokeWidth=1.5)
        .encode(
            x=alt.X("fpr:Q", title="false positive rate", scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("tpr:Q", title="true positive rate", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("method:N", sort=order, title="method"),
            order="step:Q",
        )
        .properties(width=220, height=220)
        .facet(column=alt.Column("model:N"), row=alt.Row("setting:N"))
        .properties(title="Hallucination detection, out-of-fold ROC (speaker-grouped CV)")
    )
