"""Batched greedy decoding with Whisper, the way OpenAI's and CTranslate2's decoders do it.

One encoder pass per batch, then a KV-cached greedy loop: English, transcribe, no
timestamps, ``suppress_tokens`` at every step and ``begin_suppress_tokens`` at the first,
at most ``max_new_tokens`` (224, OpenAI's cap) new tokens. The loop is written here rather
than calling ``generate()`` so that capture hooks (:mod:`whisper_spi.decode.capture`) see every
decoder step, and so that the per-utterance statistics Whisper's own fallback uses
(average log-probability, compression ratio, no-speech probability) come out of the same
pass.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import torch
from transformers.cache_utils import EncoderDecoderCache

from whisper_spi.decode.models import MAX_NEW_TOKENS, WhisperBundle
from whisper_spi.decode.timestamps import rules_for, text_tokens
from whisper_spi.io import derive_seed

SAMPLE_RATE = 16000
WINDOW_S = 30.0
# CPU threads of the decode steps after the first (see greedy_decode): measured on tiny.en
# and base, one thread costs less CPU time than two and no more wall time
STEP_THREADS = 1


@dataclass
class Decoded:
    token_ids: list[int]  # generated, less the prompt, final <|endoftext|>, timestamps
    text: str
    hit_max_length: bool  # stopped by max_new_tokens, not by <|endoftext|>
    sum_logprob: float  # over the generated tokens and the <|endoftext|> if emitted
    avg_logprob: float  # sum_logprob / (tokens sampled + 1), timestamps counted, as OpenAI's
    no_speech_prob: float  # P(<|nospeech|>) at the <|startoftranscript|> position; NaN if none
    compression_ratio: float  # len(text) / len(zlib(text)), as OpenAI's fallback heuristic

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)


def compression_ratio(text: str) -> float:
    raw = text.encode("utf-8")
    return len(raw) / len(zlib.compress(raw)) if raw else 0.0


def log_mel(bundle: WhisperBundle, waves: list[np.ndarray]) -> torch.Tensor:
    """Log-mel features of 16 kHz mono waves in Whisper's 30 s window, by the bundle's front
    end (registry.FRONT_ENDS).

    Both start from transformers' feature extractor: the wave zero-padded (or cut) to 30 s,
    its STFT, mel filters, log10 floored at 8 below the window's maximum, scaled. That is
    the ``transformers`` front end: the padding frames hold the log-mel of digital zero, the
    clip's floor. ``openai`` then sets every frame from the clip's end on (frame
    ``len(wave) // hop``) to 0.0, as OpenAI's transcribe() and faster-whisper pad their
    window: the frames before it are the same in both, since they see the same samples and
    the same maximum. A clip of 30 s or more has no padding frame under either.
    """
    fe = bundle.processor.feature_extractor
    feats = fe(
        [np.asarray(w, dtype=np.float32) for w in waves],
        sampling_rate=SAMPLE_RATE,
        return_tensors="pt",
    ).input_features
    if bundle.features == "openai":
        content = torch.tensor([len(w) // fe.hop_length for w in waves])
        padding = torch.arange(feats.shape[-1])[None, :] >= content[:, None]
        feats = feats.masked_fill(padding[:, None, :], 0.0)
    return feats.to(bundle.device, bundle.dtype)


@torch.inference_mode()
def encode(bundle: WhisperBundle, features: torch.Tensor) -> torch.Tensor:
    return bundle.model.model.encoder(features).last_hidden_state


def _suppress_bias(bundle: WhisperBundle, ids: list[int], vocab: int) -> torch.Tensor:
    """Added to the logits: -inf at the suppressed tokens, 0 elsewhere (built once per batch)."""
    bias = torch.zeros(vocab, dtype=torch.float32, device=bundle.device)
    bias[[i for i in ids if 0 <= i < vocab]] = float("-inf")
    return bias


class _SelfAttentionCache:
    """Self-attention keys/values in buffers preallocated for the whole decode.

    Each step writes its new positions in place (no concatenation per step) and hands the
    attention views of the filled part; :meth:`advance` moves the write position once all
    layers have run. WhisperAttention calls ``update(key, value, layer_idx, kwargs=...)``.
    """

    def __init__(self, n_layers, batch, heads, head_dim, max_len, dtype, device):
        shape = (batch, heads, max_len, head_dim)
        self.keys = [torch.empty(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.values = [torch.empty(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.length = 0

    def update(self, key, value, layer_idx, kwargs=None):
        end = self.length + key.shape[2]
        self.keys[layer_idx][:, :, self.length : end] = key
        self.values[layer_idx][:, :, self.length : end] = value
        return self.keys[layer_idx][:, :, :end], self.values[layer_idx][:, :, :end]

    def advance(self, n: int) -> None:
        self.length += n

    def select(self, index: torch.Tensor) -> None:
        self.keys = [k.index_select(0, index) for k in self.keys]
        self.values = [v.index_select(0, index) for v in self.values]


@dataclass
class _CrossLayer:
    keys: torch.Tensor | None = None
    values: torch.Tensor | None = None


class _CrossAttentionCache:
    """Cross-attention keys/values, projected from the encoder output once, at the first step."""

    def __init__(self, n_layers):
        self.layers = [_CrossLayer() for _ in range(n_layers)]

    def update(self, key, value, layer_idx, kwargs=None):
        self.layers[layer_idx] = _CrossLayer(key, value)
        return key, value

    def select(self, index: torch.Tensor) -> None:
        self.layers = [
            _CrossLayer(c.keys.index_select(0, index), c.values.index_select(0, index))
            for c in self.layers
        ]


class DecoderCache(EncoderDecoderCache):
    """The decode loop's key/value cache, in the form transformers' WhisperAttention reads.

    WhisperAttention takes an ``EncoderDecoderCache`` (checked with isinstance): its
    ``is_updated[layer]`` says whether the cross-attention keys/values are already cached,
    ``cross_attention_cache.layers[layer].keys/.values`` holds them, and both sub-caches
    take ``update``. The base class' own storage (lists of growing tensors) is not used, so
    its constructor is not called. tests/test_decode_step.py checks the result against the
    transformers model's own forward.
    """

    def __init__(self, config, batch: int, max_len: int, dtype, device):
        heads = config.decoder_attention_heads
        n_layers = config.decoder_layers
        self.self_attention_cache = _SelfAttentionCache(
            n_layers, batch, heads, config.d_model // heads, max_len, dtype, device
        )
        self.cross_attention_cache = _CrossAttentionCache(n_layers)
        self.is_updated = dict.fromkeys(range(n_layers), False)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.self_attention_cache.length

    def select(self, index: torch.Tensor) -> None:
        """Keep only the batch rows ``index`` (finished rows leave the batch)."""
        self.self_attention_cache.select(index)
        self.cross_attention_cache.select(index)


def decoder_logits(
    model,
    tokens: torch.Tensor,
    encoder_out: torch.Tensor,
    cache: DecoderCache | None,
    positions,
) -> torch.Tensor:
    """Logits of the new positions ``positions`` (an index or slice into ``tokens``' columns).

    What transformers' WhisperDecoder + output projection compute, written once here
    without the wrapper's per-call work (cache construction, mask building, output
    records): token + positional embedding, the decoder layers, the final layer norm and
    the (tied) output projection, the last two only at ``positions``. The layers, and so
    their attention and fc2 submodules, are the model's own modules called as modules:
    forward hooks on them (capture, interventions) fire as under ``model(...)``.
    ``cache`` (None: no cache) holds the keys/values of the earlier positions and is
    advanced past the new ones.
    """
    dec = model.model.decoder
    start = cache.get_seq_length() if cache is not None else 0
    n = tokens.shape[1]
    hidden = dec.embed_tokens(tokens) + dec.embed_positions.weight[start : start + n]
    mask = None  # one new position attends to every cached one
    if n > 1 and not (start == 0 and model.config._attn_implementation == "sdpa"):
        # sdpa is causal by itself when the query starts at 0 (as transformers relies on)
        mask = torch.full((n, start + n), float("-inf"), dtype=hidden.dtype, device=hidden.device)
        mask = mask.triu(start + 1)[None, None]
    for layer in dec.layers:
        hidden = layer(hidden, mask, encoder_out, cache=cache)
    if cache is not None:
        cache.self_attention_cache.advance(n)
    return model.proj_out(dec.layer_norm(hidden[:, positions]))


def _pick_tokens(
    logits: torch.Tensor, temperature: float = 0.0, generators=None, rows=()
) -> tuple[torch.Tensor, torch.Tensor]:
    """The token selection rule, in one place: greedy at temperature 0, else a draw from
    softmax(logits / T) with each row's own generator. Returns (tokens, their log-probs under
    the unscaled logits, as OpenAI's avg_logprob).

    ``logits``: [rows, vocab] float32 with the suppressed tokens already at -inf.
    """
    tokens = (
        logits.argmax(-1) if temperature <= 0 else _sample(logits, temperature, generators, rows)
    )
    return tokens, logits.log_softmax(-1).gather(1, tokens[:, None]).squeeze(1)


@torch.inference_mode()
def greedy_decode(
    bundle: WhisperBundle,
    encoder_out: torch.Tensor,
    max_new_tokens: int = MAX_NEW_TOKENS,
    capture=None,
    temperature: float = 0.0,
    generators: list[torch.Generator] | None = None,
    timestamps: bool = False,
) -> list[Decoded]:
    """Greedy decoding for a batch of encoder outputs; returns one :class:`Decoded` each.

    ``timestamps``: Whisper's timestamp mode, as transcribe() decodes: the prompt without
    <|notimestamps|>, OpenAI's timestamp rules (:mod:`whisper_spi.decode.timestamps`) on
    every step's logits; ``token_ids`` and the text then hold the text tokens only, while
    the log-probabilities (and avg_logprob's count) include the timestamps, as OpenAI's.

    With ``temperature`` > 0 each token is sampled from softmax(logits / temperature)
    instead (OpenAI's fallback decode), row i with its own ``generators[i]`` (see
    :func:`row_generators`), so a row's samples do not depend on the batch it is in; the
    log-probabilities stay those of the unscaled logits, as OpenAI's.

    A row that emits <|endoftext|> leaves the batch: its entries of the key/value cache
    (self- and cross-attention) and of the encoder output are dropped, so a batch with one
    looping utterance costs one row per step, not eight, once the others are done. The
    cross-attention keys/values are computed once, at the first step, and then read from
    the cache; the self-attention cache is preallocated; the output projection runs only
    at the positions whose logits are read. ``capture`` (a
    :class:`whisper_spi.decode.capture.Capture` whose hooks are on the model) is told which
    original rows each later call holds. The one device sync per step is reading the new
    tokens. On CPU the steps after the first run on :data:`STEP_THREADS` threads; the
    caller's thread count is restored on return.
    """
    model, device = bundle.model, bundle.device
    batch = encoder_out.shape[0]
    vocab = model.config.vocab_size
    bias = _suppress_bias(bundle, bundle.suppress_ids, vocab)
    bias_first = bias + _suppress_bias(bundle, bundle.suppress_ids_begin, vocab)
    eot = bundle.eot_id
    if temperature > 0 and (generators is None or len(generators) != batch):
        raise ValueError(f"sampling at temperature {temperature} needs one generator per row")
    prompt = bundle.prompt_ids[:-1] if timestamps else bundle.prompt_ids
    rules = rules_for(bundle) if timestamps else None
    n_prompt = len(prompt)

    tokens = torch.tensor([prompt] * batch, device=device)
    cache = DecoderCache(model.config, batch, n_prompt + max_new_tokens, bundle.dtype, device)
    rows = list(range(batch))  # original row of each row of the current batch
    rows_t = torch.arange(batch, device=device)
    generated: list[list[int]] = [[] for _ in range(batch)]
    hit_eot = [False] * batch
    sum_logprob = torch.zeros(batch, dtype=torch.float64, device=device)
    no_speech = torch.full((batch,), float("nan"), dtype=torch.float64, device=device)
    if capture is not None:
        capture.rows = None  # every row, until one leaves
    threads = torch.get_num_threads()
    try:
        for step in range(max_new_tokens):
            if step == 1 and device.type == "cpu":
                # One new token per row from here on: each op is too small to split, and with
                # OMP_WAIT_POLICY=PASSIVE every parallel region pays a thread wake-up.
                torch.set_num_threads(STEP_THREADS)
            if step == 0:
                # OpenAI reads P(no speech) at the <|startoftranscript|> position, before any mask.
                logits = decoder_logits(
                    model, tokens, encoder_out, cache, [0, n_prompt - 1]
                ).float()
                if bundle.no_speech_id is not None:
                    no_speech = logits[:, 0].softmax(-1)[:, bundle.no_speech_id].double()
                logits = logits[:, 1] + bias_first
            else:
                logits = decoder_logits(model, tokens, encoder_out, cache, -1).float() + bias
            if rules is not None:
                logits = rules.apply(logits, [generated[r] for r in rows])
            nxt, chosen = _pick_tokens(logits, temperature, generators, rows)
            sum_logprob.index_add_(0, rows_t, chosen.double())
            new = nxt.tolist()
            keep = []
            for i, (row, token) in enumerate(zip(rows, new, strict=True)):
                if token == eot:
                    hit_eot[row] = True
                else:
                    generated[row].append(token)
                    keep.append(i)
            if not keep:
                break
            if len(keep) < len(rows):
                index = torch.tensor(keep, device=device)
                cache.select(index)
                encoder_out = encoder_out.index_select(0, index)
                nxt = nxt.index_select(0, index)
                rows_t = rows_t.index_select(0, index)
                rows = [rows[i] for i in keep]
                if capture is not None:
                    capture.rows = rows
            tokens = nxt[:, None]
    finally:
        torch.set_num_threads(threads)

    results = []
    tok = bundle.processor.tokenizer
    sums = sum_logprob.tolist()
    for i in range(batch):
        ids = generated[i]
        n_sampled = len(ids)
        if rules is not None:
            ids = text_tokens(ids, eot)
        text = tok.decode(ids, skip_special_tokens=True).strip()
        results.append(
            Decoded(
                token_ids=ids,
                text=text,
                hit_max_length=not hit_eot[i],
                sum_logprob=sums[i],
                avg_logprob=sums[i] / (n_sampled + 1),
                no_speech_prob=float(no_speech[i]),
                compression_ratio=compression_ratio(text),
            )
        )
    return results


def row_generators(seed: int, stage: str, utt_ids, temperature: float) -> list[torch.Generator]:
    """One CPU generator per utterance, seeded from (seed, stage, utt_id, temperature)."""
    return [
        torch.Generator().manual_seed(derive_seed(seed, stage, f"{u}@{temperature:g}"))
        for u in utt_ids
    ]


def _sample(logits: torch.Tensor, temperature: float, generators, rows) -> torch.Tensor:
    # Gumbel-max: argmax(logits / T + Gumbel noise) is a draw from softmax(logits / T); each
    # row's noise comes from its own generator, in the same amount at every step.
    noise = torch.stack(
        [torch.rand(logits.shape[1], generator=generators[r], dtype=torch.float64) for r in rows]
    ).to(logits.device)
    gumbel = -torch.log(-torch.log(noise.clamp_min(1e-300)))
    return (logits.double() / temperature + gumbel).argmax(-1)


def transcribe(
    bundle: WhisperBundle,
    waves: list[np.ndarray],
    batch_size: int = 8,
    max_new_tokens: int = MAX_NEW_TOKENS,
) -> list[Decoded]:
    """Greedy transcripts of 16 kHz mono waves, in batches."""
    from whisper_spi.decode.batching import in_batches

    def run(chunk):
        return greedy_decode(bundle, encode(bundle, log_mel(bundle, chunk)), max_new_tokens)

    return [d for _, decoded in in_batches(waves, batch_size, run) for d in decoded]
