"""The subcommands that load a Whisper model and decode: the decode, theory-measure and
intervene stages, and the user tools transcribe and detect."""

from __future__ import annotations

import argparse
import contextlib
import sys

from whisper_spi.cli.options import (
    BATCH,
    CACHE,
    CONDITION,
    DECODE,
    HALLUCINATION_WER,
    MODEL,
    MODEL_NAME,
    SEED,
    json_object,
)
from whisper_spi.errors import WhisperSpiError
from whisper_spi.registry import COMPONENTS, DECODED_BASELINES, INTERVENTIONS
from whisper_spi.tuning import quiet_transformers, tune_process


def _load(args: argparse.Namespace, **kwargs):
    """``args.model`` on ``args.device``, in a process tuned for the job
    (:func:`whisper_spi.tuning.tune_process`); an ``auto`` ``args.batch_size`` becomes the
    batch that fits the model on its device (:mod:`whisper_spi.decode.batching`)."""
    from whisper_spi.decode.batching import resolve_batch_size
    from whisper_spi.decode.models import MAX_NEW_TOKENS, load_model

    quiet_transformers()
    tune_process(args.threads)
    bundle = load_model(args.model, device=args.device, features=args.features, **kwargs)
    if "batch_size" in args:
        tokens = getattr(args, "max_new_tokens", MAX_NEW_TOKENS)
        args.batch_size = resolve_batch_size(args.batch_size, bundle, tokens)
    return bundle


def cmd_transcribe(args: argparse.Namespace) -> int:
    from whisper_spi.corpus.audio import load_audio
    from whisper_spi.decode.loop import transcribe

    bundle = _load(args, dtype=args.dtype)
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

    from whisper_spi.corpus.stress import read_stress_shard
    from whisper_spi.decode.capture import DecodeOptions, SpectrumOptions, decode_shard
    from whisper_spi.schemas import write_rows

    bundle = _load(args, dtype=args.dtype, cache_dir=args.cache)
    if len(args.spectra) != bundle.n_decoder_layers:
        raise WhisperSpiError(
            f"{args.model}: {bundle.n_decoder_layers} decoder layers but "
            f"{len(args.spectra)} --spectra outputs given"
        )
    utterances = read_stress_shard(
        args.stress_manifest, args.corpus_manifest, condition=args.condition
    )
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


def cmd_theory_measure(args: argparse.Namespace) -> int:
    from whisper_spi import schemas
    from whisper_spi.theory.measure import measure_condition

    # the inputs are checked against their contracts before the model is loaded
    pairs = schemas.scan_parquet([args.pairs], "pairs").collect()
    transcripts = schemas.scan_parquet(
        args.transcripts, "transcripts", ["utt_id", "condition", "token_ids", "hit_max_length"]
    )
    stress = schemas.scan_parquet(args.stress_manifests, "stress_manifest", ["utt_id", "path"])
    bundle = _load(args, cache_dir=args.cache)
    out = measure_condition(
        bundle,
        args.model_name,
        args.condition,
        pairs,
        transcripts,
        stress,
        json_object(args.options, "--options"),
        seed=args.seed,
    )
    schemas.write_parquet(out, "theory_measurements", args.out)
    return 0


def cmd_detect(args: argparse.Namespace) -> int:
    from whisper_spi.corpus.audio import load_audio
    from whisper_spi.decode.capture import DecodeOptions, SpectrumOptions, decode_shard
    from whisper_spi.detect import feature_kwargs, features_from_capture, load_detector, probability

    try:
        detector = load_detector(args.detector)
    except (OSError, ValueError, KeyError) as exc:
        raise WhisperSpiError(f"{args.detector}: not a usable detector ({exc})") from None
    bundle = _load(args)
    # Unlabelled audio: no reference, so no WER; only full-length spectra are features.
    utts = [{"utt_id": p, "speaker": "", "text": "", "wave": load_audio(p)} for p in args.files]
    opts = DecodeOptions(spectra=SpectrumOptions(prefix_lengths=()))
    transcripts, spectra = decode_shard(bundle, utts, "detect", "unknown", opts, args.batch_size)
    feats = features_from_capture(spectra, transcripts, **feature_kwargs(detector))
    scores = dict(zip(feats["utt_id"], probability(detector, feats), strict=True))
    for row in transcripts:
        print(f"{row['utt_id']}\t{scores[row['utt_id']]:.3f}\t{row['hypothesis']}", flush=True)
    return 0


