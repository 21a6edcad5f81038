"""Spectral observables of many spectra: effective rank, spectral alpha, Kirchhoff index,
tail energy, and :class:`ObservableOptions`, how they are computed; the one kernel that
computes every observable from them is :func:`whisper_spi.analysis.observables.observables`.
Pure numpy, vectorised over many spectra.

A spectrum ``s`` is given as a 1-D array (one spectrum: a float is returned), as a sequence of
1-D arrays of possibly differing lengths, or as a 2-D array right-padded with NaN (see
:func:`pack_spectra`; many spectra: one value per spectrum). An empty list means zero
spectra, an empty 1-D array one empty spectrum. Each spectrum is sorted descending
internally; negative values are clipped to 0. Undefined results (empty, all-zero or
non-finite spectra) are NaN, never a warning. In a padded 2-D array a trailing run of NaN is
padding; a NaN followed by a finite value is data and gives NaN.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "ObservableOptions",
    "covariance_eigenvalues",
    "effective_rank",
    "kirchhoff_index",
    "pack_spectra",
    "sort_descending",
    "spectra_lengths",
    "spectral_alpha",
    "tail_energy",
]


_BLOCK_ELEMENTS = 1 << 20  # rough cap on the elements of one packed block

Kernel = Callable[[np.ndarray, np.ndarray], np.ndarray]


# --------------------------------------------------------------------------- input handling


def _check_k(k: Any, name: str = "k", *, allow_zero: bool = False) -> int | None:
    if k is None:
        return None
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise ValueError(f"{name} must be an int or None, got {k!r}")
    k = int(k)
    if k < (0 if allow_zero else 1):
        raise ValueError(f"{name} must be >= {0 if allow_zero else 1}, got {k}")
    return k


class _Batch:
    """Many spectra, either a dense 2-D array (NaN-padded or exact rows) or a ragged list."""

    def __init__(self, s: Any) -> None:
        self.scalar = False
        self.dense: np.ndarray | None = None
        self.ragged: Sequence[Any] | None = None
        self.lengths: np.ndarray | None = None  # known lengths (ragged / 1-D input)

        if isinstance(s, np.ndarray) and s.dtype != object:
            if s.ndim == 1:
                self.scalar = True
                self.dense = np.asarray(s, dtype=np.float64)[None, :]
                self.lengths = np.array([s.shape[0]], dtype=np.int64)
            elif s.ndim == 2:
                self.dense = np.asarray(s, dtype=np.float64)
            else:
                raise ValueError(f"expected a 1-D or 2-D array of spectra, got ndim={s.ndim}")
            self.count = self.dense.shape[0]
            return
        # a scalar, or an object array that is not 1-D
        if isinstance(s, (numbers.Number, np.ndarray)) and np.ndim(s) != 1:
            raise ValueError("expected a spectrum (1-D array) or a sequence of spectra")
        seq = s if isinstance(s, (list, tuple, np.ndarray)) else list(s)
        if len(seq) > 0 and np.ndim(seq[0]) == 0:  # a flat list of numbers: one spectrum
            arr = np.asarray(seq, dtype=np.float64)
            if arr.ndim != 1:
                raise ValueError("a spectrum must be 1-D")
            self.scalar = True
            self.dense = arr[None, :]
            self.lengths = np.array([arr.shape[0]], dtype=np.int64)
            self.count = 1
            return
        self.ragged = seq
        self.count = len(seq)
        self.lengths = np.fromiter((len(a) for a in seq), dtype=np.int64, count=self.count)

    def blocks(self, k: int | None) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
        """Yield ``(first_row, X, n, bad)``: X rows sorted descending, top ``k``, zero-padded;
        n their lengths (capped at k); bad flags rows holding NaN/inf."""
        if self.dense is not None:
            width = max(self.dense.shape[1], 1)
        else:
            width = max(int(self.lengths.max(initial=0)), 1)
        step = max(1, _BLOCK_ELEMENTS // width)
        for lo in range(0, self.count, step):
            hi = min(lo + step, self.count)
            if self.dense is not None:
                raw = self.dense[lo:hi]
                if self.lengths is not None:
                    lengths = self.lengths[lo:hi]
                else:  # NaN-padded rows: length = one past the last non-NaN entry
                    notnan = ~np.isnan(raw)
                    w = raw.shape[1]
                    last = w - np.argmax(notnan[:, ::-1], axis=1) if w else 0
                    lengths = np.where(notnan.any(axis=1), last, 0).astype(np.int64)
            else:
                lengths = self.lengths[lo:hi]
                raw = np.zeros((hi - lo, int(lengths.max(initial=0))), dtype=np.float64)
                if raw.size:
                    chunk = [a for a in self.ragged[lo:hi] if len(a)]
                    flat = np.concatenate(chunk).astype(np.float64, copy=False) if chunk else []
                    if np.ndim(flat) != 1 or len(flat) != int(lengths.sum()):
                        raise ValueError("each spectrum in a sequence must be a 1-D array")
                    raw[np.arange(raw.shape[1]) < lengths[:, None]] = flat
            yield (lo, *_clean_sort(raw, lengths, k))


def _clean_sort(
    raw: np.ndarray, lengths: np.ndarray, k: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    inside = np.arange(raw.shape[1]) < lengths[:, None]
    finite = np.isfinite(raw)
    bad = (inside & ~finite).any(axis=1)
    x = np.where(inside & finite, raw, 0.0)
    np.maximum(x, 0.0, out=x)  # also turns -0.0 into 0.0
    width = x.shape[1]
    if k is not None and k < width:
        x = np.partition(x, width - k, axis=1)[:, width - k :]
    x = np.sort(x, axis=1)[:, ::-1]
    n = lengths if k is None else np.minimum(lengths, k)
    return x, n, bad


def _map(s: Any, kernel: Kernel, k: int | None) -> np.floating | np.ndarray:
    batch = _Batch(s)
    out = np.empty(batch.count, dtype=np.float64)
    with np.errstate(all="ignore"):
        for lo, x, n, bad in batch.blocks(k):
            res = kernel(x, n) if x.shape[1] else np.full(x.shape[0], np.nan)
            res = np.asarray(res, dtype=np.float64)
            res[bad] = np.nan
            out[lo : lo + x.shape[0]] = res
    return np.float64(out[0]) if batch.scalar else out


def _flat_lengths(spectra: Any) -> tuple[np.ndarray, np.ndarray]:
    """(all values concatenated, each spectrum's length); a null list is empty."""
    if hasattr(spectra, "to_arrow"):  # a polars list column
        spectra = spectra.to_arrow()
    if isinstance(spectra, pa.ChunkedArray):
        spectra = spectra.combine_chunks()
    if isinstance(spectra, pa.Array):
        lengths = pc.list_value_length(spectra).fill_null(0).to_numpy(zero_copy_only=False)
        flat = pc.list_flatten(spectra).to_numpy(zero_copy_only=False)
        return flat.astype(np.float64), lengths.astype(np.int64)
    seq = list(spectra)
    lengths = np.fromiter((len(a) for a in seq), dtype=np.int64, count=len(seq))
    chunk = [a for a in seq if len(a)]
    flat = np.concatenate(chunk).astype(np.float64, copy=False) if chunk else np.empty(0)
    if flat.ndim != 1:
        raise ValueError("each spectrum must be a 1-D array")
    return flat, lengths


def spectra_lengths(spectra: Any) -> np.ndarray:
    """The length of each spectrum of a sequence or list column (null = 0)."""
    return _flat_lengths(spectra)[1]


def pack_spectra(spectra: Any) -> np.ndarray:
    """Ragged spectra (a sequence of 1-D arrays, or a polars / Arrow list column) -> a 2-D
    float64 array right-padded with NaN, rows in input order, values unsorted."""
    flat, lengths = _flat_lengths(spectra)
    width = int(lengths.max(initial=0))
    if flat.size == len(lengths) * width:  # all of one length: no padding
        return flat.reshape(len(lengths), width)
    out = np.full((len(lengths), width), np.nan)
    out[np.arange(width) < lengths[:, None]] = flat
    return out


def sort_descending(S: np.ndarray) -> np.ndarray:
    """Each row of a padded 2-D array sorted descending, NaN padding last."""
    return -np.sort(-S, axis=1)


# --------------------------------------------------------------------------- effective rank


def effective_rank(s: Any, k: int | None = None, power: float = 1) -> np.floating | np.ndarray:
    """Effective rank N_eff = exp(H(p)) (Roy & Vetterli 2007), in ``[1, n]``.

    ``p_i = s_i**power / sum s**power`` over the top-``k`` values (``None``: all), H in nats;
    ``power=1`` on singular values (the paper), 2 on covariance eigenvalues. NaN for an empty,
    all-zero or non-finite spectrum.
    """
    k = _check_k(k)
    power = float(power)
    if not np.isfinite(power) or power <= 0:
        raise ValueError(f"power must be a finite number > 0, got {power!r}")

    def kernel(x: np.ndarray, n: np.ndarray) -> np.ndarray:
        mx = x[:, :1]
        q = (x / np.where(mx > 0, mx, 1.0)) ** power
        p = q / q.sum(axis=1, keepdims=True)
        h = -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=1)
        return np.where(mx[:, 0] > 0, np.exp(h), np.nan)

    return _map(s, kernel, k)


