"""Shared frame helpers of the analysis: orders, deltas, the long layer_summary rows."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from whisper_spi import schemas
from whisper_spi.registry import COMPONENTS, HELL, OBSERVABLE_SPECS, OBSERVABLES, STRESSES

QUANTITIES = ("clean", "stressed", "delta")  # per observable, in this order
MEAN_LAYER = -1  # the ``layer`` value of rows averaged over layers
PAIRED = (*STRESSES, HELL)  # the conditions of pairs, in table order
SCOPES = ("utterance", "pooled")
PAIR_SETS = ("all", "fabrication")  # every kept pair (the paper); those typed fabrication
TYPE_COLUMN = "hallucination_type"  # written into pairs.parquet by the taxonomy (issue 16)


def pair_sets(pairs: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """The pair sets the tables report: ``all``, and ``fabrication`` when the pairs carry
    the taxonomy's type column (Utf8)."""
    out = {"all": pairs}
    if TYPE_COLUMN in pairs.columns:
        if pairs.schema[TYPE_COLUMN] != pl.String:
            raise ValueError(
                f"pairs: column {TYPE_COLUMN!r} must be Utf8, got {pairs.schema[TYPE_COLUMN]}"
            )
        out["fabrication"] = pairs.filter(pl.col(TYPE_COLUMN) == "fabrication")
    return out


def ordered(values: Sequence[str], order: Sequence[str]) -> list[str]:
    """The distinct ``values`` in ``order``, unknown ones after, alphabetically."""
    rank = {v: i for i, v in enumerate(order)}
    return sorted(set(values), key=lambda v: (rank.get(v, len(rank)), v))


def rank(col: str, order: Sequence[str]) -> pl.Expr:
    """Sort key of ``col`` by ``order`` (unknown values last)."""
    ranks = {v: i for i, v in enumerate(order)}
    return pl.col(col).replace_strict(ranks, default=len(ranks), return_dtype=pl.Int32)


def condition_rank(col: str = "condition") -> pl.Expr:
    return rank(col, PAIRED)


def component_rank() -> pl.Expr:
    return rank("component", COMPONENTS)


def delta(obs: str, c: np.ndarray, s: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        if OBSERVABLE_SPECS[obs].percent:
            return 100.0 * (s - c) / c
        return s - c


def delta_expr(obs: str) -> pl.Expr:
    s, c = pl.col(obs), pl.col(f"{obs}_clean")
    return (100.0 * (s - c) / c) if OBSERVABLE_SPECS[obs].percent else (s - c)


def stack_delta(c: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Deltas of (..., O) observable arrays."""
    return np.stack([delta(o, c[..., i], s[..., i]) for i, o in enumerate(OBSERVABLES)], -1)


def empty(name: str) -> pl.DataFrame:
    return pl.from_arrow(schemas.contract(name).arrow.empty_table())


def conformed(df: pl.DataFrame, name: str) -> pl.DataFrame:
    """``df`` with the contract's columns, order and types; float NaN becomes null."""
    return pl.from_arrow(schemas.conform(df, name)).with_columns(pl.col(pl.Float64).fill_nan(None))


def summary_frame(
    *,
    scope: str,
    model: str,
    pair_set: str,
    condition: str,
    prefix: int,
    layers: Sequence[int],
    comps: Sequence[str],
    ks: Sequence[int],
    point: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    median: np.ndarray | None,
    n: np.ndarray,
    n_boot: int,
    adjusted: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    length_slope: np.ndarray | None = None,
) -> pl.DataFrame:
    """Long layer_summary rows from arrays shaped (len(layers), len(comps), len(ks), O, 3);
    ``adjusted`` (point, lo, hi) and ``length_slope`` without the last axis (None: null)."""
    shape = point.shape[:4]
    li, ci, ki, oi = (a.ravel() for a in np.indices(shape))
    flat = {name: arr.reshape(*shape, 3) for name, arr in (("p", point), ("lo", lo), ("hi", hi))}
    kinds = [OBSERVABLE_SPECS[o].delta for o in OBSERVABLES]
    out = {
        "scope": scope,
        "model": model,
        "pair_set": pair_set,
        "condition": condition,
        "layer": np.asarray(layers, dtype=np.int32)[li],
        "component": np.asarray(comps, dtype=object)[ci],
        "prefix": prefix,
        "k": np.asarray(ks, dtype=np.int32)[ki],
        "observable": np.asarray(OBSERVABLES, dtype=object)[oi],
        "delta_kind": np.asarray(kinds, dtype=object)[oi],
        "n": n.reshape(shape).ravel().astype(np.int64),
    }
    for qi, q in enumerate(QUANTITIES):
        out[q] = flat["p"][..., qi].ravel()
        out[f"{q}_ci_low"] = flat["lo"][..., qi].ravel()
        out[f"{q}_ci_high"] = flat["hi"][..., qi].ravel()
    out["delta_median"] = (
        median.reshape(*shape, 3)[..., 2].ravel()
        if median is not None
        else np.full(li.size, np.nan)
    )
    nan = np.full(li.size, np.nan)
    adj = adjusted if adjusted is not None else (nan, nan, nan)
    for name, arr in zip(("delta_adj", "delta_adj_ci_low", "delta_adj_ci_high"), adj, strict=True):
        out[name] = np.asarray(arr).ravel()
    out["length_slope"] = nan if length_slope is None else length_slope.ravel()
    out["n_boot"] = n_boot
    df = pl.DataFrame(
        {k: (v if isinstance(v, np.ndarray) else [v] * li.size) for k, v in out.items()},
        strict=False,
    )
    return conformed(df, "layer_summary")