def cmd_intervene(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from whisper_spi.mitigation.run import run_shard

    strengths = args.strength * len(args.method) if len(args.strength) == 1 else args.strength
    if not len(args.method) == len(strengths) == len(args.out):
        raise WhisperSpiError(
            f"intervene: {len(args.method)} --method, {len(args.strength)} --strength and "
            f"{len(args.out)} --out values; give one strength for all, or one per method"
        )
    bundle = _load(args, dtype=args.dtype, cache_dir=args.cache)
    with tqdm(file=sys.stderr, mininterval=5) as bar:
        run_shard(
            bundle,
            model_name=args.model_name,
            condition=args.condition,
            stress_manifests=args.stress_manifest,
            corpus_manifest=args.corpus_manifest,
            arms=list(zip(args.method, strengths, args.out, strict=True)),
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
            threads=args.threads,
            cache_dir=args.cache,
        )
    return 0


def register(sub) -> None:
    """Add these subcommands to ``sub``, the subparsers of ``whisper-spi``."""
    p = sub.add_parser(
        "transcribe",
        parents=[MODEL, BATCH, DECODE],
        help="print '<path>\\t<transcript>' per audio file",
    )
    p.add_argument(
        "--intervention", help="an intervention JSON (intervene/<model>/subspace/all.json)"
    )
    p.add_argument("--strength", type=float, help="override the intervention's strength")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=cmd_transcribe)

    p = sub.add_parser(
        "detect",
        parents=[MODEL, BATCH],
        help="print '<path>\\t<P(hallucination)>\\t<transcript>' per audio file",
    )
    p.add_argument("--detector", required=True, help="detector.json from the detect rule")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser(
        "decode",
        parents=[MODEL_NAME, MODEL, CONDITION, CACHE, BATCH, DECODE, HALLUCINATION_WER],
        help="decode + capture one shard: transcripts and layer spectra",
    )
    p.add_argument("--stress-manifest", required=True)
    p.add_argument("--corpus-manifest", required=True)
    p.add_argument("--transcripts", required=True, help="output Parquet")
    p.add_argument("--spectra", nargs="+", required=True, help="output Parquet per layer")
    p.add_argument("--tokens", choices=["greedy", "reference"], default="greedy")
    p.add_argument("--include-prompt", action="store_true")
    # the decoder block's three additions; the residual stream only when asked for
    p.add_argument("--components", nargs="+", default=[c for c in COMPONENTS if c != "residual"])
    p.add_argument("--center", action="store_true")
    p.add_argument("--prefix-lengths", type=int, nargs="*", default=[16, 32])
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser(
        "theory-measure",
        parents=[MODEL_NAME, MODEL, CONDITION, CACHE, SEED],
        help="measure rho, gamma, eps, J on the kept pairs",
    )
    p.add_argument("--pairs", required=True, help="the model's pairs.parquet")
    p.add_argument("--transcripts", nargs="+", required=True, help="the condition's transcripts")
    p.add_argument("--stress-manifests", nargs="+", required=True)
    p.add_argument("--options", required=True, help="the theory config as JSON")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_theory_measure)

    p = sub.add_parser(
        "intervene",
        parents=[MODEL_NAME, MODEL, CONDITION, CACHE, BATCH, DECODE, HALLUCINATION_WER, SEED],
        help="decode one shard under interventions or baselines (one output each)",
    )
    p.add_argument("--stress-manifest", nargs="+", required=True, help="the condition's shards")
    p.add_argument("--corpus-manifest", required=True)
    p.add_argument("--n-utterances", type=int, default=None, help="of the smallest stable hash")
    p.add_argument("--shard", type=int, default=0)
    p.add_argument("--shard-size", type=int, default=16)
    p.add_argument(
        "--method", nargs="+", required=True, choices=[*INTERVENTIONS, *DECODED_BASELINES],
        help="one arm per value, decoded in turn with the model loaded once",
    )  # fmt: skip
    p.add_argument("--strength", type=float, nargs="+", default=[0.0], help="one, or per arm")
    p.add_argument("--layers", type=int, nargs="*", default=[], help="default: every layer")
    p.add_argument("--subspaces", help="project: the intervene-fit directory")
    p.add_argument("--oof", help="project: detect/<model>/oof_scores.csv (speaker folds)")
    p.add_argument("--plain", nargs="*", help="fallback: plain transcripts (its T = 0 pass)")
    p.add_argument("--out", nargs="+", required=True, help="one per arm")
    p.set_defaults(func=cmd_intervene)
