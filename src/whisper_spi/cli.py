"""The ``whisper-spi`` command: one subcommand per workflow stage, plus user tools.

Each subcommand only parses arguments, reads and writes files, and calls one library
function; the Snakemake rules call these. A :class:`WhisperSpiError` becomes one line on
stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from whisper_spi.analysis.options import MetricOptions
from whisper_spi.analysis.spectra import ObservableOptions
from whisper_spi.errors import WhisperSpiError
from whisper_spi.tuning import tune_process


def _quiet_transformers() -> None:
    # Progress bars of weight loading would drown the one-line-per-file output.
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def cmd_transcribe(args: argparse.Namespace) -> int:
    from whisper_spi.corpus.audio import load_audio
    from whisper_spi.decode.loop import transcribe
    from whisper_spi.decode.models import load_model

    _quiet_transformers()
    tune_process(args.threads)
    bundle = load_model(args.model, device=args.device, dtype=args.dtype)
    waves = [load_audio(path) for path in args.files]
    edit = contextlib.nullcontext()
    if args.intervention:
        from whisper_spi.mitigation.intervene import Intervene, load_intervention

        edit = Intervene(bundle.model, load_intervention(args.intervention, args.strength))
    with edit:
        results = transcribe(bundle, waves, args.batch_size, args.max_new_tokens)
    for path, result in zip(args.files, results, strict=True):
        print(f"{path}\t{result.text}", flush=True)
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from whisper_spi.decode.capture import DecodeOptions, SpectrumOptions, decode_shard
    from whisper_spi.decode.models import load_model
    from whisper_spi.mitigation.run import read_shard
    from whisper_spi.schemas import write_rows

    _quiet_transformers()
    tune_process(args.threads)
    bundle = load_model(args.model, device=args.device, dtype=args.dtype, cache_dir=args.cache)
    if len(args.spectra) != bundle.n_decoder_layers:
        raise WhisperSpiError(
            f"{args.model}: {bundle.n_decoder_layers} decoder layers but "
            f"{len(args.spectra)} --spectra outputs given"
        )
    utterances = read_shard(args.stress_manifest, args.corpus_manifest, condition=args.condition)
    opts = DecodeOptions(
        max_new_tokens=args.max_new_tokens,
        hallucination_wer=args.hallucination_wer,
        tokens=args.tokens,
        include_prompt=args.include_prompt,
        components=tuple(args.components),
        spectra=SpectrumOptions(center=args.center, prefix_lengths=tuple(args.prefix_lengths)),
    )
    with tqdm(
        total=len(utterances),
        desc=f"decode {args.model_name}/{args.condition}",
        file=sys.stderr,
        mininterval=5,
    ) as bar:
        transcripts, spectra = decode_shard(
            bundle, utterances, args.model_name, args.condition, opts, args.batch_size, bar
        )
    write_rows(transcripts, "transcripts", args.transcripts)
    for layer, path in enumerate(args.spectra):
        write_rows(spectra[layer], "spectra", path)
    return 0


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
        _json(args.params, "--params"),
        args.audio_dir,
        args.out,
        limit=args.limit or None,
    )
    print(f"stress {args.condition} shard {args.shard}: {rows.height} utterances", file=sys.stderr)
    return 0


def _json(text: str, flag: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise WhisperSpiError(f"{flag}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise WhisperSpiError(f"{flag}: expected a JSON object, got {text!r}")
    return value


def _options(text: str, cls):
    """The --options JSON as ``cls`` (MetricOptions, or ObservableOptions for the kernel)."""
    try:
        return cls.from_dict(_json(text, "--options"))
    except ValueError as exc:
        raise WhisperSpiError(str(exc)) from None


def cmd_layer_metrics(args: argparse.Namespace) -> int:
    from whisper_spi.analysis.layer_metrics import layer_metrics, write_layer_metrics

    opts = _options(args.options, ObservableOptions)
    write_layer_metrics(layer_metrics(args.spectra, opts), args.out)
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


def cmd_taxonomy(args: argparse.Namespace) -> int:
    from whisper_spi.schemas import write_parquet
    from whisper_spi.taxonomy.labels import TaxonomyOptions
    from whisper_spi.taxonomy.run import label_files

    options = TaxonomyOptions.from_config(_json(args.options, "--options"), args.wer_threshold)
    labels = label_files(args.transcripts, args.mix_manifests, args.corpus_manifest, options)
    write_parquet(labels, "taxonomy", args.out)
    return 0


def cmd_taxonomy_summary(args: argparse.Namespace) -> int:
    from whisper_spi.taxonomy.run import summarize

    summarize(args.labels, args.nonspeech, args.top, args.tables_dir, args.figure)
    return 0


def cmd_pooled(args: argparse.Namespace) -> int:
    from whisper_spi import schemas
    from whisper_spi.analysis.pooled import pooled_layer, write_pooled_layer

    pairs = schemas.scan_parquet([args.pairs], "pairs").collect()
    options = _options(args.options, MetricOptions)
    cells, profile = pooled_layer(args.spectra, pairs, args.model, args.layer, options, args.seed)
    write_pooled_layer(cells, profile, args.out, args.profile)
    return 0


def cmd_tables(args: argparse.Namespace) -> int:
    from whisper_spi.analysis.tables import build_tables

    build_tables(
        args.metrics,
        args.pairs,
        args.counts,
        args.out_dir,
        pooled_paths=args.pooled,
        profile_paths=args.profiles,
        options=_options(args.options, MetricOptions),
        seed=args.seed,
    )
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    from whisper_spi import schemas
    from whisper_spi.analysis.figures import make_figures

    make_figures(
        schemas.scan_parquet([args.summary], "layer_summary").collect(),
        schemas.scan_parquet([args.profile], "rank_profile").collect(),
        args.out_dir,
        _options(args.options, MetricOptions),
    )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from whisper_spi.report import collect_versions, write_report

    config = _json(args.config_json, "--config-json")
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
    )
    return 0


def cmd_detect(args: argparse.Namespace) -> int:
    from whisper_spi.detect import run_detect

    run_detect(
        args.spectra,
        args.transcripts,
        args.out_dir,
        seed=args.seed,
        threshold=args.threshold,
        options=_options(args.options, ObservableOptions),
        n_boot=args.n_boot,
        labels_paths=args.labels,
        definition=args.definition,
        her_threshold=args.her_threshold,
    )
    return 0


def cmd_theory_measure(args: argparse.Namespace) -> int:
    from whisper_spi import schemas
    from whisper_spi.decode.models import load_model
    from whisper_spi.theory.measure import measure_condition

    # the inputs are checked against their contracts before the model is loaded
    pairs = schemas.scan_parquet([args.pairs], "pairs").collect()
    transcripts = schemas.scan_parquet(
        args.transcripts, "transcripts", ["utt_id", "condition", "token_ids", "hit_max_length"]
    )
    stress = schemas.scan_parquet(args.stress_manifests, "stress_manifest", ["utt_id", "path"])
    _quiet_transformers()
    tune_process(args.threads)
    bundle = load_model(args.model, device=args.device, cache_dir=args.cache)
    out = measure_condition(
        bundle,
        args.model_name,
        args.condition,
        pairs,
        transcripts,
        stress,
        json.loads(args.options),
        seed=args.seed,
    )
    schemas.write_parquet(out, "theory_measurements", args.out)
    return 0


def cmd_theory_summary(args: argparse.Namespace) -> int:
    from whisper_spi import schemas
    from whisper_spi.theory.summary import summarize

    measured = schemas.scan_parquet(args.measurements, "theory_measurements").collect()
    summarize(measured, args.out_dir, args.figure, seed=args.seed, n_boot=args.n_boot)
    return 0


def cmd_detect_audio(args: argparse.Namespace) -> int:
    from whisper_spi.corpus.audio import load_audio
    from whisper_spi.decode.capture import DecodeOptions, SpectrumOptions, decode_shard
    from whisper_spi.decode.models import load_model
    from whisper_spi.detect import feature_kwargs, features_from_capture, load_detector, probability

    _quiet_transformers()
    tune_process(args.threads)
    try:
        detector = load_detector(args.detector)
    except (OSError, ValueError, KeyError) as exc:
        raise WhisperSpiError(f"{args.detector}: not a usable detector ({exc})") from None
    bundle = load_model(args.model, device=args.device)
    # Unlabelled audio: no reference, so no WER; only full-length spectra are features.
    utts = [{"utt_id": p, "speaker": "", "text": "", "wave": load_audio(p)} for p in args.files]
    opts = DecodeOptions(spectra=SpectrumOptions(prefix_lengths=()))
    transcripts, spectra = decode_shard(bundle, utts, "detect", "unknown", opts, args.batch_size)
    feats = features_from_capture(spectra, transcripts, **feature_kwargs(detector))
    scores = dict(zip(feats["utt_id"], probability(detector, feats), strict=True))
    for row in transcripts:
        print(f"{row['utt_id']}\t{scores[row['utt_id']]:.3f}\t{row['hypothesis']}", flush=True)
    return 0


def cmd_intervene_fit(args: argparse.Namespace) -> int:
    from whisper_spi.mitigation.fit import fit_fold_subspaces, save_subspaces, speaker_folds_of

    folds = speaker_folds_of(args.oof)
    subspaces = fit_fold_subspaces(
        args.spectra, args.transcripts, folds, args.layers, args.component, args.rank
    )
    save_subspaces(subspaces, args.out_dir, model=args.model_name, rank=args.rank)
    return 0


def cmd_intervene(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from whisper_spi.decode.models import load_model
    from whisper_spi.mitigation.run import run_shard

    _quiet_transformers()
    tune_process(args.threads)
    bundle = load_model(args.model, device=args.device, dtype=args.dtype, cache_dir=args.cache)
    with tqdm(desc=f"{args.method} {args.model_name}/{args.condition}", file=sys.stderr,
              mininterval=5) as bar:  # fmt: skip
        run_shard(
            bundle,
            model_name=args.model_name,
            condition=args.condition,
            stress_manifests=args.stress_manifest,
            corpus_manifest=args.corpus_manifest,
            out=args.out,
            method=args.method,
            strength=args.strength,
            layers=args.layers,
            subspaces=args.subspaces,
            oof=args.oof,
            plain=args.plain,
            n_utterances=args.n_utterances,
            shard=args.shard,
            shard_size=args.shard_size,
            seed=args.seed,
            batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens,
            threshold=args.hallucination_wer,
            progress=bar,
        )
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
    )
    return 0


def cmd_mitigation_summary(args: argparse.Namespace) -> int:
    from whisper_spi.mitigation.table import run_summary

    run_summary(args.tables, args.out_dir)
    return 0


def cmd_schemas(args: argparse.Namespace) -> int:
    from whisper_spi.schemas import to_markdown

    print(to_markdown())
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="whisper-spi", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("transcribe", help="print '<path>\\t<transcript>' per audio file")
    p.add_argument("--model", required=True, help="model spec: hf:<id>, dir:<path>, ct2:<dir|pkg>")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--max-new-tokens", type=int, default=224)
    p.add_argument(
        "--intervention", help="an intervention JSON (intervene/<model>/subspace/all.json)"
    )
    p.add_argument("--strength", type=float, help="override the intervention's strength")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=cmd_transcribe)

    p = sub.add_parser("decode", help="decode + capture one shard: transcripts and layer spectra")
    p.add_argument("--model-name", required=True)
    p.add_argument("--model", required=True, help="model spec")
    p.add_argument("--condition", required=True)
    p.add_argument("--stress-manifest", required=True)
    p.add_argument("--corpus-manifest", required=True)
    p.add_argument("--transcripts", required=True, help="output Parquet")
    p.add_argument("--spectra", nargs="+", required=True, help="output Parquet per layer")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--cache", default=None, help="ct2 conversion cache directory")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--max-new-tokens", type=int, default=224)
    p.add_argument("--hallucination-wer", type=float, default=0.5)
    p.add_argument("--tokens", choices=["greedy", "reference"], default="greedy")
    p.add_argument("--include-prompt", action="store_true")
    p.add_argument("--components", nargs="+", default=["cross_attn", "self_attn", "ffn"])
    p.add_argument("--center", action="store_true")
    p.add_argument("--prefix-lengths", type=int, nargs="*", default=[16, 32])
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("corpus", help="scan a LibriSpeech-layout corpus into a manifest")
    p.add_argument("--root", default="demo", help="LibriSpeech root, or 'demo'")
    p.add_argument("--splits", nargs="+", default=["test-clean"])
    p.add_argument("--limit", type=int, default=0, help="0 = all")
    p.add_argument("--on-bad-audio", choices=["skip", "fail"], default="skip")
    p.add_argument("--manifest", required=True)
    p.add_argument("--rejected", required=True)
    p.set_defaults(func=cmd_corpus)

    p = sub.add_parser("stress", help="write one shard of stressed audio and its manifest")
    p.add_argument("--manifest", required=True, help="corpus manifest")
    p.add_argument("--condition", required=True)
    p.add_argument("--shard", required=True)
    p.add_argument("--shard-size", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--params", default="{}", help="JSON of the stress parameters")
    p.add_argument("--limit", type=int, default=0, help="first N utterances by utt_id (0 = all)")
    p.add_argument("--audio-dir", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_stress)

    p = sub.add_parser("layer-metrics", help="observables of every spectrum of one layer")
    p.add_argument("--spectra", nargs="+", required=True)
    p.add_argument("--options", default="{}", help="JSON of the metrics options")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_layer_metrics)

    p = sub.add_parser("pairs", help="clean/stressed pairs of one model and their counts")
    p.add_argument("--transcripts", nargs="+", required=True)
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--clean-max-wer", type=float, default=None, help="config pairs.clean_max_wer")
    p.add_argument("--min-tokens", type=int, default=0, help="config pairs.min_tokens")
    p.add_argument("--labels", nargs="*", default=[], help="taxonomy/<model>/labels.parquet")
    p.add_argument("--definition", choices=["wer", "fabrication", "ungrounded"], default="wer")
    p.add_argument("--her-threshold", type=float, default=0.5)
    p.add_argument("--pairs", required=True)
    p.add_argument("--counts", required=True)
    p.set_defaults(func=cmd_pairs)

    p = sub.add_parser("taxonomy", help="the error type of every decode of one model")
    p.add_argument("--transcripts", nargs="+", required=True)
    p.add_argument("--mix-manifests", nargs="*", default=[], help="speaker_mix stress shards")
    p.add_argument("--corpus-manifest", required=True)
    p.add_argument("--options", default="{}", help="JSON of the config's taxonomy section")
    p.add_argument("--wer-threshold", type=float, default=0.5, help="correct: WER <= this")
    p.add_argument("--out", required=True, help="taxonomy/<model>/labels.parquet")
    p.set_defaults(func=cmd_taxonomy)

    p = sub.add_parser("taxonomy-summary", help="counts by type, non-speech rate, bag, figure")
    p.add_argument("--labels", nargs="+", required=True)
    p.add_argument("--nonspeech", nargs="*", default=[], help="the non-speech conditions")
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--tables-dir", required=True)
    p.add_argument("--figure", required=True, help="figure stem (writes .html and .png)")
    p.set_defaults(func=cmd_taxonomy_summary)

    p = sub.add_parser("pooled", help="pooled scope of one model x layer (cells + profiles)")
    p.add_argument("--spectra", nargs="+", required=True, help="the layer's decode spectra")
    p.add_argument("--pairs", required=True, help="pairs/<model>/pairs.parquet")
    p.add_argument("--model", required=True)
    p.add_argument("--layer", type=int, required=True)
    p.add_argument("--options", default="{}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="pooled/<model>/layer-<L>.parquet")
    p.add_argument("--profile", required=True, help="pooled/<model>/layer-<L>-profile.parquet")
    p.set_defaults(func=cmd_pooled)

    p = sub.add_parser("tables", help="Delta%% tables (paper Tables 1 and 2) with bootstrap CIs")
    p.add_argument("--metrics", nargs="+", required=True)
    p.add_argument("--pairs", nargs="+", required=True)
    p.add_argument("--counts", nargs="+", required=True)
    p.add_argument("--pooled", nargs="*", default=[], help="pooled/<model>/layer-<L>.parquet")
    p.add_argument("--profiles", nargs="*", default=[], help="their -profile.parquet")
    p.add_argument("--options", default="{}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", required=True)
    p.set_defaults(func=cmd_tables)

    p = sub.add_parser("figures", help="trajectories, phase diagram, tail energy, scree")
    p.add_argument("--summary", required=True, help="tables/layer_summary.parquet")
    p.add_argument("--profile", required=True, help="tables/rank_profile.parquet")
    p.add_argument("--options", default="{}")
    p.add_argument("--out-dir", required=True)
    p.set_defaults(func=cmd_figures)

    p = sub.add_parser("report", help="one self-contained HTML report")
    p.add_argument("--tables-dir", required=True)
    p.add_argument("--figures-dir", required=True)
    p.add_argument("--pair-counts", required=True)
    p.add_argument("--config-json", default="{}", help="the run's config, shown in the report")
    p.add_argument("--rejected", default=None, help="corpus/rejected.parquet")
    p.add_argument("--pairs", nargs="*", default=[], help="pairs/<model>/pairs.parquet")
    p.add_argument("--comparison", nargs="*", default=[], help="detect/<model>/comparison.csv")
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

    p = sub.add_parser("detect-eval", help="spectral detector vs Whisper's heuristics, one model")
    p.add_argument("--spectra", nargs="+", required=True)
    p.add_argument("--transcripts", nargs="+", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--options", default="{}", help="JSON of the observables' metric options")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--labels", nargs="*", default=[], help="taxonomy/<model>/labels.parquet")
    p.add_argument("--definition", choices=["wer", "fabrication", "ungrounded"], default="wer")
    p.add_argument("--her-threshold", type=float, default=0.5)
    p.add_argument("--out-dir", required=True)
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("theory-measure", help="measure rho, gamma, eps, J on the kept pairs")
    p.add_argument("--model-name", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--condition", required=True)
    p.add_argument("--pairs", required=True, help="the model's pairs.parquet")
    p.add_argument("--transcripts", nargs="+", required=True, help="the condition's transcripts")
    p.add_argument("--stress-manifests", nargs="+", required=True)
    p.add_argument("--options", required=True, help="the theory config as JSON")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--cache", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_theory_measure)

    p = sub.add_parser("theory-summary", help="theory table and the measured phase diagram")
    p.add_argument("--measurements", nargs="+", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-boot", type=int, default=200)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--figure", required=True, help="figure stem (writes .html and .png)")
    p.set_defaults(func=cmd_theory_summary)

    p = sub.add_parser(
        "detect", help="print '<path>\\t<P(hallucination)>\\t<transcript>' per audio file"
    )
    p.add_argument("--model", required=True, help="model spec (the detector's model)")
    p.add_argument("--detector", required=True, help="detector.json from the detect rule")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("files", nargs="+")
    p.set_defaults(func=cmd_detect_audio)

    p = sub.add_parser("intervene-fit", help="project's subspaces, fitted out of detector fold")
    p.add_argument("--model-name", required=True)
    p.add_argument("--spectra", nargs="+", required=True)
    p.add_argument("--transcripts", nargs="+", required=True)
    p.add_argument("--oof", required=True, help="detect/<model>/oof_scores.csv (the folds)")
    p.add_argument("--layers", type=int, nargs="+", required=True)
    p.add_argument("--component", required=True)
    p.add_argument("--rank", type=int, default=1)
    p.add_argument("--out-dir", required=True)
    p.set_defaults(func=cmd_intervene_fit)

    p = sub.add_parser("intervene", help="decode one shard under an intervention or fallback")
    p.add_argument("--model-name", required=True)
    p.add_argument("--model", required=True, help="model spec")
    p.add_argument("--cache", default=None)
    p.add_argument("--condition", required=True)
    p.add_argument("--stress-manifest", nargs="+", required=True, help="the condition's shards")
    p.add_argument("--corpus-manifest", required=True)
    p.add_argument("--n-utterances", type=int, default=None, help="of the smallest stable hash")
    p.add_argument("--shard", type=int, default=0)
    p.add_argument("--shard-size", type=int, default=16)
    p.add_argument(
        "--method", required=True, choices=["project", "cross_gain", "self_damp", "fallback"]
    )
    p.add_argument("--strength", type=float, default=0.0)
    p.add_argument("--layers", type=int, nargs="*", default=[])
    p.add_argument("--subspaces", help="project: the intervene-fit directory")
    p.add_argument("--oof", help="project: detect/<model>/oof_scores.csv (speaker folds)")
    p.add_argument("--plain", nargs="*", help="fallback: plain transcripts (its T = 0 pass)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--max-new-tokens", type=int, default=224)
    p.add_argument("--hallucination-wer", type=float, default=0.5)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_intervene)

    p = sub.add_parser("mitigation", help="one model's mitigation table and dose-response")
    p.add_argument("--model-name", required=True)
    p.add_argument("--transcripts", nargs="+", required=True, help="plain decode transcripts")
    p.add_argument("--mitigated", nargs="*", default=[], help="intervene outputs")
    p.add_argument("--stress-manifests", nargs="*", default=[])
    p.add_argument("--corpus-manifest", required=True)
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--out-dir", required=True)
    p.set_defaults(func=cmd_mitigation)

    p = sub.add_parser("mitigation-summary", help="all models: table, verdicts, trade-off")
    p.add_argument("--tables", nargs="+", required=True, help="mitigation/<model>/mitigation.csv")
    p.add_argument("--out-dir", required=True)
    p.set_defaults(func=cmd_mitigation_summary)

    p = sub.add_parser("schemas", help="print the Parquet data contracts as Markdown")
    p.set_defaults(func=cmd_schemas)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except WhisperSpiError as exc:
        print(f"whisper-spi {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
