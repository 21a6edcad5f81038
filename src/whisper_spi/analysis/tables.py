"""Rule tables: both scopes' summaries, the paper's Tables 1 and 2, and their files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from whisper_spi import schemas
from whisper_spi.analysis.frames import (
    MEAN_LAYER,
    PAIR_SETS,
    SCOPES,
    component_rank,
    condition_rank,
    conformed,
    empty,
    rank,
)
from whisper_spi.analysis.markdown import counts_markdown, prefix_markdown, table_markdown
from whisper_spi.analysis.options import MetricOptions
from whisper_spi.analysis.pooled import pooled_summary
from whisper_spi.analysis.utterance import utterance_summary
from whisper_spi.io import atomic_path
from whisper_spi.registry import CLEAN, HELL, OBSERVABLE_SPECS, OBSERVABLES, PAPER_OBSERVABLES

__all__ = ["PAPER_VALUES", "TABLE_NAMES", "build_tables", "final_layer_table", "layer_mean_table"]

TABLE_NAMES = {"final": "table1_final_layer", "mean": "table2_layer_mean"}
TITLES = {
    "table1_final_layer": "Table 1: stressed vs clean at the final decoder layer",
    "table2_layer_mean": "Table 2: stressed vs clean, averaged over decoder layers",
}

# The paper's Hell-vs-clean values at K = 50 (PAPER.md, from a third-party digest):
# (paper model, component) -> its deltas of PAPER_OBSERVABLES (N_eff %, log10 Kf, alpha).
PAPER_VALUES: dict[tuple[str, str], tuple[float, float, float]] = {
    ("tiny", "cross_attn"): (-11.98, 2.93, 0.17),
    ("small", "cross_attn"): (-13.40, 3.87, 0.21),
    ("large-v3-turbo", "cross_attn"): (-4.70, 3.83, 0.14),
    ("large-v3-turbo", "self_attn"): (-2.34, 4.05, 0.008),
    ("small", "ffn"): (-13.59, 4.65, 0.22),
}
PAPER_K = 50
PAPER_CONDITION = HELL


def _wide(summary: pl.DataFrame) -> pl.DataFrame:
    keys = ["scope", "pair_set", "prefix", "model", "layer", "component", "condition", "k"]
    out = None
    for obs in PAPER_OBSERVABLES:
        name = OBSERVABLE_SPECS[obs].column
        part = summary.filter(pl.col("observable") == obs).select(
            *keys,
            pl.col("n").alias(f"n_{obs}"),
            pl.col("delta").alias(name),
            pl.col("delta_ci_low").alias(f"{name}_ci_low"),
            pl.col("delta_ci_high").alias(f"{name}_ci_high"),
            pl.col("delta_median").alias(f"{name}_median"),
            pl.col("delta_adj").alias(f"{name}_adj"),
            pl.col("delta_adj_ci_low").alias(f"{name}_adj_ci_low"),
            pl.col("delta_adj_ci_high").alias(f"{name}_adj_ci_high"),
        )
        out = part if out is None else out.join(part, on=keys, how="full", coalesce=True)
    return out.with_columns(n=pl.max_horizontal(*[f"n_{o}" for o in PAPER_OBSERVABLES]))


def _paper_columns(df: pl.DataFrame, opts: MetricOptions) -> pl.DataFrame:
    columns = [OBSERVABLE_SPECS[o].column for o in PAPER_OBSERVABLES]
    rows = [
        {
            "model": ours,
            "component": comp,
            "paper_model": paper,
            "paper_match": "exact" if ours == paper else "approx",
            **{f"paper_{c}": x for c, x in zip(columns, v, strict=True)},
        }
        for ours, paper in opts.paper_models.items()
        for (pm, comp), v in PAPER_VALUES.items()
        if pm == paper
    ]
    paper = pl.DataFrame(
        rows,
        schema={
            "model": pl.String,
            "component": pl.String,
            "paper_model": pl.String,
            "paper_match": pl.String,
            **{f"paper_{c}": pl.Float64 for c in columns},
        },
    )
    out = df.join(paper, on=["model", "component"], how="left")
    applies = (
        (pl.col("pair_set") == "all")
        & (pl.col("condition") == PAPER_CONDITION)
        & (pl.col("k") == PAPER_K)
        & (pl.col("prefix") == 0)
    )
    paper_cols = [c for c in paper.columns if c not in ("model", "component")]
    out = out.with_columns(
        [pl.when(applies).then(pl.col(c)).otherwise(None).alias(c) for c in paper_cols]
    )

    def agrees(ours: str, theirs: str) -> pl.Expr:
        return (
            pl.when(pl.col(ours).is_not_null() & pl.col(theirs).is_not_null())
            .then(pl.col(ours).sign() == pl.col(theirs).sign())
            .otherwise(None)
        )

    return out.with_columns(
        agrees(c, f"paper_{c}").alias(f"sign_agrees_{o}")
        for o, c in zip(PAPER_OBSERVABLES, columns, strict=True)
    )


def _finish_table(df: pl.DataFrame, table: str, opts: MetricOptions) -> pl.DataFrame:
    return (
        _paper_columns(df, opts)
        .with_columns(table=pl.lit(table))
        .sort(
            rank("scope", SCOPES),
            rank("pair_set", PAIR_SETS),
            "prefix",
            "model",
            component_rank(),
            condition_rank(),
            "k",
        )
        .select(schemas.contract("tables").names)
    )


def final_layer_table(summary: pl.DataFrame, options: MetricOptions | None = None) -> pl.DataFrame:
    """Table 1: the deltas at each model's final decoder layer (its highest layer present)."""
    opts = options or MetricOptions()
    final = (
        summary.filter(pl.col("layer") >= 0)
        .group_by("model")
        .agg(pl.col("layer").max().alias("_final"))
    )
    rows = summary.join(final, on="model").filter(pl.col("layer") == pl.col("_final"))
    return _finish_table(_wide(rows.drop("_final")), TABLE_NAMES["final"], opts)


