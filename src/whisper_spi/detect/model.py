"""Speaker-grouped folds and the linear model: median imputation, standardisation, logistic
regression (scikit-learn, imported when first used)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["CS_GRID", "Linear", "fit_linear", "speaker_folds"]


def speaker_folds(
    speakers: Sequence[Any], labels: Sequence[Any], n_splits: int = 5, seed: int = 0
) -> np.ndarray:
    """Fold index of every row; every speaker's rows are in one fold only.

    StratifiedGroupKFold (groups = speaker, label-stratified as far as the groups allow; plain
    GroupKFold when no class has as many rows as folds) with ``min(n_splits, n_speakers)``
    folds; fewer than 2 speakers is an error (no held-out speaker is possible). Some fold ids
    may be unused if the splitter leaves a fold empty.
    """
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    groups = np.asarray([str(s) for s in speakers])
    y = np.asarray(labels).astype(int)
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise ValueError(f"speaker-grouped cross-validation needs >= 2 speakers, got {n_groups}")
    n = min(int(n_splits), n_groups)
    rs = int(seed) % 2**32
    if np.bincount(y).max(initial=0) >= n:
        splitter = StratifiedGroupKFold(n_splits=n, shuffle=True, random_state=rs)
    else:  # every class smaller than the fold count: sklearn refuses to stratify
        splitter = GroupKFold(n_splits=n, shuffle=True, random_state=rs)
    fold = np.full(len(y), -1, dtype=np.int64)
    with warnings.catch_warnings():
        # "least populated class has fewer members than n_splits": folds are still valid.
        warnings.simplefilter("ignore", UserWarning)
        for i, (_, test) in enumerate(splitter.split(np.zeros(len(y)), y, groups)):
            fold[test] = i
    assert (fold >= 0).all()
    return fold


@dataclass
class Linear:
    """Median imputation, standardisation, then a linear score (the logistic log-odds)."""

    impute: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    C: float

    def decision(self, X: np.ndarray) -> np.ndarray:
        Z = (impute(X, self.impute) - self.mean) / self.scale
        return Z @ self.coef + self.intercept


def clean(X: np.ndarray) -> np.ndarray:
    X = np.array(X, dtype=np.float64)
    X[~np.isfinite(X)] = np.nan
    return X


def impute(X: np.ndarray, med: np.ndarray) -> np.ndarray:
    X = clean(X)
    return np.where(np.isnan(X), med[None, :], X)


CS_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


def column_medians(X: np.ndarray) -> np.ndarray:
    """``np.nanmedian(X, axis=0)`` (all-NaN column: NaN), the same values, with one sort of
    every column instead of a Python-level call per column (thousands for the probe)."""
    X = clean(X)
    if X.shape[0] == 0:
        return np.full(X.shape[1], np.nan)
    S = np.sort(X, axis=0)  # NaN sorts last
    k = (~np.isnan(X)).sum(axis=0)
    cols = np.arange(X.shape[1])
    lo, hi = S[np.maximum(k - 1, 0) // 2, cols], S[np.minimum(k // 2, X.shape[0] - 1), cols]
    with np.errstate(invalid="ignore"):
        med = (lo + hi) / 2.0
    return np.where(k > 0, med, np.nan)


def _standardise(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(training medians, means, scales, the imputed and standardised training matrix)."""
    X = clean(X)
    med = column_medians(X) if X.shape[0] else np.zeros(X.shape[1])
    med = np.where(np.isfinite(med), med, 0.0)
    Xi = impute(X, med)
    mean = Xi.mean(axis=0)
    scale = Xi.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)  # constant column: leave it at 0 after centring
    Xi -= mean
    Xi /= scale
    return med, mean, scale, Xi


def _fit_standardised(prep: tuple, y: np.ndarray, C: float) -> Linear:
    from sklearn.linear_model import LogisticRegression

    med, mean, scale, Z = prep
    y = np.asarray(y).astype(int)
    if len(np.unique(y)) < 2:  # one class only: no direction to learn, constant score
        return Linear(med, mean, scale, np.zeros(Z.shape[1]), 0.0, C)
    lr = LogisticRegression(C=C, max_iter=2000)
    lr.fit(Z, y)
    return Linear(med, mean, scale, lr.coef_[0].copy(), float(lr.intercept_[0]), C)


def fit_linear(
    X: np.ndarray, y: np.ndarray, C: float | str, groups: np.ndarray | None = None
) -> Linear:
    """Median imputation, standardisation and an L2 logistic regression of strength ``C``
    (or "cv": :func:`choose_C` on ``groups``), all from the rows given."""
    if C == "cv":
        C = choose_C(X, y, groups)
    return _fit_standardised(_standardise(X), y, float(C))


def choose_C(X: np.ndarray, y: np.ndarray, groups: np.ndarray | None) -> float:
    """Inner speaker-grouped CV over CS_GRID by mean AUROC (ties: the smaller C); each inner
    split is imputed and standardised once, for every C."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold

    y = np.asarray(y).astype(int)
    if groups is None or len(np.unique(groups)) < 2 or len(np.unique(y)) < 2:
        return 1.0
    splitter = GroupKFold(n_splits=min(3, len(np.unique(groups))))
    aucs: dict[float, list[float]] = {C: [] for C in CS_GRID}
    for tr, te in splitter.split(X, y, groups):
        if len(np.unique(y[te])) < 2:
            continue
        prep = _standardise(X[tr])
        for C in CS_GRID:
            m = _fit_standardised(prep, y[tr], C)
            aucs[C].append(roc_auc_score(y[te], m.decision(X[te])))
    best, best_C = -np.inf, 1.0
    for C in CS_GRID:
        if aucs[C] and np.mean(aucs[C]) > best + 1e-12:
            best, best_C = float(np.mean(aucs[C])), C
    return best_C
