"""What kind of error a decoded utterance is: a grounded error taxonomy (pure functions).

WER > 0.5 against the target mixes recognition errors grounded in the audio, another
speaker's words and inventions. Here every hypothesis word is aligned (jiwer's word
alignment) to the normalised reference of each source in the audio: the target and, for a
speaker mix, its partners. A hypothesis word is *grounded* in a source when the alignment
pairs it with the same word, or substitutes it for a word it nearly spells (character error
rate below ``near_match_cer``: "gather" for "gathered"). Types, first match wins:

- ``correct``: WER against the target <= ``wer_threshold`` (nothing said, for no words said);
- ``looping``: the decode hit the token cap, or one phrase repeated back to back covers
  most of the hypothesis (tried before omission: a loop on a number, "one one one ...",
  normalises to one word, "1111...");
- ``omission``: most reference words deleted and the hypothesis short or empty;
- ``other_speaker``: most words grounded, and more of them only in a partner than in the target;
- ``grounded_error``: most words grounded in some source;
- ``fabrication``: most words grounded in no source; on a non-speech input, anything said,
  a filler the normaliser deletes ("hmm hmm") too (:func:`whisper_spi.text.spoke`).

HER (our hallucination error rate) is the share of hypothesis words grounded in no source.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import jiwer
import numpy as np
import polars as pl

from whisper_spi import schemas
from whisper_spi.text import HALLUCINATION_WER, normalize, spoke
from whisper_spi.text import wer as text_wer

# config hallucination.her_threshold's schema default: a decode with HER above it is ungrounded
HER_THRESHOLD = 0.5
TYPES = ("correct", "omission", "grounded_error", "other_speaker", "looping", "fabrication")
# What a pair's stressed decode must be to count as a hallucination (config
# hallucination.definition): WER > threshold (the paper), a fabrication, or HER > threshold.
DEFINITIONS = ("wer", "fabrication", "ungrounded")


@dataclass(frozen=True)
class TaxonomyOptions:
    wer_threshold: float = HALLUCINATION_WER
    near_match_cer: float = 0.5
    grounded_share: float = 0.5
    omission_deleted: float = 0.5
    omission_max_ratio: float = 0.25
    loop_max_n: int = 16
    loop_min_repeats: int = 3
    loop_share: float = 0.5
    # a decode stopped by the token cap loops even where no phrase repeats exactly
    cap_is_looping: bool = True

    @classmethod
    def from_config(cls, taxonomy: Mapping, wer_threshold: float) -> TaxonomyOptions:
        """The options of the config's ``taxonomy`` section; ``correct`` uses the decode's
        hallucination WER threshold (one threshold for both)."""
        keys = {f for f in cls.__dataclass_fields__ if f != "wer_threshold"}
        return cls(wer_threshold=wer_threshold, **{k: taxonomy[k] for k in keys & set(taxonomy)})


@dataclass(frozen=True)
class Loop:
    unit: str  # the repeated phrase ("" if none repeats)
    repeats: int  # back-to-back copies of it
    share: float  # share of hypothesis words inside that run


@dataclass(frozen=True)
class Label:
    type: str
    wer: float
    her: float  # share of hypothesis words grounded in no source; NaN without words
    grounded_share: float  # grounded in any source
    source_shares: tuple[float, ...]  # grounded in each source: the target, then each partner
    partner_share: float  # grounded in some partner and not in the target
    n_hyp_words: int
    n_ref_words: int
    loop: Loop


def _alignment(source: Sequence[str], hyp: Sequence[str]):
    """jiwer's word alignment of ``hyp`` to ``source`` (both non-empty word lists)."""
    return jiwer.process_words(" ".join(source), " ".join(hyp)).alignments[0]


def _grounding(
    source: Sequence[str], hyp: Sequence[str], near_match_cer: float
) -> tuple[list[bool], int]:
    """(per hypothesis word: grounded in ``source``?, source words deleted), from one alignment.

    A word is grounded when the alignment pairs it with the same word, or substitutes it for
    a word it nearly spells. An empty hypothesis deletes every source word.
    """
    out = [False] * len(hyp)
    if not source or not hyp:
        return out, len(source)
    deleted = 0
    for chunk in _alignment(source, hyp):
        if chunk.type == "delete":
            deleted += chunk.ref_end_idx - chunk.ref_start_idx
            continue
        if chunk.type not in ("equal", "substitute"):
            continue  # inserted words are grounded in nothing of this source
        for r, h in zip(
            range(chunk.ref_start_idx, chunk.ref_end_idx),
            range(chunk.hyp_start_idx, chunk.hyp_end_idx),
            strict=True,
        ):
            out[h] = chunk.type == "equal" or jiwer.cer(source[r], hyp[h]) < near_match_cer
    return out, deleted