def layer_mean_table(summary: pl.DataFrame, options: MetricOptions | None = None) -> pl.DataFrame:
    """Table 2: the deltas averaged over layers (per pair, then across pairs)."""
    opts = options or MetricOptions()
    rows = summary.filter(pl.col("layer") == MEAN_LAYER)
    return _finish_table(_wide(rows), TABLE_NAMES["mean"], opts)


def stressed_lengths(metrics_paths: Sequence[str | Path], pair_df: pl.DataFrame) -> pl.DataFrame:
    """Decoded rows T of every kept pair's stressed side (model, stress, utt_id, n_rows)."""
    rows = (
        schemas.scan_parquet(metrics_paths, "layer_metrics")
        .filter((pl.col("condition") != CLEAN) & (pl.col("prefix") == 0))
        .select("model", pl.col("condition").alias("stress"), "utt_id", "n_rows")
        .unique()
        .collect()
    )
    kept = pair_df.filter(pl.col("condition") == HELL).select("model", "stress", "utt_id")
    return rows.join(kept, on=["model", "stress", "utt_id"], how="semi")


def prefix_counts(summary: pl.DataFrame, lengths: pl.DataFrame) -> pl.DataFrame:
    """How many pairs each stored prefix keeps (contract ``prefix_counts``), per model and
    condition, and which prefixes the tables show: those no longer than the median stressed
    decode (rows T, ``lengths`` from :func:`stressed_lengths`) of the model's kept pairs, so
    that most stressed decodes reach them."""
    u = summary.filter(
        (pl.col("scope") == "utterance")
        & (pl.col("pair_set") == "all")
        & (pl.col("observable") == "neff")
        & (pl.col("layer") >= 0)
    )
    final = u.group_by("model").agg(pl.col("layer").max().alias("_final"))
    n = (
        u.join(final, on="model")
        .filter(pl.col("layer") == pl.col("_final"))
        .group_by("model", "condition", "prefix")
        .agg(pl.col("n").max().alias("n_pairs"))
    )
    full = n.filter(pl.col("prefix") == 0).select(
        "model", "condition", pl.col("n_pairs").alias("n_full")
    )
    median = lengths.group_by("model").agg(pl.col("n_rows").median().alias("median_stressed_rows"))
    out = (
        n.filter(pl.col("prefix") > 0)
        .join(full, on=["model", "condition"], how="left")
        .join(median, on="model", how="left")
        .with_columns(
            n_full=pl.col("n_full").fill_null(0),
            shown=pl.col("prefix") <= pl.col("median_stressed_rows").fill_null(0),
        )
        .sort("model", condition_rank(), "prefix")
    )
    return conformed(out, "prefix_counts")


