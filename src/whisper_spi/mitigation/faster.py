"""faster-whisper's own transcribe(), the baselines Whisper users actually run.

The model under study is converted once by CTranslate2's own converter (:func:`ct2_dir`) and
decoded by ``faster_whisper.WhisperModel.transcribe`` itself, not by a re-implementation, under
three arms (:data:`FASTER_ARMS`): its defaults (beam 5, best_of 5, temperature fallback,
timestamps, no-speech skip, conditioning on the previous text), the same with its Silero VAD,
and the same with its hallucination-silence skip. :func:`faster_decode` folds one clip's
segments into a :class:`Decoded`, as our decoder reports a clip, so the arms enter the same
tables as the others.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np

from whisper_spi.decode import models
from whisper_spi.decode.ct2 import file_digest
from whisper_spi.errors import ModelSpecError
from whisper_spi.registry import FASTER, FASTER_SILENCE, FASTER_VAD

if TYPE_CHECKING:  # faster_whisper and torch are imported where used: the arms' names are cheap
    from faster_whisper import WhisperModel

    from whisper_spi.decode.loop import Decoded


SILENCE_THRESHOLD_S = 2.0  # silence (s) around a suspected hallucination that skips it
FASTER_ARMS = MappingProxyType(
    {
        FASTER: {},
        FASTER_VAD: {"vad_filter": True},  # Silero VAD, its bundled ONNX model, default options
        # faster-whisper applies the threshold only with word timestamps: it judges words
        FASTER_SILENCE: {
            "word_timestamps": True,
            "hallucination_silence_threshold": SILENCE_THRESHOLD_S,
        },
    }
)
# Bump when the conversion changes, so old cache entries are not reused.
CT2_VERSION = 1
WINDOW_POSITIONS = 1500  # encoder positions of a 30 s window


def ct2_dir(spec: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The CTranslate2 directory of ``spec``, converted once and cached as
    ``<cache>/ct2-<key>-v<CT2_VERSION>``: its hub id for ``hf:``, else a digest of the
    transformers weights, so that a changed ``dir:`` model is converted again.

    faster-whisper reads the log-mel size from ``preprocessor_config.json`` (128 bins for
    large-v3), which neither the converter nor transformers 5 (``processor_config.json``)
    writes: it is written here from the model's config. faster-whisper pads every window to
    30 s (3000 frames), so a model with a shorter encoder is refused with a clear error.
    """
    cache = Path(cache_dir) if cache_dir else models.default_cache_dir()
    source, key = _source(spec, cache)

    def build(tmp: Path) -> None:
        config = models.model_config(spec, cache)
        if config["max_source_positions"] != WINDOW_POSITIONS:
            raise ModelSpecError(
                f"model spec {spec!r}: a {config['max_source_positions'] // 50} s window; "
                "faster-whisper pads every window to 30 s, as every released Whisper has"
            )
        _convert(spec, source, tmp)
        features = {"feature_size": int(config["num_mel_bins"])}
        (tmp / "preprocessor_config.json").write_text(json.dumps(features))

    # preprocessor_config.json is written last: it marks a complete entry
    return models.cached_dir(cache / f"ct2-{key}-v{CT2_VERSION}", "preprocessor_config.json", build)


def _source(spec: str, cache: Path) -> tuple[str, str]:
    """The transformers model the converter reads (hub id or directory) and its cache key."""
    kind, sep, target = spec.partition(":")
    if kind == "hf" and target:
        return target, re.sub(r"[^A-Za-z0-9._-]", "_", target.replace("/", "--"))
    if kind == "dir" and target:
        if not Path(target).is_dir():
            raise ModelSpecError(f"model spec {spec!r}: directory {target!r} does not exist")
        source = Path(target)
    elif kind == "ct2" and target:
        source = models._converted_dir(target, cache)
    else:
        raise ModelSpecError(f"model spec {spec!r} must look like hf:<id>, dir:<path> or ct2:<dir>")
    single = source / "model.safetensors"
    weights = [single] if single.is_file() else sorted(source.glob("*.safetensors"))
    if not weights:
        raise ModelSpecError(f"model spec {spec!r}: no *.safetensors weights in {source}")
    return str(source), file_digest(weights)


