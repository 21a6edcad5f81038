"""Everything the detect rule writes for one model's files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from whisper_spi import schemas
from whisper_spi.analysis.spectra import ObservableOptions
from whisper_spi.charts import save_chart
from whisper_spi.detect.by_type import auroc_by_type
from whisper_spi.detect.crossval import cross_validate
from whisper_spi.detect.detector import fit_detector, save_detector
from whisper_spi.detect.evaluate import evaluate, markdown_report
from whisper_spi.detect.features import features
from whisper_spi.detect.figure import roc_figure
from whisper_spi.io import atomic_path
from whisper_spi.taxonomy.labels import HER_THRESHOLD, hallucination_expr
from whisper_spi.text import HALLUCINATION_WER

__all__ = ["run_detect"]


def run_detect(
    spectra_paths: Sequence[str | Path],
    transcripts_paths: Sequence[str | Path],
    out_dir: str | Path,
    *,
    seed: int = 0,
    threshold: float = HALLUCINATION_WER,
    options: ObservableOptions | None = None,
    C: float | str = 1.0,
    n_splits: int = 5,
    n_boot: int = 1000,
    ci: float = 0.95,
    figure: bool = True,
    labels_paths: Sequence[str | Path] = (),
    definition: str = "wer",
    her_threshold: float = HER_THRESHOLD,
) -> dict[str, Path]:
    """Features, CV, tables, detector and ROC figure of one model's files, into ``out_dir``:
    results.csv, comparison.csv, oof_scores.csv (contracts detect_results, detect_comparison,
    detect_oof), results.md, detector.json (fitted on setting ``all``, what the CLI sees) and
    with ``figure`` roc.html and roc.png. Returns {name: path}.

    With the taxonomy ``labels_paths`` the label is the hallucination ``definition``
    (:func:`whisper_spi.taxonomy.labels.hallucination_expr`) and by_type.csv (contract
    ``detect_by_type``) is written too; without them, WER > ``threshold``.
    """
    out = Path(out_dir)
    df = features(spectra_paths, transcripts_paths, options, threshold=threshold)
    labels = None
    if labels_paths:
        labels = schemas.scan_parquet(labels_paths, "taxonomy").collect()
        label = labels.select(
            "model",
            "condition",
            "utt_id",
            hallucination_expr(definition, threshold, her_threshold).alias("label"),
        )
        df = (
            df.join(label, on=["model", "condition", "utt_id"], how="left")
            .with_columns(hallucination=pl.col("label"))
            .drop("label")
        )
    elif definition != "wer":
        raise ValueError(f"run_detect: definition {definition!r} needs the taxonomy labels")
    models = df["model"].unique().to_list()
    if len(models) != 1:
        raise ValueError(f"run_detect: expected the files of one model, got {models}")
    oof = cross_validate(df, seed=seed, C=C, n_splits=n_splits)
    results, comparison = evaluate(oof, seed=seed, n_boot=n_boot, ci=ci)
    det = fit_detector(
        df, model=models[0], C=C, options=options, threshold=threshold, oof=oof, seed=seed
    )
    paths = {
        "results": out / "results.csv",
        "comparison": out / "comparison.csv",
        "markdown": out / "results.md",
        "oof": out / "oof_scores.csv",
        "detector": out / "detector.json",
    }
    schemas.write_csv(results, "detect_results", paths["results"])
    schemas.write_csv(comparison, "detect_comparison", paths["comparison"])
    schemas.write_csv(oof, "detect_oof", paths["oof"])
    with atomic_path(paths["markdown"], suffix=".md.tmp") as tmp:
        tmp.write_text(markdown_report(results, comparison))
    save_detector(det, paths["detector"])
    if labels is not None:
        paths["by_type"] = out / "by_type.csv"
        by_type = auroc_by_type(oof, labels, seed=seed, n_boot=n_boot, ci=ci)
        schemas.write_csv(by_type, "detect_by_type", paths["by_type"])
    if figure:
        paths["roc_html"], paths["roc_png"] = save_chart(roc_figure(oof), out / "roc")
    return paths
