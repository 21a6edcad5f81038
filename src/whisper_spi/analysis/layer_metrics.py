"""Rule layer_metrics: the observables of every stored spectrum of one model x condition x layer."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from whisper_spi import schemas
from whisper_spi.analysis.observables import observables
from whisper_spi.analysis.spectra import ObservableOptions, pack_spectra, sort_descending

__all__ = ["KEYS", "layer_metrics", "write_layer_metrics"]

KEYS = ("utt_id", "model", "condition", "layer", "component", "prefix")


def layer_metrics(
    spectra_paths: Sequence[str | Path], options: ObservableOptions | None = None
) -> pl.DataFrame:
    """One row per (utterance, component, prefix, K) (contract ``layer_metrics``)."""
    opts = options or ObservableOptions()
    if not spectra_paths:
        raise ValueError("layer_metrics: no spectra files given")
    cols = [*KEYS, "n_rows", "centered", "sv"]
    df = (
        schemas.scan_parquet(spectra_paths, "spectra", cols)
        .select(cols)
        .with_columns(n_sv=pl.col("sv").list.len().fill_null(0).cast(pl.Int32))
        .collect()
    )
    S = sort_descending(pack_spectra(df["sv"]))
    n_rows = df["n_rows"].cast(pl.Float64).fill_null(float("nan")).to_numpy()
    obs = observables(S, n_rows, opts)
    base = df.drop("sv")
    frames = [
        base.with_columns(
            pl.lit(K, pl.Int32).alias("k"),
            *[pl.Series(name, v, dtype=pl.Float64) for name, v in vals.items()],
        )
        for K, vals in obs.items()
    ]
    return pl.concat(frames).select(schemas.contract("layer_metrics").names)


def write_layer_metrics(df: pl.DataFrame, path: str | Path) -> None:
    schemas.write_parquet(df, "layer_metrics", path)
