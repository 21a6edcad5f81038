"""Spectral observables of activation matrices: effective rank, spectral alpha, Kirchhoff index.

Everything here is pure numpy and vectorised over many spectra at once.

Input conventions (shared by every function taking a spectrum ``s``)
--------------------------------------------------------------------
* a 1-D array-like of numbers: **one** spectrum -> the function returns a ``numpy.float64``;
* a list / tuple / 1-D object array of 1-D arrays, of possibly differing lengths (ragged):
  **many** spectra -> a 1-D float64 array, one value per spectrum, in input order;
* a 2-D float array: **many** spectra, one per row, right-padded with NaN to a common width
  (see :func:`pack_spectra`) -> a 1-D float64 array, one value per row.

An empty list or tuple means *zero spectra* (returns an empty array); an empty 1-D array means
*one empty spectrum* (returns NaN).

Values are singular values (or eigenvalues) and are assumed non-negative; each spectrum is
sorted in descending order internally, so the caller's order does not matter. Negative values
(e.g. round-off in eigenvalues of a PSD matrix, ``-1e-17``) are clipped to 0. "Top-k" always
means the k largest values; ``k=None`` means all of them.

Undefined results are NaN, never a warning or an exception:

* a spectrum containing NaN or +-inf gives NaN. In a 2-D padded array a *trailing* run of NaN
  is padding, not data (so the row ``[3, 2, nan]`` is the spectrum ``[3, 2]``, while the list
  element ``np.array([3, 2, nan])`` gives NaN); a NaN followed by a finite value in the same
  row is data and gives NaN;
* empty and all-zero spectra give NaN for every observable (see each function for the details).

Internally, ragged input is packed block by block into zero-padded 2-D arrays of at most
about 2**20 elements, so 10^6 spectra of length 500 are processed with bounded memory and
without a Python loop over spectra (except ``spectral_alpha(..., method="mle")``).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

__all__ = [
    "covariance_eigenvalues",
    "effective_rank",
    "kirchhoff_index",
    "pack_spectra",
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
        """Yield ``(first_row, X, n, bad)``.

        ``X`` is a (rows, width) float64 block, each row sorted descending, truncated to the
        top ``k`` columns, zero beyond the row's own length; ``n`` is each row's length
        (capped at k); ``bad`` flags rows that contained NaN/inf.
        """
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


def pack_spectra(spectra: Sequence[Any]) -> np.ndarray:
    """Pack a sequence of 1-D spectra of differing lengths into a 2-D NaN-padded float64 array.

    Row ``i`` holds ``spectra[i]`` (order unchanged) followed by NaN. Packing once and passing
    the array to several functions avoids re-packing a ragged list on every call. Note that a
    trailing NaN *value* becomes indistinguishable from padding once packed.
    """
    seq = list(spectra)
    lengths = np.fromiter((len(a) for a in seq), dtype=np.int64, count=len(seq))
    out = np.full((len(seq), int(lengths.max(initial=0))), np.nan)
    chunk = [a for a in seq if len(a)]
    if chunk:
        flat = np.concatenate(chunk).astype(np.float64, copy=False)
        if flat.ndim != 1:
            raise ValueError("each spectrum must be a 1-D array")
        out[np.arange(out.shape[1]) < lengths[:, None]] = flat
    return out


# --------------------------------------------------------------------------- effective rank


def effective_rank(s: Any, k: int | None = None, power: float = 1) -> np.floating | np.ndarray:
    """Effective rank N_eff = exp(H(p)), Roy & Vetterli (2007).

    ``p_i = s_i**power / sum_j s_j**power`` over the top-``k`` values (``k=None``: all), and
    ``H(p) = -sum_i p_i log p_i`` is the Shannon entropy in nats (0 log 0 = 0, so zeros add
    nothing). ``power=1`` is the paper's definition on singular values; ``power=2`` is the same
    on covariance eigenvalues (s**2). The result is dimensionless, in ``[1, n]`` with ``n`` the
    number of values considered: ``n`` for a flat spectrum, 1 for a single non-zero value.
    Scale-invariant (each spectrum is divided by its maximum first, so no overflow).

    Returns NaN for an empty or all-zero spectrum (p undefined) and for non-finite input;
    a length-1 non-zero spectrum gives 1.
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
    """Spectral decay exponent alpha (high alpha = "hardened", steeply decaying spectrum).

    Each spectrum is sorted descending, truncated to its top ``k`` values, and the rank window
    ``[start, stop)`` of 0-based positions is taken (``start=0, stop=None``: the whole top-k
    spectrum, the default; ``start=1`` skips the dominant value, i.e. fits from rank 2). Only
    strictly positive values inside the window are used; with fewer than 2 of them the result
    is NaN (so empty, length-1, all-zero and non-finite spectra give NaN).

    ``method="lsq"`` (the paper's definition, vectorised): ``alpha = -slope`` of the ordinary
    least-squares line of ``log s_i`` against ``log i``, ``i`` the 1-based rank. Exact for
    ``s_i = C * i**(-alpha)``. A flat spectrum gives 0.

    ``method="mle"``: continuous power-law maximum likelihood with a KS-selected ``xmin``
    (Clauset, Shalizi & Newman 2009; as in WeightWatcher / the ``powerlaw`` package), fitted to
    the window's values themselves (the singular values if you pass singular values). For every
    candidate ``xmin`` (each distinct value leaving at least ``min(min_tail, m)`` values
    ``>= xmin``, ``m`` the usable count) the density exponent is ``b = 1 + (n_tail - 1) / sum
    log(x / xmin)`` (Hill / Clauset's estimator with the (n-1)/n correction, unbiased because
    ``xmin`` is itself a data point) and the KS distance between the empirical and fitted CDF
    of the tail is computed; the ``xmin`` with the smallest distance wins (ties: the larger
    tail). If ``s_i ∝ i**(-a)`` the values have density ``p(s) ∝ s**-(1 + 1/a)``, so the
    function returns the **rank-slope-equivalent** ``a = 1 / (b - 1) = sum log(x / xmin) /
    (n_tail - 1)``, which estimates the same quantity as ``lsq``. (WeightWatcher's alpha is
    ``b`` fitted to eigenvalues ``s**2``; it relates by ``b_ww = 1 + 1 / (2 a)``.) The MLE is
    biased on short spectra such as a top-10 (it is an order-statistics estimator; on an exact
    ``i**-a`` top-10 it gives about 0.88 a) and loops over spectra in Python (about 2 ms for
    m = 500, 0.1 s for m = 5000); use it on long spectra. A flat tail gives 0.
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
    """Kirchhoff index ``Kf = n * sum_i 1 / lambda_i`` of an eigenvalue spectrum.

    Eigenvalues are sorted descending and truncated to the top ``k`` (``k=None``: all). The sum
    runs over the eigenvalues above a **relative** floor, ``lambda_i > floor * max(lambda)``
    (``floor=0``: all strictly positive ones); ``n`` is the number of eigenvalues considered,
    i.e. the spectrum's full length, or ``min(k, length)`` with top-k, **including** the zero
    and sub-floor eigenvalues. Fed the full spectrum of a connected graph's Laplacian (one zero
    eigenvalue) this is the graph's Kirchhoff index / effective graph resistance. For the
    paper's use, pass covariance eigenvalues (:func:`covariance_eigenvalues`); Kf then has units
    of 1 / (activation units)**2 and is dominated by the smallest retained eigenvalues. Since
    Kf(c * lambda) = Kf(lambda) / c, ``Kf(s**2 / (T - 1)) = (T - 1) * Kf(s**2)``.

    Returns NaN for an empty spectrum, when no eigenvalue is above the floor (all zero), and for
    non-finite input. (A one-node graph, spectrum ``[0]``, therefore gives NaN, not 0.)
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
    """Eigenvalues of the sample covariance from the singular values of the activation matrix.

    For a (centered) ``T x d`` activation matrix with singular values ``s``, the covariance
    ``X^T X / (T - 1)`` has eigenvalues ``s**2 / (T - 1)`` (plus zeros up to ``d``). ``T`` is the
    number of rows (tokens or utterances); ``T < 2`` (or NaN) gives all-NaN eigenvalues.
    Elementwise: the output keeps the input's order and structure (1-D array -> 1-D array;
    2-D padded array -> 2-D array, ``T`` a scalar or one value per row; sequence of arrays ->
    list of arrays, ``T`` a scalar or one value per spectrum). Negative inputs are not clipped
    here (squaring makes them positive).
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
    """Fraction of the spectral energy beyond rank ``k``: ``sum_{i>k} s_i**2 / sum_i s_i**2``.

    ``s`` are singular values (energy = s**2 = variance captured by each direction), sorted
    descending internally; ``k >= 0`` is the number of leading values excluded (``k=0`` gives 1).
    Dimensionless, in ``[0, 1]``; 0 when the spectrum has at most ``k`` values. NaN for an empty
    or all-zero spectrum and for non-finite input.
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
