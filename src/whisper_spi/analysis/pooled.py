"""Rule pooled: scope ``pooled`` of one model x decoder layer, and its summary for the tables.

Per condition x component, the N x d matrix of the kept pairs' per-utterance row means gives
one clean and one stressed spectrum, their observables and deltas; the bootstrap resamples
the N pairs (the same rows clean and stressed) and re-decomposes.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from .. import schemas
from ..names import CLEAN, COMPONENTS, OBSERVABLES
from ..spectra import observables, pack_spectra, sort_descending, spectra_lengths
from .bootstrap import TABLE_BLOCK, count_blocks, percentile_interval, seeded_rng
from .frames import MEAN_LAYER, PAIRED, conformed, empty, ordered, stack_delta, summary_frame
from .gram import pooled_spectrum, replicate_spectra
from .options import MetricOptions

__all__ = ["pooled_layer", "pooled_summary", "write_pooled_layer"]

_Cell = tuple[np.ndarray, np.ndarray | None, int]  # point, replicates, n


def observable_array(
    S: np.ndarray, n_rows: float, opts: MetricOptions, total: np.ndarray | None = None
) -> np.ndarray:
    """Observables of spectra S (m x w) as an (m, K, O) array (``total``: see the kernel)."""
    obs = observables(S, np.full(S.shape[0], float(n_rows)), opts, total)
    return np.stack([np.stack([obs[K][o] for o in OBSERVABLES], axis=-1) for K in opts.k], 1)


def _cell(
    Xc: np.ndarray, Xs: np.ndarray, centered: bool, opts: MetricOptions, key: str, seed: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """(clean, stressed, delta) observables: point (K, O, 3), replicates (B, K, O, 3)."""
    N = Xc.shape[0]
    boot = opts.pooled_n_boot > 0 and N >= 2
    rank = opts.pooled_boot_rank if boot else 0
    obs, bases, caches = [], [], []
    for X in (Xc, Xs):
        cache: dict = {}
        S, Vt, total = pooled_spectrum(X, centered, rank, cache)
        obs.append(observable_array(S, N, opts, total)[0])
        bases.append(Vt)
        caches.append(cache)
    oc, os_ = obs
    point = np.stack([oc, os_, stack_delta(oc, os_)], axis=-1)
    if not boot:
        return point, None
    # the same resampled utterances for clean and stressed: drawn once, used for both
    blocks = list(count_blocks(seeded_rng(seed, key), N, opts.pooled_n_boot, TABLE_BLOCK))
    reps = []
    for X, Vt, cache in zip((Xc, Xs), bases, caches, strict=True):
        S, total = replicate_spectra(X, blocks, centered, opts.pooled_boot_rank, Vt, cache)
        reps.append(observable_array(S, N, opts, total))
    rc, rs = reps
    return point, np.stack([rc, rs, stack_delta(rc, rs)], axis=-1)


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

    Full-length spectra only; hell stacks the three stresses' pairs; centered per
    ``options.pooled_center``. The resampling is keyed ``pooled/<model>/<condition>``, the
    same in every layer's job, so that :func:`pooled_summary` can average replicates over
    layers.
    """
    opts = options or MetricOptions()
    if not spectra_paths:
        raise ValueError(f"pooled scope of {model}, layer {layer}: no spectra files given")
    P = pair_df.filter(pl.col("model") == model)
    conditions = ordered(P["condition"].unique().to_list(), PAIRED)
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
    cells: dict[tuple[str, str], _Cell] = {}
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
        for condition in conditions:
            sel = (
                P.filter(pl.col("condition") == condition)
                .select("stress", "utt_id")
                .sort("stress", "utt_id")
                .join(stress_pos, on=["stress", "utt_id"], maintain_order="left")
                .join(clean_pos, on="utt_id", maintain_order="left")
            )
            if sel.height == 0:
                continue
            pc_, ps_ = sel["_pc"].to_numpy(), sel["_ps"].to_numpy()
            profiles.append(_rank_profile(SV[pc_], SV[ps_], model, condition, layer, comp))
            lengths = rm_len[np.concatenate([pc_, ps_])]
            d = int(lengths.min())
            if d != int(lengths.max()) or d == 0:
                raise ValueError(
                    f"pooled scope: row_mean lengths differ or are empty for "
                    f"{model}/{condition}/layer {layer}/{comp}"
                )
            key = f"pooled/{model}/{condition}"
            point, boot = _cell(RM[pc_, :d], RM[ps_, :d], centered, opts, key, seed)
            cells[(condition, comp)] = (point, boot, sel.height)
    profile = pl.concat(profiles) if profiles else empty("rank_profile")
    return _cells_frame(model, layer, cells, opts), profile


def _cells_frame(
    model: str, layer: int, cells: dict[tuple[str, str], _Cell], opts: MetricOptions
) -> pl.DataFrame:
    """Long form of the cells: replicate -1 = point estimate, then 0..B-1."""
    K, NO = len(opts.k), len(OBSERVABLES)
    frames = []
    for (condition, comp), (point, boot, n) in cells.items():
        V = point[None] if boot is None else np.concatenate([point[None], boot])
        R = V.shape[0]
        frames.append(
            pl.DataFrame(
                {
                    "model": [model] * (R * K * NO),
                    "condition": [condition] * (R * K * NO),
                    "layer": np.full(R * K * NO, layer, dtype=np.int32),
                    "component": [comp] * (R * K * NO),
                    "n": np.full(R * K * NO, n, dtype=np.int64),
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
    percentile CIs and, as ``layer = -1``, the mean over layers, replicate by replicate."""
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
    for (model,), M in cells.sort("model").partition_by("model", as_dict=True).items():
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
        frames += _summary_frames(model, parsed, opts)
    return pl.concat(frames) if frames else empty("layer_summary")


def _summary_frames(
    model: str, cells: dict[tuple[str, int, str], _Cell], opts: MetricOptions
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
            n[li, ci] = cnt
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            point[-1] = np.nanmean(point[:-1], axis=0)
            boot[:, -1] = np.nanmean(boot[:, :-1], axis=1)
        n[-1] = n[:-1].max(axis=0) if layers else 0
        if B > 0:
            lo, hi = percentile_interval(boot, opts.ci)
        else:
            lo = hi = np.full_like(point, np.nan)
        frames.append(
            summary_frame(
                scope="pooled",
                model=model,
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
