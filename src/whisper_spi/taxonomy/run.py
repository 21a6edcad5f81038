"""What the taxonomy rules write: the labels of one model's decodes, and the summaries of
every model's labels (counts by type, non-speech rate, bag of hallucinations, the figure)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import altair as alt
import polars as pl

from whisper_spi import schemas
from whisper_spi.charts import save_chart
from whisper_spi.io import atomic_path
from whisper_spi.registry import condition_order
from whisper_spi.taxonomy.labels import (
    TYPES,
    TaxonomyOptions,
    bag_of_hallucinations,
    label_transcripts,
    mix_partners,
    nonspeech_rate,
    type_counts,
)

__all__ = ["label_files", "summarize", "taxonomy_chart"]

_TRANSCRIPT = (
    "utt_id", "speaker", "model", "condition", "reference", "hypothesis", "hit_max_length"
)  # fmt: skip
# One colour per type, the grounded ones cool, the ungrounded ones warm.
_COLORS = ("#9ecae1", "#bdbdbd", "#3182bd", "#756bb1", "#fd8d3c", "#d62728")


def label_files(
    transcripts_paths: Sequence[str | Path],
    mix_manifests: Sequence[str | Path],
    corpus_manifest: str | Path,
    options: TaxonomyOptions,
) -> pl.DataFrame:
    """Labels (contract ``taxonomy``) of the decodes in ``transcripts_paths``; the partners of
    speaker_mix utterances come from its stress manifests, their texts from the corpus."""
    transcripts = schemas.scan_parquet(transcripts_paths, "transcripts", _TRANSCRIPT)
    transcripts = transcripts.select(_TRANSCRIPT).sort("condition", "utt_id").collect()
    partners: dict[tuple[str, str], list[str]] = {}
    if mix_manifests:
        columns = ["stress", "utt_id", "params"]
        manifest = schemas.scan_parquet(mix_manifests, "stress_manifest", columns)
        partners = mix_partners(manifest.select(columns).collect())
    corpus = schemas.scan_parquet([corpus_manifest], "manifest", ["utt_id", "text"])
    references = dict(corpus.select("utt_id", "text").collect().iter_rows())
    return label_transcripts(transcripts, partners, references, options)


def taxonomy_chart(counts: pl.DataFrame) -> alt.Chart:
    """Stacked bars: the share of each type per condition, one row of panels per model."""
    present = condition_order(counts["condition"])
    data = counts.with_columns(type_rank=pl.col("type").replace_strict(TYPES, range(len(TYPES))))
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("condition:N", sort=present, title=None, axis=alt.Axis(labelAngle=-30)),
            y=alt.Y("share:Q", title="share of decodes", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color(
                "type:N",
                sort=list(TYPES),
                scale=alt.Scale(domain=list(TYPES), range=list(_COLORS)),
                title="type",
            ),
            order=alt.Order("type_rank:Q"),
            tooltip=["model", "condition", "type", "n", alt.Tooltip("share:Q", format=".2f")],
        )
        .properties(width=38 * len(present), height=220)
        .facet(column=alt.Column("model:N", title=None))
    )


def _markdown(df: pl.DataFrame, title: str) -> str:
    cols = df.columns
    rows = [
        "| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in r) + " |"
        for r in df.iter_rows()
    ]
    return "\n".join(
        [f"# {title}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols), *rows, ""]
    )


def summarize(
    label_paths: Sequence[str | Path],
    nonspeech: Sequence[str],
    top: int,
    tables_dir: str | Path,
    figure_stem: str | Path,
) -> dict[str, pl.DataFrame]:
    """Counts by type, non-speech rate and bag of hallucinations of every model's labels, as
    CSV (contracts) and Markdown under ``tables_dir``; the stacked bar at ``figure_stem``."""
    labels = schemas.scan_parquet(label_paths, "taxonomy").collect()
    out = {
        "taxonomy_counts": type_counts(labels),
        "nonspeech_rate": nonspeech_rate(labels, nonspeech),
        "bag_of_hallucinations": bag_of_hallucinations(labels, nonspeech, top),
    }
    titles = {
        "taxonomy_counts": "Decodes by model x condition x type",
        "nonspeech_rate": "Non-speech inputs: share with a non-empty transcript",
        "bag_of_hallucinations": "Bag of hallucinations: the most frequent non-speech outputs",
    }
    tables_dir = Path(tables_dir)
    for name, frame in out.items():
        schemas.write_csv(frame, name, tables_dir / f"{name}.csv")
        with atomic_path(tables_dir / f"{name}.md", suffix=".md.tmp") as tmp:
            tmp.write_text(_markdown(frame, titles[name]))
    save_chart(taxonomy_chart(out["taxonomy_counts"]), figure_stem)
    return out