def grounded_words(source: Sequence[str], hyp: Sequence[str], near_match_cer: float) -> list[bool]:
    """Per hypothesis word: is it aligned to the same (or a nearly same) word of ``source``?"""
    return _grounding(source, hyp, near_match_cer)[0]


def longest_loop(words: Sequence[str], max_n: int) -> Loop:
    """The longest run of one phrase (1..max_n words) repeated back to back, by words covered."""
    best = Loop("", 0, 0.0)
    best_cover = 0
    n_words = len(words)
    for n in range(1, min(max_n, n_words // 2) + 1):
        for start in range(n_words - 2 * n + 1):
            unit = words[start : start + n]
            copies = 1
            while words[start + copies * n : start + (copies + 1) * n] == unit:
                copies += 1
            if copies > 1 and copies * n > best_cover:
                best_cover = copies * n
                best = Loop(" ".join(unit), copies, best_cover / n_words)
    return best


def classify(
    reference: str,
    hypothesis: str,
    partner_references: Sequence[str] = (),
    hit_max_length: bool = False,
    options: TaxonomyOptions = TaxonomyOptions(),
) -> Label:
    """The error type of one decoded utterance (texts are normalised here)."""
    ref = normalize(reference).split()
    hyp = normalize(hypothesis).split()
    n = len(hyp)
    # rows: the target, then each partner; columns: hypothesis words
    sources = [ref] + [normalize(p).split() for p in partner_references]
    # one alignment per source; the target's also gives the deletions (omission rule)
    grounding = [_grounding(words, hyp, options.near_match_cer) for words in sources]
    flags = np.array([g[0] for g in grounding], dtype=bool).reshape(len(sources), n)
    ref_deleted = grounding[0][1] / len(ref) if ref else 0.0
    in_target, in_partner = flags[0], flags[1:].any(axis=0)
    with np.errstate(invalid="ignore"):
        shares = tuple(float(x) for x in flags.mean(axis=1)) if n else (float("nan"),) * len(flags)
    grounded = float((in_target | in_partner).mean()) if n else float("nan")
    partner_only = float((in_partner & ~in_target).mean()) if n else float("nan")
    wer = text_wer(reference, hypothesis)
    loop = longest_loop(hyp, options.loop_max_n)

    def label(kind: str) -> Label:
        return Label(kind, wer, 1.0 - grounded, grounded, shares, partner_only, n, len(ref), loop)

    if (not ref and not spoke(hypothesis)) or (ref and wer <= options.wer_threshold):
        return label("correct")
    looping = loop.repeats >= options.loop_min_repeats and loop.share >= options.loop_share
    if looping or (hit_max_length and options.cap_is_looping):
        return label("looping")
    if (
        ref
        and ref_deleted >= options.omission_deleted
        and n <= options.omission_max_ratio * len(ref)
    ):
        return label("omission")
    if grounded > options.grounded_share:
        return label("other_speaker" if partner_only > shares[0] else "grounded_error")
    return label("fabrication")


def mix_partners(stress_manifest: pl.DataFrame) -> dict[tuple[str, str], list[str]]:
    """(condition, utt_id) -> the utt_ids mixed into it, from stress manifests' params (rows
    with no partners, of other stresses, are left out). Keyed by condition too: each graded
    speaker_mix level draws its own partners."""
    out = {}
    for condition, utt_id, params in stress_manifest.select(
        "stress", "utt_id", "params"
    ).iter_rows():
        partners = json.loads(params).get("partners")
        if partners:
            out[condition, utt_id] = partners
    return out


def label_transcripts(
    transcripts: pl.DataFrame,
    partners: Mapping[tuple[str, str], Sequence[str]],
    references: Mapping[str, str],
    options: TaxonomyOptions = TaxonomyOptions(),
) -> pl.DataFrame:
    """One row per decoded utterance (contract ``taxonomy``): its type, HER, grounding and
    looping statistics. ``partners`` lists the other sources of speaker_mix utterances
    ((condition, utt_id) -> partner utt_ids; :func:`mix_partners`), ``references`` their
    transcripts (utt_id -> text)."""
    rows = []
    for tr in transcripts.iter_rows(named=True):
        others = partners.get((tr["condition"], tr["utt_id"]), [])
        label = classify(
            tr["reference"],
            tr["hypothesis"],
            [references[p] for p in others],
            tr["hit_max_length"],
            options,
        )
        rows.append(
            {
                "utt_id": tr["utt_id"],
                "speaker": tr["speaker"],
                "model": tr["model"],
                "condition": tr["condition"],
                "type": label.type,
                "wer": label.wer,
                "her": label.her,
                "grounded_share": label.grounded_share,
                "target_share": label.source_shares[0],
                "partner_share": label.partner_share,
                "source_shares": list(label.source_shares),
                "n_hyp_words": label.n_hyp_words,
                "n_ref_words": label.n_ref_words,
                "hit_max_length": tr["hit_max_length"],
                "loop_unit": label.loop.unit,
                "loop_repeats": label.loop.repeats,
                "loop_share": label.loop.share,
                "hypothesis": normalize(tr["hypothesis"]),
            }
        )
    return schemas.frame_from_rows(rows, "taxonomy")


def type_counts(labels: pl.DataFrame) -> pl.DataFrame:
    """Decodes per model x condition x type, every type listed (0 where none), with shares."""
    grid = (
        labels.select("model", "condition")
        .unique()
        .join(pl.DataFrame({"type": list(TYPES)}), how="cross")
    )
    counts = labels.group_by("model", "condition", "type").agg(pl.len().alias("n"))
    return (
        grid.join(counts, on=["model", "condition", "type"], how="left")
        .with_columns(pl.col("n").fill_null(0).cast(pl.Int64))
        .with_columns((pl.col("n") / pl.col("n").sum().over("model", "condition")).alias("share"))
        .sort("model", "condition", pl.col("type").replace_strict(TYPES, range(len(TYPES))))
        .select(schemas.contract("taxonomy_counts").names)
    )


def bag_of_hallucinations(
    labels: pl.DataFrame, conditions: Sequence[str], top: int
) -> pl.DataFrame:
    """The ``top`` most frequent non-empty (normalised) transcripts per model x condition of
    ``conditions`` (the non-speech inputs), with their count and share of that cell's decodes."""
    cell = labels.filter(pl.col("condition").is_in(list(conditions)))
    totals = cell.group_by("model", "condition").agg(pl.len().cast(pl.Int64).alias("n_decodes"))
    return (
        cell.filter(pl.col("hypothesis") != "")
        .group_by("model", "condition", "hypothesis")
        .agg(pl.len().cast(pl.Int64).alias("n"))
        .join(totals, on=["model", "condition"])
        .with_columns((pl.col("n") / pl.col("n_decodes")).alias("share"))
        .sort(["model", "condition", "n", "hypothesis"], descending=[False, False, True, False])
        .group_by("model", "condition", maintain_order=True)
        .head(top)
        .select(schemas.contract("bag_of_hallucinations").names)
    )


def hallucination_expr(definition: str, wer_threshold: float, her_threshold: float) -> pl.Expr:
    """Is a labelled decode (columns wer, type, her, n_ref_words of contract ``taxonomy``) a
    hallucination under ``definition``? The one decision every stage takes from the config's
    ``hallucination.*`` (pairs, detector, mitigation table, the ``project`` fit).

    On a non-speech input (no reference words) anything said is one, under every definition
    (the taxonomy's non-``correct`` types there). Otherwise NaN WER or HER never passes."""
    if definition == "wer":
        speech = pl.col("wer").is_not_nan() & (pl.col("wer") > wer_threshold)
    elif definition == "fabrication":
        speech = pl.col("type") == "fabrication"
    elif definition == "ungrounded":
        speech = pl.col("her").is_not_nan() & (pl.col("her") > her_threshold)
    else:
        raise ValueError(
            f"hallucination definition must be one of {DEFINITIONS}, got {definition!r}"
        )
    return pl.when(pl.col("n_ref_words") == 0).then(pl.col("type") != "correct").otherwise(speech)


def nonspeech_rate(labels: pl.DataFrame, conditions: Sequence[str]) -> pl.DataFrame:
    """Per model x non-speech condition: decodes, those that said anything (a filler too:
    :func:`hallucination_expr`'s non-speech rule), their rate, loops."""
    return (
        labels.filter(pl.col("condition").is_in(list(conditions)))
        .group_by("model", "condition")
        .agg(
            pl.len().cast(pl.Int64).alias("n_decodes"),
            (pl.col("type") != "correct").sum().cast(pl.Int64).alias("n_hallucinated"),
            (pl.col("type") == "looping").sum().cast(pl.Int64).alias("n_looping"),
        )
        .with_columns(rate=pl.col("n_hallucinated") / pl.col("n_decodes"))
        .select(schemas.contract("nonspeech_rate").names)
        .sort("model", pl.col("condition").replace_strict(
            list(conditions), range(len(conditions)), default=len(conditions)))
    )  # fmt: skip
