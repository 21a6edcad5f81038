"""Spectra of resampled N x d matrices through their Gram matrices (the pooled scope's algebra).

A bootstrap replicate of the rows of X, given as counts w (one per row), has the Gram matrix
``sum_i w_i x_i x_i^T``: only the rows drawn enter, and repeated rows add exact zeros.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import scipy.linalg

__all__ = ["gram_eigenvalues", "pooled_spectrum", "replicate_spectra"]


def center(X: np.ndarray) -> np.ndarray:
    return X - X.mean(axis=0, keepdims=True)


def gram_eigenvalues(X: np.ndarray, W: np.ndarray, centered: bool, cache: dict) -> np.ndarray:
    """Eigenvalues (descending, >= 0, zero-padded to min(N, d)) of the Gram matrix of each
    replicate of X's rows, one row of counts W (b x N) per replicate.

    With Z = sqrt(w) X[w > 0] the Gram is Z^T Z (d x d), whose non-zero eigenvalues are those
    of Z Z^T (n' x n', taken from X X^T, cached in ``cache``); the smaller one is decomposed.
    Centering subtracts m mu mu^T (m = sum w, mu = X^T w / m), i.e. projects Z Z^T off
    u = sqrt(w / m), a unit vector (m = N for a bootstrap, m < N for a subsample).
    """
    N, d = X.shape
    out = np.zeros((len(W), min(N, d)))
    for i, w in enumerate(W):
        s = np.flatnonzero(w)
        sw = np.sqrt(w[s].astype(np.float64))
        m = float(w.sum())
        if m == 0:
            continue
        if len(s) < d:
            if "G" not in cache:
                cache["G"] = X @ X.T
            M = cache["G"][np.ix_(s, s)] * sw[:, None] * sw[None, :]
            if centered:
                u = sw / math.sqrt(m)
                Mu = M @ u
                M += (u @ Mu) * np.outer(u, u) - np.outer(Mu, u) - np.outer(u, Mu)
        else:
            Z = X[s] * sw[:, None]
            M = Z.T @ Z  # numpy calls BLAS syrk for this product
            if centered:
                mu = Z.T @ sw
                M -= np.outer(mu, mu) / m
        ev = np.linalg.eigvalsh(M)[::-1]
        out[i, : len(ev)] = ev
    return np.clip(out, 0.0, None)


def replicate_spectra(
    X: np.ndarray,
    blocks: Iterable[np.ndarray],
    centered: bool,
    rank: int = 0,
    Vt: np.ndarray | None = None,
    cache: dict | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Singular values (descending) of every replicate of X's rows: ``(S, total)``.

    ``blocks``: count matrices (:func:`~whisper_spi.analysis.bootstrap.count_blocks`).
    Exact for ``rank = 0``; for ``0 < rank < min(N, d)``, Rayleigh-Ritz on Y = X V_r with V_r
    the top-``rank`` right singular vectors of X (``Vt``, or computed): only ``rank`` values
    per replicate, and ``total`` holds each replicate's exact total energy sum s**2 (else
    None). ``cache`` keeps X X^T between calls on the same X.
    """
    N, d = X.shape
    out, totals = [], []
    project = 0 < rank < min(N, d)
    cache = {} if cache is None else cache
    if project:
        if Vt is None:
            _, _, Vt = np.linalg.svd(center(X) if centered else X, full_matrices=False)
        Y = X @ Vt[:rank].T
        rowsq = np.einsum("ij,ij->i", X, X)
        ycache: dict = {}  # Y's own Gram, not X's
        for W in blocks:
            Wf = W.astype(np.float64)
            out.append(gram_eigenvalues(Y, W, centered, ycache))
            tot = Wf @ rowsq
            if centered:
                mu = Wf @ X
                with np.errstate(all="ignore"):
                    tot = tot - np.einsum("ij,ij->i", mu, mu) / Wf.sum(axis=1)
            totals.append(tot)
    else:
        for W in blocks:
            out.append(gram_eigenvalues(X, W, centered, cache))
    S = np.sqrt(np.concatenate(out, axis=0))
    return S, (np.concatenate(totals) if project else None)


def pooled_spectrum(
    X: np.ndarray, centered: bool, rank: int, cache: dict
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Singular values (1 x w, descending) of X, and for ``0 < rank < min(N, d)`` its
    top-``rank`` right singular vectors and total energy (else None, None).

    Computed as the replicates are (every count 1), so a replicate drawing each row once
    reproduces the point estimate. Values below ~1e-8 s_1 are Gram round-off, zeroed by
    ``rank_tol``.
    """
    N, d = X.shape
    if not 0 < rank < min(N, d):
        ev = gram_eigenvalues(X, np.ones((1, N), dtype=np.int64), centered, cache)
        return np.sqrt(ev), None, None
    Xp = center(X) if centered else X
    total = np.array([np.einsum("ij,ij->", Xp, Xp)])
    if d <= N:  # only the top-rank eigenpairs: the eigenvalues beyond are not needed
        C = Xp.T @ Xp
        ev, V = scipy.linalg.eigh(C, subset_by_index=[d - rank, d - 1], driver="evr")
        return np.sqrt(np.clip(ev[::-1], 0.0, None))[None, :], V[:, ::-1].T, total
    _, s, Vt = np.linalg.svd(Xp, full_matrices=False)
    return s[None, :rank], Vt[:rank], total