def _shown(summary: pl.DataFrame, counts: pl.DataFrame) -> pl.DataFrame:
    """The summary rows the tables show: full length, and the prefixes chosen from the data."""
    keep = counts.filter(pl.col("shown")).select("model", "prefix").unique()
    return pl.concat(
        [
            summary.filter(pl.col("prefix") == 0),
            summary.filter(pl.col("prefix") > 0).join(keep, on=["model", "prefix"], how="semi"),
        ]
    )


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def build_tables(
    metrics_paths: Sequence[str | Path],
    pairs_paths: Sequence[str | Path],
    counts_paths: Sequence[str | Path],
    out_dir: str | Path,
    *,
    pooled_paths: Sequence[str | Path] = (),
    profile_paths: Sequence[str | Path] = (),
    options: MetricOptions | None = None,
    seed: int = 0,
) -> dict[str, pl.DataFrame]:
    """Everything under ``out_dir`` (results/tables/); returns the frames written.

    ``layer_summary.parquet``, ``rank_profile.parquet``, ``tables.parquet`` (contracts of the
    same names), ``table1_final_layer.{csv,md}``, ``table2_layer_mean.{csv,md}``,
    ``pair_counts.{csv,md}``, ``prefix_counts.{csv,md}``. The pooled scope comes from the
    pooled rule's outputs (may be empty with ``options.pooled = False``).
    """
    opts = options or MetricOptions()
    out = Path(out_dir)
    pair_df = schemas.scan_parquet(pairs_paths, "pairs").collect()
    counts = (
        schemas.scan_parquet(counts_paths, "pair_counts")
        .sort("model", condition_rank(), "condition")
        .collect()
    )
    summaries = [utterance_summary(metrics_paths, pair_df, opts, seed)]
    profile = empty("rank_profile")
    if opts.pooled:
        if not pooled_paths or not profile_paths:
            raise ValueError("build_tables: the pooled scope needs the pooled_layer outputs")
        cells = schemas.scan_parquet(pooled_paths, "pooled_cells").collect()
        summaries.append(pooled_summary(cells, opts))
        profile = schemas.scan_parquet(profile_paths, "rank_profile").collect()
    # every key column, pair_set included: polars' sort is not stable by default, so rows
    # equal on the keys would come out in a thread-dependent order
    summary = pl.concat(summaries).sort(
        rank("scope", SCOPES),
        "model",
        rank("pair_set", PAIR_SETS),
        condition_rank(),
        "prefix",
        "layer",
        component_rank(),
        "k",
        rank("observable", OBSERVABLES),
    )
    profile = profile.sort("model", condition_rank(), "layer", component_rank(), "rank")
    prefixes = prefix_counts(summary, stressed_lengths(metrics_paths, pair_df))
    shown = _shown(summary, prefixes)
    t1 = final_layer_table(shown, opts)
    t2 = layer_mean_table(shown, opts)
    centered = schemas.scan_parquet(metrics_paths, "layer_metrics", ["centered"])
    centered = centered.select(pl.col("centered").unique()).collect()["centered"].to_list()
    labels = {"centered": centered[0] if len(centered) == 1 else None}
    tables = pl.concat([t1, t2])

    schemas.write_parquet(summary, "layer_summary", out / "layer_summary.parquet")
    schemas.write_parquet(profile, "rank_profile", out / "rank_profile.parquet")
    schemas.write_parquet(tables, "tables", out / "tables.parquet")
    for name, t in ((TABLE_NAMES["final"], t1), (TABLE_NAMES["mean"], t2)):
        with atomic_path(out / f"{name}.csv", suffix=".csv.tmp") as tmp:
            t.drop("table").write_csv(tmp)
        _write_text(out / f"{name}.md", table_markdown(t, TITLES[name], opts, **labels))
    schemas.write_csv(counts, "pair_counts", out / "pair_counts.csv")
    _write_text(out / "pair_counts.md", counts_markdown(counts))
    schemas.write_csv(prefixes, "prefix_counts", out / "prefix_counts.csv")
    _write_text(out / "prefix_counts.md", prefix_markdown(prefixes))
    return {"layer_summary": summary, "tables": tables, "pair_counts": counts,
            "rank_profile": profile, "prefix_counts": prefixes}  # fmt: skip
