"""The fitted detector as plain JSON (no pickle), applied with numpy only."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from whisper_spi.analysis.spectra import ObservableOptions
from whisper_spi.detect.crossval import METHODS, matrix, method_columns, subset
from whisper_spi.detect.model import Linear, fit_linear
from whisper_spi.io import atomic_path
from whisper_spi.text import HALLUCINATION_WER

__all__ = ["feature_kwargs", "fit_detector", "load_detector", "probability", "save_detector",
           "score"]  # fmt: skip

FORMAT = "whisper-spi-detector"
FORMAT_VERSION = 2  # 2: feature_options holds every observable option, k included


def _youden_threshold(scores: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import roc_curve

    fpr, tpr, thr = roc_curve(y, scores)
    i = int(np.argmax(tpr - fpr))
    return float(thr[i]) if np.isfinite(thr[i]) else 0.0


def fit_detector(
    df: pl.DataFrame,
    *,
    model: str | None = None,
    setting: str = "all",
    method: str = "ours",
    C: float | str = 1.0,
    options: ObservableOptions | None = None,
    threshold: float = HALLUCINATION_WER,
    oof: pl.DataFrame | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """The final detector, fitted on every labelled utterance of ``df`` (one model), as JSON.

    Keys: format, version, model, setting, method, feature_names, impute (training medians,
    used for missing / non-finite values), mean, scale, coef, intercept (score = log-odds =
    ((x - mean) / scale) . coef + intercept), threshold (on the log-odds: Youden's J on the
    out-of-fold scores of ``method`` when ``oof`` is given, else 0 = probability 0.5),
    threshold_rule, feature_options, label_wer_threshold, training (n, n_pos, n_speakers,
    conditions, C, seed, sklearn version). ``options`` must be those the features were
    computed with (recorded for :func:`feature_kwargs`).
    """
    import sklearn

    m = METHODS[method]
    if m.kind != "lr":
        raise ValueError(f"method {method!r} is not a fitted model")
    if "@row_means" in m.columns:  # its thousands of features are not a per-name JSON model
        raise ValueError(f"method {method!r} is evaluated out of fold, not saved as a detector")
    if model is None:
        models = df["model"].unique().to_list()
        if len(models) != 1:
            raise ValueError(f"fit_detector: pass model=, the frame has models {models}")
        model = models[0]
    sub = subset(df.filter(pl.col("model") == model), setting)
    if sub.height == 0:
        raise ValueError(f"fit_detector: no labelled utterance of model {model!r}")
    names = method_columns(m, sub)
    y = sub["hallucination"].cast(pl.Int8).to_numpy()
    groups = sub["speaker"].cast(pl.String).to_numpy()
    lin = fit_linear(matrix(sub, names), y, C, groups)
    rule = "0 (probability 0.5)"
    thr = 0.0
    if oof is not None:
        o = oof.filter(
            (pl.col("model") == model) & (pl.col("setting") == setting)
            & (pl.col("method") == method)
        )  # fmt: skip
        yo = o["hallucination"].cast(pl.Int8).to_numpy()
        if len(np.unique(yo)) == 2:
            thr = _youden_threshold(o["score"].to_numpy(), yo)
            rule = "Youden's J on the out-of-fold scores"

    def floats(a: np.ndarray) -> list[float]:
        return [float(x) for x in a]

    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "model": model,
        "setting": setting,
        "method": method,
        "feature_names": names,
        "impute": floats(lin.impute),
        "mean": floats(lin.mean),
        "scale": floats(lin.scale),
        "coef": floats(lin.coef),
        "intercept": float(lin.intercept),
        "threshold": float(thr),
        "threshold_rule": rule,
        "feature_options": (options or ObservableOptions()).to_dict(),
        "label_wer_threshold": float(threshold),
        "training": {
            "n": int(len(y)),
            "n_pos": int(y.sum()),
            "n_speakers": int(len(np.unique(groups))),
            "conditions": sorted(sub["condition"].unique().to_list()),
            "C": float(lin.C),
            "C_rule": "inner speaker-grouped CV" if C == "cv" else "fixed",
            "seed": int(seed),
            "sklearn_version": sklearn.__version__,
        },
    }


def save_detector(detector: Mapping[str, Any], path: str | Path) -> None:
    """Write the detector as JSON, atomically (no NaN: refused, the format must stay JSON)."""
    text = json.dumps(detector, indent=2, allow_nan=False)
    with atomic_path(path, suffix=".json.tmp") as tmp:
        tmp.write_text(text + "\n")


def load_detector(path: str | Path) -> dict[str, Any]:
    """Read and check a detector written by :func:`save_detector` (v1 files too)."""
    det = json.loads(Path(path).read_text())
    version = det.get("version")
    if det.get("format") != FORMAT or version not in (1, FORMAT_VERSION):
        raise ValueError(f"{path}: not a {FORMAT} v{FORMAT_VERSION} file")
    if version == 1:  # v1 features had k apart and no rank_tol: computed as rank_tol = 0
        k = det.pop("feature_k")
        det["feature_options"] = {**det["feature_options"], "k": k, "rank_tol": 0.0}
        det["version"] = FORMAT_VERSION
    n = len(det["feature_names"])
    for key in ("impute", "mean", "scale", "coef"):
        if len(det[key]) != n:
            raise ValueError(f"{path}: {key} has {len(det[key])} values for {n} features")
    return det


def feature_kwargs(detector: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` and ``threshold`` to compute features the way the detector was trained."""
    return {
        "options": ObservableOptions.from_dict(detector["feature_options"]),
        "threshold": float(detector["label_wer_threshold"]),
    }


def score(
    detector: Mapping[str, Any], x: Mapping[str, Any] | pl.DataFrame | Sequence[Mapping]
) -> float | np.ndarray:
    """The detector's log-odds: a float for one feature dict, an array for a frame / rows.

    Missing or non-finite feature values are replaced by the training medians; an absent
    feature column is an error (a detector trained on other layers or K).
    """
    names = detector["feature_names"]
    single = isinstance(x, Mapping)
    if single:
        missing = [n for n in names if n not in x]
        if missing:
            raise KeyError(f"missing feature(s): {missing[:5]}")
        X = np.array([[np.nan if x[n] is None else x[n] for n in names]], dtype=np.float64)
    else:
        frame = x if isinstance(x, pl.DataFrame) else pl.DataFrame(list(x))
        X = matrix(frame, names)
    lin = Linear(
        np.asarray(detector["impute"], np.float64),
        np.asarray(detector["mean"], np.float64),
        np.asarray(detector["scale"], np.float64),
        np.asarray(detector["coef"], np.float64),
        float(detector["intercept"]),
        float(detector["training"]["C"]),
    )
    s = lin.decision(X)
    return float(s[0]) if single else s


def probability(detector: Mapping[str, Any], x: Any) -> float | np.ndarray:
    """P(hallucination) = sigmoid(:func:`score`)."""
    s = score(detector, x)
    p = 1.0 / (1.0 + np.exp(-np.asarray(s, dtype=np.float64)))
    return float(p) if isinstance(s, float) else p
