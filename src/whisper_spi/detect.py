"""A single-pass hallucination detector on decoder spectra, against Whisper's own heuristics.

The paper compares each stressed utterance with its clean twin. At inference time there is
no twin: one decode pass is all there is. This module asks whether the spectral observables
of that one pass (N_eff, alpha, log10 Kf and tail energy of every decoder layer x component,
at each K, plus the decoded length T) predict a hallucination (WER > threshold), better than
the fallback statistics Whisper already computes (avg_logprob, compression_ratio,
no_speech_prob).

Stages (all pure functions; :func:`run_detect` chains them for the workflow):

* :func:`features`: one row per decoded utterance, spectral features pivoted wide
  (``L{layer}_{component}_{observable}_k{K}``), ``n_rows`` (T), the label and the heuristics;
  :func:`features_from_capture` builds the same row from an in-memory decode (the CLI).
* :func:`cross_validate`: out-of-fold scores of every method, speaker-grouped folds shared by
  all methods, in two settings: ``all`` (clean + stressed decodes; partly "is this audio
  stressed") and ``stressed`` (stressed conditions only; the harder, more honest question).
* :func:`results_table` / :func:`comparison_table`: AUROC and AUPRC with stratified bootstrap
  CIs over utterances, and the paired bootstrap difference ours - each baseline.
* :func:`fit_detector` / :func:`save_detector` / :func:`load_detector` / :func:`score`: the
  final detector as plain JSON (no pickle), applied with numpy only.
* :func:`roc_figure`: ROC curves per model (columns) and setting (rows).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from .io import atomic_path, derive_seed, stable_hash
from .spectra import (
    covariance_eigenvalues,
    effective_rank,
    kirchhoff_index,
    spectral_alpha,
    tail_energy,
)

__all__ = [
    "BASELINES",
    "METHODS",
    "FeatureOptions",
    "comparison_table",
    "cross_validate",
    "evaluate",
    "feature_kwargs",
    "features",
    "features_from_capture",
    "fit_detector",
    "load_detector",
    "markdown_report",
    "probability",
    "results_table",
    "roc_figure",
    "run_detect",
    "save_detector",
    "score",
    "spectral_feature_names",
    "speaker_folds",
]

KEYS = ("model", "condition", "utt_id")
CLEAN = "clean"
SETTINGS = ("all", "stressed")
OBSERVABLES = ("neff", "alpha", "log10_kf", "tail_energy")
COMPONENT_ORDER = ("cross_attn", "self_attn", "ffn", "residual")
HEURISTICS = ("avg_logprob", "compression_ratio", "no_speech_prob")
# Sign that makes each heuristic "higher = more suspicious" when used directly as a score.
DIRECT_SIGN = {"avg_logprob": -1.0, "compression_ratio": 1.0, "no_speech_prob": 1.0, "n_rows": 1.0}
META = (
    "speaker",
    "hallucination",
    "wer",
    "n_tokens",
    "hit_max_length",
    *HEURISTICS,
    "n_rows",
)
_FEATURE_RE = re.compile(r"^L(\d+)_(.+)_(neff|alpha|log10_kf|tail_energy)_k(\d+)$")
_BLOCK = 1 << 22  # packed elements per chunk: bounds memory whatever the number of spectra
_FILES_PER_SCAN = 64
FORMAT = "whisper-spi-detector"
FORMAT_VERSION = 1


# --------------------------------------------------------------------------- features


@dataclass(frozen=True)
class FeatureOptions:
    """How the observables are computed; the defaults equal ``tables.MetricOptions``'s.

    neff_power: p_i = s_i**power / sum s**power (1 = on singular values, the paper's).
    alpha_start, alpha_stop: 0-based rank window of the log-log fit inside the top K.
    kf_floor: relative eigenvalue floor of the Kirchhoff index.
    Kf is always taken on the top-K covariance eigenvalues s**2 / (T - 1), zero-padded to K
    (so n = K in Kf = n * sum 1/lambda whatever T), as the tables do by default.
    """

    neff_power: float = 1.0
    alpha_start: int = 0
    alpha_stop: int | None = None
    kf_floor: float = 1e-10

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> FeatureOptions:
        d = dict(d or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown feature option(s) {unknown}; known: {sorted(known)}")
        return cls(**d)


def _check_k(k: Iterable[int]) -> tuple[int, ...]:
    ks = tuple(int(x) for x in k)
    if not ks or any(x < 2 for x in ks) or len(set(ks)) != len(ks):
        raise ValueError(f"k must be distinct integers >= 2, got {k!r}")
    return ks


def _pack(col: pl.Series) -> np.ndarray:
    """List column -> NaN-padded float64 matrix, rows sorted descending (NaN padding last).

    One flatten and one masked scatter (no per-row Python), like spectra.pack_spectra.
    """
    arr = col.to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    lengths = pc.list_value_length(arr).fill_null(0).to_numpy(zero_copy_only=False)
    lengths = lengths.astype(np.int64)
    flat = pc.list_flatten(arr).to_numpy(zero_copy_only=False).astype(np.float64)
    out = np.full((len(lengths), int(lengths.max(initial=0))), np.nan)
    out[np.arange(out.shape[1]) < lengths[:, None]] = flat
    return -np.sort(-out, axis=1)  # np.sort puts NaN last; negating twice keeps it last


def _observables(
    S: np.ndarray, n_rows: np.ndarray, ks: tuple[int, ...], opts: FeatureOptions
) -> dict[str, np.ndarray]:
    """``{f"{observable}_k{K}": values}`` for the spectra in the rows of ``S`` (sorted)."""
    n_rows = np.asarray(n_rows, dtype=np.float64)
    out: dict[str, np.ndarray] = {}
    for K in ks:
        top = S[:, :K]
        eig = covariance_eigenvalues(top, n_rows)
        eig = np.where(np.isnan(top), 0.0, eig)  # padding -> zero eigenvalues, counted in n
        if eig.shape[1] < K:
            eig = np.pad(eig, ((0, 0), (0, K - eig.shape[1])))
        with np.errstate(all="ignore"):
            log10_kf = np.log10(kirchhoff_index(eig, floor=opts.kf_floor))
        out[f"neff_k{K}"] = np.asarray(effective_rank(top, power=opts.neff_power), np.float64)
        out[f"alpha_k{K}"] = np.asarray(
            spectral_alpha(top, start=opts.alpha_start, stop=opts.alpha_stop), np.float64
        )
        out[f"log10_kf_k{K}"] = np.asarray(log10_kf, np.float64)
        out[f"tail_energy_k{K}"] = np.asarray(tail_energy(S, K), np.float64)
    return out


def _long_observables(
    spectra: pl.DataFrame, ks: tuple[int, ...], opts: FeatureOptions
) -> pl.DataFrame:
    """Full-length spectra rows (KEYS, layer, component, n_rows, sv) -> observables, long."""
    base = spectra.select(*KEYS, "layer", "component", "n_rows")
    if spectra.height == 0:
        return base.with_columns(
            [pl.lit(None, pl.Float64).alias(f"{o}_k{K}") for K in ks for o in OBSERVABLES]
        )
    lengths = spectra["sv"].list.len().fill_null(0).to_numpy()
    width = max(int(lengths.max(initial=0)), 1)
    step = max(1, _BLOCK // width)
    chunks = []
    for lo in range(0, spectra.height, step):
        part = spectra.slice(lo, step)
        obs = _observables(_pack(part["sv"]), part["n_rows"].to_numpy(), ks, opts)
        chunks.append(pl.DataFrame(obs))
    return pl.concat([base, pl.concat(chunks)], how="horizontal")


def _feature_order(name: str) -> tuple:
    m = _FEATURE_RE.match(name)
    assert m is not None
    layer, comp, obs, k = m.groups()
    rank = COMPONENT_ORDER.index(comp) if comp in COMPONENT_ORDER else len(COMPONENT_ORDER)
    return int(layer), rank, comp, OBSERVABLES.index(obs), int(k)


def _wide(long: pl.DataFrame) -> pl.DataFrame:
    """Long observables -> one row per utterance: ``L{layer}_{component}_{obs}_k{K}`` + n_rows."""
    key_cols = [*KEYS, "layer", "component"]
    dup = long.group_by(key_cols).len().filter(pl.col("len") > 1)
    if dup.height:
        raise ValueError(
            "more than one full-length spectrum for the same utterance, layer and component "
            f"(the same file given twice?), e.g. {dup.row(0, named=True)}"
        )
    values = [c for c in long.columns if c not in (*key_cols, "n_rows")]
    melted = long.unpivot(index=key_cols, on=values, variable_name="obs", value_name="value")
    melted = melted.with_columns(
        feature=pl.format("L{}_{}_{}", pl.col("layer"), pl.col("component"), pl.col("obs"))
    )
    if melted.height:
        wide = melted.pivot(on="feature", index=list(KEYS), values="value")
    else:
        wide = pl.DataFrame(schema={k: pl.String for k in KEYS})
    names = sorted((c for c in wide.columns if c not in KEYS), key=_feature_order)
    # T is the same for every layer and component of one decode; max guards against nulls.
    t = long.group_by(list(KEYS)).agg(pl.col("n_rows").max().cast(pl.Int64))
    return wide.join(t, on=list(KEYS), how="inner").select(
        *KEYS, "n_rows", *[pl.col(n).cast(pl.Float64) for n in names]
    )


def _transcript_frame(tr: pl.LazyFrame, threshold: float) -> pl.LazyFrame:
    names = tr.collect_schema().names()

    def col(name: str, dtype: pl.DataType) -> pl.Expr:
        return (pl.col(name) if name in names else pl.lit(None)).cast(dtype).alias(name)

    return tr.select(
        *[pl.col(k).cast(pl.String) for k in KEYS],
        col("speaker", pl.String),
        (col("wer", pl.Float64) > threshold).alias("hallucination"),
        col("wer", pl.Float64),
        col("n_tokens", pl.Int64),
        col("hit_max_length", pl.Boolean),
        *[col(h, pl.Float64) for h in HEURISTICS],
    )


def _assemble(long: pl.DataFrame, transcripts: pl.LazyFrame, threshold: float) -> pl.DataFrame:
    """Long observables + transcripts -> the features frame (shared by both entry points)."""
    wide = _wide(long)
    tr = _transcript_frame(transcripts, threshold).collect()
    dup = tr.group_by(list(KEYS)).len().filter(pl.col("len") > 1)
    if dup.height:
        raise ValueError(f"duplicate transcript rows, e.g. {dup.row(0, named=True)}")
    meta = [m for m in META if m != "n_rows"]
    feats = [c for c in wide.columns if c not in (*KEYS, "n_rows")]
    out = tr.join(wide, on=list(KEYS), how="inner").select(*KEYS, *meta, "n_rows", *feats)
    return out.sort(list(KEYS))


def features(
    spectra_paths: Sequence[str | Path],
    transcripts_paths: Sequence[str | Path],
    k: Iterable[int] = (10, 50),
    *,
    threshold: float = 0.5,
    stressed_only: bool = False,
    options: FeatureOptions | None = None,
) -> pl.DataFrame:
    """One row per decoded utterance (model, condition, utt_id), from its own decode alone.

    Columns: model, condition, utt_id, speaker, hallucination (wer > ``threshold``; null when
    wer is null), wer, n_tokens, hit_max_length, avg_logprob, compression_ratio,
    no_speech_prob, n_rows (T), then ``L{layer}_{component}_{obs}_k{K}`` for obs in neff,
    alpha, log10_kf, tail_energy (sorted by layer, component, observable, K), all computed on
    the full-length spectrum (prefix 0). Utterances need both a transcript and spectra (inner
    join); a missing layer/component is null. ``stressed_only`` drops the clean decodes.

    The files are scanned lazily, a group at a time, and only the prefix-0 rows and the
    needed columns are read (never ``row_mean``), so memory stays bounded.
    """
    ks = _check_k(k)
    opts = options or FeatureOptions()
    spaths = [str(p) for p in spectra_paths]
    tpaths = [str(p) for p in transcripts_paths]
    if not spaths or not tpaths:
        raise ValueError("features: need at least one spectra and one transcripts file")
    keep = pl.col("prefix") == 0
    if stressed_only:
        keep = keep & (pl.col("condition") != CLEAN)
    longs = []
    for lo in range(0, len(spaths), _FILES_PER_SCAN):
        part = (
            pl.scan_parquet(spaths[lo : lo + _FILES_PER_SCAN])
            .filter(keep)
            .select(*KEYS, "layer", "component", "n_rows", "sv")
            .collect()
        )
        longs.append(_long_observables(part, ks, opts))
    tr = pl.scan_parquet(tpaths)
    if stressed_only:
        tr = tr.filter(pl.col("condition") != CLEAN)
    out = _assemble(pl.concat(longs), tr, threshold)
    if out.height == 0:
        raise ValueError("features: no utterance has both a transcript and spectra")
    return out


def features_from_capture(
    spectra_rows: Iterable[Mapping[str, Any]] | Mapping[int, Iterable[Mapping[str, Any]]],
    transcript_rows: Mapping[str, Any] | Iterable[Mapping[str, Any]],
    *,
    k: Iterable[int] = (10, 50),
    threshold: float = 0.5,
    options: FeatureOptions | None = None,
) -> pl.DataFrame:
    """The :func:`features` rows of utterances decoded in memory (the CLI's single pass).

    ``spectra_rows``: dicts with utt_id, model, condition, layer, component, prefix, n_rows,
    sv, as ``capture.decode_shard`` returns them (its ``{layer: rows}`` mapping is accepted
    as is); ``transcript_rows``: its transcript dict(s). Missing transcript fields (e.g. wer
    of unlabelled audio) become null. Same columns and values as :func:`features`; pass
    ``**feature_kwargs(detector)`` so they match the detector's.
    """
    ks = _check_k(k)
    opts = options or FeatureOptions()
    if isinstance(spectra_rows, Mapping):
        rows = [r for layer_rows in spectra_rows.values() for r in layer_rows]
    else:
        rows = list(spectra_rows)
    rows = [r for r in rows if int(r["prefix"]) == 0]
    spectra = pl.DataFrame(
        {
            **{key: pl.Series(key, [str(r[key]) for r in rows], pl.String) for key in KEYS},
            "layer": pl.Series([int(r["layer"]) for r in rows], dtype=pl.Int32),
            "component": pl.Series([str(r["component"]) for r in rows], dtype=pl.String),
            "n_rows": pl.Series([int(r["n_rows"]) for r in rows], dtype=pl.Int32),
            "sv": pl.Series(
                [np.asarray(r["sv"], dtype=np.float64).tolist() for r in rows],
                dtype=pl.List(pl.Float64),
            ),
        }
    )
    trs = [transcript_rows] if isinstance(transcript_rows, Mapping) else list(transcript_rows)
    fields = [*KEYS, "speaker", "wer", "n_tokens", "hit_max_length", *HEURISTICS]
    tr = pl.DataFrame(
        {f: [r.get(f) for r in trs] for f in fields},
        schema={
            **{f: pl.String for f in (*KEYS, "speaker")},
            "wer": pl.Float64,
            "n_tokens": pl.Int64,
            "hit_max_length": pl.Boolean,
            **{h: pl.Float64 for h in HEURISTICS},
        },
    )
    return _assemble(_long_observables(spectra, ks, opts), tr.lazy(), threshold)


def spectral_feature_names(df: pl.DataFrame | Sequence[str]) -> list[str]:
    """The ``L{layer}_{component}_{obs}_k{K}`` columns of a features frame, in order."""
    cols = df.columns if isinstance(df, pl.DataFrame) else list(df)
    return sorted((c for c in cols if _FEATURE_RE.match(c)), key=_feature_order)


# --------------------------------------------------------------------------- folds


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


# --------------------------------------------------------------------------- linear model


@dataclass
class _Linear:
    """Median imputation, standardisation, then a linear score (the logistic log-odds)."""

    impute: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    C: float

    def decision(self, X: np.ndarray) -> np.ndarray:
        Z = (_impute(X, self.impute) - self.mean) / self.scale
        return Z @ self.coef + self.intercept


def _clean(X: np.ndarray) -> np.ndarray:
    X = np.array(X, dtype=np.float64)
    X[~np.isfinite(X)] = np.nan
    return X


def _impute(X: np.ndarray, med: np.ndarray) -> np.ndarray:
    X = _clean(X)
    return np.where(np.isnan(X), med[None, :], X)


CS_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


def _fit_linear(
    X: np.ndarray, y: np.ndarray, C: float | str, groups: np.ndarray | None = None
) -> _Linear:
    from sklearn.linear_model import LogisticRegression

    X = _clean(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN column
        med = np.nanmedian(X, axis=0) if X.shape[0] else np.zeros(X.shape[1])
    med = np.where(np.isfinite(med), med, 0.0)
    Xi = _impute(X, med)
    mean = Xi.mean(axis=0)
    scale = Xi.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)  # constant column: leave it at 0 after centring
    if C == "cv":
        C = _choose_C(X, y, groups)
    C = float(C)
    y = np.asarray(y).astype(int)
    if len(np.unique(y)) < 2:  # one class only: no direction to learn, constant score
        return _Linear(med, mean, scale, np.zeros(X.shape[1]), 0.0, C)
    lr = LogisticRegression(C=C, max_iter=2000)
    lr.fit((Xi - mean) / scale, y)
    return _Linear(med, mean, scale, lr.coef_[0].copy(), float(lr.intercept_[0]), C)


def _choose_C(X: np.ndarray, y: np.ndarray, groups: np.ndarray | None) -> float:
    """Inner speaker-grouped CV over CS_GRID by mean AUROC (ties: the smaller C)."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold

    y = np.asarray(y).astype(int)
    if groups is None or len(np.unique(groups)) < 2 or len(np.unique(y)) < 2:
        return 1.0
    splitter = GroupKFold(n_splits=min(3, len(np.unique(groups))))
    best, best_C = -np.inf, 1.0
    for C in CS_GRID:
        aucs = []
        for tr, te in splitter.split(X, y, groups):
            if len(np.unique(y[te])) < 2:
                continue
            m = _fit_linear(X[tr], y[tr], C)
            aucs.append(roc_auc_score(y[te], m.decision(X[te])))
        if aucs and np.mean(aucs) > best + 1e-12:
            best, best_C = float(np.mean(aucs)), C
    return best_C


# --------------------------------------------------------------------------- methods


@dataclass(frozen=True)
class Method:
    kind: str  # "lr" (logistic regression trained in fold) or "direct" (a column as score)
    columns: tuple[str, ...]  # "@spectral" expands to the spectral feature columns
    baseline: bool
    doc: str


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
}
# The heuristic baselines the "best baseline" is chosen from (length is reported beside).
BASELINES = tuple(n for n, m in METHODS.items() if m.baseline and n != "length")


def _method_columns(method: Method, df: pl.DataFrame) -> list[str]:
    cols: list[str] = []
    for c in method.columns:
        cols.extend(spectral_feature_names(df) if c == "@spectral" else [c])
    return cols


def _matrix(df: pl.DataFrame, cols: Sequence[str]) -> np.ndarray:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise KeyError(
            f"missing feature column(s): {missing[:5]}{'...' if len(missing) > 5 else ''}"
        )
    if not cols:
        return np.zeros((df.height, 0))
    return df.select([pl.col(c).cast(pl.Float64) for c in cols]).to_numpy().astype(np.float64)


def _subset(df: pl.DataFrame, setting: str) -> pl.DataFrame:
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
    search over CS_GRID. Direct scores fill a missing value with the column's median over the
    evaluated rows (label-free, so no leakage). Rows with a null label are dropped.
    """
    names = list(methods) if methods is not None else list(METHODS)
    unknown = sorted(set(names) - set(METHODS))
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; known: {list(METHODS)}")
    out = []
    for model in sorted(df["model"].unique().to_list()):
        fold_seed = derive_seed(seed, "detect", model)
        for setting in settings:
            sub = _subset(df.filter(pl.col("model") == model), setting)
            if sub.height == 0:
                continue
            y = sub["hallucination"].cast(pl.Int8).to_numpy()
            groups = sub["speaker"].cast(pl.String).to_numpy()
            fold = speaker_folds(groups, y, n_splits, fold_seed)
            meta = sub.select("condition", "utt_id", "speaker", "hallucination")
            for name in names:
                m = METHODS[name]
                X = _matrix(sub, _method_columns(m, sub))
                s = np.empty(sub.height)
                if m.kind == "direct":
                    v = _clean(X[:, 0]) * DIRECT_SIGN[m.columns[0]]
                    fill = np.nanmedian(v) if np.isfinite(v).any() else 0.0
                    s[:] = np.where(np.isnan(v), fill, v)
                else:
                    for f in np.unique(fold):
                        te = fold == f
                        model_f = _fit_linear(X[~te], y[~te], C, groups[~te])
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
    cols = ["model", "setting", "condition", "utt_id", "speaker", "hallucination", "fold",
            "method", "score"]  # fmt: skip
    return pl.concat([o.select(cols) for o in out])


# --------------------------------------------------------------------------- metrics


def _weighted_auc_ap(scores: np.ndarray, y: np.ndarray, W: np.ndarray) -> tuple:
    """AUROC (ties count 1/2) and average precision, one per row of the weight matrix ``W``.

    A bootstrap replicate is a vector of counts, so each replicate is the weighted metric on
    the original sample; this evaluates many replicates with one sort (the distinct score
    levels) and a bincount, no Python loop over replicates. Matches scikit-learn's
    roc_auc_score / average_precision_score with sample_weight.
    """
    levels, inv = np.unique(scores, return_inverse=True)
    L, B = len(levels), W.shape[0]
    pos = y.astype(bool)
    base = (np.arange(B) * L)[:, None]
    wp = np.bincount((base + inv[pos]).ravel(), W[:, pos].ravel(), B * L).reshape(B, L)
    wn = np.bincount((base + inv[~pos]).ravel(), W[:, ~pos].ravel(), B * L).reshape(B, L)
    P, N = wp.sum(axis=1), wn.sum(axis=1)
    below = np.cumsum(wn, axis=1) - wn
    tp = np.cumsum(wp[:, ::-1], axis=1)
    fp = np.cumsum(wn[:, ::-1], axis=1)
    with np.errstate(all="ignore"):
        auc = (wp * (below + 0.5 * wn)).sum(axis=1) / (P * N)
        prec = tp / np.where(tp + fp > 0, tp + fp, 1.0)
        ap = (wp[:, ::-1] * prec).sum(axis=1) / P
    bad = (P <= 0) | (N <= 0)
    auc[bad] = np.nan
    ap[bad] = np.nan  # one class only: no detection task (AP would be a trivial 1)
    return auc, ap


def _bootstrap_weights(y: np.ndarray, n_boot: int, rng: np.random.Generator):
    """Yield blocks of stratified bootstrap count vectors (n_pos and n_neg kept fixed).

    Stratified so that no replicate lacks a class (AUROC would be undefined).
    """
    n = len(y)
    idx_by_class = [np.flatnonzero(y == c) for c in (0, 1)]
    step = max(1, _BLOCK // max(n, 1))
    for lo in range(0, n_boot, step):
        b = min(step, n_boot - lo)
        W = np.zeros(b * n)
        base = (np.arange(b) * n)[:, None]
        for idx in idx_by_class:
            if len(idx):
                draw = idx[rng.integers(0, len(idx), size=(b, len(idx)))]
                W += np.bincount((base + draw).ravel(), minlength=b * n)
        yield W.reshape(b, n)


def evaluate(
    oof: pl.DataFrame, *, seed: int = 0, n_boot: int = 1000, ci: float = 0.95
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(:func:`results_table`, :func:`comparison_table`) from one set of bootstrap replicates.

    Replicates resample utterances with replacement within each class, the same replicates
    for every method of a (model, setting) (a paired bootstrap), from
    ``default_rng([derive_seed(seed, "detect", model), stable_hash(setting)])``. CIs are
    percentile intervals of coverage ``ci``. The comparison has one row per (ours-family
    method, baseline); ``best_baseline`` marks the heuristic baseline with the highest point
    AUROC (chosen on the same data, which favours the baseline). ``p_boot`` is the fraction
    of replicates where ours does not beat the baseline (d_auroc <= 0).
    """
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci!r}")
    q = [100 * (1 - ci) / 2, 100 * (1 + ci) / 2]
    res_rows, cmp_rows = [], []
    for (model, setting), grp in oof.group_by(["model", "setting"], maintain_order=True):
        wide = grp.pivot(on="method", index=["condition", "utt_id"], values="score")
        labels = grp.filter(pl.col("method") == grp["method"][0]).select(
            "condition", "utt_id", "hallucination"
        )
        wide = labels.join(wide, on=["condition", "utt_id"], how="left", maintain_order="left")
        names = [m for m in grp["method"].unique(maintain_order=True).to_list()]
        y = wide["hallucination"].cast(pl.Int8).to_numpy()
        S = {m: wide[m].to_numpy().astype(np.float64) for m in names}
        rng = np.random.default_rng([derive_seed(seed, "detect", model), stable_hash(setting)])
        point = {m: _weighted_auc_ap(S[m], y, np.ones((1, len(y)))) for m in names}
        reps: dict[str, list] = {m: [[], []] for m in names}
        for W in _bootstrap_weights(y, n_boot, rng):
            for m in names:
                a, p = _weighted_auc_ap(S[m], y, W)
                reps[m][0].append(a)
                reps[m][1].append(p)
        boot = {m: tuple(np.concatenate(r) if r else np.empty(0) for r in reps[m]) for m in names}

        def interval(x: np.ndarray) -> tuple[float, float]:
            if x.size == 0 or not np.isfinite(x).any():
                return math.nan, math.nan
            lo, hi = np.nanpercentile(x, q)
            return float(lo), float(hi)

        for m in names:
            a_lo, a_hi = interval(boot[m][0])
            p_lo, p_hi = interval(boot[m][1])
            res_rows.append(
                {
                    "model": model,
                    "setting": setting,
                    "method": m,
                    "auroc": float(point[m][0][0]),
                    "auroc_lo": a_lo,
                    "auroc_hi": a_hi,
                    "auprc": float(point[m][1][0]),
                    "auprc_lo": p_lo,
                    "auprc_hi": p_hi,
                    "n": len(y),
                    "n_pos": int(y.sum()),
                }
            )
        heur = [m for m in names if m in BASELINES and np.isfinite(point[m][0][0])]
        best = max(heur, key=lambda m: point[m][0][0]) if heur else None
        for m in names:
            if m in METHODS and METHODS[m].baseline:
                continue
            for b in names:
                if not (b in METHODS and METHODS[b].baseline):
                    continue
                da = boot[m][0] - boot[b][0]
                dp = boot[m][1] - boot[b][1]
                finite = da[np.isfinite(da)]
                cmp_rows.append(
                    {
                        "model": model,
                        "setting": setting,
                        "method": m,
                        "baseline": b,
                        "best_baseline": b == best,
                        "d_auroc": float(point[m][0][0] - point[b][0][0]),
                        "d_auroc_lo": interval(da)[0],
                        "d_auroc_hi": interval(da)[1],
                        "d_auprc": float(point[m][1][0] - point[b][1][0]),
                        "d_auprc_lo": interval(dp)[0],
                        "d_auprc_hi": interval(dp)[1],
                        "p_boot": float((finite <= 0).mean()) if finite.size else math.nan,
                        "n": len(y),
                        "n_pos": int(y.sum()),
                    }
                )
    res_schema = {
        "model": pl.String, "setting": pl.String, "method": pl.String,
        "auroc": pl.Float64, "auroc_lo": pl.Float64, "auroc_hi": pl.Float64,
        "auprc": pl.Float64, "auprc_lo": pl.Float64, "auprc_hi": pl.Float64,
        "n": pl.Int64, "n_pos": pl.Int64,
    }  # fmt: skip
    cmp_schema = {
        "model": pl.String, "setting": pl.String, "method": pl.String, "baseline": pl.String,
        "best_baseline": pl.Boolean,
        "d_auroc": pl.Float64, "d_auroc_lo": pl.Float64, "d_auroc_hi": pl.Float64,
        "d_auprc": pl.Float64, "d_auprc_lo": pl.Float64, "d_auprc_hi": pl.Float64,
        "p_boot": pl.Float64, "n": pl.Int64, "n_pos": pl.Int64,
    }  # fmt: skip
    return (
        pl.DataFrame(res_rows, schema=res_schema, orient="row"),
        pl.DataFrame(cmp_rows, schema=cmp_schema, orient="row"),
    )


