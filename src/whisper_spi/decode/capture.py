"""Capture what each decoder sub-layer adds to the residual stream, and its SVD spectrum.

Whisper's decoder layer l computes, on the residual stream h:
    h += self_attn(LN(h));  h += encoder_attn(LN(h));  h += fc2(gelu(fc1(LN(h))))
The components are these three additions (``self_attn``, ``cross_attn``, ``ffn``), read by
forward hooks on the existing transformers submodules, plus optionally ``residual``, the
layer's output. Hooks fire on every decoder call, so capturing during the KV-cached greedy
loop gives every position with no second pass (one call sees the prompt, each later call one
new position); the same hooks serve a single teacher-forced pass.

Rows kept per utterance (see the ``spectra`` data contract): the positions whose output is a
decoded token, i.e. that emitted each generated token and the final <|endoftext|> (if the
length cap was not hit). With ``include_prompt`` the forced-prompt positions before them are
kept too.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch

from whisper_spi.registry import COMPONENTS
from whisper_spi.text import HALLUCINATION_WER

# the submodule whose output is each component (what it adds to the residual stream)
COMPONENT_MODULES = {
    "self_attn": "self_attn",
    "cross_attn": "encoder_attn",
    "ffn": "fc2",
    "residual": "",
}


def component_module(layer, component: str):
    """The submodule of a decoder layer whose output is ``component``."""
    name = COMPONENT_MODULES[component]
    return layer.get_submodule(name) if name else layer


class DecoderHooks(contextlib.AbstractContextManager):
    """Forward hooks on decoder submodules, registered on entry and all removed on exit.

    Subclasses say where (:meth:`targets`: (key, module) pairs) and what (:meth:`hook`).
    """

    def __init__(self, model):
        self.model = model
        self.layers = model.model.decoder.layers
        self._handles = []

    def targets(self):
        raise NotImplementedError

    def hook(self, key, output):
        raise NotImplementedError

    def __enter__(self):
        for key, module in self.targets():
            self._handles.append(
                module.register_forward_hook(lambda _m, _i, out, key=key: self.hook(key, out))
            )
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        return False


class Capture(DecoderHooks):
    """Record the output of each (layer, component) over one or more decoder calls."""

    def __init__(self, model, components=("cross_attn", "self_attn", "ffn")):
        unknown = set(components) - set(COMPONENTS)
        if unknown:
            raise ValueError(f"unknown components {sorted(unknown)}; known: {COMPONENTS}")
        super().__init__(model)
        self.components = tuple(components)
        # Original batch rows the next decoder call holds (None: all of them); the greedy
        # loop sets it when finished rows leave the batch.
        self.rows: list[int] | None = None
        self._store: dict[tuple[int, str], list[tuple[list[int] | None, torch.Tensor]]] = {}

    def targets(self):
        for index, layer in enumerate(self.layers):
            for comp in self.components:
                yield (index, comp), component_module(layer, comp)

    def hook(self, key, output):
        # Attention modules return (output, weights); the first is what joins the residual.
        out = output[0] if isinstance(output, tuple) else output
        self._store.setdefault(key, []).append((self.rows, out.detach()))

    def matrices(self) -> dict[tuple[int, str], torch.Tensor]:
        """(layer, component) -> [batch, positions, d], all decoder calls joined in time.

        A row that left the batch early is NaN at the positions it was not run at.
        """
        return {key: _join(chunks) for key, chunks in self._store.items()}


def _join(chunks: list[tuple[list[int] | None, torch.Tensor]]) -> torch.Tensor:
    if all(rows is None for rows, _ in chunks):
        return torch.cat([c for _, c in chunks], dim=1)
    first = chunks[0][1]
    width = sum(c.shape[1] for _, c in chunks)
    out = first.new_full((first.shape[0], width, first.shape[2]), float("nan"))
    pos = 0
    for rows, c in chunks:
        if rows is None:
            out[:, pos : pos + c.shape[1]] = c
        else:
            out[rows, pos : pos + c.shape[1]] = c
        pos += c.shape[1]
    return out


@dataclass(frozen=True)
class SpectrumOptions:
    center: bool = False
    prefix_lengths: tuple[int, ...] = (16, 32)


def row_range(n_prompt: int, n_emitted: int, include_prompt: bool) -> slice:
    """Positions whose rows are kept: those emitting the n_emitted decoded tokens."""
    first = n_prompt - 1
    return slice(0 if include_prompt else first, first + n_emitted)


def spectra_of(matrix: torch.Tensor, opts: SpectrumOptions) -> list[tuple[int, int, np.ndarray]]:
    """Singular values of a T x d matrix and of its first L rows, in float64 on its device.

    Returns (prefix, n_rows, singular values) with prefix 0 for the full matrix; a prefix
    longer than T is skipped (no comparison at a length the utterance does not have).
    """
    m = matrix.to(torch.float64)
    out = []
    for prefix in (0, *opts.prefix_lengths):
        if prefix and prefix > m.shape[0]:
            continue
        sub = m[:prefix] if prefix else m
        if opts.center:
            sub = sub - sub.mean(dim=0, keepdim=True)
        sv = torch.linalg.svdvals(sub) if sub.shape[0] else sub.new_zeros(0)
        out.append((prefix, sub.shape[0], sv.cpu().numpy()))
    return out


@dataclass(frozen=True)
class DecodeOptions:
    max_new_tokens: int = 224
    hallucination_wer: float = HALLUCINATION_WER
    tokens: str = "greedy"  # or "reference": teacher-force the reference text
    include_prompt: bool = False
    components: tuple[str, ...] = ("cross_attn", "self_attn", "ffn")
    spectra: SpectrumOptions = SpectrumOptions()


def reference_ids(bundle, text: str) -> list[int]:
    """Reference tokens as Whisper writes a sentence: leading space, first letter upper case."""
    sentence = " " + text.strip().lower().capitalize()
    return bundle.processor.tokenizer.encode(sentence, add_special_tokens=False)


def decode_batch(bundle, waves, references, opts: DecodeOptions):
    """Greedy transcripts and, per utterance, the kept rows of every (layer, component).

    Returns (decoded, matrices) with matrices[i][(layer, component)] a T_i x d tensor.
    """
    from whisper_spi.decode.loop import encode, greedy_decode, log_mel

    enc = encode(bundle, log_mel(bundle, waves))
    n_prompt = len(bundle.prompt_ids)
    if opts.tokens == "greedy":
        with Capture(bundle.model, opts.components) as cap:
            decoded = greedy_decode(bundle, enc, opts.max_new_tokens, capture=cap)
        emitted = [d.n_tokens + (0 if d.hit_max_length else 1) for d in decoded]
    elif opts.tokens == "reference":
        decoded = greedy_decode(bundle, enc, opts.max_new_tokens)
        refs = [
            reference_ids(bundle, r)[: opts.max_new_tokens - 1] + [bundle.eot_id]
            for r in references
        ]
        emitted = [len(r) for r in refs]
        width = max(emitted)
        # Right padding needs no attention mask: causal attention never looks ahead.
        seqs = [bundle.prompt_ids + r + [bundle.eot_id] * (width - len(r)) for r in refs]
        with Capture(bundle.model, opts.components) as cap, torch.inference_mode():
            bundle.model(
                encoder_outputs=(enc,), decoder_input_ids=torch.tensor(seqs, device=enc.device)
            )
    else:
        raise ValueError(f"decode.tokens must be 'greedy' or 'reference', not {opts.tokens!r}")
    full = cap.matrices()
    matrices = []
    for i, n in enumerate(emitted):
        rows = row_range(n_prompt, n, opts.include_prompt)
        matrices.append({key: m[i, rows] for key, m in full.items()})
    return decoded, matrices


def decode_shard(
    bundle,
    utterances,
    model_name: str,
    condition: str,
    opts: DecodeOptions,
    batch_size: int = 8,
    progress=None,
):
    """Decode and capture a shard; returns (transcripts rows, {layer: spectra rows}).

    ``utterances``: dicts with utt_id, speaker, text (reference) and wave (16 kHz mono).
    """
    from whisper_spi.decode.batching import in_batches
    from whisper_spi.text import hallucinated, wer

    transcripts = []
    spectra: dict[int, list[dict]] = {i: [] for i in range(bundle.n_decoder_layers)}

    def run(batch):
        return decode_batch(bundle, [u["wave"] for u in batch], [u["text"] for u in batch], opts)

    for batch, (decoded, matrices) in in_batches(utterances, batch_size, run):
        for utt, dec, mats in zip(batch, decoded, matrices, strict=True):
            err = wer(utt["text"], dec.text)
            transcripts.append(
                {
                    "utt_id": utt["utt_id"],
                    "speaker": utt["speaker"],
                    "model": model_name,
                    "condition": condition,
                    "reference": utt["text"],
                    "hypothesis": dec.text,
                    "token_ids": dec.token_ids,
                    "n_tokens": dec.n_tokens,
                    "hit_max_length": dec.hit_max_length,
                    "avg_logprob": dec.avg_logprob,
                    "compression_ratio": dec.compression_ratio,
                    "no_speech_prob": dec.no_speech_prob,
                    "wer": err,
                    "hallucination": hallucinated(
                        utt["text"], dec.text, err, opts.hallucination_wer
                    ),
                }
            )
            for (layer, comp), matrix in mats.items():
                row_mean = matrix.double().mean(0).float().cpu().numpy()
                for prefix, n_rows, sv in spectra_of(matrix, opts.spectra):
                    spectra[layer].append(
                        {
                            "utt_id": utt["utt_id"],
                            "model": model_name,
                            "condition": condition,
                            "layer": layer,
                            "component": comp,
                            "prefix": prefix,
                            "n_rows": n_rows,
                            "centered": opts.spectra.center,
                            "sv": sv,
                            "row_mean": None if prefix else row_mean,
                        }
                    )
        if progress is not None:
            progress.update(len(batch))
    return transcripts, spectra
