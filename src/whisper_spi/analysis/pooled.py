"""Rule pooled: scope ``pooled`` of one model x decoder layer, and its summary for the tables.

Per stress x component, the N x d matrix of the kept pairs' per-utterance row means gives
one clean and one stressed spectrum (each utterance once on each side), their observables
and deltas. hell is the pair-weighted mean of the three stresses' cells, not one matrix
that would stack each clean twin once per stress. The interval resamples the model's
speakers (or utterances, ``resample_unit``): m-of-n subsamples without replacement, the same
draw for every condition, layer and side, re-decomposed; see
:func:`~whisper_spi.analysis.bootstrap.subsample_interval`.
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
    seeded_rng,
    subsample_blocks,
    subsample_interval,
    subsample_size,
)
from whisper_spi.analysis.frames import (
    MEAN_LAYER,
    PAIRED,
    conformed,
    empty,
    ordered,
    pair_sets,
    stack_delta,
    summary_frame,
)
from whisper_spi.analysis.gram import pooled_spectrum, replicate_spectra
from whisper_spi.analysis.observables import observables
from whisper_spi.analysis.options import MetricOptions
from whisper_spi.analysis.spectra import pack_spectra, sort_descending, spectra_lengths
from whisper_spi.registry import CLEAN, COMPONENTS, HELL, OBSERVABLES

__all__ = ["pooled_layer", "pooled_summary", "write_pooled_layer"]

_Cell = tuple[np.ndarray, np.ndarray | None, int]  # point, replicates, n


def observable_array(
    S: np.ndarray, n_rows: float | np.ndarray, opts: MetricOptions, total: np.ndarray | None = None
) -> np.ndarray:
    """Observables of spectra S (m x w) as an (m, K, O) array (``n_rows``: one per spectrum
    or one for all; ``total``: see the kernel)."""
    n = np.broadcast_to(np.asarray(n_rows, dtype=np.float64), (S.shape[0],))
    obs = observables(S, n, opts, total)
    return np.stack([np.stack([obs[K][o] for o in OBSERVABLES], axis=-1) for K in opts.k], 1)


def _cell(
    Xc: np.ndarray, Xs: np.ndarray, W: np.ndarray | None, centered: bool, opts: MetricOptions
) -> tuple[np.ndarray, np.ndarray | None]:
    """(clean, stressed, delta) observables: point (K, O, 3), replicates (B, K, O, 3).

    ``W``: (B, N) 0/1 subsample counts of the rows, the same for clean and stressed; a
    replicate keeping fewer than 2 rows is NaN.
    """
    N = Xc.shape[0]
    rank = opts.pooled_boot_rank if W is not None else 0
    obs, reps = [], []
    for X in (Xc, Xs):
        cache: dict = {}
        S, Vt, total = pooled_spectrum(X, centered, rank, cache)
        obs.append(observable_array(S, N, opts, total)[0])
        if W is not None:
            Sr, tot = replicate_spectra(X, [W], centered, rank, Vt, cache)
            r = observable_array(Sr, W.sum(axis=1), opts, tot)
            r[W.sum(axis=1) < 2] = np.nan
            reps.append(r)
    point = np.stack([obs[0], obs[1], stack_delta(obs[0], obs[1])], axis=-1)
    if W is None:
        return point, None
    return point, np.stack([reps[0], reps[1], stack_delta(reps[0], reps[1])], axis=-1)


def _weighted(parts: list[np.ndarray], weights: list[int]) -> np.ndarray:
    """NaN-aware weighted mean of equally shaped arrays."""
    A = np.stack(parts)
    w = np.asarray(weights, dtype=np.float64).reshape(-1, *([1] * (A.ndim - 1)))
    ok = np.isfinite(A)
    with np.errstate(all="ignore"):
        return np.where(ok, A, 0.0).__mul__(w).sum(0) / (ok * w).sum(0)


def hell_cell(cells: Sequence[_Cell]) -> _Cell:
    """hell from its stresses' cells: every level and delta (point and each replicate) is
    their mean weighted by pairs, so it lies within the range of its parts."""
    n = [c[2] for c in cells]
    point = _weighted([c[0] for c in cells], n)
    reps = [c[1] for c in cells]
    boot = None if any(r is None for r in reps) else _weighted(reps, n)
    return point, boot, int(sum(n))


def pooled_layer(
    spectra_paths: Sequence[str | Path],
    pair_df: pl.DataFrame,
    model: str,
    layer: int,
    options: MetricOptions | None = None,
    seed: int = 0,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(cells, rank profiles) of one model x layer (contracts ``pooled_cells``,
    ``rank_profile``).

    Full-length spectra only; centered per ``options.pooled_center``. The subsamples are
    keyed ``pooled/<model>`` and drawn over the model's units (speakers or utterances of its
    kept pairs), the same in every condition and every layer's job, so that
    :func:`pooled_summary` can average replicates over layers and hell over stresses.
    """
    opts = options or MetricOptions()
    if not spectra_paths:
        raise ValueError(f"pooled scope of {model}, layer {layer}: no spectra files given")
    P = pair_df.filter(pl.col("model") == model)
    conditions = [c for c in ordered(P["condition"].unique().to_list(), PAIRED) if c != HELL]
    unit_col = "speaker" if opts.resample_unit == "speaker" else "utt_id"
    units = sorted(P[unit_col].unique().to_list())
    W_units = None
    if opts.pooled_n_boot > 0 and len(units) >= 2:
        W_units = np.concatenate(
            list(
                subsample_blocks(
                    seeded_rng(seed, f"pooled/{model}"),
                    len(units),
                    opts.pooled_n_boot,
                    TABLE_BLOCK,
                    opts.pooled_fraction,
                )
            )
        )
    unit_index = {u: i for i, u in enumerate(units)}
    cols = ["condition", "utt_id", "component", "centered", "sv", "row_mean"]
    F = (
        schemas.scan_parquet(spectra_paths, "spectra", [*cols, "model", "layer", "prefix"])
        .filter(
            (pl.col("model") == model)
            & (pl.col("layer") == layer)
            & (pl.col("prefix") == 0)
            & pl.col("utt_id").is_in(P["utt_id"].unique().implode())
        )
        .select(cols)
        .collect()
        .with_row_index("_pos")
    )
    cells: dict[tuple[str, str, str], _Cell] = {}
    profiles = []
    if F.height:
        centered = bool(F["centered"].any()) if opts.pooled_center is None else opts.pooled_center
        RM, rm_len = pack_spectra(F["row_mean"]), spectra_lengths(F["row_mean"])
        SV = sort_descending(pack_spectra(F["sv"]))
    for comp in ordered(F["component"].unique().to_list(), COMPONENTS):
        Fc = F.filter(pl.col("component") == comp)
        clean_pos = Fc.filter(pl.col("condition") == CLEAN).select(
            "utt_id", pl.col("_pos").alias("_pc")
        )
        stress_pos = Fc.filter(pl.col("condition") != CLEAN).select(
            pl.col("condition").alias("stress"), "utt_id", pl.col("_pos").alias("_ps")
        )
        for pair_set, Pset in pair_sets(P).items():
            stress_rows = {}
            for condition in conditions:
                sel = (
                    Pset.filter(pl.col("condition") == condition)
                    .select(*dict.fromkeys(("stress", "utt_id", unit_col)))
                    .sort("stress", "utt_id")
                    .join(stress_pos, on=["stress", "utt_id"], maintain_order="left")
                    .join(clean_pos, on="utt_id", maintain_order="left")
                )
                if sel.height == 0:
                    continue
                pc_, ps_ = sel["_pc"].to_numpy(), sel["_ps"].to_numpy()
                stress_rows[condition] = (pc_, ps_)
                lengths = rm_len[np.concatenate([pc_, ps_])]
                d = int(lengths.min())
                if d != int(lengths.max()) or d == 0:
                    raise ValueError(
                        f"pooled scope: row_mean lengths differ or are empty for "
                        f"{model}/{condition}/layer {layer}/{comp}"
                    )
                W = None
                if W_units is not None:
                    W = W_units[:, [unit_index[u] for u in sel[unit_col].to_list()]]
                point, boot = _cell(RM[pc_, :d], RM[ps_, :d], W, centered, opts)
                cells[(pair_set, condition, comp)] = (point, boot, sel.height)
            parts = [cells[(pair_set, c, comp)] for c in stress_rows]
            if parts and HELL in Pset["condition"].unique().to_list():
                cells[(pair_set, HELL, comp)] = hell_cell(parts)
            if pair_set != "all" or not stress_rows:
                continue  # rank profiles: of every kept pair only
            for condition, (pc_, ps_) in stress_rows.items():
                profiles.append(_rank_profile(SV[pc_], SV[ps_], model, condition, layer, comp))
            # hell's profile: each stressed spectrum once, each clean twin once
            pc_ = np.unique(np.concatenate([r[0] for r in stress_rows.values()]))
            ps_ = np.concatenate([r[1] for r in stress_rows.values()])
            profiles.append(_rank_profile(SV[pc_], SV[ps_], model, HELL, layer, comp))
    profile = pl.concat(profiles) if profiles else empty("rank_profile")
    n_drawn = subsample_size(len(units), opts.pooled_fraction) if W_units is not None else 0
    return _cells_frame(model, layer, cells, opts, len(units), n_drawn), profile