# --------------------------------------------------------------------------- spectral alpha


def spectral_alpha(
    s: Any,
    k: int | None = None,
    *,
    start: int = 0,
    stop: int | None = None,
    method: str = "lsq",
    min_tail: int = 5,
) -> np.floating | np.ndarray:
    """Spectral decay exponent alpha of the top-``k`` values (high = steep decay).

    Fitted on the strictly positive values of the 0-based rank window ``[start, stop)``; fewer
    than 2 gives NaN. ``lsq`` (the paper): minus the least-squares slope of log s_i on log i
    (exact for ``s_i = C i**-alpha``). ``mle``: continuous power-law MLE with a KS-selected
    xmin (Clauset, Shalizi & Newman 2009), returned as the rank-slope-equivalent
    ``1 / (b - 1)`` so that it estimates the same alpha; biased on short spectra (about
    0.88 alpha on an exact top-10) and a Python loop over spectra. A flat spectrum gives 0.
    """
    k = _check_k(k)
    start = _check_k(start, "start", allow_zero=True)
    stop = _check_k(stop, "stop")
    if stop is not None and stop <= start:
        raise ValueError(f"need stop > start, got start={start}, stop={stop}")
    if method not in ("lsq", "mle"):
        raise ValueError(f"method must be 'lsq' or 'mle', got {method!r}")
    min_tail = _check_k(min_tail, "min_tail")

    def window(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = x[:, start:stop]
        ranks = np.arange(start, start + w.shape[1], dtype=np.float64) + 1.0
        return w, ranks

    def lsq(x: np.ndarray, n: np.ndarray) -> np.ndarray:
        w, ranks = window(x)
        mask = w > 0
        m = mask.sum(axis=1)
        lx = np.log(ranks)[None, :]
        ly = np.log(np.where(mask, w, 1.0))
        mf = np.maximum(m, 1)
        dx = np.where(mask, lx - (mask * lx).sum(axis=1, keepdims=True) / mf[:, None], 0.0)
        dy = np.where(mask, ly - (mask * ly).sum(axis=1, keepdims=True) / mf[:, None], 0.0)
        slope = (dx * dy).sum(axis=1) / (dx * dx).sum(axis=1)
        return np.where(m >= 2, -slope, np.nan)

    def mle(x: np.ndarray, n: np.ndarray) -> np.ndarray:
        w, _ = window(x)
        out = np.full(w.shape[0], np.nan)
        for r in range(w.shape[0]):
            vals = w[r][w[r] > 0]
            if vals.size >= 2:
                out[r] = _alpha_mle_sorted(vals, min_tail)
        return out

    return _map(s, lsq if method == "lsq" else mle, k)


def _alpha_mle_sorted(x: np.ndarray, min_tail: int) -> float:
    """Rank-slope-equivalent power-law alpha of descending positive values ``x`` (len >= 2)."""
    m = x.size
    logx = np.log(x)
    cums = np.cumsum(logx)
    jmin = max(2, min(min_tail, m))
    tail = np.arange(jmin, m + 1)  # candidate tail sizes j: xmin = x[j-1]
    tail = tail[(tail == m) | (x[np.minimum(tail, m - 1)] < x[tail - 1])]  # ends of tie groups
    tail = tail[::-1]  # larger tails first, so argmin prefers them on ties
    lsum = np.maximum(cums[tail - 1] - tail * logx[tail - 1], 0.0)  # sum log(x / xmin), tail
    best_d, best_a = np.inf, np.nan
    pos = np.arange(m)
    lo = 0
    while lo < tail.size:  # blocks of candidates; columns only up to the largest tail
        width = int(tail[lo])
        hi = min(tail.size, lo + max(1, _BLOCK_ELEMENTS // width))
        j = tail[lo:hi]
        ls = lsum[lo:hi]
        lo = hi
        # fitted exponent b - 1 = (j - 1) / ls (Hill); 0 for a flat tail (degenerate fit, F = 0)
        bm1 = np.where(ls > 0, (j - 1) / np.where(ls > 0, ls, 1.0), 0.0)
        g = logx[None, :width] - logx[j - 1][:, None]
        g *= -bm1[:, None]
        np.expm1(g, out=g)  # g = minus the fitted CDF of the tail at x_i
        # KS: max(u - F, F - (u - 1/j)) with u = (j - i) / j the empirical CDF just after x_i
        #   = |u - 1/(2j) - F| + 1/(2j); positions i >= j are outside the tail
        inv = 1.0 / j
        g -= pos[None, :width] * inv[:, None]
        g += (1.0 - 0.5 * inv)[:, None]
        np.abs(g, out=g)
        g[pos[None, :width] >= j[:, None]] = 0.0
        d = g.max(axis=1) + 0.5 * inv
        i = int(np.argmin(d))
        if d[i] < best_d:
            best_d, best_a = float(d[i]), float(ls[i] / (j[i] - 1))
    return best_a


# --------------------------------------------------------------------------- Kirchhoff index


def kirchhoff_index(
    eigenvalues: Any, k: int | None = None, floor: float = 1e-10
) -> np.floating | np.ndarray:
    """Kirchhoff index ``Kf = n * sum 1 / lambda_i`` of the top-``k`` eigenvalues.

    The sum runs over ``lambda_i > floor * max(lambda)``; ``n`` counts every eigenvalue
    considered, zero and sub-floor ones included (a connected graph's Laplacian spectrum gives
    its Kirchhoff index). NaN when nothing is above the floor and for non-finite input.
    """
    k = _check_k(k)
    floor = float(floor)
    if not np.isfinite(floor) or not 0 <= floor < 1:
        raise ValueError(f"floor must be in [0, 1), got {floor!r}")

    def kernel(x: np.ndarray, n: np.ndarray) -> np.ndarray:
        mx = x[:, :1]
        keep = (x > floor * mx) & (mx > 0)
        inv = np.where(keep, 1.0 / np.where(keep, x, 1.0), 0.0).sum(axis=1)
        return np.where(keep.any(axis=1), n * inv, np.nan)

    return _map(eigenvalues, kernel, k)


def covariance_eigenvalues(s: Any, T: Any) -> Any:
    """Eigenvalues ``s**2 / (T - 1)`` of the second-moment matrix ``X^T X / (T - 1)`` of a
    ``T x d`` matrix X with singular values s (the sample covariance only when X is centred,
    decode.center; uncentred by default); ``T < 2`` gives NaN. Elementwise, keeping the
    input's structure (``T`` a scalar or one value per spectrum).
    """

    def scale(t: Any) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        with np.errstate(all="ignore"):
            return np.where(t >= 2, 1.0 / (t - 1.0), np.nan)

    if isinstance(s, np.ndarray) and s.dtype != object:
        a = np.asarray(s, dtype=np.float64)
        c = scale(T)
        if a.ndim == 2 and c.ndim == 1:
            c = c[:, None]
        with np.errstate(all="ignore"):
            return a * a * c
    seq = list(s)
    if seq and np.ndim(seq[0]) == 0:  # a flat list of numbers: one spectrum
        return covariance_eigenvalues(np.asarray(seq, dtype=np.float64), T)
    c = np.broadcast_to(scale(T), (len(seq),))
    with np.errstate(all="ignore"):
        return [np.asarray(a, dtype=np.float64) ** 2 * ci for a, ci in zip(seq, c, strict=True)]


# --------------------------------------------------------------------------- tail energy


def tail_energy(s: Any, k: int) -> np.floating | np.ndarray:
    """Share of the energy beyond rank ``k``: ``sum_{i>k} s_i**2 / sum_i s_i**2``, in [0, 1].

    NaN for an empty, all-zero or non-finite spectrum.
    """
    k = _check_k(k, allow_zero=True)
    if k is None:
        raise ValueError("tail_energy needs an int k >= 0")

    def kernel(x: np.ndarray, n: np.ndarray) -> np.ndarray:
        mx = x[:, :1]
        e = (x / np.where(mx > 0, mx, 1.0)) ** 2
        total = e.sum(axis=1)
        return np.where(mx[:, 0] > 0, e[:, k:].sum(axis=1) / total, np.nan)

    return _map(s, kernel, None)


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class ObservableOptions:
    """How the observables are computed (config ``metrics.*``; defaults follow the paper).

    k: each observable is computed on the top-K singular values, for each K.
    neff_power: N_eff on s**power (1 = singular values, the paper's definition).
    alpha_start, alpha_stop: the 0-based rank window of the alpha fit inside the top K;
        the default 1 fits the tail (ranks 2..K, sigma_1 left out, as the paper's "tail"
        fit); 0 = every rank (the earlier default).
    alpha_method: lsq (the paper) or mle.
    rank_tol: singular values <= rank_tol * s_1 are numerical zeros (round-off of float32
        activations, of centering) and count as 0 for every observable.
    kf_floor: relative eigenvalue floor of the Kirchhoff index.
    kf_pad_to_k: pad the top-K eigenvalues with zeros to K, so n = K in Kf for every
        spectrum; False: n = min(K, stored values).
    """

    k: tuple[int, ...] = (10, 50)
    neff_power: float = 1.0
    alpha_start: int = 1
    alpha_stop: int | None = None
    alpha_method: str = "lsq"
    rank_tol: float = 1e-6
    kf_floor: float = 1e-10
    kf_pad_to_k: bool = True

    def __post_init__(self) -> None:
        ks = tuple(int(x) for x in self.k)
        object.__setattr__(self, "k", ks)
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

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None):
        """From a config mapping; unknown keys are errors, missing ones take the default."""
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
