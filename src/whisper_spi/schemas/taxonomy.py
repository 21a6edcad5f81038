"""Contracts of the error taxonomy (whisper_spi.taxonomy.labels) and its summaries."""

from __future__ import annotations

import pyarrow as pa

from whisper_spi.registry import NONSPEECH
from whisper_spi.schemas._core import BOOL, F64, I32, I64, STR, Col, Contract, add

_TYPE_DOC = "correct, omission, grounded_error, other_speaker, looping or fabrication"

add(
    Contract(
        "taxonomy",
        "taxonomy/{model}/labels.parquet",
        "The error type of every decoded utterance of one model, all conditions (speech and "
        "non-speech): one row per (condition, utt_id). Hypothesis words are aligned (jiwer) to "
        "the target's reference and, for speaker_mix, to each partner's.",
        (
            Col("utt_id", STR, "utterance id (for non-speech: the utterance whose length it has)"),
            Col("speaker", STR, "speaker id"),
            Col("model", STR, "model name"),
            Col("condition", STR, "condition (clean, a stress, or a non-speech input)"),
            Col("type", STR, _TYPE_DOC),
            Col("wer", F64, "WER against the target (NaN for non-speech: empty reference)"),
            Col("her", F64, "share of hypothesis words grounded in no source (NaN: no words)"),
            Col("grounded_share", F64, "share of hypothesis words grounded in some source"),
            Col("target_share", F64, "share of hypothesis words grounded in the target"),
            Col("partner_share", F64, "share grounded in some mix partner and not in the target"),
            Col(
                "source_shares",
                pa.list_(F64),
                "share grounded in each source: the target, then each partner (manifest order)",
            ),
            Col("n_hyp_words", I32, "normalised hypothesis words"),
            Col("n_ref_words", I32, "normalised reference words"),
            Col("hit_max_length", BOOL, "the decode stopped at max_new_tokens"),
            Col("loop_unit", STR, "the phrase repeated back to back most ('' if none)"),
            Col("loop_repeats", I32, "back-to-back copies of loop_unit"),
            Col("loop_share", F64, "share of hypothesis words inside that run"),
            Col("hypothesis", STR, "the normalised hypothesis"),
        ),
    )
)

add(
    Contract(
        "taxonomy_counts",
        "tables/taxonomy_counts.csv",
        "Decodes per model x condition x type, every type listed (0 where none).",
        (
            Col("model", STR, "model name"),
            Col("condition", STR, "condition"),
            Col("type", STR, _TYPE_DOC),
            Col("n", I64, "decodes of this type"),
            Col("share", F64, "n / decodes of the model x condition"),
        ),
    )
)

add(
    Contract(
        "nonspeech_rate",
        "tables/nonspeech_rate.csv",
        "Non-speech inputs (no speech: any transcript is a hallucination): how often each "
        "model writes something, per condition.",
        (
            Col("model", STR, "model name"),
            Col("condition", STR, f"{', '.join(NONSPEECH[:-1])} or {NONSPEECH[-1]}"),
            Col("n_decodes", I64, "non-speech inputs decoded"),
            Col("n_hallucinated", I64, "decodes that said anything (a letter or digit)"),
            Col("rate", F64, "n_hallucinated / n_decodes"),
            Col("n_looping", I64, "of those, looping (repeated phrase or token cap)"),
        ),
    )
)

add(
    Contract(
        "bag_of_hallucinations",
        "tables/bag_of_hallucinations.csv",
        "The most frequent non-empty transcripts of the non-speech inputs, per model x "
        "condition (taxonomy.bag_top of them).",
        (
            Col("model", STR, "model name"),
            Col("condition", STR, f"{', '.join(NONSPEECH[:-1])} or {NONSPEECH[-1]}"),
            Col("hypothesis", STR, "normalised transcript"),
            Col("n", I64, "decodes with exactly this transcript"),
            Col("n_decodes", I64, "decodes of the model x condition"),
            Col("share", F64, "n / n_decodes"),
        ),
    )
)
