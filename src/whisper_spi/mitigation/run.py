"""The intervention stage's decodes: a shard under one intervention, or under a baseline.

Rows follow the ``mitigation_transcripts`` contract (the decode contract plus what was
applied). ``project`` is cross-fitted: the subspace applied to a speaker's utterances was
fitted on the detector's other folds only (the held-out fold is recorded), so no utterance
is edited by a direction estimated from itself or its speaker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from whisper_spi.corpus.stress import read_stress_shard
from whisper_spi.decode.batching import in_batches
from whisper_spi.decode.loop import Decoded, encode, greedy_decode, log_mel
from whisper_spi.errors import WhisperSpiError
from whisper_spi.mitigation.fallback import OPENAI, FallbackOptions, fallback_decode, needs_fallback
from whisper_spi.mitigation.fit import ALL_FOLDS, load_subspaces, speaker_folds_of
from whisper_spi.mitigation.intervene import Intervene, Intervention
from whisper_spi.registry import DECODED_BASELINES, FALLBACK, TRANSCRIBE
from whisper_spi.text import HALLUCINATION_WER, hallucinated, wer


def decoded_from_row(row: Mapping) -> Decoded:
    """A plain decode's transcript row as the :class:`Decoded` it was made from."""
    n = row["n_tokens"]
    return Decoded(
        token_ids=list(row["token_ids"]),
        text=row["hypothesis"],
        hit_max_length=row["hit_max_length"],
        sum_logprob=row["avg_logprob"] * (n + 1),
        avg_logprob=row["avg_logprob"],
        no_speech_prob=row["no_speech_prob"],
        compression_ratio=row["compression_ratio"],
    )


def _row(utt, d: Decoded, model: str, condition: str, threshold: float, **applied) -> dict:
    err = wer(utt["text"], d.text)
    return {
        "utt_id": utt["utt_id"],
        "speaker": utt["speaker"],
        "model": model,
        "condition": condition,
        "reference": utt["text"],
        "hypothesis": d.text,
        "token_ids": d.token_ids,
        "n_tokens": d.n_tokens,
        "hit_max_length": d.hit_max_length,
        "avg_logprob": d.avg_logprob,
        "compression_ratio": d.compression_ratio,
        "no_speech_prob": d.no_speech_prob,
        "wer": err,
        "hallucination": hallucinated(utt["text"], d.text, err, threshold),
        **applied,
    }


def intervene_shard(
    bundle,
    utterances: Sequence[Mapping],
    model: str,
    condition: str,
    specs: Mapping[int, Intervention],
    folds: Mapping[str, int] | None = None,
    *,
    batch_size: int = 8,
    max_new_tokens: int = 224,
    threshold: float = HALLUCINATION_WER,
    progress=None,
) -> list[dict]:
    """Decode ``utterances`` (dicts: utt_id, speaker, text, wave) under an intervention.

    ``specs``: fold -> intervention; a ``project`` is applied per speaker fold (``folds``:
    speaker -> fold), the others have one spec under key ALL_FOLDS.
    """
    groups: dict[int, list[Mapping]] = {}
    for utt in utterances:
        fold = folds[utt["speaker"]] if folds is not None else ALL_FOLDS
        if fold not in specs:
            raise WhisperSpiError(f"no intervention for fold {fold} (speaker {utt['speaker']})")
        groups.setdefault(fold, []).append(utt)

    def run(batch):
        enc = encode(bundle, log_mel(bundle, [u["wave"] for u in batch]))
        return greedy_decode(bundle, enc, max_new_tokens)

    rows = []
    for fold, utts in sorted(groups.items()):
        spec = specs[fold]
        applied = {
            "method": spec.kind,
            "strength": spec.strength,
            "layers": ",".join(map(str, spec.layers)),
            "component": spec.component,
            "fold": fold,
            "temperature": 0.0,
            "dropped": False,
        }
        with Intervene(bundle.model, spec):
            for batch, decoded in in_batches(utts, batch_size, run):
                for utt, d in zip(batch, decoded, strict=True):
                    rows.append(_row(utt, d, model, condition, threshold, **applied))
                if progress is not None:
                    progress.update(len(batch))
    return sorted(rows, key=lambda r: r["utt_id"])


