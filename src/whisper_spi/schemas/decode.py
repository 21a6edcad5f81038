"""Contracts of the corpus, stress and decode stages."""

from __future__ import annotations

import pyarrow as pa

from whisper_spi.schemas._core import BOOL, F32, F64, I32, I64, STR, Col, Contract, add

add(
    Contract(
        "manifest",
        "corpus/manifest.parquet",
        "One row per usable utterance of the corpus (after the bad-audio checks).",
        (
            Col(
                "utt_id",
                STR,
                "<speaker>-...: LibriSpeech's <speaker>-<chapter>-<utterance>, or a manifest "
                "file row's id prefixed with its speaker",
            ),
            Col("split", STR, "split directory (test-clean), or a manifest file's split or stem"),
            Col("speaker", STR, "speaker id"),
            Col("chapter", STR, "chapter id (empty for a manifest row without one)"),
            Col("path", STR, "absolute path of the source audio file"),
            Col("duration_s", F64, "duration of the source audio", "s"),
            Col("sample_rate", I32, "sample rate of the source file", "Hz"),
            Col("text", STR, "reference transcript (.trans.txt line, or a manifest's transcript)"),
            Col(
                "note",
                STR,
                "non-fatal remark: resampled, downmixed, truncated to 30 s; empty if none",
            ),
        ),
    )
)

add(
    Contract(
        "rejected",
        "corpus/rejected.parquet",
        "Audio files skipped under on_bad_audio: skip, with the reason.",
        (
            Col("path", STR, "file that was skipped"),
            Col(
                "reason",
                STR,
                "why: unreadable, empty, silent, too short, non-finite, no transcript, ...; "
                "a manifest file's row: 'line N: ...'",
            ),
        ),
    )
)

add(
    Contract(
        "stress_manifest",
        "stress/{condition}/shard-{shard}.parquet",
        "One row per utterance of a shard under one condition (clean included).",
        (
            Col("utt_id", STR, "utterance id"),
            Col("stress", STR, "condition: clean, a stress, or a non-speech input"),
            Col("path", STR, "absolute path of the 16 kHz mono FLAC written by the stress rule"),
            Col(
                "params",
                STR,
                "JSON of the stress parameters: {} (clean), factor, snr_db, or n_speakers and"
                " partners (the mixed utt_ids)",
            ),
            Col("gain", F64, "scale applied after stressing to avoid clipping (1.0 = none)"),
            Col("seed", I64, "seed derived from (global seed, stress, utt_id)"),
        ),
    )
)


add(
    Contract(
        "transcripts",
        "decode/{model}/{condition}/shard-{shard}/transcripts.parquet",
        "One row per decoded utterance: greedy transcript and Whisper's fallback statistics.",
        (
            Col("utt_id", STR, "utterance id"),
            Col("speaker", STR, "speaker id (for speaker-grouped cross-validation)"),
            Col("model", STR, "model name (config key)"),
            Col("condition", STR, "clean, a stress, or a non-speech input (silence, ...)"),
            Col("reference", STR, "reference transcript ('' for a non-speech input)"),
            Col("hypothesis", STR, "greedy transcript"),
            Col(
                "token_ids", pa.list_(I32), "generated token ids, without prompt and <|endoftext|>"
            ),
            Col("n_tokens", I32, "len(token_ids)"),
            Col("hit_max_length", BOOL, "stopped by decode.max_new_tokens, not by <|endoftext|>"),
            Col(
                "avg_logprob",
                F64,
                "sum of chosen-token log-probs / (n_tokens + 1), as OpenAI",
                "nats",
            ),
            Col("compression_ratio", F64, "len(text) / len(zlib(text)), as OpenAI's fallback"),
            Col("no_speech_prob", F64, "P(<|nospeech|>) at <|startoftranscript|>; NaN if no token"),
            Col("wer", F64, "jiwer WER after Whisper's English normaliser; may exceed 1"),
            Col(
                "hallucination",
                BOOL,
                "wer > decode.hallucination_wer; for a non-speech input: anything said (the"
                " decode's record; stages decide from the taxonomy labels and"
                " hallucination.definition)",
            ),
        ),
    )
)

add(
    Contract(
        "spectra",
        "decode/{model}/{condition}/shard-{shard}/layer-{layer}.parquet",
        "Per utterance and component of one decoder layer: SVD spectrum of the T x d matrix of "
        "what the component adds to the residual stream (rows: the positions that emitted the "
        "decoded tokens and <|endoftext|>; prompt positions only with decode.include_prompt), "
        "and of its first L rows for each L in decode.prefix_lengths.",
        (
            Col("utt_id", STR, "utterance id"),
            Col("model", STR, "model name"),
            Col("condition", STR, "condition"),
            Col("layer", I32, "decoder layer, 0-based"),
            Col(
                "component",
                STR,
                "cross_attn (encoder_attn out), self_attn (out), ffn (fc2 out), residual",
            ),
            Col("prefix", I32, "0 = all T rows; L = the first L rows (present only if T >= L)"),
            Col("n_rows", I32, "rows of the matrix whose spectrum this is (T, or L)"),
            Col("centered", BOOL, "column mean removed before the SVD (decode.center)"),
            Col(
                "sv",
                pa.list_(F64),
                "singular values, descending (float64 SVD)",
                "activation units",
            ),
            Col(
                "row_mean",
                pa.list_(F32),
                "mean of the T rows (d values; null for prefix rows), for the pooled N x d scope",
                "activation units",
            ),
        ),
    )
)
