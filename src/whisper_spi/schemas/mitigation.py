"""Contracts of the intervention stage: its transcripts and the mitigation table."""

from __future__ import annotations

from whisper_spi.registry import DECODED_BASELINES, INTERVENTIONS
from whisper_spi.schemas import decode  # noqa: F401  (registers the transcripts contract extended here)
from whisper_spi.schemas._core import BOOL, F64, I32, I64, STR, Col, Contract, add, contract

METHOD_DOC = (
    "plain (no intervention), gating (plain + OpenAI's no-speech skip), a decoded baseline "
    f"({', '.join(DECODED_BASELINES)}) or an intervention: {', '.join(INTERVENTIONS)}"
)

add(
    Contract(
        "mitigation_transcripts",
        "intervene/{model}/{method}/{strength}/{condition}/shard-{shard}.parquet",
        "One row per utterance decoded under an intervention or a decoded baseline (also "
        "written to intervene/{model}/{baseline}/{condition}/shard-{shard}.parquet): the "
        "decode contract's transcript columns plus what was applied. A timestamped baseline's "
        "token_ids are its text tokens.",
        (
            *contract("transcripts").cols,
            Col("method", STR, f"{', '.join([*INTERVENTIONS, *DECODED_BASELINES])}"),
            Col("strength", F64, "intervention strength in [0, 1]; NaN for a baseline"),
            Col("layers", STR, "decoder layers edited, comma-separated; empty for a baseline"),
            Col("component", STR, "the edited component; empty for a baseline"),
            Col("fold", I32, "project: detector fold held out of the subspace's fit; else -1"),
            Col(
                "temperature",
                F64,
                "temperature of the kept decode (0 = greedy); faster-whisper: its segments' top",
            ),
            Col("dropped", BOOL, "a baseline kept nothing (no-speech skip, VAD); else false"),
        ),
    )
)

add(
    Contract(
        "mitigation",
        "mitigation/mitigation.csv",
        "Hallucination rate and WER of every method x strength per model and condition, with "
        "speaker-grouped bootstrap CIs (resampling speakers with all their utterances; the "
        "same replicates for every method of a model x condition, so differences are paired).",
        (
            Col("model", STR, "model name"),
            Col("method", STR, METHOD_DOC),
            Col("strength", F64, "intervention strength; 0 for plain, NaN for the baselines"),
            Col(
                "condition",
                STR,
                "a decode condition, stressed (every stress pooled) or nonspeech (every "
                "non-speech input pooled)",
            ),
            Col(
                "metric",
                STR,
                "hallucination_rate (hallucination.definition; anything said for an empty "
                "reference), wer (mean utterance WER), rate:<type> (taxonomy type share), "
                "mean_tokens (decoded length, the confounder)",
            ),
            Col("value", F64, "the metric over the utterances"),
            Col("lo", F64, "speaker-bootstrap percentile CI, lower"),
            Col("hi", F64, "speaker-bootstrap percentile CI, upper"),
            Col("d_fallback", F64, "value minus the fallback's on the same utterances"),
            Col("d_lo", F64, "its paired speaker-bootstrap CI, lower"),
            Col("d_hi", F64, "its paired speaker-bootstrap CI, upper"),
            Col("d_plain", F64, "value minus the plain decode's on the same utterances"),
            Col("dp_lo", F64, "its paired speaker-bootstrap CI, lower"),
            Col("dp_hi", F64, "its paired speaker-bootstrap CI, upper"),
            Col(
                "best",
                STR,
                "the model's best baseline users have: the gating or decoded baseline with the "
                "lowest stressed hallucination rate (empty: none decoded)",
            ),
            Col("d_best", F64, "value minus the best baseline's on the same utterances"),
            Col("db_lo", F64, "its paired speaker-bootstrap CI, lower"),
            Col("db_hi", F64, "its paired speaker-bootstrap CI, upper"),
            Col("n", I64, "utterances"),
            Col("n_speakers", I64, "speakers resampled (non-speech inputs: items)"),
            Col("n_boot", I64, "bootstrap replicates"),
        ),
    )
)

add(
    Contract(
        "mitigation_summary",
        "mitigation/{model}/summary.csv",
        "One row per arm: stressed hallucination rate, clean WER and non-speech hallucination "
        "rate as 'value [lo, hi]' (95% speaker-bootstrap CI; non-speech: items resampled) with "
        "the paired difference to the fallback.",
        (
            Col("model", STR, "model name"),
            Col("method", STR, METHOD_DOC),
            Col("strength", STR, "intervention strength ('–' for the baselines)"),
            Col("hall_stressed", STR, "hallucination rate, every stress pooled"),
            Col("d_hall_vs_fallback", STR, "its difference to the fallback's"),
            Col("wer_clean", STR, "mean utterance WER on clean audio"),
            Col("d_wer_clean_vs_fallback", STR, "its difference to the fallback's"),
            Col(
                "hall_nonspeech",
                STR,
                "hallucination rate (any word), every non-speech input pooled; '–' without them",
            ),
            Col("d_hall_nonspeech_vs_fallback", STR, "its difference to the fallback's"),
            Col("best", STR, "the model's best baseline users have (mitigation contract)"),
            Col("d_hall_vs_best", STR, "stressed hallucination rate minus the best baseline's"),
            Col("d_wer_clean_vs_best", STR, "clean WER minus the best baseline's"),
            Col("tokens_stressed", STR, "mean decoded tokens on the stresses (confounder)"),
        ),
    )
)

add(
    Contract(
        "mitigation_verdict",
        "mitigation/verdict.csv",
        "Per model, the causal questions answered from the mitigation table, with CIs.",
        (
            Col("model", STR, "model name"),
            Col("question", STR, "what is asked"),
            Col("answer", STR, "the answer, with the differences and their 95% CIs"),
        ),
    )
)