def fallback_shard(
    bundle,
    utterances: Sequence[Mapping],
    model: str,
    condition: str,
    seed: int,
    plain: Mapping[str, Decoded] | None = None,
    *,
    opts: FallbackOptions = OPENAI,
    batch_size: int = 8,
    max_new_tokens: int = 224,
    threshold: float = HALLUCINATION_WER,
    progress=None,
    timestamps: bool = False,
) -> list[dict]:
    """Decode ``utterances`` with OpenAI's temperature fallback; ``plain``: utt_id -> its plain
    greedy decode (the temperature-0 pass, then reused; only failing rows are re-encoded).
    ``timestamps``: in Whisper's timestamp mode, which is OpenAI's transcribe() on one window
    (the ``transcribe`` arm; ``plain``, decoded without timestamps, must then be None)."""

    def run(batch):
        ids = [u["utt_id"] for u in batch]
        first = [plain[i] for i in ids] if plain is not None else None
        if first is not None:  # only the rows that fall back need the encoder
            redo = [
                i
                for i, d in enumerate(first)
                if needs_fallback(d.compression_ratio, d.avg_logprob, d.no_speech_prob, opts)
            ]
        else:
            redo = list(range(len(batch)))
        keep = [i for i in range(len(batch)) if i not in redo]
        results: list = [None] * len(batch)
        if keep:  # their greedy decode stands: no encoder pass (enc is never read)
            got = fallback_decode(bundle, None, [ids[i] for i in keep], seed, opts,
                                  first=[first[i] for i in keep])  # fmt: skip
            for i, r in zip(keep, got, strict=True):
                results[i] = r
        if redo:
            enc = encode(bundle, log_mel(bundle, [batch[i]["wave"] for i in redo]))
            got = fallback_decode(
                bundle,
                enc,
                [ids[i] for i in redo],
                seed,
                opts,
                max_new_tokens,
                first=[first[i] for i in redo] if first is not None else None,
                timestamps=timestamps,
            )
            for i, r in zip(redo, got, strict=True):
                results[i] = r
        return results

    rows = []
    for batch, results in in_batches(utterances, batch_size, run):
        for utt, r in zip(batch, results, strict=True):
            method = TRANSCRIBE if timestamps else FALLBACK
            applied = _baseline(method, r.temperature, r.dropped)
            rows.append(_row(utt, r.decoded, model, condition, threshold, **applied))
        if progress is not None:
            progress.update(len(batch))
    return rows


def _baseline(method: str, temperature: float, dropped: bool) -> dict:
    """A baseline row's mitigation columns (no intervention applied)."""
    return {
        "method": method,
        "strength": float("nan"),
        "layers": "",
        "component": "",
        "fold": ALL_FOLDS,
        "temperature": temperature,
        "dropped": dropped,
    }


def faster_shard(
    engine,
    utterances: Sequence[Mapping],
    model: str,
    condition: str,
    arm: str,
    *,
    max_new_tokens: int = 224,
    threshold: float = HALLUCINATION_WER,
    progress=None,
) -> list[dict]:
    """Decode ``utterances`` one by one with faster-whisper (``engine``:
    :func:`whisper_spi.mitigation.faster.load_faster`) under the baseline ``arm``."""
    from whisper_spi.mitigation.faster import faster_decode

    rows = []
    for utt in utterances:
        d, temperature, dropped = faster_decode(engine, utt["wave"], arm, max_new_tokens)
        applied = _baseline(arm, temperature, dropped)
        rows.append(_row(utt, d, model, condition, threshold, **applied))
        if progress is not None:
            progress.update(1)
    return sorted(rows, key=lambda r: r["utt_id"])


def select_utterances(ids: Sequence[str], n: int | None, shard: int, shard_size: int) -> list[str]:
    """The intervention stage's shard ``shard``: of the ``n`` utterances with the smallest
    stable hash (every one if n is None; spread over speakers, unlike the sorted decode
    shards), the ``shard``-th block of ``shard_size``, sorted."""
    from whisper_spi.io import stable_hash

    chosen = sorted(sorted(set(ids), key=lambda u: (stable_hash(u), u))[:n])
    return chosen[shard * shard_size : (shard + 1) * shard_size]


