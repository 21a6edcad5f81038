"""Out-of-fold scores of the detector and of Whisper's heuristics, on shared speaker folds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from whisper_spi import schemas
from whisper_spi.analysis.spectra import pack_spectra
from whisper_spi.detect.features import HEURISTICS, row_mean_names, spectral_feature_names
from whisper_spi.detect.model import clean, fit_linear, speaker_folds
from whisper_spi.io import derive_seed
from whisper_spi.registry import CLEAN

__all__ = ["BASELINES", "METHODS", "REFERENCES", "SETTINGS", "cross_validate"]

SETTINGS = ("all", "stressed")
# Sign that makes each heuristic "higher = more suspicious" when used directly as a score.
DIRECT_SIGN = {"avg_logprob": -1.0, "compression_ratio": 1.0, "no_speech_prob": 1.0, "n_rows": 1.0}


@dataclass(frozen=True)
class Method:
    kind: str  # "lr" (logistic regression trained in fold) or "direct" (a column as score)
    # "@spectral" expands to the spectral feature columns, "@row_means" to the row-mean lists
    columns: tuple[str, ...]
    baseline: bool  # a heuristic baseline (the "best baseline" is one of them)
    doc: str
    # a competing detector every ours-family method is compared against (not a heuristic)
    reference: bool = False
    C: float | str | None = None  # None: cross_validate's C; "cv": always the inner search


METHODS: dict[str, Method] = {
    "ours": Method("lr", ("@spectral", "n_rows"), False, "LR on the spectral features and T"),
    "ours_no_T": Method("lr", ("@spectral",), False, "LR on the spectral features only"),
    "ours+heuristics": Method(
        "lr", ("@spectral", "n_rows", *HEURISTICS), False, "LR on spectra, T and the heuristics"
    ),
    "avg_logprob": Method("direct", ("avg_logprob",), True, "-avg_logprob as the score"),
    "compression_ratio": Method("direct", ("compression_ratio",), True, "compression_ratio"),
    "no_speech_prob": Method("direct", ("no_speech_prob",), True, "no_speech_prob"),
    "avg_logprob_lr": Method("lr", ("avg_logprob",), True, "1-feature LR (may flip sign)"),
    "compression_ratio_lr": Method("lr", ("compression_ratio",), True, "1-feature LR"),
    "no_speech_prob_lr": Method("lr", ("no_speech_prob",), True, "1-feature LR"),
    "heuristics_lr": Method("lr", HEURISTICS, True, "LR on the three heuristics"),
    "length": Method("direct", ("n_rows",), True, "T (decoded rows) as the score"),
    # The strongest published kind of detector: a linear probe on the decoder states.
    "probe": Method(
        "lr",
        ("@row_means",),
        False,
        "decoder-state probe: L2 LR on every layer's and component's row means",
        reference=True,
        C="cv",
    ),
}
# The heuristic baselines the "best baseline" is chosen from (length is reported beside).
BASELINES = tuple(n for n, m in METHODS.items() if m.baseline and n != "length")
# The competing detectors (not heuristics) ours is compared against as well.
REFERENCES = tuple(n for n, m in METHODS.items() if m.reference)
_EXPAND = {"@spectral": spectral_feature_names, "@row_means": row_mean_names}


def method_columns(method: Method, df: pl.DataFrame) -> list[str]:
    cols: list[str] = []
    for c in method.columns:
        cols.extend(_EXPAND[c](df) if c in _EXPAND else [c])
    return cols


def matrix(df: pl.DataFrame, cols: Sequence[str]) -> np.ndarray:
    """The float64 design matrix of ``cols``; a list or array column (a row mean) contributes
    one column per element, NaN where the list is null or short (imputed in the fit)."""
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise KeyError(
            f"missing feature column(s): {missing[:5]}{'...' if len(missing) > 5 else ''}"
        )
    if not cols:
        return np.zeros((df.height, 0))
    nested = [c for c in cols if isinstance(df.schema[c], (pl.List, pl.Array))]
    if not nested:
        return df.select([pl.col(c).cast(pl.Float64) for c in cols]).to_numpy().astype(np.float64)
    blocks = [
        pack_spectra(df[c].cast(pl.List(pl.Float64)))
        if c in nested
        else df[c].cast(pl.Float64).to_numpy().astype(np.float64)[:, None]
        for c in cols
    ]
    return np.concatenate(blocks, axis=1)


def subset(df: pl.DataFrame, setting: str) -> pl.DataFrame:
    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {SETTINGS}, got {setting!r}")
    df = df.filter(pl.col("hallucination").is_not_null())
    return df if setting == "all" else df.filter(pl.col("condition") != CLEAN)


def cross_validate(
    df: pl.DataFrame,
    *,
    settings: Sequence[str] = SETTINGS,
    seed: int = 0,
    C: float | str = 1.0,
    n_splits: int = 5,
    methods: Sequence[str] | None = None,
) -> pl.DataFrame:
    """Out-of-fold scores of every method, per model and setting, on shared speaker folds.

    Returns a long frame: model, setting, condition, utt_id, speaker, hallucination, fold,
    method, score (higher = more likely a hallucination; LR scores are log-odds). Folds come
    from :func:`speaker_folds` seeded by ``derive_seed(seed, "detect", model)``; every LR is
    fitted on the training folds only (imputation medians and standardisation too). ``C``: the
    inverse L2 strength (default 1.0, scikit-learn's) or "cv" for an inner speaker-grouped
    search over CS_GRID; a method with its own ``C`` (the probe: "cv", so that its thousands
    of features get the regularisation the data call for) uses that. Direct scores fill a
    missing value with the column's median over the evaluated rows (label-free, so no
    leakage). Rows with a null label are dropped.
    """
    names = list(methods) if methods is not None else list(METHODS)
    unknown = sorted(set(names) - set(METHODS))
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; known: {list(METHODS)}")
    out = []
    for model in sorted(df["model"].unique().to_list()):
        fold_seed = derive_seed(seed, "detect", model)
        for setting in settings:
            sub = subset(df.filter(pl.col("model") == model), setting)
            if sub.height == 0:
                continue
            y = sub["hallucination"].cast(pl.Int8).to_numpy()
            groups = sub["speaker"].cast(pl.String).to_numpy()
            fold = speaker_folds(groups, y, n_splits, fold_seed)
            meta = sub.select("condition", "utt_id", "speaker", "hallucination")
            for name in names:
                m = METHODS[name]
                X = matrix(sub, method_columns(m, sub))
                if X.shape[1] == 0:
                    raise ValueError(f"method {name!r}: no feature column in the frame")
                s = np.empty(sub.height)
                if m.kind == "direct":
                    v = clean(X[:, 0]) * DIRECT_SIGN[m.columns[0]]
                    fill = np.nanmedian(v) if np.isfinite(v).any() else 0.0
                    s[:] = np.where(np.isnan(v), fill, v)
                else:
                    for f in np.unique(fold):
                        te = fold == f
                        c = C if m.C is None else m.C
                        model_f = fit_linear(X[~te], y[~te], c, groups[~te])
                        s[te] = model_f.decision(X[te])
                out.append(
                    meta.with_columns(
                        pl.lit(model).alias("model"),
                        pl.lit(setting).alias("setting"),
                        pl.Series("fold", fold, dtype=pl.Int32),
                        pl.lit(name).alias("method"),
                        pl.Series("score", s, dtype=pl.Float64),
                    )
                )
    if not out:
        raise ValueError("cross_validate: no labelled utterance to evaluate")
    cols = schemas.contract("detect_oof").names
    return pl.concat([o.select(cols) for o in out])
