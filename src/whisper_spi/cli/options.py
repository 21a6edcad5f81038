"""The option groups that several subcommands share, each declared once as an argparse parent
(``add_parser(..., parents=[MODEL, ...])``), and the parsing of the JSON options."""

from __future__ import annotations

import argparse
import json

from whisper_spi.errors import WhisperSpiError
from whisper_spi.registry import DEFAULT_FRONT_END, FRONT_ENDS
from whisper_spi.taxonomy.labels import DEFINITIONS, HER_THRESHOLD
from whisper_spi.text import HALLUCINATION_WER as WER_THRESHOLD


def batch_size(text: str) -> int | str:
    """--batch-size: a positive count, or ``auto`` (whisper_spi.decode.batching)."""
    from whisper_spi.decode.batching import AUTO

    if text == AUTO:
        return text
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer or {AUTO}, got {text!r}")
    return n


def _group() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(add_help=False)


# A Whisper model loaded in this process, and the threads its ops run on.
MODEL = _group()
MODEL.add_argument("--model", required=True, help="model spec: hf:<id>, dir:<path>, ct2:<dir|pkg>")
MODEL.add_argument("--device", default="auto")
MODEL.add_argument(
    "--features", choices=list(FRONT_ENDS), default=DEFAULT_FRONT_END, help="log-mel front end"
)
MODEL.add_argument(
    "--threads", type=int, default=None, help="torch threads (default $WHISPER_SPI_THREADS)"
)

CACHE = _group()
CACHE.add_argument("--cache", default=None, help="ct2 conversion cache directory")

BATCH = _group()
BATCH.add_argument(
    "--batch-size", type=batch_size, default=8, help="utterances per batch, or auto (GPU memory)"
)

# A greedy decode's precision and length.
DECODE = _group()
DECODE.add_argument("--dtype", default="float32")
DECODE.add_argument("--max-new-tokens", type=int, default=224)

HALLUCINATION_WER = _group()
HALLUCINATION_WER.add_argument(
    "--hallucination-wer", type=float, default=WER_THRESHOLD, help="hallucinated: WER > this"
)

# Which model (its config name) and condition a stage's outputs belong to.
MODEL_NAME = _group()
MODEL_NAME.add_argument("--model-name", required=True)

CONDITION = _group()
CONDITION.add_argument("--condition", required=True)

# The hallucination definition (config hallucination.*; taxonomy.labels.hallucination_expr).
DEFINITION = _group()
DEFINITION.add_argument("--threshold", type=float, default=WER_THRESHOLD, help="WER threshold")
DEFINITION.add_argument("--definition", choices=DEFINITIONS, default="wer")
DEFINITION.add_argument("--her-threshold", type=float, default=HER_THRESHOLD)

# The taxonomy labels the definition is applied to.
LABELS = _group()
LABELS.add_argument("--labels", nargs="*", default=[], help="taxonomy/<model>/labels.parquet")

SEED = _group()
SEED.add_argument("--seed", type=int, default=0)

# The config section a stage reads, as JSON (parsed by json_object or options_of).
OPTIONS = _group()
OPTIONS.add_argument("--options", default="{}", help="JSON of the stage's config options")

OUT_DIR = _group()
OUT_DIR.add_argument("--out-dir", required=True)


def json_object(text: str, flag: str) -> dict:
    """``text``, the value of ``flag``, as a JSON object; else a WhisperSpiError."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise WhisperSpiError(f"{flag}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise WhisperSpiError(f"{flag}: expected a JSON object, got {text!r}")
    return value


def options_of(text: str, cls):
    """The --options JSON as ``cls`` (MetricOptions, or ObservableOptions for the kernel)."""
    try:
        return cls.from_dict(json_object(text, "--options"))
    except ValueError as exc:
        raise WhisperSpiError(str(exc)) from None
