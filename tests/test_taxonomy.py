"""The error taxonomy on constructed cases, one or more per type."""

from __future__ import annotations

import math

import jiwer
import polars as pl
import pytest

from whisper_spi.taxonomy import (
    TYPES,
    TaxonomyOptions,
    bag_of_hallucinations,
    classify,
    grounded_words,
    label_transcripts,
    longest_loop,
    mix_partners,
    type_counts,
)
from whisper_spi.text import normalize

TARGET = "HEAVY CLOUDS GATHERED OVER THE HILLS IN THE LATE AFTERNOON"
PARTNERS = [
    "THE OLD MILLER WALKED SLOWLY DOWN TO THE RIVER BANK",
    "SHE FOUND A LETTER HIDDEN BEHIND THE KITCHEN CLOCK",
]


def test_correct_within_threshold():
    hyp = "heavy clouds gathered over the hill in the late afternoon"
    label = classify(TARGET, hyp)
    assert label.type == "correct"
    assert label.wer == pytest.approx(jiwer.wer(normalize(TARGET), normalize(hyp)))


def test_grounded_error_and_hand_counted_her():
    # The 0 dB noise example: WER 0.7, yet a recognition error of the audio.
    hyp = "Heavy clouds gather over the hill, and the wave has to remove"
    label = classify(TARGET, hyp)
    assert label.type == "grounded_error"
    assert label.wer == pytest.approx(0.7)
    # by hand: heavy clouds gather~gathered over the hill~hills the are grounded (7 of 12);
    # and/in, wave/late, has/afternoon are substitutions of other words, "to remove" inserted
    assert label.n_hyp_words == 12
    assert label.her == pytest.approx(5 / 12)
    assert label.grounded_share == pytest.approx(7 / 12)


def test_other_speaker_when_output_is_a_partners_sentence():
    label = classify(TARGET, PARTNERS[1].lower(), PARTNERS)
    assert label.type == "other_speaker"
    assert label.her == 0.0
    assert label.source_shares[2] == 1.0  # every word grounded in the second partner
    assert label.source_shares[0] == pytest.approx(1 / 9)  # "the" is also in the target
    assert label.partner_share == pytest.approx(8 / 9)


def test_partner_words_without_partners_are_a_fabrication():
    # The same output for a noise stress (no other source in the audio) is ungrounded.
    assert classify(TARGET, PARTNERS[1].lower()).type == "fabrication"


def test_omission_empty_and_short():
    empty = classify(TARGET, "")
    assert empty.type == "omission"
    assert empty.n_hyp_words == 0 and math.isnan(empty.her)
    assert classify(TARGET, "heavy").type == "omission"
    # short but everything else substituted, not deleted: not an omission
    assert classify("A B", "C D E F G").type != "omission"


def test_looping_phrase_and_token_cap():
    hyp = "please come back " * 6
    label = classify(TARGET, hyp)
    assert label.type == "looping"
    assert (label.loop.unit, label.loop.repeats, label.loop.share) == ("please come back", 6, 1.0)
    # a decode cut by the token cap loops even without an exact repeat
    invented = "the quick brown fox jumps over a lazy dog near the barn"
    assert classify(TARGET, invented, hit_max_length=True).type == "looping"
    no_cap_rule = TaxonomyOptions(cap_is_looping=False)
    assert classify(TARGET, invented, hit_max_length=True, options=no_cap_rule).type == (
        "fabrication"
    )


def test_fabrication_invented_sentence():
    label = classify(TARGET, "I'll see you in the next one.")
    assert label.type == "fabrication"
    # normalised "i will see you in the next one": only "in" and "the" align to the target
    assert label.her == pytest.approx(6 / 8)


def test_non_speech_any_words_are_a_hallucination():
    assert classify("", "").type == "correct"
    assert classify("", "Thank you.").type == "fabrication"
    assert classify("", "thank you " * 5).type == "looping"
    assert math.isnan(classify("", "Thank you.").wer)