def run_shard(
    bundle,
    *,
    model_name: str,
    condition: str,
    stress_manifests: Sequence[str | Path],
    corpus_manifest: str | Path,
    arms: Sequence[tuple[str, float, str | Path]],
    layers: Sequence[int] | None = None,
    subspaces: str | Path | None = None,
    oof: str | Path | None = None,
    plain: Sequence[str | Path] | None = None,
    n_utterances: int | None = None,
    shard: int = 0,
    shard_size: int = 16,
    seed: int = 0,
    batch_size: int = 8,
    max_new_tokens: int = 224,
    threshold: float = HALLUCINATION_WER,
    progress=None,
    threads: int = 1,
    cache_dir: str | Path | None = None,
) -> None:
    """The intervention stage's job: shard ``shard`` (:func:`select_utterances`) of the
    condition's stressed utterances, decoded under each arm (method, strength, out) in turn
    with the one loaded model, each arm's rows written to its ``out``.

    An intervention edits ``layers`` (empty or None: every layer; ``project`` takes its
    layers from the ``subspaces`` of intervene-fit, applied per speaker fold of ``oof``);
    the fallback reuses the ``plain`` transcripts as its temperature-0 pass where given.
    A baseline arm (registry.DECODED_BASELINES) ignores its strength; faster-whisper's arms
    run on the model's CTranslate2 conversion (cached in ``cache_dir``), with ``threads``
    CPU threads. ``threshold``: a decode hallucinates when its WER exceeds it.
    """
    from whisper_spi import schemas

    ids = schemas.scan_parquet(stress_manifests, "stress_manifest", ["utt_id"])
    ids = ids.select("utt_id").collect()["utt_id"].to_list()
    chosen = select_utterances(ids, n_utterances, shard, shard_size)
    utts = read_stress_shard(stress_manifests, corpus_manifest, chosen, condition)
    common = dict(
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        threshold=threshold,
        progress=progress,
    )
    engine = None
    for method, strength, out in arms:
        if progress is not None:
            progress.reset(total=len(utts))
            label = method if method in DECODED_BASELINES else f"{method} {strength:g}"
            progress.set_description(f"{label} {model_name}/{condition}")
        if method == FALLBACK:
            first = None
            if plain:
                frame = schemas.scan_parquet(plain, "transcripts").collect()
                first = {r["utt_id"]: decoded_from_row(r) for r in frame.iter_rows(named=True)}
            rows = fallback_shard(bundle, utts, model_name, condition, seed, first, **common)
        elif method == TRANSCRIBE:
            rows = fallback_shard(
                bundle, utts, model_name, condition, seed, None, timestamps=True, **common
            )
        elif method in DECODED_BASELINES:  # faster-whisper's arms
            if engine is None:
                from whisper_spi.mitigation.faster import load_faster

                dtype = str(bundle.dtype).removeprefix("torch.")
                engine = load_faster(bundle.spec, bundle.device.type, dtype, threads, cache_dir)
            rows = faster_shard(
                engine, utts, model_name, condition, method,
                max_new_tokens=max_new_tokens, threshold=threshold, progress=progress,
            )  # fmt: skip
        else:
            rows = intervene_shard(
                bundle,
                utts,
                model_name,
                condition,
                *_specs(method, strength, layers, bundle.n_decoder_layers, subspaces, oof),
                **common,
            )
        schemas.write_rows(rows, "mitigation_transcripts", out)


def _specs(method, strength, layers, n_layers, subspaces, oof):
    """(fold -> intervention, speaker -> fold or None) of one intervention arm."""
    if method != "project":
        return {
            ALL_FOLDS: Intervention(method, strength, layer_list(layers or None, n_layers))
        }, None
    if not (subspaces and oof):
        raise WhisperSpiError("intervene --method project needs --subspaces and --oof")
    return load_subspaces(subspaces, strength), speaker_folds_of(oof)


def layer_list(spec: Sequence[int] | None, n_layers: int) -> tuple[int, ...]:
    """intervene.layers resolved for a decoder of ``n_layers``: null = every layer;
    negative values count from the last (-1 = the final layer)."""
    if spec is None:
        return tuple(range(n_layers))
    out = sorted({i % n_layers if -n_layers <= i < n_layers else i for i in spec})
    bad = [i for i in out if not 0 <= i < n_layers]
    if bad:
        raise WhisperSpiError(f"intervene.layers {list(spec)}: the decoder has {n_layers} layers")
    return tuple(out)


__all__ = [
    "decoded_from_row",
    "fallback_shard",
    "faster_shard",
    "intervene_shard",
    "layer_list",
    "run_shard",
    "select_utterances",
]
