"""The detector's features: one row per decoded utterance, from its own decode alone.

Spectral features ``L{layer}_{component}_{observable}_k{K}`` of the full-length spectra
(computed by the :func:`whisper_spi.analysis.observables.observables` kernel, as layer_metrics
does), the decoded length ``n_rows`` (T), the label and Whisper's heuristics, and for the
decoder-state probe the full-length row means ``L{layer}_{component}_row_mean`` (one list
column of d floats per layer and component: the mean of the T rows the spectrum is of).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from whisper_spi import schemas
from whisper_spi.analysis.observables import observables
from whisper_spi.analysis.spectra import ObservableOptions, pack_spectra, sort_descending
from whisper_spi.registry import CLEAN, COMPONENTS, OBSERVABLES
from whisper_spi.text import HALLUCINATION_WER

__all__ = ["HEURISTICS", "KEYS", "META", "features", "features_from_capture",
           "row_mean_names", "spectral_feature_names"]  # fmt: skip

KEYS = ("model", "condition", "utt_id")
HEURISTICS = ("avg_logprob", "compression_ratio", "no_speech_prob")
META = ("speaker", "hallucination", "wer", "n_tokens", "hit_max_length", *HEURISTICS, "n_rows")
_TRANSCRIPT = ("speaker", "wer", "n_tokens", "hit_max_length", *HEURISTICS)
_FEATURE_RE = re.compile(rf"^L(\d+)_(.+)_({'|'.join(OBSERVABLES)})_k(\d+)$")
_ROW_MEAN_RE = re.compile(r"^L(\d+)_(.+)_row_mean$")
_ROW_MEAN = pl.List(pl.Float32)  # the spectra contract's row_mean type
_CHUNK_ELEMENTS = 1 << 22  # packed values per chunk: bounded memory whatever the count
_FILES_PER_SCAN = 64


def _long_observables(spectra: pl.DataFrame, opts: ObservableOptions) -> pl.DataFrame:
    """Full-length spectra rows (KEYS, layer, component, n_rows, sv) -> observables, long."""
    base = spectra.select(*KEYS, "layer", "component", "n_rows")
    names = [f"{o}_k{K}" for K in opts.k for o in OBSERVABLES]
    if spectra.height == 0:
        return base.with_columns([pl.lit(None, pl.Float64).alias(n) for n in names])
    lengths = spectra["sv"].list.len().fill_null(0).to_numpy()
    step = max(1, _CHUNK_ELEMENTS // max(int(lengths.max(initial=0)), 1))
    chunks = []
    for lo in range(0, spectra.height, step):
        part = spectra.slice(lo, step)
        S = sort_descending(pack_spectra(part["sv"]))
        obs = observables(S, part["n_rows"].to_numpy(), opts)
        chunks.append(pl.DataFrame({f"{o}_k{K}": v[o] for K, v in obs.items() for o in v}))
    return pl.concat([base, pl.concat(chunks).select(names)], how="horizontal")


def _feature_order(name: str) -> tuple:
    m = _FEATURE_RE.match(name)
    assert m is not None
    layer, comp, obs, k = m.groups()
    rank = COMPONENTS.index(comp) if comp in COMPONENTS else len(COMPONENTS)
    return int(layer), rank, comp, OBSERVABLES.index(obs), int(k)


def spectral_feature_names(df: pl.DataFrame | Sequence[str]) -> list[str]:
    """The ``L{layer}_{component}_{obs}_k{K}`` columns of a features frame, in order."""
    cols = df.columns if isinstance(df, pl.DataFrame) else list(df)
    return sorted((c for c in cols if _FEATURE_RE.match(c)), key=_feature_order)


def _row_mean_order(name: str) -> tuple:
    m = _ROW_MEAN_RE.match(name)
    assert m is not None
    layer, comp = m.groups()
    return int(layer), COMPONENTS.index(comp) if comp in COMPONENTS else len(COMPONENTS), comp


def row_mean_names(df: pl.DataFrame | Sequence[str]) -> list[str]:
    """The ``L{layer}_{component}_row_mean`` (list) columns of a features frame, in order."""
    cols = df.columns if isinstance(df, pl.DataFrame) else list(df)
    return sorted((c for c in cols if _ROW_MEAN_RE.match(c)), key=_row_mean_order)


def _wide_row_means(means: pl.DataFrame) -> pl.DataFrame:
    """Full-length (KEYS, layer, component, row_mean) rows -> one row per utterance with a
    ``L{layer}_{component}_row_mean`` list column each (null where a decode has none)."""
    named = means.select(
        *KEYS,
        pl.format("L{}_{}_row_mean", pl.col("layer"), pl.col("component")).alias("feature"),
        pl.col("row_mean").cast(_ROW_MEAN),
    )
    if named.height == 0:
        return pl.DataFrame(schema={k: pl.String for k in KEYS})
    wide = named.pivot(on="feature", index=list(KEYS), values="row_mean")
    return wide.select(*KEYS, *[pl.col(n).cast(_ROW_MEAN) for n in row_mean_names(wide)])


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
    names = spectral_feature_names(wide)
    # T is the same for every layer and component of one decode; max guards against nulls.
    t = long.group_by(list(KEYS)).agg(pl.col("n_rows").max().cast(pl.Int64))
    return wide.join(t, on=list(KEYS), how="inner").select(
        *KEYS, "n_rows", *[pl.col(n).cast(pl.Float64) for n in names]
    )


def _assemble(
    long: pl.DataFrame, means: pl.DataFrame, transcripts: pl.LazyFrame, threshold: float
) -> pl.DataFrame:
    """Long observables, row means + transcripts -> the features frame (both entry points)."""
    # the same full-length rows as ``long``, whose duplicate check covers them
    wide = _wide(long).join(_wide_row_means(means), on=list(KEYS), how="left")
    tr = transcripts.select(
        *[pl.col(k).cast(pl.String) for k in KEYS],
        pl.col("speaker").cast(pl.String),
        (pl.col("wer").cast(pl.Float64) > threshold).alias("hallucination"),
        pl.col("wer").cast(pl.Float64),
        pl.col("n_tokens").cast(pl.Int64),
        pl.col("hit_max_length").cast(pl.Boolean),
        *[pl.col(h).cast(pl.Float64) for h in HEURISTICS],
    ).collect()
    dup = tr.group_by(list(KEYS)).len().filter(pl.col("len") > 1)
    if dup.height:
        raise ValueError(f"duplicate transcript rows, e.g. {dup.row(0, named=True)}")
    meta = [m for m in META if m != "n_rows"]
    feats = [*spectral_feature_names(wide), *row_mean_names(wide)]
    out = tr.join(wide, on=list(KEYS), how="inner").select(*KEYS, *meta, "n_rows", *feats)
    return out.sort(list(KEYS))


def features(
    spectra_paths: Sequence[str | Path],
    transcripts_paths: Sequence[str | Path],
    options: ObservableOptions | None = None,
    *,
    threshold: float = HALLUCINATION_WER,
    stressed_only: bool = False,
) -> pl.DataFrame:
    """One row per decoded utterance (model, condition, utt_id): KEYS, META, the spectral
    features (sorted by layer, component, observable, K) of the full-length spectra, then
    their row means (list columns, sorted by layer and component; see :func:`row_mean_names`).

    hallucination = wer > ``threshold`` (null when wer is). Utterances need both a transcript
    and spectra; a missing layer/component is null. ``stressed_only`` drops the clean
    decodes. The files are scanned a group at a time, only the full-length rows kept.
    """
    opts = options or ObservableOptions()
    spaths = [str(p) for p in spectra_paths]
    if not spaths or not transcripts_paths:
        raise ValueError("features: need at least one spectra and one transcripts file")
    keep = pl.col("prefix") == 0
    if stressed_only:
        keep = keep & (pl.col("condition") != CLEAN)
    cols = [*KEYS, "layer", "component", "n_rows", "sv", "row_mean"]
    longs, means = [], []
    for lo in range(0, len(spaths), _FILES_PER_SCAN):
        part = (
            schemas.scan_parquet(spaths[lo : lo + _FILES_PER_SCAN], "spectra", [*cols, "prefix"])
            .filter(keep)
            .select(cols)
            .collect()
        )
        longs.append(_long_observables(part.drop("row_mean"), opts))
        means.append(part.select(*KEYS, "layer", "component", "row_mean"))
    tr = schemas.scan_parquet(transcripts_paths, "transcripts", [*KEYS, *_TRANSCRIPT])
    if stressed_only:
        tr = tr.filter(pl.col("condition") != CLEAN)
    out = _assemble(pl.concat(longs), pl.concat(means), tr, threshold)
    if out.height == 0:
        raise ValueError("features: no utterance has both a transcript and spectra")
    return out


def features_from_capture(
    spectra_rows: Iterable[Mapping[str, Any]] | Mapping[int, Iterable[Mapping[str, Any]]],
    transcript_rows: Mapping[str, Any] | Iterable[Mapping[str, Any]],
    options: ObservableOptions | None = None,
    *,
    threshold: float = HALLUCINATION_WER,
) -> pl.DataFrame:
    """The :func:`features` rows of utterances decoded in memory (the CLI's single pass).

    ``spectra_rows``: the spectra row dicts of ``capture.decode_shard`` (its ``{layer: rows}``
    mapping too); ``transcript_rows``: its transcript dict(s); missing fields (the wer of
    unlabelled audio) become null. Pass ``**feature_kwargs(detector)`` to match a detector.
    """
    opts = options or ObservableOptions()
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
            "row_mean": pl.Series(
                [
                    None
                    if r.get("row_mean") is None
                    else np.asarray(r["row_mean"], dtype=np.float32).tolist()
                    for r in rows
                ],
                dtype=_ROW_MEAN,
            ),
        }
    )
    trs = [transcript_rows] if isinstance(transcript_rows, Mapping) else list(transcript_rows)
    tr = pl.DataFrame(
        {f: [r.get(f) for r in trs] for f in (*KEYS, *_TRANSCRIPT)},
        schema={
            **{f: pl.String for f in (*KEYS, "speaker")},
            "wer": pl.Float64,
            "n_tokens": pl.Int64,
            "hit_max_length": pl.Boolean,
            **{h: pl.Float64 for h in HEURISTICS},
        },
    )
    means = spectra.select(*KEYS, "layer", "component", "row_mean")
    return _assemble(_long_observables(spectra.drop("row_mean"), opts), means, tr.lazy(), threshold)