def test_thresholds_are_options():
    hyp = "Heavy clouds gather over the hill, and the wave has to remove"
    strict = TaxonomyOptions(grounded_share=0.7)
    assert classify(TARGET, hyp, options=strict).type == "fabrication"
    exact = TaxonomyOptions(near_match_cer=0.0)  # only identical words ground
    assert classify(TARGET, hyp, options=exact).grounded_share == pytest.approx(5 / 12)


def test_grounded_words_follow_the_alignment_not_the_vocabulary():
    source = ["a", "b", "c", "d"]
    assert grounded_words(source, ["a", "b", "c", "d"], 0.5) == [True] * 4
    # "a" occurs in the source, but the order-preserving alignment can use it only once
    assert grounded_words(source, ["a", "b", "c", "d", "a"], 0.5) == [True] * 4 + [False]
    assert grounded_words(source, ["x", "y"], 0.5) == [False, False]
    assert grounded_words([], ["a"], 0.5) == [False]


def test_longest_loop():
    words = ["so", "it", "goes", "so", "it", "goes", "so", "it", "goes", "and", "then"]
    loop = longest_loop(words, max_n=16)
    assert (loop.unit, loop.repeats) == ("so it goes", 3)
    assert loop.share == pytest.approx(9 / 11)
    assert longest_loop(["a", "b", "c", "d"], 16).repeats == 0
    assert longest_loop(["no", "no"], 16).unit == "no"


def _transcripts(rows):
    cols = ["utt_id", "speaker", "model", "condition", "reference", "hypothesis", "hit_max_length"]
    return pl.DataFrame([dict(zip(cols, r, strict=True)) for r in rows])


def test_label_transcripts_uses_partners_only_for_the_mix():
    references = {"2-1-0000": PARTNERS[0], "3-1-0000": PARTNERS[1]}
    partners = {"1-1-0000": ["2-1-0000", "3-1-0000"]}
    frame = _transcripts(
        [
            ("1-1-0000", "1", "tiny", "speaker_mix", TARGET, PARTNERS[1], False),
            ("1-1-0000", "1", "tiny", "gaussian_noise", TARGET, PARTNERS[1], False),
            ("1-1-0000", "1", "tiny", "silence", "", "Thank you.", False),
        ]
    )
    labels = label_transcripts(frame, partners, references)
    assert labels["type"].to_list() == ["other_speaker", "fabrication", "fabrication"]
    assert labels["hypothesis"][2] == "thank you"
    counts = type_counts(labels)
    assert counts.height == 3 * len(TYPES)  # every type listed per model x condition
    mix = counts.filter(pl.col("condition") == "speaker_mix")
    assert dict(zip(mix["type"], mix["n"], strict=True))["other_speaker"] == 1
    assert mix["n"].sum() == 1 and mix["share"].sum() == pytest.approx(1.0)


def test_mix_partners_from_the_stress_manifest():
    manifest = pl.DataFrame(
        {"utt_id": ["1-1-0000"], "params": ['{"n_speakers": 3, "partners": ["a", "b"]}']}
    )
    assert mix_partners(manifest) == {"1-1-0000": ["a", "b"]}


def test_bag_of_hallucinations_counts_non_empty_outputs():
    rows = [
        (f"1-1-{i:04d}", "1", "tiny", "silence", "", hyp, False)
        for i, hyp in enumerate(["Thank you.", "thank you", "", "Bye.", "Thank you!", ""])
    ]
    rows.append(("1-1-0009", "1", "tiny", "clean", TARGET, "Thank you.", False))
    bag = bag_of_hallucinations(label_transcripts(_transcripts(rows), {}, {}), ["silence"], top=5)
    assert bag["hypothesis"].to_list() == ["thank you", "bye"]
    assert bag["n"].to_list() == [3, 1]
    assert bag["share"].to_list() == pytest.approx([3 / 6, 1 / 6])