def results_table(
    oof: pl.DataFrame, *, seed: int = 0, n_boot: int = 1000, ci: float = 0.95
) -> pl.DataFrame:
    """model, setting, method, auroc, auroc_lo, auroc_hi, auprc, auprc_lo, auprc_hi, n, n_pos."""
    return evaluate(oof, seed=seed, n_boot=n_boot, ci=ci)[0]


def comparison_table(
    oof: pl.DataFrame, *, seed: int = 0, n_boot: int = 1000, ci: float = 0.95
) -> pl.DataFrame:
    """Paired bootstrap differences ours - baseline (see :func:`evaluate`)."""
    return evaluate(oof, seed=seed, n_boot=n_boot, ci=ci)[1]


def _fmt(x: Any, digits: int = 3) -> str:
    return (
        "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"
    )


def markdown_report(results: pl.DataFrame, comparison: pl.DataFrame) -> str:
    """Both tables as Markdown, with a line on how to read them."""
    out = [
        "# Hallucination detection from one decode pass",
        "",
        "Out-of-fold scores, speaker-grouped CV (no speaker in both train and test). Setting "
        "`all`: clean and stressed decodes (partly detects stressed audio); `stressed`: "
        "stressed conditions only. Brackets: 95% stratified bootstrap CIs over utterances.",
        "",
        "| model | setting | method | AUROC | AUPRC | n | n_pos |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results.iter_rows(named=True):
        out.append(
            f"| {r['model']} | {r['setting']} | {r['method']} | {_fmt(r['auroc'])} "
            f"[{_fmt(r['auroc_lo'])}, {_fmt(r['auroc_hi'])}] | {_fmt(r['auprc'])} "
            f"[{_fmt(r['auprc_lo'])}, {_fmt(r['auprc_hi'])}] | {r['n']} | {r['n_pos']} |"
        )
    out += [
        "",
        "## Ours minus the best heuristic baseline (paired bootstrap)",
        "",
        "| model | setting | method | best baseline | ΔAUROC | ΔAUPRC | p_boot |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in comparison.filter(pl.col("best_baseline")).iter_rows(named=True):
        out.append(
            f"| {r['model']} | {r['setting']} | {r['method']} | {r['baseline']} | "
            f"{_fmt(r['d_auroc'])} [{_fmt(r['d_auroc_lo'])}, {_fmt(r['d_auroc_hi'])}] | "
            f"{_fmt(r['d_auprc'])} [{_fmt(r['d_auprc_lo'])}, {_fmt(r['d_auprc_hi'])}] | "
            f"{_fmt(r['p_boot'])} |"
        )
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- figure

FIGURE_METHODS = (
    "ours", "ours_no_T", "avg_logprob", "compression_ratio", "no_speech_prob",
    "heuristics_lr", "length",
)  # fmt: skip


ROC_GRID = 200


def roc_figure(oof: pl.DataFrame, methods: Sequence[str] | None = FIGURE_METHODS):
    """ROC curves of ours and the baselines: one panel per model (columns) x setting (rows)."""
    import altair as alt
    from sklearn.metrics import roc_curve

    if methods is not None:
        oof = oof.filter(pl.col("method").is_in(list(methods)))
    parts = []
    for (model, setting, method), g in oof.group_by(
        ["model", "setting", "method"], maintain_order=True
    ):
        y = g["hallucination"].cast(pl.Int8).to_numpy()
        if len(np.unique(y)) < 2:
            continue
        fpr, tpr, _ = roc_curve(y, g["score"].to_numpy())
        # The step curve read on a fixed FPR grid: exact to 1/grid, and a few KB per curve
        # instead of one point per distinct score.
        grid = np.linspace(0.0, 1.0, ROC_GRID + 1)
        tpr = tpr[np.searchsorted(fpr, grid, side="right") - 1]
        fpr = grid
        parts.append(
            pl.DataFrame(
                {
                    "model": model,
                    "setting": setting,
                    "method": method,
                    "step": np.arange(len(fpr)),
                    "fpr": fpr,
                    "tpr": tpr,
                }
            )
        )
    data = (
        pl.concat(parts)
        if parts
        else pl.DataFrame(
            schema={
                "model": pl.String,
                "setting": pl.String,
                "method": pl.String,
                "step": pl.Int64,
                "fpr": pl.Float64,
                "tpr": pl.Float64,
            }  # fmt: skip
        )
    )
    order = [m for m in (methods or METHODS) if m in set(data["method"].to_list())]
    return (
        alt.Chart(data)
        .mark_line(interpolate="step-after", strokeWidth=1.5)
        .encode(
            x=alt.X("fpr:Q", title="false positive rate", scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("tpr:Q", title="true positive rate", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("method:N", sort=order, title="method"),
            order="step:Q",
        )
        .properties(width=220, height=220)
        .facet(column=alt.Column("model:N"), row=alt.Row("setting:N"))
        .properties(title="Hallucination detection, out-of-fold ROC (speaker-grouped CV)")
    )


# --------------------------------------------------------------------------- detector


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
    k: Iterable[int] = (10, 50),
    options: FeatureOptions | None = None,
    threshold: float = 0.5,
    oof: pl.DataFrame | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """The final detector, fitted on every labelled utterance of ``df`` (one model), as JSON.

    Keys: format, version, model, setting, method, feature_names, impute (training medians,
    used for missing / non-finite values), mean, scale, coef, intercept (score = log-odds =
    ((x - mean) / scale) . coef + intercept), threshold (on the log-odds: Youden's J on the
    out-of-fold scores of ``method`` when ``oof`` is given, else 0 = probability 0.5),
    threshold_rule, feature_k, feature_options, label_wer_threshold, training (n, n_pos,
    n_speakers, conditions, C, seed, sklearn version). ``k`` / ``options`` must be those the
    features were computed with (they are recorded for :func:`feature_kwargs`).
    """
    import sklearn

    m = METHODS[method]
    if m.kind != "lr":
        raise ValueError(f"method {method!r} is not a fitted model")
    if model is None:
        models = df["model"].unique().to_list()
        if len(models) != 1:
            raise ValueError(f"fit_detector: pass model=, the frame has models {models}")
        model = models[0]
    sub = _subset(df.filter(pl.col("model") == model), setting)
    if sub.height == 0:
        raise ValueError(f"fit_detector: no labelled utterance of model {model!r}")
    names = _method_columns(m, sub)
    y = sub["hallucination"].cast(pl.Int8).to_numpy()
    groups = sub["speaker"].cast(pl.String).to_numpy()
    lin = _fit_linear(_matrix(sub, names), y, C, groups)
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
        "feature_k": list(_check_k(k)),
        "feature_options": dataclasses.asdict(options or FeatureOptions()),
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
    """Read and check a detector written by :func:`save_detector`."""
    det = json.loads(Path(path).read_text())
    if det.get("format") != FORMAT or det.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path}: not a {FORMAT} v{FORMAT_VERSION} file")
    n = len(det["feature_names"])
    for key in ("impute", "mean", "scale", "coef"):
        if len(det[key]) != n:
            raise ValueError(f"{path}: {key} has {len(det[key])} values for {n} features")
    return det


def feature_kwargs(detector: Mapping[str, Any]) -> dict[str, Any]:
    """``k`` and ``options`` to compute features the way the detector was trained."""
    return {
        "k": tuple(detector["feature_k"]),
        "options": FeatureOptions.from_dict(detector["feature_options"]),
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
        X = _matrix(frame, names)
    lin = _Linear(
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


# --------------------------------------------------------------------------- workflow


def run_detect(
    spectra_paths: Sequence[str | Path],
    transcripts_paths: Sequence[str | Path],
    out_dir: str | Path,
    *,
    seed: int = 0,
    threshold: float = 0.5,
    k: Iterable[int] = (10, 50),
    options: FeatureOptions | None = None,
    C: float | str = 1.0,
    n_splits: int = 5,
    n_boot: int = 1000,
    ci: float = 0.95,
    figure: bool = True,
) -> dict[str, Path]:
    """Everything for one model's files: features, CV, tables, detector, ROC figure.

    Writes into ``out_dir``: results.csv (:func:`results_table`), comparison.csv
    (:func:`comparison_table`), results.md (:func:`markdown_report`), oof_scores.csv,
    detector.json (fitted on setting ``all``, the deployment setting: the CLI sees any
    audio), and with ``figure`` roc.html and roc.png. Returns {name: path}.
    """
    out = Path(out_dir)
    ks = _check_k(k)
    df = features(spectra_paths, transcripts_paths, ks, threshold=threshold, options=options)
    models = df["model"].unique().to_list()
    if len(models) != 1:
        raise ValueError(f"run_detect: expected the files of one model, got {models}")
    oof = cross_validate(df, seed=seed, C=C, n_splits=n_splits)
    results, comparison = evaluate(oof, seed=seed, n_boot=n_boot, ci=ci)
    det = fit_detector(
        df, model=models[0], C=C, k=ks, options=options, threshold=threshold, oof=oof, seed=seed
    )
    paths = {
        "results": out / "results.csv",
        "comparison": out / "comparison.csv",
        "markdown": out / "results.md",
        "oof": out / "oof_scores.csv",
        "detector": out / "detector.json",
    }
    for key, frame in (("results", results), ("comparison", comparison), ("oof", oof)):
        with atomic_path(paths[key], suffix=".csv.tmp") as tmp:
            frame.write_csv(tmp)
    with atomic_path(paths["markdown"], suffix=".md.tmp") as tmp:
        tmp.write_text(markdown_report(results, comparison))
    save_detector(det, paths["detector"])
    if figure:
        chart = roc_figure(oof)
        for ext in ("html", "png"):
            paths[f"roc_{ext}"] = out / f"roc.{ext}"
            with atomic_path(paths[f"roc_{ext}"], suffix=f".{ext}") as tmp:
                chart.save(str(tmp), format=ext)
    return paths
