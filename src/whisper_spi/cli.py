"""The ``whisper-spi`` command: one subcommand per workflow stage, plus user tools.

Each subcommand only parses arguments, reads and writes files, and calls one library
function; the Snakemake rules call these. A :class:`WhisperSpiError` becomes one line on
stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from .errors import WhisperSpiError


def _quiet_transformers() -> None:
    # Progress bars of weight loading would drown the one-line-per-file output.
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _threads(n: int | None) -> None:
    """Make torch use exactly the rule's threads, so -j N jobs do not oversubscribe cores."""
    import torch

    n = n or int(os.environ.get("WHISPER_SPI_THREADS", "0")) or None
    if n:
        torch.set_num_threads(n)


def cmd_transcribe(args: argparse.Namespace) -> int:
    from .audio import load_audio
    from .decode import transcribe
    from .models import load_model

    _quiet_transformers()
    _threads(args.threads)
    bundle = load_model(args.model, device=args.device, dtype=args.dtype)
    waves = [load_audio(path) for path in args.files]
    for path, result in zip(args.files, transcribe(bundle, waves, args.batch_size), strict=True):
        print(f"{path}\t{result.text}", flush=True)
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    import polars as pl
    import soundfile as sf
    from tqdm import tqdm

    from .capture import DecodeOptions, SpectrumOptions, decode_shard
    from .models import load_model
    from .schemas import write_rows

    _quiet_transformers()
    _threads(args.threads)
    bundle = load_model(args.model, device=args.device, dtype=args.dtype, cache_dir=args.cache)
    if len(args.spectra) != bundle.n_decoder_layers:
        raise WhisperSpiError(
            f"{args.model}: {bundle.n_decoder_layers} decoder layers but "
            f"{len(args.spectra)} --spectra outputs given"
        )
    shard = pl.read_parquet(args.stress_manifest, columns=["utt_id", "path"])
    corpus = pl.read_parquet(args.corpus_manifest, columns=["utt_id", "speaker", "text"])
    rows = shard.join(corpus, on="utt_id", how="left").sort("utt_id")
    utterances = [
        dict(row, wave=sf.read(row["path"], dtype="float32")[0])
        for row in rows.iter_rows(named=True)
    ]
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


def cmd_schemas(args: argparse.Namespace) -> int:
    from .schemas import to_markdown

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
