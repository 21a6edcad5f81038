"""The subcommands of the workflow stages that read and write files only (no model), in
pipeline order: corpus and stress, taxonomy, pairs, the spectral observables and tables,
detection, the theory summary, mitigation, and the report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl

from whisper_spi.cli.options import (
    CONDITION,
    DEFINITION,
    LABELS,
    MODEL_NAME,
    OPTIONS,
    OUT_DIR,
    SEED,
    json_object,
    options_of,
)
from whisper_spi.errors import WhisperSpiError
from whisper_spi.text import HALLUCINATION_WER


def cmd_corpus(args: argparse.Namespace) -> int:
    from whisper_spi.corpus.manifest import write_manifest

    manifest, rejected = write_manifest(
        args.root, args.splits, args.limit or None, args.on_bad_audio, args.manifest, args.rejected
    )
    print(
        f"corpus: {manifest.height} utterances kept, {rejected.height} rejected "
        f"(see {args.rejected})",
        file=sys.stderr,
    )
    return 0


def cmd_stress(args: argparse.Namespace) -> int:
    from whisper_spi.corpus.stress import write_stress_shard

    rows = write_stress_shard(
        args.manifest,
        args.condition,
        int(args.shard),
        args.shard_size,
        args.seed,
        json_object(args.params, "--params"),
        args.audio_dir,
        args.out,
        limit=args.limit or None,
    )
    print(f"stress {args.condition} shard {args.shard}: {rows.height} utterances", file=sys.stderr)
    return 0


def cmd_taxonomy(args: argparse.Namespace) -> int:
    from whisper_spi.schemas import write_parquet
    from whisper_spi.taxonomy.labels import TaxonomyOptions
    from whisper_spi.taxonomy.run import label_files

    options = TaxonomyOptions.from_config(
        json_object(args.options, "--options"), args.wer_threshold
    )
    labels = label_files(args.transcripts, args.mix_manifests, args.corpus_manifest, options)
    write_parquet(labels, "taxonomy", args.out)
    return 0


def cmd_taxonomy_summary(args: argparse.Namespace) -> int:
    from whisper_spi.taxonomy.run import summarize

    summarize(args.labels, args.nonspeech, args.top, args.tables_dir, args.figure)
    return 0


def cmd_pairs(args: argparse.Namespace) -> int:
    from whisper_spi.analysis.pairs import pairs_and_counts, write_pairs

    pairs, counts = pairs_and_counts(
        args.transcripts,
        threshold=args.threshold,
        clean_max_wer=args.clean_max_wer,
        min_tokens=args.min_tokens,
        labels=args.labels,
        definition=args.definition,
        her_threshold=args.her_threshold,
    )
    write_pairs(pairs, counts, args.pairs, args.counts)
    return 0


def cmd_levels(args: argparse.Namespace) -> int:
    from whisper_spi.analysis.levels import level_summary, levels_chart, write_levels
    from whisper_spi.analysis.options import MetricOptions
    from whisper_spi.charts import save_chart

    table = level_summary(
        args.transcripts,
        args.metrics,
        args.labels,
        json_object(args.stresses, "--stresses"),
        threshold=args.threshold,
        definition=args.definition,
        her_threshold=args.her_threshold,
        min_tokens=args.min_tokens,
        options=options_of(args.options, MetricOptions),
        seed=args.seed,
    )
    write_levels(table, args.out)
    save_chart(levels_chart(table), args.figure)
    return 0


def cmd_layer_metrics(args: argparse.Namespace) -> int:
    from whisper_spi.analysis.layer_metrics import layer_metrics, write_layer_metrics
    from whisper_spi.analysis.spectra import ObservableOptions

    opts = options_of(args.options, ObservableOptions)
    write_layer_metrics(layer_metrics(args.spectra, opts), args.out)
    return 0


def cmd_pooled(args: argparse.Namespace) -> int:
    from whisper_spi import schemas
    from whisper_spi.analysis.options import MetricOptions
    from whisper_spi.analysis.pooled import pooled_layer, write_pooled_layer

    pairs = schemas.scan_parquet([args.pairs], "pairs").collect()
    options = options_of(args.options, MetricOptions)
    cells, profile = pooled_layer(args.spectra, pairs, args.model, args.layer, options, args.seed)
    write_pooled_layer(cells, profile, args.out, args.profile)
    return 0


def cmd_tables(args: argparse.Namespace) -> int:
    from whisper_spi.analysis.options import MetricOptions
    from whisper_spi.analysis.tables import build_tables

    build_tables(
        args.metrics,
        args.pairs,
        args.counts,
        args.out_dir,
        pooled_paths=args.pooled,
        profile_paths=args.profiles,
        options=options_of(args.options, MetricOptions),
        seed=args.seed,
    )
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    from whisper_spi import schemas
    from whisper_spi.analysis.figures import make_figures
    from whisper_spi.analysis.options import MetricOptions

    make_figures(
        schemas.scan_parquet([args.summary], "layer_summary").collect(),
        schemas.scan_parquet([args.profile], "rank_profile").collect(),
        args.out_dir,
        options_of(args.options, MetricOptions),
    )
    return 0


def cmd_detect_eval(args: argparse.Namespace) -> int:
    from whisper_spi.analysis.spectra import ObservableOptions
    from whisper_spi.detect import run_detect

    run_detect(
        args.spectra,
        args.transcripts,
        args.out_dir,
        seed=args.seed,
        threshold=args.threshold,
        options=options_of(args.options, ObservableOptions),
        n_boot=args.n_boot,
        labels_paths=args.labels,
        definition=args.definition,
        her_threshold=args.her_threshold,
    )
    return 0


def cmd_theory_summary(args: argparse.Namespace) -> int:
    from whisper_spi import schemas
    from whisper_spi.theory.summary import summarize

    measured = schemas.scan_parquet(args.measurements, "theory_measurements").collect()
    summarize(measured, args.out_dir, args.figure, seed=args.seed, n_boot=args.n_boot)
    return 0


def cmd_intervene_fit(args: argparse.Namespace) -> int:
    from whisper_spi.mitigation.fit import fit_fold_subspaces, save_subspaces, speaker_folds_of

    if not args.labels:
        raise WhisperSpiError("intervene-fit: --labels (the model's taxonomy labels) is required")
    folds = speaker_folds_of(args.oof)
    subspaces = fit_fold_subspaces(
        args.spectra, args.labels, folds, args.layers, args.component, args.rank,
        definition=args.definition, threshold=args.threshold, her_threshold=args.her_threshold,
    )  # fmt: skip
    save_subspaces(subspaces, args.out_dir, model=args.model_name, rank=args.rank)
    return 0


def cmd_mitigation(args: argparse.Namespace) -> int:
    from whisper_spi.mitigation.table import run_mitigation

    run_mitigation(
        model_name=args.model_name,
        transcripts=args.transcripts,
        mitigated=args.mitigated,
        stress_manifests=args.stress_manifests,
        corpus_manifest=args.corpus_manifest,
        out_dir=args.out_dir,
        threshold=args.threshold,
        seed=args.seed,
        n_boot=args.n_boot,
        definition=args.definition,
        her_threshold=args.her_threshold,
    )
    return 0


def cmd_mitigation_summary(args: argparse.Namespace) -> int:
    from whisper_spi.mitigation.table import run_summary

    run_summary(args.tables, args.out_dir)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from whisper_spi.report import collect_versions, write_report

    config = json_object(args.config_json, "--config-json")
    extras = [(title, table, None if png == "-" else png) for title, table, png in args.extra]
    write_report(
        args.out,
        args.tables_dir,
        args.figures_dir,
        args.pair_counts,
        config,
        collect_versions(),
        extras,
        rejected=args.rejected,
        pairs=args.pairs or None,
        comparisons=args.comparison,
        theory=args.theory_table,
        by_type=args.by_type,
        mitigation=args.mitigation,
        findings_out=args.findings,
    )
    return 0


def cmd_schemas(args: argparse.Namespace) -> int:
    from whisper_spi.schemas import to_markdown

    print(to_markdown())
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    import yaml

    from whisper_spi.config import validate
    from whisper_spi.corpus.manifest import list_utterances
    from whisper_spi.decode.models import model_config
    from whisper_spi.plan import cost_plan

    try:
        raw = yaml.safe_load(Path(args.configfile).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise WhisperSpiError(f"{args.configfile}: not a readable config ({exc})") from None
    n = args.n_utterances
    if n is not None:  # the corpus is not read, so its root need not exist here
        raw.setdefault("corpus", {})["root"] = "demo"
    config = validate(raw)
    if n is None:
        corpus = config["corpus"]
        n = len(list_utterances(corpus["root"], corpus["splits"], corpus["limit"]))
    models = {m: model_config(spec, config["model_cache"]) for m, spec in config["models"].items()}
    plan = cost_plan(config, n, models, args.mean_tokens)
    totals = plan.group_by("stage", maintain_order=True).agg(
        pl.lit("all").alias("model"), pl.col("jobs", "decodes", "cpu_hours", "disk_gb").sum()
    )
    with pl.Config(tbl_rows=-1, tbl_hide_dataframe_shape=True, float_precision=1):
        print(f"{args.configfile}: {n} utterances, {len(models)} models")
        print(pl.concat([plan, totals]))
        print(f"total: {plan['cpu_hours'].sum():.1f} CPU hours, {plan['disk_gb'].sum():.1f} GB")
    return 0


def register(sub) -> None:
    """Add these subcommands to ``sub``, the subparsers of ``whisper-spi``."""
    p = sub.add_parser(
        "corpus", help="scan a LibriSpeech-layout corpus or a .csv/.jsonl manifest file"
    )
    p.add_argument(
        "--root", default="demo", help="LibriSpeech root, a .csv/.jsonl manifest file, or 'demo'"
    )
    p.add_argument("--splits", nargs="+", default=["test-clean"])
    p.add_argument("--limit", type=int, default=0, help="0 = all")
    p.add_argument("--on-bad-audio", choices=["skip", "fail"], default="skip")
    p.add_argument("--manifest", required=True)
    p.add_argument("--rejected", required=True)
    p.set_defaults(func=cmd_corpus)

    p = sub.add_parser(
        "stress", parents=[CONDITION], help="write one shard of stressed audio and its manifest"
    )
    p.add_argument("--manifest", required=True, help="corpus manifest")
    p.add_argument("--shard", required=True)
    p.add_argument("--shard-size", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--params", default="{}", help="JSON of the stress parameters")
    p.add_argument("--limit", type=int, default=0, help="first N utterances by utt_id (0 = all)")
    p.add_argument("--audio-dir", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_stress)

    p = sub.add_parser(
        "taxonomy", parents=[OPTIONS], help="the error type of every decode of one model"
    )
    p.add_argument("--transcripts", nargs="+", required=True)
    p.add_argument("--mix-manifests", nargs="*", default=[], help="speaker_mix stress shards")
    p.add_argument("--corpus-manifest", required=True)
    p.add_argument(
        "--wer-threshold", type=float, default=HALLUCINATION_WER, help="correct: WER <= this"
    )
    p.add_argument("--out", required=True, help="taxonomy/<model>/labels.parquet")
    p.set_defaults(func=cmd_taxonomy)

    p = sub.add_parser("taxonomy-summary", help="counts by type, non-speech rate, bag, figure")
    p.add_argument("--labels", nargs="+", required=True)
    p.add_argument("--nonspeech", nargs="*", default=[], help="the non-speech conditions")
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--tables-dir", required=True)
    p.add_argument("--figure", required=True, help="figure stem (writes .html and .png)")
    p.set_defaults(func=cmd_taxonomy_summary)

    p = sub.add_parser(
        "pairs",
        parents=[DEFINITION, LABELS],
        help="clean/stressed pairs of one model and their counts",
    )
    p.add_argument("--transcripts", nargs="+", required=True)
    p.add_argument("--clean-max-wer", type=float, default=None, help="config pairs.clean_max_wer")
    p.add_argument("--min-tokens", type=int, default=0, help="config pairs.min_tokens")
    p.add_argument("--pairs", required=True)
    p.add_argument("--counts", required=True)
    p.set_defaults(func=cmd_pairs)

    p = sub.add_parser(
        "levels",
        parents=[DEFINITION, LABELS, OPTIONS, SEED],
        help="graded stress: hallucination rate and deltas against the stress level",
    )
    p.add_argument("--transcripts", nargs="+", required=True, help="clean and every stress")
    p.add_argument("--metrics", nargs="+", required=True, help="the final layer's layer metrics")
    p.add_argument("--stresses", required=True, help="config stresses (JSON): each own level")
    p.add_argument("--min-tokens", type=int, default=0, help="config pairs.min_tokens")
    p.add_argument("--out", required=True, help="tables/levels.csv")
    p.add_argument("--figure", required=True, help="figure stem (writes .html and .png)")
    p.set_defaults(func=cmd_levels)

    p = sub.add_parser(
        "layer-metrics", parents=[OPTIONS], help="observables of every spectrum of one layer"
    )
    p.add_argument("--spectra", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_layer_metrics)

    p = sub.add_parser(
        "pooled",
        parents=[OPTIONS, SEED],
        help="pooled scope of one model x layer (cells + profiles)",
    )
    p.add_argument("--spectra", nargs="+", required=True, help="the layer's decode spectra")
    p.add_argument("--pairs", required=True, help="pairs/<model>/pairs.parquet")
    p.add_argument("--model", required=True)
    p.add_argument("--layer", type=int, required=True)
    p.add_argument("--out", required=True, help="pooled/<model>/layer-<L>.parquet")
    p.add_argument("--profile", required=True, help="pooled/<model>/layer-<L>-profile.parquet")
    p.set_defaults(func=cmd_pooled)

    p = sub.add_parser(
        "tables",
        parents=[OPTIONS, SEED, OUT_DIR],
        help="Delta%% tables (paper Tables 1 and 2) with bootstrap CIs",
    )
    p.add_argument("--metrics", nargs="+", required=True)
    p.add_argument("--pairs", nargs="+", required=True)
    p.add_argument("--counts", nargs="+", required=True)
    p.add_argument("--pooled", nargs="*", default=[], help="pooled/<model>/layer-<L>.parquet")
    p.add_argument("--profiles", nargs="*", default=[], help="their -profile.parquet")
    p.set_defaults(func=cmd_tables)

    p = sub.add_parser(
        "figures",
        parents=[OPTIONS, OUT_DIR],
        help="trajectories, phase diagram, tail energy, scree",
    )
    p.add_argument("--summary", required=True, help="tables/layer_summary.parquet")
    p.add_argument("--profile", required=True, help="tables/rank_profile.parquet")
    p.set_defaults(func=cmd_figures)

    p = sub.add_parser(
        "detect-eval",
        parents=[DEFINITION, LABELS, OPTIONS, SEED, OUT_DIR],
        help="spectral detector vs Whisper's heuristics, one model",
    )
    p.add_argument("--spectra", nargs="+", required=True)
    p.add_argument("--transcripts", nargs="+", required=True)
    p.add_argument("--n-boot", type=int, default=1000)
    p.set_defaults(func=cmd_detect_eval)

    p = sub.add_parser(
        "theory-summary",
        parents=[SEED, OUT_DIR],
        help="theory table and the measured phase diagram",
    )
    p.add_argument("--measurements", nargs="+", required=True)
    p.add_argument("--n-boot", type=int, default=200)
    p.add_argument("--figure", required=True, help="figure stem (writes .html and .png)")
    p.set_defaults(func=cmd_theory_summary)

    p = sub.add_parser(
        "intervene-fit",
        parents=[MODEL_NAME, DEFINITION, LABELS, OUT_DIR],
        help="project's subspaces, fitted out of detector fold",
    )
    p.add_argument("--spectra", nargs="+", required=True)
    p.add_argument("--oof", required=True, help="detect/<model>/oof_scores.csv (the folds)")
    p.add_argument("--layers", type=int, nargs="+", required=True)
    p.add_argument("--component", required=True)
    p.add_argument("--rank", type=int, default=1)
    p.set_defaults(func=cmd_intervene_fit)

    p = sub.add_parser(
        "mitigation",
        parents=[MODEL_NAME, DEFINITION, SEED, OUT_DIR],
        help="one model's mitigation table and dose-response",
    )
    p.add_argument("--transcripts", nargs="+", required=True, help="plain decode transcripts")
    p.add_argument("--mitigated", nargs="*", default=[], help="intervene outputs")
    p.add_argument("--stress-manifests", nargs="*", default=[])
    p.add_argument("--corpus-manifest", required=True)
    p.add_argument("--n-boot", type=int, default=1000)
    p.set_defaults(func=cmd_mitigation)

    p = sub.add_parser(
        "mitigation-summary", parents=[OUT_DIR], help="all models: table, verdicts, trade-off"
    )
    p.add_argument("--tables", nargs="+", required=True, help="mitigation/<model>/mitigation.csv")
    p.set_defaults(func=cmd_mitigation_summary)

    p = sub.add_parser("report", help="one self-contained HTML report")
    p.add_argument("--tables-dir", required=True)
    p.add_argument("--figures-dir", required=True)
    p.add_argument("--pair-counts", required=True)
    p.add_argument("--config-json", default="{}", help="the run's config, shown in the report")
    p.add_argument("--rejected", default=None, help="corpus/rejected.parquet")
    p.add_argument("--pairs", nargs="*", default=[], help="pairs/<model>/pairs.parquet")
    p.add_argument("--comparison", nargs="*", default=[], help="detect/<model>/comparison.csv")
    # the Findings' further inputs (each optional: a claim whose file is absent is left out)
    p.add_argument("--by-type", nargs="*", default=[], help="detect/<model>/by_type.csv")
    p.add_argument("--theory-table", nargs="?", default=None, help="theory/theory_table.csv")
    p.add_argument("--mitigation", nargs="?", default=None, help="mitigation/mitigation.csv")
    p.add_argument("--findings", default=None, help="also write the findings to this CSV (+ .md)")
    p.add_argument(
        "--extra",
        nargs=3,
        action="append",
        default=[],
        metavar=("TITLE", "CSV", "PNG"),
        help="a further section: title, a CSV table, a PNG figure (or -)",
    )
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("schemas", help="print the Parquet data contracts as Markdown")
    p.set_defaults(func=cmd_schemas)

    p = sub.add_parser(
        "plan", help="a config's jobs, decodes, CPU hours and disk per model stage and model"
    )
    p.add_argument("configfile", help="a config file (config/paper.yaml, ...)")
    p.add_argument("--n-utterances", type=int, help="instead of listing the corpus")
    p.add_argument("--mean-tokens", type=int, default=60, help="decoded rows per utterance")
    p.set_defaults(func=cmd_plan)
