"""Bootstrap replicates as count matrices: one implementation for the tables and the detector.

A replicate is the number of times it draws each of the n rows, so a block of b replicates
is a (b, n) count matrix and replicate means are matrix products, with no loop per replicate.
Subsamples (m of n units without replacement) are 0/1 count matrices of the same form: the
pooled scope uses them, because a spectrum of rows drawn with replacement is shrunk by the
duplicates (about 37 % of the rows are repeats) and its percentile interval misses.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator

import numpy as np

from whisper_spi.io import derive_seed

__all__ = [
    "TABLE_BLOCK",
    "count_blocks",
    "mean_replicates",
    "percentile_interval",
    "seeded_rng",
    "subsample_blocks",
    "subsample_interval",
    "subsample_size",
]

TABLE_BLOCK = 100  # replicates per block in the tables' resamplings (fixed: results depend on it)


def seeded_rng(seed: int, key: str) -> np.random.Generator:
    """The generator of the resampling named ``key`` (never depends on job order)."""
    return np.random.default_rng(derive_seed(seed, "bootstrap", key))


def count_blocks(
    rng: np.random.Generator,
    n: int,
    n_boot: int,
    block: int,
    *,
    strata: np.ndarray | None = None,
    groups: np.ndarray | None = None,
) -> Iterator[np.ndarray]:
    """Yield (b, n) int64 count matrices, ``block`` replicates at a time, ``n_boot`` in all.

    Each replicate draws with replacement as many units as there are: rows, or with
    ``groups`` (one label per row) whole groups, each drawn group counting once for every
    member (a cluster bootstrap). With ``strata`` (one label per row) the draw is made within
    each stratum, so every stratum keeps its size (a group spanning strata is resampled
    within each separately). The stream depends only on (rng state, n, n_boot, block,
    labels).
    """
    if strata is None:
        parts = [np.arange(n)]
    else:
        strata = np.asarray(strata)
        parts = [np.flatnonzero(strata == s) for s in np.unique(strata)]
    if groups is not None:
        groups = np.asarray(groups)
    for lo in range(0, n_boot, block):
        b = min(block, n_boot - lo)
        W = np.zeros((b, n), dtype=np.int64)
        for rows in parts:
            if groups is None:
                draw = rows[rng.integers(0, len(rows), size=(b, len(rows)))]
                flat = (draw + n * np.arange(b)[:, None]).ravel()
                W += np.bincount(flat, minlength=b * n).reshape(b, n)
            else:
                _, member = np.unique(groups[rows], return_inverse=True)
                g = int(member.max()) + 1
                draw = rng.integers(0, g, size=(b, g))
                flat = (draw + g * np.arange(b)[:, None]).ravel()
                W[:, rows] += np.bincount(flat, minlength=b * g).reshape(b, g)[:, member]
        yield W


def mean_replicates(V: np.ndarray, blocks: Iterator[np.ndarray], n_boot: int) -> np.ndarray:
    """Replicate means of every column of V (n x G, NaN = missing): (n_boot, G).

    Per block of counts W: (W @ V0) / (W @ finite), two matrix products.
    """
    finite = np.isfinite(V)
    V0 = np.where(finite, V, 0.0)
    F = finite.astype(np.float64)
    out = np.empty((n_boot, V.shape[1]))
    lo = 0
    for W in blocks:
        Wf = W.astype(np.float64)
        with np.errstate(all="ignore"):
            out[lo : lo + len(W)] = (Wf @ V0) / (Wf @ F)
        lo += len(W)
    return out


def percentile_interval(boot: np.ndarray, ci: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of coverage ``ci`` along axis 0 (NaN where every replicate is)."""
    q = [(1 - ci) / 2, 1 - (1 - ci) / 2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanquantile(boot, q, axis=0)
    return lo, hi


def subsample_size(n_units: int, fraction: float) -> int:
    """Units each subsample keeps: round(fraction * n_units), at least 1, at most n_units - 1."""
    return max(1, min(n_units - 1, round(fraction * n_units)))


def subsample_blocks(
    rng: np.random.Generator, n: int, n_rep: int, block: int, fraction: float
) -> Iterator[np.ndarray]:
    """Yield (b, n) 0/1 int64 matrices: each replicate keeps :func:`subsample_size` of the n
    units, drawn without replacement (``block`` replicates at a time, ``n_rep`` in all)."""
    m = subsample_size(n, fraction)
    for lo in range(0, n_rep, block):
        b = min(block, n_rep - lo)
        keep = np.argsort(rng.random((b, n)), axis=1)[:, :m]
        W = np.zeros((b, n), dtype=np.int64)
        np.put_along_axis(W, keep, 1, axis=1)
        yield W


def subsample_interval(
    point: np.ndarray, reps: np.ndarray, f: float, ci: float
) -> tuple[np.ndarray, np.ndarray]:
    """Interval of coverage ``ci`` from m-of-n subsample replicates (axis 0), f = m / n.

    A subsample statistic deviates from the full-sample one with variance (1/m - 1/n) s^2 =
    s^2 (1 - f) / (f n), so the deviations from the replicates' mean, times sqrt(f / (1 - f)),
    spread as the full-sample estimate does; their percentiles are added to ``point``.
    Centring on the replicates' mean removes the smaller sample's own bias (spectra of
    fewer rows spread), so the interval is placed on the point estimate, which lies inside
    it whenever the centred percentiles straddle 0.
    """
    if not 0 < f < 1:
        raise ValueError(f"subsample fraction must be in (0, 1), got {f!r}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        dev = (reps - np.nanmean(reps, axis=0)) * math.sqrt(f / (1 - f))
    lo, hi = percentile_interval(dev, ci)
    return point + lo, point + hi