def _cells_frame(
    model: str,
    layer: int,
    cells: dict[tuple[str, str, str], _Cell],
    opts: MetricOptions,
    n_units: int,
    n_drawn: int,
) -> pl.DataFrame:
    """Long form of the cells: replicate -1 = point estimate, then 0..B-1."""
    K, NO = len(opts.k), len(OBSERVABLES)
    frames = []
    for (pair_set, condition, comp), (point, boot, n) in cells.items():
        V = point[None] if boot is None else np.concatenate([point[None], boot])
        R = V.shape[0]
        rows = R * K * NO
        drawn = np.repeat(np.r_[n_units, np.full(R - 1, n_drawn)], K * NO).astype(np.int64)
        frames.append(
            pl.DataFrame(
                {
                    "model": [model] * rows,
                    "pair_set": [pair_set] * rows,
                    "condition": [condition] * rows,
                    "layer": np.full(rows, layer, dtype=np.int32),
                    "component": [comp] * rows,
                    "n": np.full(rows, n, dtype=np.int64),
                    "n_units": np.full(rows, n_units, dtype=np.int64),
                    "n_drawn": drawn,
                    "replicate": np.repeat(np.arange(-1, R - 1, dtype=np.int32), K * NO),
                    "k": np.tile(np.repeat(np.asarray(opts.k, dtype=np.int32), NO), R),
                    "observable": np.tile(np.asarray(OBSERVABLES), R * K).tolist(),
                    "clean": V[..., 0].ravel(),
                    "stressed": V[..., 1].ravel(),
                    "delta": V[..., 2].ravel(),
                }
            )
        )
    return conformed(pl.concat(frames) if frames else empty("pooled_cells"), "pooled_cells")


