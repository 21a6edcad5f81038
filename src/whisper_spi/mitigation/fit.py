"""The ``project`` intervention's subspaces, fitted out of fold on the detector's speaker folds.

The subspace applied to a speaker's utterances is fitted on the detector's other folds only
(the held-out fold is recorded), so no utterance is edited by a direction estimated from
itself or its speaker; ``ALL_FOLDS`` is fitted on every fold, for new audio.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from whisper_spi.errors import WhisperSpiError
from whisper_spi.mitigation.intervene import (
    Intervention,
    fit_subspace,
    load_intervention,
    save_intervention,
)
from whisper_spi.registry import CLEAN, STRESSES
from whisper_spi.taxonomy.labels import HER_THRESHOLD
from whisper_spi.text import HALLUCINATION_WER

__all__ = [
    "ALL_FOLDS",
    "fit_fold_subspaces",
    "hallucinated_stressed",
    "load_subspaces",
    "save_subspaces",
    "speaker_folds_of",
]

ALL_FOLDS = -1  # the subspace fitted on every fold: what a user applies to new audio


def speaker_folds_of(oof_path: str | Path) -> dict[str, int]:
    """speaker -> the detector's test fold (setting ``all``), from its oof_scores.csv."""
    from whisper_spi import schemas

    oof = schemas.read_csv(oof_path, "detect_oof").filter(pl.col("setting") == "all")
    pairs = oof.select("speaker", "fold").unique()
    if pairs["speaker"].n_unique() != pairs.height:
        raise WhisperSpiError(f"{oof_path}: a speaker is in more than one detector fold")
    return dict(pairs.iter_rows())


def _row_means(spectra_paths: Sequence[str | Path], component: str) -> pl.DataFrame:
    """(layer, condition, utt_id, row_mean) of the full-length rows of ``component``."""
    from whisper_spi import schemas

    return (
        schemas.scan_parquet(spectra_paths, "spectra")
        .filter((pl.col("prefix") == 0) & (pl.col("component") == component))
        .select("layer", "condition", "utt_id", "row_mean")
        .collect()
    )


def hallucinated_stressed(
    labels_paths: Sequence[str | Path],
    definition: str = "wer",
    threshold: float = HALLUCINATION_WER,
    her_threshold: float = HER_THRESHOLD,
) -> pl.DataFrame:
    """(utt_id, condition, speaker) of the stressed decodes that hallucinate under the config's
    ``definition`` (:func:`whisper_spi.taxonomy.labels.hallucination_expr`), from the
    taxonomy labels: the ``project`` fit's training utterances."""
    from whisper_spi import schemas
    from whisper_spi.taxonomy.labels import hallucination_expr

    labels = schemas.scan_parquet(labels_paths, "taxonomy").collect()
    return labels.filter(
        pl.col("condition").is_in(list(STRESSES))
        & hallucination_expr(definition, threshold, her_threshold)
    ).select("utt_id", "condition", "speaker")


def fit_fold_subspaces(
    spectra_paths: Sequence[str | Path],
    labels_paths: Sequence[str | Path],
    folds: Mapping[str, int],
    layers: Sequence[int],
    component: str,
    rank: int,
    *,
    definition: str = "wer",
    threshold: float = HALLUCINATION_WER,
    her_threshold: float = HER_THRESHOLD,
) -> dict[int, Intervention]:
    """fold -> ``project`` (strength 1) whose subspace at each layer is fitted on the other
    folds' hallucinated stressed utterances (:func:`hallucinated_stressed`) minus their clean
    twins (row means; see :func:`whisper_spi.mitigation.intervene.fit_subspace`); plus
    ALL_FOLDS, fitted on every fold."""
    bad = hallucinated_stressed(labels_paths, definition, threshold, her_threshold)
    means = _row_means(spectra_paths, component)
    clean = means.filter(pl.col("condition") == CLEAN).select(
        "layer", "utt_id", pl.col("row_mean").alias("clean_mean")
    )
    pairs = (
        means.join(bad.select("utt_id", "condition", "speaker"), on=["utt_id", "condition"])
        .join(clean, on=["layer", "utt_id"])
        .with_columns(pl.col("speaker").replace_strict(folds, default=None).alias("fold"))
    )
    out = {}
    for fold in [*sorted(set(folds.values())), ALL_FOLDS]:
        train = pairs.filter(pl.col("fold") != fold) if fold != ALL_FOLDS else pairs
        basis = {}
        for layer in layers:
            rows = train.filter(pl.col("layer") == layer).sort("condition", "utt_id")
            if rows.height < rank:
                raise WhisperSpiError(
                    f"project: {rows.height} hallucinated pairs outside fold {fold} at layer "
                    f"{layer}, fewer than intervene.rank = {rank}"
                )
            stressed = np.stack(rows["row_mean"].to_numpy())
            twin = np.stack(rows["clean_mean"].to_numpy())
            basis[layer] = fit_subspace(stressed, twin, rank).astype(np.float32)
        out[fold] = Intervention("project", 1.0, tuple(layers), component, basis)
    return out


def save_subspaces(subspaces: Mapping[int, Intervention], out_dir: str | Path, **provenance):
    """One intervention file per fold (fold-<k>.json/.safetensors; all.json for every fold)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for fold, spec in subspaces.items():
        name = "all" if fold == ALL_FOLDS else f"fold-{fold}"
        save_intervention(spec, out / f"{name}.json", fold=fold, **provenance)


def load_subspaces(out_dir: str | Path, strength: float) -> dict[int, Intervention]:
    """The fold files of :func:`save_subspaces`, at ``strength``."""
    files = sorted(Path(out_dir).glob("fold-*.json"))
    if not files:
        raise WhisperSpiError(f"{out_dir}: no fold-<k>.json subspace files")
    return {int(f.stem.removeprefix("fold-")): load_intervention(f, strength) for f in files}
