"""Batched greedy decoding with Whisper, the way OpenAI's and CTranslate2's decoders do it.

One encoder pass per batch, then a KV-cached greedy loop: English, transcribe, no
timestamps, ``suppress_tokens`` at every step and ``begin_suppress_tokens`` at the first,
at most ``max_new_tokens`` (224, OpenAI's cap) new tokens. The loop is written here rather
than calling ``generate()`` so that capture hooks (:mod:`whisper_spi.capture`) see every
decoder step, and so that the per-utterance statistics Whisper's own fallback uses
(average log-probability, compression ratio, no-speech probability) come out of the same
pass.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import torch

from .io import derive_seed
from .models import MAX_NEW_TOKENS, WhisperBundle

SAMPLE_RATE = 16000
WINDOW_S = 30.0


@dataclass
class Decoded:
    token_ids: list[int]  # generated tokens, without the prompt and the final <|endoftext|>
    text: str
    hit_max_length: bool  # stopped by max_new_tokens, not by <|endoftext|>
    sum_logprob: float  # over the generated tokens and the <|endoftext|> if emitted
    avg_logprob: float  # sum_logprob / (len(token_ids) + 1), as OpenAI's decoder
    no_speech_prob: float  # P(<|nospeech|>) at the <|startoftranscript|> position; NaN if none
    compression_ratio: float  # len(text) / len(zlib(text)), as OpenAI's fallback heuristic

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)


def compression_ratio(text: str) -> float:
    raw = text.encode("utf-8")
    return len(raw) / len(zlib.compress(raw)) if raw else 0.0


def log_mel(bundle: WhisperBundle, waves: list[np.ndarray]) -> torch.Tensor:
    """Log-mel features of 16 kHz mono waves, each padded or cut to Whisper's 30 s window."""
    fe = bundle.processor.feature_extractor
    feats = fe(
        [np.asarray(w, dtype=np.float32) for w in waves],
        sampling_rate=SAMPLE_RATE,
        return_tensors="pt",
    ).input_features
    return feats.to(bundle.device, bundle.dtype)


@torch.inference_mode()
def encode(bundle: WhisperBundle, features: torch.Tensor) -> torch.Tensor:
    return bundle.model.model.encoder(features).last_hidden_state


def _suppress_mask(bundle: WhisperBundle, ids: list[int], vocab: int) -> torch.Tensor:
    mask = torch.zeros(vocab, dtype=torch.bool, device=bundle.device)
    valid = [i for i in ids if 0 <= i < vocab]
    mask[valid] = True
    return mask


@torch.inference_mode()
def greedy_decode(
    bundle: WhisperBundle,
    encoder_out: torch.Tensor,
    max_new_tokens: int = MAX_NEW_TOKENS,
    capture=None,
    temperature: float = 0.0,
    generators: list[torch.Generator] | None = None,
) -> list[Decoded]:
    """Greedy decoding for a batch of encoder outputs; returns one :class:`Decoded` each.

    With ``temperature`` > 0 each token is sampled from softmax(logits / temperature)
    instead (OpenAI's fallback decode), row i with its own ``generators[i]`` (see
    :func:`row_generators`), so a row's samples do not depend on the batch it is in; the
    log-probabilities stay those of the unscaled logits, as OpenAI's.

    A row that emits <|endoftext|> leaves the batch: its entries of the key/value cache
    (self- and cross-attention) and of the encoder output are dropped, so a batch with one
    looping utterance costs one row per step, not eight, once the others are done. The
    cross-attention keys/values are computed once, at the first step, and then read from
    the cache. ``capture`` (a :class:`whisper_spi.capture.Capture` whose hooks are on the
    model) is told which original rows each later call holds. The one device sync per step
    is reading the new tokens.
    """
    model, device = bundle.model, bundle.device
    batch = encoder_out.shape[0]
    vocab = model.config.vocab_size
    suppress = _suppress_mask(bundle, bundle.suppress_ids, vocab)
    suppress_first = suppress | _suppress_mask(bundle, bundle.suppress_ids_begin, vocab)
    eot = bundle.eot_id
    if temperature > 0 and (generators is None or len(generators) != batch):
        raise ValueError(f"sampling at temperature {temperature} needs one generator per row")

    tokens = torch.tensor([bundle.prompt_ids] * batch, device=device)
    rows = list(range(batch))  # original row of each row of the current batch
    generated: list[list[int]] = [[] for _ in range(batch)]
    hit_eot = [False] * batch
    sum_logprob = torch.zeros(batch, dtype=torch.float64, device=device)
    no_speech = torch.full((batch,), float("nan"), dtype=torch.float64, device=device)
    if capture is not None:
        capture.rows = None  # every row, until one leaves
    past = None
    for step in range(max_new_tokens):
        out = model(
            encoder_outputs=(encoder_out,),
            decoder_input_ids=tokens,
            cache=past,  # this transformers' name (was past_key_values); see test_models
            use_cache=True,
        )
        past = out.cache
        logits = out.logits[:, -1, :].float()
        if step == 0 and bundle.no_speech_id is not None:
            # OpenAI reads P(no speech) at the <|startoftranscript|> position, before any mask.
            probs = out.logits[:, 0, :].float().softmax(-1)
            no_speech = probs[:, bundle.no_speech_id].double()
        logits = logits.masked_fill(suppress_first if step == 0 else suppress, float("-inf"))
        nxt = (
            logits.argmax(-1)
            if temperature <= 0
            else _sample(logits, temperature, generators, rows)
        )
        chosen = logits.log_softmax(-1).gather(1, nxt[:, None]).squeeze(1).double()
        sum_logprob.index_add_(0, torch.tensor(rows, device=device), chosen)
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
            past.batch_select_indices(index)
            encoder_out = encoder_out.index_select(0, index)
            nxt = nxt.index_select(0, index)
            rows = [rows[i] for i in keep]
            if capture is not None:
                capture.rows = rows
        tokens = nxt[:, None]

    results = []
    tok = bundle.processor.tokenizer
    sums = sum_logprob.tolist()
    for i in range(batch):
        ids = generated[i]
        text = tok.decode(ids, skip_special_tokens=True).strip()
        results.append(
            Decoded(
                token_ids=ids,
                text=text,
                hit_max_length=not hit_eot[i],
                sum_logprob=sums[i],
                avg_logprob=sums[i] / (len(ids) + 1),
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
    out: list[Decoded] = []
    for start in range(0, len(waves), batch_size):
        chunk = waves[start : start + batch_size]
        out += greedy_decode(bundle, encode(bundle, log_mel(bundle, chunk)), max_new_tokens)
    return out