def _convert(spec: str, source: str, out: Path) -> None:
    import ctranslate2

    converter = ctranslate2.converters.TransformersConverter(source, copy_files=["tokenizer.json"])
    try:
        converter.convert(str(out), force=True)  # default quantization: the weights as saved
    except Exception as exc:  # the converter raises whatever its loaders raise
        raise ModelSpecError(
            f"model spec {spec!r}: CTranslate2 conversion of {source!r} failed: "
            f"{type(exc).__name__}: {exc}"
        ) from None


def load_faster(
    spec: str,
    device: str = "auto",
    dtype: str = "float32",
    threads: int = 1,
    cache_dir: str | os.PathLike | None = None,
) -> WhisperModel:
    """faster-whisper's model on :func:`ct2_dir` (auto: CUDA if present), computing in
    ``dtype``, on ``threads`` CPU threads."""
    if dtype not in models.DTYPES:
        raise ModelSpecError(f"dtype {dtype!r} is not one of {list(models.DTYPES)}")
    from faster_whisper import WhisperModel

    path = ct2_dir(spec, cache_dir)
    try:
        return WhisperModel(
            str(path),
            device=models.pick_device(device).type,
            compute_type=dtype,
            cpu_threads=threads,
        )
    except (RuntimeError, ValueError) as exc:  # e.g. a compute type the device lacks
        raise ModelSpecError(f"model spec {spec!r}: faster-whisper could not load: {exc}") from None


def faster_decode(
    model: WhisperModel, wave: np.ndarray, arm: str, max_new_tokens: int = models.MAX_NEW_TOKENS
) -> tuple[Decoded, float, bool]:
    """One 16 kHz mono clip through faster-whisper's transcribe() under ``arm``, in English:
    ``(decoded, temperature, dropped)``.

    ``decoded`` joins the kept segments: their text tokens and texts, avg_logprob weighted by
    the segments' sampled tokens (timestamps counted, as faster-whisper's own), the first
    segment's no-speech probability; hit_max_length when one 30 s window's kept tokens reach
    the cap. ``temperature``: the highest among the kept segments' (faster-whisper reports the
    last one tried when every temperature failed). ``dropped``: no segment kept (VAD heard no
    speech, or every window was skipped as silence).

    The cap: CTranslate2 decodes at most ``max_length // 2`` tokens (its whisper.cc), so
    transcribe()'s ``max_new_tokens=m`` caps at (prompt + m) / 2, not m. Its default,
    ``max_length`` 448, gives OpenAI's 224; the cap is set the same way, ``max_length`` ``2 *
    max_new_tokens`` for the call (it also trims the previous-text prompt to half of it), so
    224 is exactly faster-whisper's default.
    """
    from whisper_spi.decode.loop import Decoded, compression_ratio

    if arm not in FASTER_ARMS:
        raise ValueError(f"unknown faster-whisper arm {arm!r}; known: {list(FASTER_ARMS)}")
    limit = model.max_length  # 448, Whisper's text context
    if not 1 <= max_new_tokens <= limit // 2:
        raise ValueError(f"max_new_tokens {max_new_tokens} is not in 1..{limit // 2}")
    eot = model.hf_tokenizer.token_to_id("<|endoftext|>")
    model.max_length = 2 * max_new_tokens
    try:
        segments, _ = model.transcribe(
            np.asarray(wave, dtype=np.float32), language="en", **FASTER_ARMS[arm]
        )
        segments = list(segments)  # transcribe() decodes lazily, as the generator is consumed
    finally:
        model.max_length = limit
    token_ids = [t for s in segments for t in s.tokens if t < eot]
    text = "".join(s.text for s in segments).strip()
    n_sampled = sum(len(s.tokens) for s in segments)
    weighted = sum(s.avg_logprob * len(s.tokens) for s in segments)
    avg = weighted / n_sampled if n_sampled else math.nan
    per_window = Counter()  # a window's segments share its seek
    for s in segments:
        per_window[s.seek] += len(s.tokens)
    decoded = Decoded(
        token_ids=token_ids,
        text=text,
        hit_max_length=any(n >= max_new_tokens for n in per_window.values()),
        sum_logprob=avg * (n_sampled + 1),
        avg_logprob=avg,
        no_speech_prob=segments[0].no_speech_prob if segments else math.nan,
        compression_ratio=compression_ratio(text),
    )
    temperature = max((s.temperature or 0.0 for s in segments), default=0.0)
    return decoded, float(temperature), not segments
