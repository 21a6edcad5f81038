"""From spectra to the paper's tables: observables, clean/stressed pairs, deltas, bootstrap CIs.

Four stages, each a pure function the workflow calls through a thin CLI:

* :func:`layer_metrics` (per model x condition x layer): N_eff, alpha, log10 Kf and tail
  energy of every stored spectrum at each K of :attr:`MetricOptions.k`;
* :func:`pairs_and_counts` (per model): each stressed utterance joined with its clean twin,
  kept when the stressed WER exceeds the threshold, plus the pooled condition ``hell``;
* :func:`pooled_layer` (per model x layer): scope ``pooled``, one spectrum of the N x d
  matrix of the kept pairs' per-utterance row means, with its bootstrap replicates;
* :func:`build_tables` (once): the deltas in two scopes (``utterance``: per-pair deltas
  averaged over pairs, full length and length-matched prefixes; ``pooled``, from the
  :func:`pooled_layer` outputs), percentile bootstrap CIs over pairs, the paper's Tables 1
  (final decoder layer) and 2 (mean over layers) as Parquet, CSV and Markdown.

Deltas, stressed vs the clean twin of the same utterance (same layer, component, K, prefix):
``Delta N_eff % = 100 * (s - c) / c``; ``Delta log10 Kf = log10 Kf_s - log10 Kf_c``;
``Delta alpha = alpha_s - alpha_c``; ``Delta tail energy = s - c``.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import scipy.linalg

from . import schemas
from .io import atomic_path, derive_seed
from .spectra import (
    covariance_eigenvalues,
    effective_rank,
    kirchhoff_index,
    spectral_alpha,
    tail_energy,
)

__all__ = [
    "HELL",
    "OBSERVABLES",
    "PAPER_VALUES",
    "MetricOptions",
    "build_tables",
    "final_layer_table",
    "layer_metrics",
    "layer_mean_table",
    "pair_counts",
    "pairs",
    "pairs_and_counts",
    "pooled_layer",
    "pooled_summary",
    "spectrum_observables",
    "utterance_summary",
    "write_layer_metrics",
    "write_pairs",
    "write_pooled_layer",
]

CLEAN = "clean"
HELL = "hell"
STRESS_ORDER = ("time_stretch", "speaker_mix", "gaussian_noise")
COMPONENT_ORDER = ("cross_attn", "self_attn", "ffn", "residual")
OBSERVABLES = ("neff", "log10_kf", "alpha", "tail_energy")
DELTA_KIND = {"neff": "percent", "log10_kf": "difference", "alpha": "difference",
              "tail_energy": "difference"}  # fmt: skip
TABLE_OBS = {"neff": "d_neff_pct", "log10_kf": "d_log10_kf", "alpha": "d_alpha"}
TABLE_NAMES = {"final": "table1_final_layer", "mean": "table2_layer_mean"}
MEAN_LAYER = -1  # the ``layer`` value of rows averaged over layers
_COMP_RANK = {c: i for i, c in enumerate(COMPONENT_ORDER)}
_OBS_RANK = {c: i for i, c in enumerate(OBSERVABLES)}

# The paper's Hell-vs-clean values at K = 50 (PAPER.md, from a third-party digest):
# (paper model, component) -> (Delta N_eff %, Delta log10 Kf, Delta alpha).
PAPER_VALUES: dict[tuple[str, str], tuple[float, float, float]] = {
    ("tiny", "cross_attn"): (-11.98, 2.93, 0.17),
    ("small", "cross_attn"): (-13.40, 3.87, 0.21),
    ("large-v3-turbo", "cross_attn"): (-4.70, 3.83, 0.14),
    ("large-v3-turbo", "self_attn"): (-2.34, 4.05, 0.008),
    ("small", "ffn"): (-13.59, 4.65, 0.22),
}
PAPER_K = 50
PAPER_CONDITION = HELL

DEFAULT_PAPER_MODELS = {
    "tiny": "tiny",
    "small": "small",
    "large-v3-turbo": "large-v3-turbo",
    "tiny-en": "tiny",  # approximation: the English-only tiny checkpoint stands in for tiny
}

_BOOT_CHUNK = 100  # bootstrap replicates drawn per block (fixed: results depend on it)
_KEYS = ("utt_id", "model", "condition", "layer", "component", "prefix")


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class MetricOptions:
    """Every analysis choice, with the paper-following default (config ``metrics.*``).

    k: the K of "top-K singular values" each observable is computed on (paper: 10 and 50).
    neff_power: N_eff uses p_i = s_i**power / sum s**power; 1 = on singular values (the
        paper's Roy & Vetterli definition), 2 = on covariance eigenvalues.
    alpha_start, alpha_stop: 0-based rank window [start, stop) of the least-squares fit of
        log s_i against log i inside the top K (default: the whole top K; the paper only says
        "over the tail").
    alpha_method: lsq (the paper) or mle (power-law MLE with KS-selected xmin).
    rank_tol: singular values <= rank_tol * s_1 are numerical zeros (round-off of float32
        activations, of centering, of duplicated bootstrap rows) and count as exactly 0 for
        every observable; without it, a centered matrix's last value (~1e-8 * s_1) would
        enter the log-log fit of alpha.
    kf_floor: relative eigenvalue floor of the Kirchhoff index (lambda > floor * lambda_max).
    kf_pad_to_k: the covariance of a d-dimensional activation has d >= K eigenvalues, so the
        top K always has K entries; a matrix with fewer rows than K has zeros there. True pads
        the eigenvalues with those zeros, so n = K in Kf = n * sum 1/lambda for every
        spectrum (clean and stressed alike, whatever their lengths); False uses
        n = min(K, number of stored singular values).
    pooled: also compute the pooled scope (one spectrum of the N x d matrix of per-utterance
        row means per model x condition x layer x component).
    pooled_center: center that N x d matrix before its SVD; None = do as the per-utterance
        spectra did (their ``centered`` column, i.e. decode.center).
    n_boot: bootstrap replicates over pairs for the utterance scope (0 = no CI).
    pooled_n_boot: replicates for the pooled scope, each a re-decomposition of the
        resampled N x d matrix (hence fewer than n_boot).
    pooled_boot_rank: 0 (default) = each pooled replicate is decomposed exactly (about
        0.05 s for N = 3000, d = 768 and 0.3 s for N = 8000, d = 1280 on 2 cores); r > 0 =
        an approximation for speed, Rayleigh-Ritz in the top-r principal subspace of the
        matrix (N * r**2 per replicate instead of N * d**2, exact total energy for the tail
        energy; with r = 256 the top-50 singular values are off by up to ~1% on flat
        spectra). The point estimates are always exact.
    ci: coverage of the percentile bootstrap interval.
    paper_models: our model name -> the paper's model name, for the paper-value columns;
        a name equal to the paper's is an exact match, any other an approximation.
    figure_k: the K shown in the figures.
    """

    k: tuple[int, ...] = (10, 50)
    neff_power: float = 1.0
    alpha_start: int = 0
    alpha_stop: int | None = None
    alpha_method: str = "lsq"
    rank_tol: float = 1e-6
    kf_floor: float = 1e-10
    kf_pad_to_k: bool = True
    pooled: bool = True
    pooled_center: bool | None = None
    n_boot: int = 1000
    pooled_n_boot: int = 200
    pooled_boot_rank: int = 0
    ci: float = 0.95
    paper_models: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_PAPER_MODELS))
    figure_k: int = 50

    def __post_init__(self) -> None:
        ks = tuple(int(x) for x in self.k)
        object.__setattr__(self, "k", ks)
        object.__setattr__(self, "paper_models", dict(self.paper_models))
        if not ks or any(x < 2 for x in ks) or len(set(ks)) != len(ks):
            raise ValueError(f"metrics.k must be distinct integers >= 2, got {self.k!r}")
        if not (math.isfinite(self.neff_power) and self.neff_power > 0):
            raise ValueError(f"metrics.neff_power must be > 0, got {self.neff_power!r}")
        if self.alpha_start < 0 or self.alpha_start > min(ks) - 2:
            raise ValueError(
                f"metrics.alpha_start must leave >= 2 ranks in the smallest K ({min(ks)})"
            )
        if self.alpha_stop is not None and self.alpha_stop < self.alpha_start + 2:
            raise ValueError("metrics.alpha_stop must be >= alpha_start + 2")
        if self.alpha_method not in ("lsq", "mle"):
            raise ValueError(f"metrics.alpha_method must be lsq or mle, got {self.alpha_method!r}")
        if not 0 <= self.rank_tol < 1:
            raise ValueError(f"metrics.rank_tol must be in [0, 1), got {self.rank_tol!r}")
        if not 0 <= self.kf_floor < 1:
            raise ValueError(f"metrics.kf_floor must be in [0, 1), got {self.kf_floor!r}")
        if self.pooled_boot_rank != 0 and self.pooled_boot_rank < 2 * max(ks):
            raise ValueError("metrics.pooled_boot_rank must be 0 (exact) or >= 2 * max(k)")
        if self.n_boot < 0 or self.pooled_n_boot < 0:
            raise ValueError("metrics.n_boot and metrics.pooled_n_boot must be >= 0")
        if not 0 < self.ci < 1:
            raise ValueError(f"metrics.ci must be in (0, 1), got {self.ci!r}")
        if self.figure_k not in ks:
            raise ValueError(f"metrics.figure_k ({self.figure_k}) must be one of k {ks}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> MetricOptions:
        """From a config mapping (``config['metrics']``); unknown keys are errors."""
        d = dict(d or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown metrics option(s) {unknown}; known: {sorted(known)}")
        if "k" in d:
            d["k"] = tuple(d["k"])
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["k"] = list(self.k)
        return out


# --------------------------------------------------------------------------- observables


def _list_to_padded(col: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """A list column -> (NaN-right-padded float64 matrix, lengths); null lists are empty.

    The vectorised equivalent of :func:`whisper_spi.spectra.pack_spectra` on a polars column
    (one flatten + one masked scatter, no per-row Python).
    """
    arr = col.to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    lengths = pc.list_value_length(arr).fill_null(0).to_numpy(zero_copy_only=False)
    lengths = lengths.astype(np.int64)
    flat = pc.list_flatten(arr).to_numpy(zero_copy_only=False).astype(np.float64)
    width = int(lengths.max(initial=0))
    if flat.size == len(lengths) * width:  # all of one length (row means): no padding
        return flat.reshape(len(lengths), width), lengths
    out = np.full((len(lengths), width), np.nan)
    out[np.arange(width) < lengths[:, None]] = flat
    return out, lengths


def _sort_desc(S: np.ndarray) -> np.ndarray:
    """Sort each row descending, NaN (padding) last."""
    return -np.sort(-S, axis=1)


def spectrum_observables(
    S: np.ndarray, n_rows: np.ndarray, options: MetricOptions
) -> dict[int, dict[str, np.ndarray]]:
    """The observables of many spectra at each K: ``{K: {observable: values}}``.

    ``S`` is a 2-D array of singular values, one spectrum per row, sorted descending and
    right-padded with NaN; ``n_rows`` the row count T of each activation matrix (for the
    covariance eigenvalues s**2 / (T - 1)).
    """
    n_rows = np.asarray(n_rows, dtype=np.float64)
    if options.rank_tol > 0 and S.shape[1]:
        with np.errstate(invalid="ignore"):
            S = np.where(options.rank_tol * S[:, :1] >= S, 0.0, S)  # NaN padding stays NaN
    out: dict[int, dict[str, np.ndarray]] = {}
    for K in options.k:
        top = S[:, :K]
        neff = effective_rank(top, power=options.neff_power)
        alpha = spectral_alpha(
            top, start=options.alpha_start, stop=options.alpha_stop, method=options.alpha_method
        )
        eig = covariance_eigenvalues(top, n_rows)
        if options.kf_pad_to_k:
            eig = np.where(np.isnan(top), 0.0, eig)
            if eig.shape[1] < K:
                eig = np.pad(eig, ((0, 0), (0, K - eig.shape[1])))
        kf = kirchhoff_index(eig, floor=options.kf_floor)
        with np.errstate(all="ignore"):
            log10_kf = np.log10(kf)
        out[K] = {
            "neff": np.asarray(neff, dtype=np.float64),
            "alpha": np.asarray(alpha, dtype=np.float64),
            "log10_kf": log10_kf,
            "tail_energy": np.asarray(tail_energy(S, K), dtype=np.float64),
        }
    return out


def layer_metrics(
    spectra_paths: Sequence[str | Path], metrics: MetricOptions | None = None
) -> pl.DataFrame:
    """The observables of every spectrum in ``spectra_paths`` (contract ``layer_metrics``).

    One row per (utterance, component, prefix, K); the spectra are read once (``row_mean`` is
    never read), packed into one padded array and handed to the vectorised metric functions.
    """
    opts = metrics or MetricOptions()
    paths = [str(p) for p in spectra_paths]
    if not paths:
        raise ValueError("layer_metrics: no spectra files given")
    df = (
        pl.scan_parquet(paths)
        .select(*_KEYS, "n_rows", "centered", "sv")
        .with_columns(n_sv=pl.col("sv").list.len().fill_null(0).cast(pl.Int32))
        .collect()
    )
    S, _ = _list_to_padded(df["sv"])
    S = _sort_desc(S)
    n_rows = df["n_rows"].cast(pl.Float64).fill_null(float("nan")).to_numpy()
    obs = spectrum_observables(S, n_rows, opts)
    base = df.drop("sv")
    frames = [
        base.with_columns(
            pl.lit(K, pl.Int32).alias("k"),
            *[pl.Series(name, vals[name], dtype=pl.Float64) for name in OBSERVABLES],
        )
        for K, vals in obs.items()
    ]
    cols = [c.name for c in schemas.contract("layer_metrics").cols]
    return pl.concat(frames).select(cols)


def write_layer_metrics(df: pl.DataFrame, path: str | Path) -> None:
    schemas.write_parquet(df, "layer_metrics", path)


# --------------------------------------------------------------------------- pairs


def _stress_rank(col: str) -> pl.Expr:
    order = {c: i for i, c in enumerate((*STRESS_ORDER, HELL))}
    return pl.col(col).replace_strict(order, default=len(order), return_dtype=pl.Int32)


def pairs_and_counts(
    transcript_paths: Sequence[str | Path],
    threshold: float = 0.5,
    clean_max_wer: float | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(pairs, counts) from the transcripts (contracts ``pairs`` and ``pair_counts``).

    Per model, every stressed utterance is joined with its clean twin (same utt_id). A pair is
    kept when the stressed WER is > ``threshold`` (a verified hallucination; NaN WER never
    passes) and, if ``clean_max_wer`` is set, the clean WER is <= it (the paper sets none).
    ``hell`` repeats every kept pair of the three stresses (their union, so an utterance that
    hallucinates under two stresses appears twice). Counts: pairs existing (``n_total``) and
    kept (``n_pairs``) per model and condition, hell = their sums.
    """
    paths = [str(p) for p in transcript_paths]
    if not paths:
        raise ValueError("pairs: no transcript files given")
    lf = pl.scan_parquet(paths).select(
        "utt_id", "speaker", "model", "condition", "wer", "n_tokens", "hit_max_length"
    )
    clean = lf.filter(pl.col("condition") == CLEAN).select(
        "model",
        "utt_id",
        "speaker",
        pl.col("wer").alias("wer_clean"),
        pl.col("n_tokens").alias("n_tokens_clean"),
        pl.col("hit_max_length").alias("hit_max_length_clean"),
    )
    stressed = lf.filter(pl.col("condition") != CLEAN).select(
        "model",
        "utt_id",
        pl.col("condition").alias("stress"),
        pl.col("wer").alias("wer_stressed"),
        pl.col("n_tokens").alias("n_tokens_stressed"),
        pl.col("hit_max_length").alias("hit_max_length_stressed"),
    )
    kept = pl.col("wer_stressed").is_not_nan() & (pl.col("wer_stressed") > threshold)
    if clean_max_wer is not None:
        kept = kept & pl.col("wer_clean").is_not_nan() & (pl.col("wer_clean") <= clean_max_wer)
    joined = stressed.join(clean, on=["model", "utt_id"], how="inner", validate="m:1").with_columns(
        kept=kept.fill_null(False), threshold=pl.lit(float(threshold))
    )
    kept_pairs = joined.filter(pl.col("kept")).drop("kept")
    pair_lf = pl.concat(
        [
            kept_pairs.with_columns(condition=pl.col("stress")),
            kept_pairs.with_columns(condition=pl.lit(HELL)),
        ]
    )
    per_stress = joined.group_by("model", pl.col("stress").alias("condition")).agg(
        pl.len().cast(pl.Int64).alias("n_total"),
        pl.col("kept").sum().cast(pl.Int64).alias("n_pairs"),
        (pl.col("kept") & pl.col("hit_max_length_stressed").fill_null(False))
        .sum()
        .cast(pl.Int64)
        .alias("n_hit_max_length"),
    )
    hell = per_stress.group_by("model").agg(
        pl.lit(HELL).alias("condition"),
        pl.col("n_total").sum(),
        pl.col("n_pairs").sum(),
        pl.col("n_hit_max_length").sum(),
    )
    counts_lf = (
        pl.concat([per_stress, hell.select(per_stress.collect_schema().names())])
        .with_columns(
            frac_kept=pl.when(pl.col("n_total") > 0)
            .then(pl.col("n_pairs") / pl.col("n_total"))
            .otherwise(None),
            threshold=pl.lit(float(threshold)),
        )
        .sort("model", _stress_rank("condition"), "condition")
    )
    pair_lf = pair_lf.sort("model", _stress_rank("condition"), "condition", "stress", "utt_id")
    pair_df, counts_df = pl.collect_all([pair_lf, counts_lf])
    pair_cols = [c.name for c in schemas.contract("pairs").cols]
    count_cols = [c.name for c in schemas.contract("pair_counts").cols]
    return pair_df.select(pair_cols), counts_df.select(count_cols)


def write_pairs(
    pair_df: pl.DataFrame, counts: pl.DataFrame, pairs_path: str | Path, counts_path: str | Path
) -> None:
    """Write the outputs of :func:`pairs_and_counts` (contracts ``pairs``, ``pair_counts``)."""
    schemas.write_parquet(pair_df, "pairs", pairs_path)
    schemas.write_parquet(counts, "pair_counts", counts_path)


def pairs(
    transcript_paths: Sequence[str | Path],
    threshold: float = 0.5,
    clean_max_wer: float | None = None,
) -> pl.DataFrame:
    """The kept pairs (see :func:`pairs_and_counts`)."""
    return pairs_and_counts(transcript_paths, threshold, clean_max_wer)[0]


def pair_counts(
    transcript_paths: Sequence[str | Path],
    threshold: float = 0.5,
    clean_max_wer: float | None = None,
) -> pl.DataFrame:
    """Pair counts per model and condition (see :func:`pairs_and_counts`)."""
    return pairs_and_counts(transcript_paths, threshold, clean_max_wer)[1]


# --------------------------------------------------------------------------- bootstrap


def _rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng(derive_seed(seed, "bootstrap", key))


def _resample_blocks(rng: np.random.Generator, n: int, n_boot: int):
    """Yield (idx, counts) blocks: idx (b, n) resampled row indices, counts (b, n) their
    multiplicities; the stream depends only on (rng seed, n, n_boot)."""
    for lo in range(0, n_boot, _BOOT_CHUNK):
        b = min(_BOOT_CHUNK, n_boot - lo)
        idx = rng.integers(0, n, size=(b, n))
        flat = (idx + n * np.arange(b)[:, None]).ravel()
        counts = np.bincount(flat, minlength=b * n).reshape(b, n)
        yield idx, counts


def _boot_means(V: np.ndarray, rng: np.random.Generator, n_boot: int) -> np.ndarray:
    """Bootstrap means of every column of V (n x G, NaN = missing): (n_boot, G).

    Vectorised: each block of replicates is a count matrix W (b x n), and the replicate
    means are (W @ V0) / (W @ finite) -- two matrix products, no loop per replicate.
    """
    n, G = V.shape
    finite = np.isfinite(V)
    V0 = np.where(finite, V, 0.0)
    F = finite.astype(np.float64)
    out = np.empty((n_boot, G))
    lo = 0
    for _, W in _resample_blocks(rng, n, n_boot):
        Wf = W.astype(np.float64)
        with np.errstate(all="ignore"):
            out[lo : lo + len(W)] = (Wf @ V0) / (Wf @ F)
        lo += len(W)
    return out


def _ci(boot: np.ndarray, ci: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval along axis 0 (NaN where every replicate is NaN)."""
    q = [(1 - ci) / 2, 1 - (1 - ci) / 2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanquantile(boot, q, axis=0)
    return lo, hi


def _delta(obs: str, c: np.ndarray, s: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        if obs == "neff":
            return 100.0 * (s - c) / c
        return s - c


def _delta_expr(obs: str) -> pl.Expr:
    s, c = pl.col(obs), pl.col(f"{obs}_clean")
    return (100.0 * (s - c) / c) if obs == "neff" else (s - c)


# --------------------------------------------------------------------------- utterance scope

_Q = ("clean", "stressed", "delta")  # quantities per observable, in this order


def _summary_frame(
    *,
    scope: str,
    model: str,
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
) -> pl.DataFrame:
    """Long layer_summary rows from arrays shaped (len(layers), len(comps), len(ks), O, 3)."""
    shape = point.shape[:4]
    li, ci, ki, oi = (a.ravel() for a in np.indices(shape))
    flat = {name: arr.reshape(*shape, 3) for name, arr in (("p", point), ("lo", lo), ("hi", hi))}
    out = {
        "scope": scope,
        "model": model,
        "condition": condition,
        "layer": np.asarray(layers, dtype=np.int32)[li],
        "component": np.asarray(comps, dtype=object)[ci],
        "prefix": prefix,
        "k": np.asarray(ks, dtype=np.int32)[ki],
        "observable": np.asarray(OBSERVABLES, dtype=object)[oi],
        "delta_kind": np.asarray([DELTA_KIND[o] for o in OBSERVABLES], dtype=object)[oi],
        "n": n.reshape(shape).ravel().astype(np.int64),
    }
    for qi, q in enumerate(_Q):
        out[q] = flat["p"][..., qi].ravel()
        out[f"{q}_ci_low"] = flat["lo"][..., qi].ravel()
        out[f"{q}_ci_high"] = flat["hi"][..., qi].ravel()
    out["delta_median"] = (
        median.reshape(*shape, 3)[..., 2].ravel()
        if median is not None
        else np.full(li.size, np.nan)
    )
    out["n_boot"] = n_boot
    df = pl.DataFrame(
        {k: (v if isinstance(v, np.ndarray) else [v] * li.size) for k, v in out.items()},
        strict=False,
    )
    return _conformed(df, "layer_summary")


def _ordered(values: Sequence[str], order: Sequence[str]) -> list[str]:
    rank = {v: i for i, v in enumerate(order)}
    return sorted(set(values), key=lambda v: (rank.get(v, len(rank)), v))


def utterance_summary(
    metrics_paths: Sequence[str | Path],
    pair_df: pl.DataFrame,
    options: MetricOptions | None = None,
    seed: int = 0,
) -> pl.DataFrame:
    """Scope ``utterance``: per-pair deltas, their mean, median and bootstrap CI over pairs.

    For each model x condition (stresses and hell) x prefix (0 = full length, L = the
    length-matched first-L-rows spectra), every layer, component, K and observable, plus
    ``layer = -1``: per pair the mean over layers, then across pairs. One resample-index
    matrix per (model, condition, prefix), seeded by
    ``derive_seed(seed, "bootstrap", "utterance/<model>/<condition>/prefix=<L>")`` and shared
    by all its cells (so the layer mean is resampled consistently).
    """
    opts = options or MetricOptions()
    paths = [str(p) for p in metrics_paths]
    obs_cols = list(OBSERVABLES)
    frames = []
    for model in sorted(pair_df["model"].unique().to_list()):
        P = (
            pair_df.filter(pl.col("model") == model)
            .select("condition", "stress", "utt_id")
            .sort("condition", "stress", "utt_id")
            .with_columns(pl.int_range(pl.len()).over("condition").alias("_pair"))
        )
        m = pl.scan_parquet(paths).filter(
            (pl.col("model") == model) & pl.col("k").is_in(list(opts.k))
        )
        ms = m.filter(pl.col("condition") != CLEAN).select(
            pl.col("condition").alias("stress"),
            "utt_id", "layer", "component", "prefix", "k", *obs_cols,
        )  # fmt: skip
        mc = m.filter(pl.col("condition") == CLEAN).select(
            "utt_id", "layer", "component", "prefix", "k",
            *[pl.col(o).alias(f"{o}_clean") for o in obs_cols],
        )  # fmt: skip
        d = (
            P.lazy()
            .join(ms, on=["stress", "utt_id"], how="inner")
            .join(mc, on=["utt_id", "layer", "component", "prefix", "k"], how="inner")
            .with_columns(*[_delta_expr(o).alias(f"{o}_delta") for o in obs_cols])
            .collect()
        )
        if d.height == 0:
            continue
        layers = sorted(d["layer"].unique().to_list())
        comps = _ordered(d["component"].unique().to_list(), COMPONENT_ORDER)
        ks = sorted(d["k"].unique().to_list())
        for (condition, prefix), g in d.group_by("condition", "prefix", maintain_order=True):
            g = g.with_columns(
                (pl.col("_pair").rank("dense") - 1).cast(pl.Int64).alias("_i"),
                pl.col("layer").replace_strict({v: i for i, v in enumerate(layers)}).alias("_l"),
                pl.col("component").replace_strict({v: i for i, v in enumerate(comps)}).alias("_c"),
                pl.col("k").replace_strict({v: i for i, v in enumerate(ks)}).alias("_k"),
            )
            frames.append(
                _utterance_group(
                    g, model, str(condition), int(prefix), layers, comps, ks, opts, seed
                )
            )
    if not frames:
        return _empty("layer_summary")
    return pl.concat(frames)


def _utterance_group(
    g: pl.DataFrame,
    model: str,
    condition: str,
    prefix: int,
    layers: list[int],
    comps: list[str],
    ks: list[int],
    opts: MetricOptions,
    seed: int,
) -> pl.DataFrame:
    n = int(g["_i"].max()) + 1
    L, C, K, NO = len(layers), len(comps), len(ks), len(OBSERVABLES)
    V = np.full((n, L, C, K, NO, 3), np.nan)
    i, li, ci, ki = (g[c].to_numpy() for c in ("_i", "_l", "_c", "_k"))
    for oi, o in enumerate(OBSERVABLES):
        for qi, col in enumerate((f"{o}_clean", o, f"{o}_delta")):
            V[i, li, ci, ki, oi, qi] = g[col].to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        V = np.concatenate([V, np.nanmean(V, axis=1, keepdims=True)], axis=1)
        flat = V.reshape(n, -1)
        point = np.nanmean(flat, axis=0)
        median = np.nanmedian(flat, axis=0)
    count = np.isfinite(flat).sum(axis=0)
    if opts.n_boot > 0 and n > 0:
        rng = _rng(seed, f"utterance/{model}/{condition}/prefix={prefix}")
        lo, hi = _ci(_boot_means(flat, rng, opts.n_boot), opts.ci)
    else:
        lo = hi = np.full_like(point, np.nan)
    shape = (L + 1, C, K, NO, 3)
    n_delta = count.reshape(shape)[..., 2]
    return _summary_frame(
        scope="utterance",
        model=model,
        condition=condition,
        prefix=prefix,
        layers=[*layers, MEAN_LAYER],
        comps=comps,
        ks=ks,
        point=point.reshape(shape),
        lo=lo.reshape(shape),
        hi=hi.reshape(shape),
        median=median.reshape(shape),
        n=n_delta,
        n_boot=opts.n_boot,
    )


def _empty(name: str) -> pl.DataFrame:
    return pl.from_arrow(schemas.contract(name).arrow.empty_table())


def _conformed(df: pl.DataFrame, name: str) -> pl.DataFrame:
    """``df`` with the contract's columns, order and types; float NaN becomes null."""
    return pl.from_arrow(schemas.conform(df, name)).with_columns(pl.col(pl.Float64).fill_nan(None))


# --------------------------------------------------------------------------- pooled scope


def _center(X: np.ndarray) -> np.ndarray:
    return X - X.mean(axis=0, keepdims=True)


def _gram_eigs(X: np.ndarray, W: np.ndarray, center: bool, cache: dict) -> np.ndarray:
    """Eigenvalues (descending, >= 0) of the Gram matrix of each resampled X[idx], one row of
    W (b x N) per replicate giving idx as multiplicities w; zero-padded to min(N, d).

    Only the n' rows with w > 0 enter (about 0.63 N): with Z = sqrt(w) X[w > 0], the Gram
    X[idx]^T X[idx] = Z^T Z (d x d, a symmetric rank-k product), whose non-zero eigenvalues are
    those of Z Z^T (n' x n', gathered from X X^T, cached), the smaller of the two being
    decomposed. Centering X[idx] subtracts N mu mu^T, mu = X^T w / N, from Z^T Z, i.e. projects
    Z Z^T on the complement of u = sqrt(w) / sqrt(N) (a unit vector since sum w = N). The
    rows a replicate does not draw, and its repeated rows, only add exact zero eigenvalues.
    """
    N, d = X.shape
    out = np.zeros((len(W), min(N, d)))
    for i, w in enumerate(W):
        s = np.flatnonzero(w)
        sw = np.sqrt(w[s].astype(np.float64))
        if len(s) < d:
            if "G" not in cache:
                cache["G"] = X @ X.T
            M = cache["G"][np.ix_(s, s)] * sw[:, None] * sw[None, :]
            if center:
                u = sw / math.sqrt(N)
                Mu = M @ u
                M += (u @ Mu) * np.outer(u, u) - np.outer(Mu, u) - np.outer(u, Mu)
        else:
            Z = X[s] * sw[:, None]
            M = Z.T @ Z  # numpy calls BLAS syrk for this product
            if center:
                mu = Z.T @ sw
                M -= np.outer(mu, mu) / N
        ev = np.linalg.eigvalsh(M)[::-1]
        out[i, : len(ev)] = ev
    return np.clip(out, 0.0, None)


def _boot_spectra(
    X: np.ndarray,
    blocks,
    center: bool,
    rank: int = 0,
    Vt: np.ndarray | None = None,
    cache: dict | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Singular values (descending) of X[idx] for every replicate, via Gram matrices.

    Returns ``(S, total)``, S of width min(N, d) (or ``rank``). Exact unless ``rank`` is in
    ``(0, min(N, d))``:

    * ``rank = 0``: eigenvalues of the Gram matrix of X[idx] (centered if ``center``), in the
      smaller of its two forms (:func:`_gram_eigs`);
    * ``0 < rank < min(N, d)``: the same on Y = X V_r, V_r the top-``rank`` right singular
      vectors of X (centered if ``center``; ``Vt`` if given, else computed), i.e. Rayleigh-Ritz
      on the principal subspace: N * rank**2 per replicate instead of N * d**2. Centering
      commutes with the projection. The values beyond ``rank`` are not computed, so ``total``
      (the resampled matrix's exact total energy sum s_i**2, per replicate) is returned for the
      tail energy; else None.

    ``cache`` holds X X^T between calls on the same X (see :func:`_gram_eigs`).
    """
    N, d = X.shape
    out, totals = [], []
    project = 0 < rank < min(N, d)
    cache = {} if cache is None else cache
    if project:
        if Vt is None:
            _, _, Vt = np.linalg.svd(_center(X) if center else X, full_matrices=False)
        Y = X @ Vt[:rank].T
        rowsq = np.einsum("ij,ij->i", X, X)
        ycache: dict = {}  # Y's own Gram, not X's
        for _, W in blocks:
            Wf = W.astype(np.float64)
            out.append(_gram_eigs(Y, W, center, ycache))
            tot = Wf @ rowsq
            if center:
                mu = Wf @ X
                tot = tot - np.einsum("ij,ij->i", mu, mu) / N
            totals.append(tot)
    else:
        for _, W in blocks:
            out.append(_gram_eigs(X, W, center, cache))
    S = np.sqrt(np.concatenate(out, axis=0))
    return S, (np.concatenate(totals) if project else None)


def _obs_array(
    S: np.ndarray, n_rows: float, opts: MetricOptions, total: np.ndarray | None = None
) -> np.ndarray:
    """Observables of spectra S (m x w) -> (m, K, O); ``total`` overrides the total energy
    (sum s**2) of each spectrum for the tail energy (spectra truncated by projection)."""
    obs = spectrum_observables(S, np.full(S.shape[0], float(n_rows)), opts)
    if total is not None:
        e = np.nan_to_num(S, nan=0.0) ** 2
        with np.errstate(all="ignore"):
            for K in opts.k:
                tail = np.clip(total - e[:, :K].sum(axis=1), 0.0, None) / total
                obs[K]["tail_energy"] = np.where(total > 0, tail, np.nan)
    return np.stack([np.stack([obs[K][o] for o in OBSERVABLES], axis=-1) for K in opts.k], 1)


def _pooled_spectrum(
    X: np.ndarray, center: bool, rank: int, cache: dict
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Singular values (descending) of X (centered if ``center``) and, if
    ``0 < rank < min(N, d)``, its top-``rank`` right singular vectors (rank x d) for the
    projected replicates (else None), and the total energy sum s**2 when only some values
    are returned (else None). All min(N, d) values, or with the vectors the top ``rank``
    ones (enough for every observable given the total energy, see :func:`_obs_array`).

    Computed as the replicates are (:func:`_gram_eigs` with every multiplicity 1: the
    eigenvalues of the smaller Gram matrix, float64), so a replicate drawing each row once
    reproduces the point estimate; for N >> d this is also several times cheaper than an
    SVD of X. Singular values below ~1e-8 s_1 come out as round-off of the Gram (~1e-8 s_1
    instead of ~1e-16 s_1), far below ``rank_tol``, which zeroes them for every observable.
    """
    N, d = X.shape
    project = 0 < rank < min(N, d)
    if not project:
        ev = _gram_eigs(X, np.ones((1, N), dtype=np.int64), center, cache)
        return np.sqrt(ev), None, None
    Xp = _center(X) if center else X
    total = np.array([np.einsum("ij,ij->", Xp, Xp)])
    if d <= N:  # only the top-rank eigenpairs: the eigenvalues beyond are not needed
        C = Xp.T @ Xp
        ev, V = scipy.linalg.eigh(C, subset_by_index=[d - rank, d - 1], driver="evr")
        return np.sqrt(np.clip(ev[::-1], 0.0, None))[None, :], V[:, ::-1].T, total
    _, s, Vt = np.linalg.svd(Xp, full_matrices=False)
    return s[None, :rank], Vt[:rank], total


def _pooled_cell(
    Xc: np.ndarray, Xs: np.ndarray, center: bool, opts: MetricOptions, rng_seed: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Pooled (clean, stressed, delta) observables: point (K, O, 3), replicates (B, K, O, 3)."""
    N = Xc.shape[0]
    boot = opts.pooled_n_boot > 0 and N >= 2
    rank = opts.pooled_boot_rank if boot else 0
    obs, bases, caches = [], [], []
    for X in (Xc, Xs):
        cache: dict = {}
        S, Vt, total = _pooled_spectrum(X, center, rank, cache)
        obs.append(_obs_array(S, N, opts, total)[0])
        bases.append(Vt)
        caches.append(cache)
    oc, os_ = obs
    point = np.stack([oc, os_, _stack_delta(oc, os_)], axis=-1)
    if not boot:
        return point, None
    # the same resampled utterances for clean and stressed: drawn once, used for both
    blocks = list(_resample_blocks(np.random.default_rng(rng_seed), N, opts.pooled_n_boot))
    reps = []
    for X, Vt, cache in zip((Xc, Xs), bases, caches, strict=True):
        S, total = _boot_spectra(X, blocks, center, opts.pooled_boot_rank, Vt, cache)
        reps.append(_obs_array(S, N, opts, total))
    rc, rs = reps
    return point, np.stack([rc, rs, _stack_delta(rc, rs)], axis=-1)


def _stack_delta(c: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Deltas of (..., O) observable arrays."""
    return np.stack([_delta(o, c[..., i], s[..., i]) for i, o in enumerate(OBSERVABLES)], -1)


def pooled_layer(
    spectra_paths: Sequence[str | Path],
    pair_df: pl.DataFrame,
    model: str,
    layer: int,
    options: MetricOptions | None = None,
    seed: int = 0,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Scope ``pooled`` of one model x decoder layer: its cells (contract ``pooled_cells``)
    and per-rank mean spectra (contract ``rank_profile``).

    Per condition x component, the N x d matrix of the kept pairs' per-utterance row means
    (full-length spectra only; hell stacks the three stresses' pairs) gives one clean and one
    stressed spectrum (float64, from the eigenvalues of its Gram matrix as every replicate's;
    centered per ``options.pooled_center``), their observables and deltas. Bootstrap:
    resample the N pairs (the same rows clean and stressed), re-decompose, recompute; seeded
    by ``derive_seed(seed, "bootstrap", "pooled/<model>/<condition>")``, i.e. the same
    resampled pairs in every layer's job, so that :func:`pooled_summary` can average the
    replicates over layers (``layer = -1``).
    """
    opts = options or MetricOptions()
    paths = [str(p) for p in spectra_paths]
    if not paths:
        raise ValueError(f"pooled scope of {model}, layer {layer}: no spectra files given")
    P = pair_df.filter(pl.col("model") == model)
    conditions = _ordered(P["condition"].unique().to_list(), (*STRESS_ORDER, HELL))
    F = (
        pl.scan_parquet(paths)
        .filter(
            (pl.col("model") == model)
            & (pl.col("layer") == layer)
            & (pl.col("prefix") == 0)
            & pl.col("utt_id").is_in(P["utt_id"].unique().implode())
        )
        .select("condition", "utt_id", "component", "centered", "sv", "row_mean")
        .collect()
        .with_row_index("_pos")
    )
    cells: dict[tuple[str, str], tuple[np.ndarray, np.ndarray | None, int]] = {}
    profiles = []
    if F.height:
        center = bool(F["centered"].any()) if opts.pooled_center is None else opts.pooled_center
        RM, rm_len = _list_to_padded(F["row_mean"])
        SV, _ = _list_to_padded(F["sv"])
        SV = _sort_desc(SV)
    for comp in _ordered(F["component"].unique().to_list(), COMPONENT_ORDER):
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
            d = int(rm_len[np.concatenate([pc_, ps_])].min())
            if d != int(rm_len[np.concatenate([pc_, ps_])].max()) or d == 0:
                raise ValueError(
                    f"pooled scope: row_mean lengths differ or are empty for "
                    f"{model}/{condition}/layer {layer}/{comp}"
                )
            Xc, Xs = RM[pc_, :d], RM[ps_, :d]
            rseed = derive_seed(seed, "bootstrap", f"pooled/{model}/{condition}")
            point, boot = _pooled_cell(Xc, Xs, center, opts, rseed)
            cells[(condition, comp)] = (point, boot, sel.height)
    profile = pl.concat(profiles) if profiles else _empty("rank_profile")
    return _cells_frame(model, layer, cells, opts), profile


def _cells_frame(
    model: str,
    layer: int,
    cells: dict[tuple[str, str], tuple[np.ndarray, np.ndarray | None, int]],
    opts: MetricOptions,
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
    return _conformed(pl.concat(frames) if frames else _empty("pooled_cells"), "pooled_cells")


def write_pooled_layer(cells: pl.DataFrame, profile: pl.DataFrame, cells_path, profile_path):
    schemas.write_parquet(cells, "pooled_cells", cells_path)
    schemas.write_parquet(profile, "rank_profile", profile_path)


def pooled_summary(cells: pl.DataFrame, options: MetricOptions | None = None) -> pl.DataFrame:
    """Scope ``pooled`` rows of layer_summary from every layer's cells (:func:`pooled_layer`):
    point estimates, percentile CIs and, as ``layer = -1``, the mean over layers, replicate by
    replicate."""
    opts = options or MetricOptions()
    K, NO, B = len(opts.k), len(OBSERVABLES), opts.pooled_n_boot
    cells = cells.with_columns(
        pl.col("k").replace_strict({k: i for i, k in enumerate(opts.k)}, default=None).alias("_k"),
        pl.col("observable").replace_strict(_OBS_RANK, default=None).alias("_o"),
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
        frames += _pooled_frames(model, parsed, opts)
    return pl.concat(frames) if frames else _empty("layer_summary")


def _pooled_frames(
    model: str,
    cells: dict[tuple[str, int, str], tuple[np.ndarray, np.ndarray | None, int]],
    opts: MetricOptions,
) -> list[pl.DataFrame]:
    frames = []
    conds = _ordered({c for c, _, _ in cells}, (*STRESS_ORDER, HELL))
    for condition in conds:
        mine = {(lay, comp): v for (c, lay, comp), v in cells.items() if c == condition}
        layers = sorted({lay for lay, _ in mine})
        comps = _ordered({comp for _, comp in mine}, COMPONENT_ORDER)
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
            lo, hi = _ci(boot, opts.ci)
        else:
            lo = hi = np.full_like(point, np.nan)
        frames.append(
            _summary_frame(
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
    return _conformed(df, "rank_profile")


# --------------------------------------------------------------------------- tables


def _wide(summary: pl.DataFrame) -> pl.DataFrame:
    keys = ["scope", "prefix", "model", "layer", "component", "condition", "k"]
    out = None
    for obs, name in TABLE_OBS.items():
        part = summary.filter(pl.col("observable") == obs).select(
            *keys,
            *([pl.col("n")] if obs == "neff" else []),
            pl.col("delta").alias(name),
            pl.col("delta_ci_low").alias(f"{name}_ci_low"),
            pl.col("delta_ci_high").alias(f"{name}_ci_high"),
            pl.col("delta_median").alias(f"{name}_median"),
        )
        out = part if out is None else out.join(part, on=keys, how="full", coalesce=True)
    return out


def _paper_columns(df: pl.DataFrame, opts: MetricOptions) -> pl.DataFrame:
    mapping = opts.paper_models
    rows = [
        {
            "model": ours,
            "component": comp,
            "paper_model": paper,
            "paper_match": "exact" if ours == paper else "approx",
            "paper_d_neff_pct": v[0],
            "paper_d_log10_kf": v[1],
            "paper_d_alpha": v[2],
        }
        for ours, paper in mapping.items()
        for (pm, comp), v in PAPER_VALUES.items()
        if pm == paper
    ]
    paper = pl.DataFrame(
        rows,
        schema={
            "model": pl.String,
            "component": pl.String,
            "paper_model": pl.String,
            "paper_match": pl.String,
            "paper_d_neff_pct": pl.Float64,
            "paper_d_log10_kf": pl.Float64,
            "paper_d_alpha": pl.Float64,
        },
    )
    out = df.join(paper, on=["model", "component"], how="left")
    applies = (
        (pl.col("condition") == PAPER_CONDITION)
        & (pl.col("k") == PAPER_K)
        & (pl.col("prefix") == 0)
    )
    paper_cols = [c for c in paper.columns if c not in ("model", "component")]
    out = out.with_columns(
        [pl.when(applies).then(pl.col(c)).otherwise(None).alias(c) for c in paper_cols]
    )

    def agrees(ours: str, theirs: str) -> pl.Expr:
        return (
            pl.when(pl.col(ours).is_not_null() & pl.col(theirs).is_not_null())
            .then(pl.col(ours).sign() == pl.col(theirs).sign())
            .otherwise(None)
        )

    return out.with_columns(
        sign_agrees_neff=agrees("d_neff_pct", "paper_d_neff_pct"),
        sign_agrees_log10_kf=agrees("d_log10_kf", "paper_d_log10_kf"),
        sign_agrees_alpha=agrees("d_alpha", "paper_d_alpha"),
    )


def _finish_table(df: pl.DataFrame, table: str, opts: MetricOptions) -> pl.DataFrame:
    cols = [c.name for c in schemas.contract("tables").cols]
    comp_rank = {c: i for i, c in enumerate(COMPONENT_ORDER)}
    return (
        _paper_columns(df, opts)
        .with_columns(table=pl.lit(table))
        .sort(
            pl.col("scope").replace_strict({"utterance": 0, "pooled": 1}, default=2),
            "prefix",
            "model",
            pl.col("component").replace_strict(comp_rank, default=len(comp_rank)),
            _stress_rank("condition"),
            "k",
        )
        .select(cols)
    )


def final_layer_table(summary: pl.DataFrame, options: MetricOptions | None = None) -> pl.DataFrame:
    """Table 1: the deltas at each model's final decoder layer (its highest layer present)."""
    opts = options or MetricOptions()
    final = (
        summary.filter(pl.col("layer") >= 0)
        .group_by("model")
        .agg(pl.col("layer").max().alias("_final"))
    )
    rows = summary.join(final, on="model").filter(pl.col("layer") == pl.col("_final"))
    return _finish_table(_wide(rows.drop("_final")), TABLE_NAMES["final"], opts)


def layer_mean_table(summary: pl.DataFrame, options: MetricOptions | None = None) -> pl.DataFrame:
    """Table 2: the deltas averaged over layers (per pair, then across pairs)."""
    opts = options or MetricOptions()
    rows = summary.filter(pl.col("layer") == MEAN_LAYER)
    return _finish_table(_wide(rows), TABLE_NAMES["mean"], opts)


# --------------------------------------------------------------------------- writers


def _fmt(x: Any, digits: int) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:+.{digits}f}"


def _cell(row: dict, name: str, digits: int) -> str:
    v, lo, hi = row[name], row[f"{name}_ci_low"], row[f"{name}_ci_high"]
    if lo is None or hi is None:
        return _fmt(v, digits)
    return f"{_fmt(v, digits)} [{_fmt(lo, digits)}, {_fmt(hi, digits)}]"


def _sign(v: Any) -> str:
    return "–" if v is None else ("yes" if v else "NO")


_DIGITS = {"d_neff_pct": 2, "d_log10_kf": 2, "d_alpha": 3}


def table_markdown(table: pl.DataFrame, title: str, ci: float) -> str:
    """A Markdown rendering: one section per (scope, prefix), one row per cell."""
    lines = [
        f"# {title}",
        "",
        f"Mean over pairs (scope utterance) or value of the pooled spectrum (scope pooled), "
        f"with the {round(ci * 100)}% percentile bootstrap CI over pairs in brackets. "
        "Delta N_eff % = 100 (s - c) / c; Delta log10 Kf and Delta alpha are differences. "
        "prefix 0 = full length, L = length-matched on the first L decoded positions. "
        "Paper values: Hell vs clean, K = 50, from a digest of the paper (layer aggregation "
        "unstated); 'approx' marks a stand-in model.",
        "",
    ]
    header = (
        "| model | component | condition | K | n | ΔN_eff % | Δlog10 Kf | Δα "
        "| paper model | paper ΔN_eff % | paper Δlog10 Kf | paper Δα | signs agree (N, Kf, α) |"
    )
    for (scope, prefix), g in table.group_by("scope", "prefix", maintain_order=True):
        label = "full length" if prefix == 0 else f"length-matched, first {prefix} rows"
        lines += [f"## scope {scope}, {label}", "", header, "|" + "---|" * 13]
        for r in g.iter_rows(named=True):
            paper = (
                f"{r['paper_model']} ({r['paper_match']})" if r["paper_model"] is not None else "–"
            )
            signs = ", ".join(
                _sign(r[c])
                for c in ("sign_agrees_neff", "sign_agrees_log10_kf", "sign_agrees_alpha")
            )
            lines.append(
                f"| {r['model']} | {r['component']} | {r['condition']} | {r['k']} | {r['n']} | "
                + " | ".join(_cell(r, name, d) for name, d in _DIGITS.items())
                + f" | {paper} | {_fmt(r['paper_d_neff_pct'], 2)} | "
                f"{_fmt(r['paper_d_log10_kf'], 2)} | {_fmt(r['paper_d_alpha'], 3)} | "
                f"{signs if r['paper_model'] is not None else '–'} |"
            )
        lines.append("")
    return "\n".join(lines)


def counts_markdown(counts: pl.DataFrame) -> str:
    lines = [
        "# Pairs per model and condition",
        "",
        "A pair is a stressed utterance and its clean twin; it is kept when the stressed WER "
        "exceeds the threshold. hell = the union of the three stresses' kept pairs.",
        "",
        "| model | condition | kept pairs | all pairs | fraction kept | kept, hit max length "
        "| threshold |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in counts.iter_rows(named=True):
        frac = "–" if r["frac_kept"] is None else f"{r['frac_kept']:.3f}"
        lines.append(
            f"| {r['model']} | {r['condition']} | {r['n_pairs']} | {r['n_total']} | {frac} | "
            f"{r['n_hit_max_length']} | {r['threshold']:g} |"
        )
    return "\n".join(lines) + "\n"


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _write_csv(df: pl.DataFrame, path: Path) -> None:
    with atomic_path(path, suffix=".csv.tmp") as tmp:
        df.write_csv(tmp)


def build_tables(
    metrics_paths: Sequence[str | Path],
    pairs_paths: Sequence[str | Path],
    counts_paths: Sequence[str | Path],
    out_dir: str | Path,
    *,
    pooled_paths: Sequence[str | Path] = (),
    profile_paths: Sequence[str | Path] = (),
    options: MetricOptions | None = None,
    seed: int = 0,
) -> dict[str, pl.DataFrame]:
    """Everything under ``out_dir`` (e.g. results/tables/); returns the frames written.

    Writes ``layer_summary.parquet``, ``rank_profile.parquet``, ``tables.parquet`` (contracts
    of the same names), ``table1_final_layer.{csv,md}``, ``table2_layer_mean.{csv,md}`` and
    ``pair_counts.{csv,md}``. The pooled scope and the rank profiles come from every
    (model, layer)'s :func:`pooled_layer` output: ``pooled_paths`` (contract
    ``pooled_cells``) and ``profile_paths`` (``rank_profile``); with ``options.pooled =
    False`` they may be empty.
    """
    opts = options or MetricOptions()
    out = Path(out_dir)
    pair_df = pl.scan_parquet([str(p) for p in pairs_paths]).collect()
    counts = (
        pl.scan_parquet([str(p) for p in counts_paths])
        .sort("model", _stress_rank("condition"), "condition")
        .collect()
    )
    summaries = [utterance_summary(metrics_paths, pair_df, opts, seed)]
    profile = _empty("rank_profile")
    if opts.pooled:
        if not pooled_paths or not profile_paths:
            raise ValueError("build_tables: the pooled scope needs the pooled_layer outputs")
        cells = pl.scan_parquet([str(p) for p in pooled_paths]).collect()
        summaries.append(pooled_summary(cells, opts))
        profile = pl.scan_parquet([str(p) for p in profile_paths]).collect()
    summary = pl.concat(summaries).sort(
        pl.col("scope").replace_strict({"utterance": 0, "pooled": 1}, default=2),
        "model",
        _stress_rank("condition"),
        "prefix",
        "layer",
        pl.col("component").replace_strict(_COMP_RANK, default=len(_COMP_RANK)),
        "k",
        pl.col("observable").replace_strict(_OBS_RANK, default=len(_OBS_RANK)),
    )
    profile = profile.sort(
        "model", _stress_rank("condition"), "layer",
        pl.col("component").replace_strict(_COMP_RANK, default=len(_COMP_RANK)), "rank",
    )  # fmt: skip
    t1 = final_layer_table(summary, opts)
    t2 = layer_mean_table(summary, opts)
    tables = pl.concat([t1, t2])

    schemas.write_parquet(summary, "layer_summary", out / "layer_summary.parquet")
    schemas.write_parquet(profile, "rank_profile", out / "rank_profile.parquet")
    schemas.write_parquet(tables, "tables", out / "tables.parquet")
    titles = {
        TABLE_NAMES["final"]: "Table 1: stressed vs clean at the final decoder layer",
        TABLE_NAMES["mean"]: "Table 2: stressed vs clean, averaged over decoder layers",
    }
    for name, t in ((TABLE_NAMES["final"], t1), (TABLE_NAMES["mean"], t2)):
        _write_csv(t.drop("table"), out / f"{name}.csv")
        _write_text(out / f"{name}.md", table_markdown(t, titles[name], opts.ci))
    _write_csv(counts, out / "pair_counts.csv")
    _write_text(out / "pair_counts.md", counts_markdown(counts))
    return {"layer_summary": summary, "tables": tables, "pair_counts": counts,
            "rank_profile": profile}  # fmt: skip