def _rank_profile(
    Sc: np.ndarray, Ss: np.ndarray, model: str, condition: str, layer: int, comp: str
) -> pl.DataFrame:
    """Mean spectra per rank of clean twins (Sc) and stressed (Ss), NaN-padded rows."""
    width = max(Sc.shape[1], Ss.shape[1])
    Sc = np.pad(Sc, ((0, 0), (0, width - Sc.shape[1])), constant_values=np.nan)
    Ss = np.pad(Ss, ((0, 0), (0, width - Ss.shape[1])), constant_values=np.nan)

    def energy(S: np.ndarray) -> np.ndarray:
        e = np.nan_to_num(S, nan=0.0) ** 2
        with np.errstate(all="ignore"):
            return (e / e.sum(axis=1, keepdims=True)).mean(axis=0)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ce, se = energy(Sc), energy(Ss)
        cs, ss = np.nanmean(Sc, axis=0), np.nanmean(Ss, axis=0)
    with np.errstate(all="ignore"):
        ratio = se / ce
    df = pl.DataFrame(
        {
            "model": [model] * width,
            "condition": [condition] * width,
            "layer": np.full(width, layer, dtype=np.int32),
            "component": [comp] * width,
            "rank": np.arange(1, width + 1, dtype=np.int32),
            "n": np.full(width, Sc.shape[0], dtype=np.int64),
            "clean_sv": cs,
            "stressed_sv": ss,
            "clean_energy": ce,
            "stressed_energy": se,
            "energy_ratio": ratio,
        }
    )
    return conformed(df, "rank_profile")


def write_pooled_layer(
    cells: pl.DataFrame, profile: pl.DataFrame, cells_path: str | Path, profile_path: str | Path
) -> None:
    schemas.write_parquet(cells, "pooled_cells", cells_path)
    schemas.write_parquet(profile, "rank_profile", profile_path)


