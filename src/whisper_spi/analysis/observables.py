"""The one kernel of the project: :func:`observables` computes every registry observable
(:data:`whisper_spi.registry.OBSERVABLES`) of many spectra at each K, each through its entry
in :data:`KERNELS`; layer_metrics, the pooled scope and the detector all call it.

A new observable is an entry here (a function of :class:`AtK`) and one in the registry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from whisper_spi.analysis.spectra import (
    ObservableOptions,
    covariance_eigenvalues,
    effective_rank,
    kirchhoff_index,
    spectral_alpha,
    tail_energy,
)
from whisper_spi.registry import OBSERVABLES

__all__ = ["KERNELS", "AtK", "observables"]


@dataclass(frozen=True)
class AtK:
    """What a kernel sees: the spectra of one :func:`observables` call, at one K."""

    S: np.ndarray  # singular values per row, descending, NaN-padded, rank_tol zeros applied
    given: np.ndarray  # S as given (the leading values of each spectrum when total is set)
    n_rows: np.ndarray  # each matrix's row count T
    total: np.ndarray | None  # each spectrum's energy sum s**2, when S holds only its lead
    K: int
    options: ObservableOptions

    @property
    def top(self) -> np.ndarray:
        return self.S[:, : self.K]


def _neff(x: AtK) -> np.ndarray:
    return effective_rank(x.top, power=x.options.neff_power)


def _log10_kf(x: AtK) -> np.ndarray:
    top, K = x.top, x.K
    eig = covariance_eigenvalues(top, x.n_rows)
    if x.options.kf_pad_to_k:
        eig = np.where(np.isnan(top), 0.0, eig)
        if eig.shape[1] < K:
            eig = np.pad(eig, ((0, 0), (0, K - eig.shape[1])))
    kf = kirchhoff_index(eig, floor=x.options.kf_floor)
    with np.errstate(all="ignore"):
        return np.log10(kf)


def _alpha(x: AtK) -> np.ndarray:
    o = x.options
    return spectral_alpha(x.top, start=o.alpha_start, stop=o.alpha_stop, method=o.alpha_method)


def _tail_energy(x: AtK) -> np.ndarray:
    if x.total is None:
        return tail_energy(x.S, x.K)
    e = np.nan_to_num(x.given, nan=0.0) ** 2
    with np.errstate(all="ignore"):
        tail = np.clip(x.total - e[:, : x.K].sum(axis=1), 0.0, None) / x.total
        return np.where(x.total > 0, tail, np.nan)


# registry name -> its kernel (tests/test_registry.py checks one per name)
KERNELS: Mapping[str, Callable[[AtK], np.ndarray]] = MappingProxyType(
    {"neff": _neff, "log10_kf": _log10_kf, "alpha": _alpha, "tail_energy": _tail_energy}
)


def observables(
    S: np.ndarray,
    n_rows: np.ndarray,
    options: ObservableOptions,
    total: np.ndarray | None = None,
) -> dict[int, dict[str, np.ndarray]]:
    """Every observable of many spectra at each K: ``{K: {name: values}}``, names in
    :data:`OBSERVABLES` order.

    ``S``: singular values, a spectrum per row, sorted descending, NaN-padded; ``n_rows``: each
    matrix's row count T (Kf uses s**2 / (T - 1)); ``total``: each spectrum's energy sum s**2
    when ``S`` holds only its leading values (the tail energy then comes from it).
    """
    n_rows = np.asarray(n_rows, dtype=np.float64)
    given = S
    if options.rank_tol > 0 and S.shape[1]:
        with np.errstate(invalid="ignore"):
            S = np.where(options.rank_tol * S[:, :1] >= S, 0.0, S)  # NaN padding stays NaN
    out: dict[int, dict[str, np.ndarray]] = {}
    for K in options.k:
        at = AtK(S, given, n_rows, total, K, options)
        out[K] = {name: np.asarray(KERNELS[name](at), dtype=np.float64) for name in OBSERVABLES}
    return out
