"""The theory_measure stage: Theorem 1's quantities (:mod:`.decoder`) measured on the kept
pairs' utterances, teacher-forced on their decoded tokens, ``batch_size`` at a time."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np
import polars as pl

from whisper_spi.theory.decoder import measure_decoder

__all__ = ["kept_utterances", "measure", "measure_condition"]


def _batches(lengths: Sequence[int], alone: Sequence[bool], size: int) -> list[list[int]]:
    """Indices in batches of <= ``size`` utterances of similar length (less padding); those
    flagged ``alone`` (a state too small for a batched Krylov space) go one at a time."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    rest = [i for i in order if not alone[i]]
    return [[i] for i in order if alone[i]] + [
        rest[j : j + size] for j in range(0, len(rest), size)
    ]


def measure(
    bundle,
    waves: Sequence[np.ndarray],
    tokens: Sequence[Sequence[int]] | None = None,
    hit_max_length: Sequence[bool] | None = None,
    k: int = 4,
    iters: int = 6,
    seed: int = 0,
    subspace_k: int = 2,
    batch_size: int = 8,
    include_prompt: bool = False,
    max_positions: int | None = None,
    context_every_layer: bool = False,
    progress=None,
) -> list[pl.DataFrame]:
    """Theorem 1's quantities (:func:`.decoder.measure_decoder`) on utterances (16 kHz mono
    ``waves``), one ``theory_measurements`` frame per utterance (less model, condition and
    utt_id), in input order.

    ``tokens`` (with ``hit_max_length``: without it a sequence ends with <|endoftext|>) are
    teacher-forced on the re-run encoder; None greedy-decodes them. Kept rows are those that
    emit the decoded tokens and the final <|endoftext|>, as in :mod:`whisper_spi.decode.capture`,
    optionally the first ``max_positions`` only, and with ``include_prompt`` the forced-prompt
    rows too. Utterances of similar length are batched (less padding); a state too small for
    a batched Krylov space is measured alone.
    """
    import torch

    from whisper_spi.decode import loop as decode

    n_prompt = len(bundle.prompt_ids)
    first = 0 if include_prompt else n_prompt - 1
    if max_positions is not None and max_positions < 1:
        raise ValueError("max_positions must be >= 1")
    seqs, encs = [None] * len(waves), [None] * len(waves)
    for lo in range(0, len(waves), batch_size):
        chunk = list(range(lo, min(lo + batch_size, len(waves))))
        enc = decode.encode(bundle, decode.log_mel(bundle, [waves[i] for i in chunk]))
        if tokens is None:
            for i, out in zip(chunk, decode.greedy_decode(bundle, enc), strict=True):
                seqs[i] = (list(out.token_ids), not out.hit_max_length)
        for pos, i in enumerate(chunk):
            encs[i] = enc[pos]
    if tokens is not None:
        ends = [False] * len(tokens) if hit_max_length is None else list(hit_max_length)
        seqs = [(list(t), not h) for t, h in zip(tokens, ends, strict=True)]
    full = []
    for token_ids, eot in seqs:
        emitted = len(token_ids) + int(eot)
        if max_positions is not None:
            emitted = min(emitted, max_positions)
        full.append((list(bundle.prompt_ids) + token_ids)[: n_prompt - 1 + emitted])
    d = bundle.model.config.d_model
    alone = [(len(s) - first) * d <= (iters + 1) * k for s in full]
    frames = [None] * len(waves)
    for batch in _batches([len(s) for s in full], alone, batch_size):
        enc = torch.stack([encs[i] for i in batch])
        out = measure_decoder(
            bundle.model,
            enc,
            [full[i] for i in batch],
            first,
            k=k,
            iters=iters,
            seed=seed,
            subspace_k=subspace_k,
            context_every_layer=context_every_layer,
        )
        for i, frame in zip(batch, out, strict=True):
            frames[i] = frame.with_columns(
                n_tokens=pl.lit(len(seqs[i][0]), pl.Int32), hit_max_length=pl.lit(not seqs[i][1])
            )
        if progress is not None:
            progress(len(batch))
    return frames


def kept_utterances(pairs: pl.DataFrame, condition: str, n: int | None = None) -> list[str]:
    """The utterances measured under ``condition``: the stressed halves of its kept pairs, or
    for clean the clean twins of every stress's kept pairs (their union); capped to the ``n``
    with the smallest stable hash (a sample that does not depend on the run), sorted."""
    from whisper_spi.config import CONDITIONS
    from whisper_spi.io import stable_hash

    clean, stresses = CONDITIONS[0], CONDITIONS[1:]
    chosen = pairs.filter(
        pl.col("condition").is_in(stresses if condition == clean else [condition])
    )
    ids = sorted(set(chosen["utt_id"].to_list()))
    if n is not None:
        ids = sorted(sorted(ids, key=stable_hash)[:n])
    return ids


def measure_condition(
    bundle, model_name: str, condition: str, pairs, transcripts, stress, options, seed: int = 0
) -> pl.DataFrame:
    """The theory_measure stage: :func:`measure` on :func:`kept_utterances` of one model x
    condition, teacher-forced on their decoded tokens (``transcripts``, a polars frame or
    lazy frame under the ``transcripts`` contract) and their stressed audio (``stress``,
    ``stress_manifest`` contract). ``options``: the config's ``theory`` section. Returns the
    ``theory_measurements`` rows (empty with no kept pair)."""
    import soundfile as sf
    from tqdm import tqdm

    from whisper_spi.errors import WhisperSpiError
    from whisper_spi.schemas import contract

    if not options["subspace_k"] < options["k"]:
        raise WhisperSpiError(
            f"config theory.subspace_k = {options['subspace_k']} must be below theory.k = "
            f"{options['k']} (sigma_(k'+1) gives the gap)"
        )
    cols = [c.name for c in contract("theory_measurements").cols]
    ids = kept_utterances(pairs, condition, options.get("n_utterances"))
    found = (
        transcripts.lazy()
        .filter(pl.col("utt_id").is_in(ids) & (pl.col("condition") == condition))
        .select("utt_id", "token_ids", "hit_max_length")
        .join(stress.lazy().select("utt_id", "path"), on="utt_id", how="inner")
        .collect()
        .sort("utt_id")
    )
    missing = sorted(set(ids) - set(found["utt_id"]))
    if missing:
        raise WhisperSpiError(
            f"theory: no transcript or stressed audio for {len(missing)} kept utterances of "
            f"{model_name}/{condition}, e.g. {missing[0]}"
        )
    waves = [sf.read(path, dtype="float32")[0] for path in found["path"]]
    with tqdm(total=len(waves), desc=f"theory {model_name}/{condition}", file=sys.stderr) as bar:
        frames = measure(
            bundle,
            waves,
            found["token_ids"].to_list(),
            found["hit_max_length"].to_list(),
            k=options["k"],
            iters=options["iters"],
            seed=seed,
            subspace_k=options["subspace_k"],
            batch_size=options["batch_size"],
            max_positions=options.get("max_positions"),
            progress=bar.update,
        )
    if not frames:
        return pl.from_arrow(contract("theory_measurements").arrow.empty_table())
    return pl.concat(
        [
            f.with_columns(model=pl.lit(model_name), condition=pl.lit(condition), utt_id=pl.lit(u))
            for f, u in zip(frames, found["utt_id"], strict=True)
        ],
        how="diagonal",
    ).select(cols)