def pooled_summary(cells: pl.DataFrame, options: MetricOptions | None = None) -> pl.DataFrame:
    """layer_summary rows of scope ``pooled`` from every layer's cells: point estimates,
    subsample intervals and, as ``layer = -1``, the mean over layers, replicate by replicate."""
    opts = options or MetricOptions()
    K, NO, B = len(opts.k), len(OBSERVABLES), opts.pooled_n_boot
    cells = cells.with_columns(
        pl.col("k").replace_strict({k: i for i, k in enumerate(opts.k)}, default=None).alias("_k"),
        pl.col("observable")
        .replace_strict({o: i for i, o in enumerate(OBSERVABLES)}, default=None)
        .alias("_o"),
    )
    unknown = cells.filter(pl.col("_k").is_null() | pl.col("_o").is_null())
    if unknown.height:
        r = unknown.row(0, named=True)
        raise ValueError(
            f"pooled cells: k={r['k']}, observable={r['observable']} not in the options' "
            f"k={list(opts.k)} x {list(OBSERVABLES)} (cells computed with other options?)"
        )
    frames = []
    parts = cells.sort("model", "pair_set").partition_by("model", "pair_set", as_dict=True)
    for (model, pair_set), M in parts.items():
        reps = M.filter(pl.col("replicate") >= 0)
        f = None
        if reps.height:
            fracs = (reps["n_drawn"] / reps["n_units"]).unique()
            if fracs.len() != 1:
                raise ValueError(f"pooled cells of {model}: subsample fractions differ {fracs}")
            f = float(fracs[0])
        parsed = {}
        for key, C in M.partition_by("condition", "layer", "component", as_dict=True).items():
            C = C.sort("replicate", "_k", "_o")
            n_rep = C["replicate"].n_unique()
            if C.height != n_rep * K * NO or n_rep not in (1, B + 1):
                raise ValueError(
                    f"pooled cells of {model}/{key}: {n_rep - 1} replicates x {C.height} rows, "
                    f"expected {B} replicates (metrics.pooled_n_boot) x {K} k x {NO} observables"
                )
            V = C.select("clean", "stressed", "delta").to_numpy().reshape(n_rep, K, NO, 3)
            parsed[key] = (V[0], V[1:] if n_rep > 1 else None, int(C["n"][0]))
        frames += _summary_frames(model, pair_set, parsed, opts, f)
    return pl.concat(frames) if frames else empty("layer_summary")


def _summary_frames(
    model: str,
    pair_set: str,
    cells: dict[tuple[str, int, str], _Cell],
    opts: MetricOptions,
    f: float | None,
) -> list[pl.DataFrame]:
    frames = []
    for condition in ordered({c for c, _, _ in cells}, PAIRED):
        mine = {(lay, comp): v for (c, lay, comp), v in cells.items() if c == condition}
        layers = sorted({lay for lay, _ in mine})
        comps = ordered({comp for _, comp in mine}, COMPONENTS)
        K, NO = len(opts.k), len(OBSERVABLES)
        B = opts.pooled_n_boot
        point = np.full((len(layers) + 1, len(comps), K, NO, 3), np.nan)
        boot = np.full((B, len(layers) + 1, len(comps), K, NO, 3), np.nan)
        n = np.zeros((len(layers) + 1, len(comps), K, NO), dtype=np.int64)
        for (lay, comp), (p, b, cnt) in mine.items():
            li, ci = layers.index(lay), comps.index(comp)
            point[li, ci] = p
            if b is not None:
                boot[:, li, ci] = b
            n[li, ci] = np.where(np.isfinite(p[..., 2]), cnt, 0)  # n per observable
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            point[-1] = np.nanmean(point[:-1], axis=0)
            boot[:, -1] = np.nanmean(boot[:, :-1], axis=1)
        n[-1] = n[:-1].max(axis=0) if layers else 0
        if B > 0 and f is not None:
            lo, hi = subsample_interval(point, boot, f, opts.ci)
        else:
            lo = hi = np.full_like(point, np.nan)
        frames.append(
            summary_frame(
                scope="pooled",
                model=model,
                pair_set=pair_set,
                condition=condition,
                prefix=0,
                layers=[*layers, MEAN_LAYER],
                comps=comps,
                ks=list(opts.k),
                point=point,
                lo=lo,
                hi=hi,
                median=None,
                n=n,
                n_boot=B,
            )
        )
    return frames
