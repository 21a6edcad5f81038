"""The error taxonomy on constructed cases, one or more per type."""

from __future__ import annotations

import math

import jiwer
import polars as pl
import pytest

from whisper_spi import schemas
from whisper_spi.analysis.pairs import pairs_and_counts
from whisper_spi.config import validate
from whisper_spi.taxonomy.labels import (
    TYPES,
    TaxonomyOptions,
    bag_of_hallucinations,
    classify,
    grounded_words,
    hallucination_expr,
    label_transcripts,
    longest_loop,
    mix_partners,
    nonspeech_rate,
    type_counts,
)
from whisper_spi.taxonomy.run import summarize
from whisper_spi.text import normalize, spoke

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


def test_a_loop_on_a_number_cut_by_the_cap_is_looping_not_omission():
    # the normaliser turns the loop into one word, "1111...": short, so omission would match
    loop = "one " * 60
    assert normalize(loop) == "1" * 60
    assert classify(TARGET, loop, hit_max_length=True).type == "looping"


def test_fabrication_invented_sentence():
    label = classify(TARGET, "I'll see you in the next one.")
    assert label.type == "fabrication"
    # normalised "i will see you in the next one": only "in" and "the" align to the target
    assert label.her == pytest.approx(6 / 8)


def test_non_speech_any_words_are_a_hallucination():
    assert classify("", "").type == "correct"
    assert classify("", "Thank you.").type == "fabrication"
    assert classify("", "thank you " * 5).type == "looping"
    # a filler is said, though the normaliser deletes it; punctuation alone is not
    assert classify("", "Hmm. Hmm hmm.").type == "fabrication"
    assert classify("", " . ").type == "correct"
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
    partners = {("speaker_mix", "1-1-0000"): ["2-1-0000", "3-1-0000"]}
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
    shares = labels["source_shares"][0].to_list()  # the target, then each partner
    assert len(shares) == 3 and shares[0] == pytest.approx(1 / 9) and shares[2] == 1.0
    assert labels["source_shares"][1].to_list() == pytest.approx([1 / 9])
    counts = type_counts(labels)
    assert counts.height == 3 * len(TYPES)  # every type listed per model x condition
    mix = counts.filter(pl.col("condition") == "speaker_mix")
    assert dict(zip(mix["type"], mix["n"], strict=True))["other_speaker"] == 1
    assert mix["n"].sum() == 1 and mix["share"].sum() == pytest.approx(1.0)


def test_mix_partners_from_the_stress_manifest():
    manifest = pl.DataFrame(
        {
            "stress": ["speaker_mix", "speaker_mix@2", "gaussian_noise"],
            "utt_id": ["1-1-0000"] * 3,
            "params": [
                '{"n_speakers": 3, "partners": ["a", "b"]}',
                '{"n_speakers": 2, "partners": ["c"]}',
                '{"snr_db": 0.0}',
            ],
        }
    )
    assert mix_partners(manifest) == {
        ("speaker_mix", "1-1-0000"): ["a", "b"],
        ("speaker_mix@2", "1-1-0000"): ["c"],
    }


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


def test_omission_counts_deletions_of_the_one_target_alignment():
    # 1 of 10 words said: 9 deleted (jiwer) and 1 <= 0.25 * 10 words; 3 words are too many
    assert classify(TARGET, "clouds").type == "omission"
    assert classify(TARGET, "heavy clouds gathered").type != "omission"
    words = normalize(TARGET).split()
    out = jiwer.process_words(" ".join(words), "clouds")
    deleted = sum(c.ref_end_idx - c.ref_start_idx for c in out.alignments[0] if c.type == "delete")
    assert deleted == 9


def test_options_from_the_config_defaults_are_the_dataclass_defaults():
    cfg = validate({})
    assert TaxonomyOptions.from_config(cfg["taxonomy"], 0.5) == TaxonomyOptions()
    strict = TaxonomyOptions.from_config({**cfg["taxonomy"], "grounded_share": 0.7}, 0.3)
    assert (strict.grounded_share, strict.wer_threshold) == (0.7, 0.3)
    assert cfg["hallucination"] == {"definition": "wer", "her_threshold": 0.5}
    assert cfg["nonspeech"]["n_items"] == 8


def _labels():
    rows = [
        ("1-1-0000", "1", "tiny", "gaussian_noise", TARGET, "Heavy clouds gather over the hill, "
         "and the wave has to remove", False),  # grounded_error, WER 0.7, HER 5/12
        ("1-1-0001", "1", "tiny", "gaussian_noise", TARGET, "I'll see you in the next one.",
         False),  # fabrication, HER 6/8
        ("1-1-0002", "1", "tiny", "gaussian_noise", TARGET, TARGET.lower(), False),  # correct
        ("1-1-0000", "1", "tiny", "silence", "", "", False),
        ("1-1-0001", "1", "tiny", "silence", "", "thank you " * 4, False),
        ("1-1-0002", "1", "tiny", "silence", "", "Thank you.", False),
    ]  # fmt: skip
    return label_transcripts(_transcripts(rows), {}, {})


def test_definitions_and_the_non_speech_rate():
    labels = _labels()
    noise = labels.filter(pl.col("condition") == "gaussian_noise")
    flags = {
        d: noise.select(hallucination_expr(d, 0.5, 0.5)).to_series().to_list()
        for d in ("wer", "fabrication", "ungrounded")
    }
    assert flags == {
        "wer": [True, True, False],
        "fabrication": [False, True, False],
        "ungrounded": [False, True, False],  # HER 5/12 <= 0.5 < 6/8
    }
    assert noise.select(hallucination_expr("ungrounded", 0.5, 0.4)).to_series().to_list() == [
        True, True, False
    ]  # fmt: skip
    with pytest.raises(ValueError, match="definition"):
        hallucination_expr("bad", 0.5, 0.5)
    rate = nonspeech_rate(labels, ["silence"])
    assert rate.row(0, named=True) == {
        "model": "tiny", "condition": "silence", "n_decodes": 3, "n_hallucinated": 2,
        "rate": 2 / 3, "n_looping": 1,
    }  # fmt: skip
    assert spoke("Thank you.") and not spoke("") and not spoke(" . ")


def test_summary_files_match_their_contracts(tmp_path):
    path = tmp_path / "labels.parquet"
    schemas.write_parquet(_labels(), "taxonomy", path)
    out = summarize([path], ["silence"], 5, tmp_path / "tables", tmp_path / "taxonomy")
    for name, frame in out.items():
        assert schemas.read_csv(tmp_path / "tables" / f"{name}.csv", name).equals(frame)
        assert (tmp_path / "tables" / f"{name}.md").read_text().startswith("# ")
    assert (tmp_path / "taxonomy.png").read_bytes()[:4] == b"\x89PNG"
    counts = out["taxonomy_counts"]
    assert counts.filter(pl.col("condition") == "gaussian_noise")["n"].to_list() == [
        1, 0, 1, 0, 0, 1
    ]  # fmt: skip


def _write_transcripts(path, rows):
    full = [
        {
            "utt_id": u, "speaker": "1", "model": "tiny", "condition": c, "reference": TARGET,
            "hypothesis": h, "token_ids": [1, 2], "n_tokens": 2, "hit_max_length": False,
            "avg_logprob": -1.0, "compression_ratio": 1.0, "no_speech_prob": 0.1,
            "wer": jiwer.wer(normalize(TARGET), normalize(h)), "hallucination": False,
        }
        for u, c, h in rows
    ]  # fmt: skip
    schemas.write_rows(full, "transcripts", path)


def test_pairs_keep_what_the_definition_says_and_carry_the_type(tmp_path):
    labels = _labels().filter(pl.col("condition") == "gaussian_noise")
    schemas.write_parquet(labels, "taxonomy", tmp_path / "labels.parquet")
    rows = [(u, "clean", TARGET) for u in labels["utt_id"]]
    rows += [(u, "gaussian_noise", h) for u, h in zip(labels["utt_id"], _labels()[
        "hypothesis"][:3], strict=True)]  # fmt: skip
    _write_transcripts(tmp_path / "tr.parquet", rows)
    files, lab = [tmp_path / "tr.parquet"], [tmp_path / "labels.parquet"]
    kept = {}
    for d in ("wer", "fabrication", "ungrounded"):
        pairs, counts = pairs_and_counts(files, 0.5, labels=lab, definition=d)
        stress = pairs.filter(pl.col("condition") == "gaussian_noise")
        kept[d] = dict(zip(stress["utt_id"], stress["hallucination_type"], strict=True))
        assert pairs.columns == schemas.contract("pairs").names
    assert kept == {
        "wer": {"1-1-0000": "grounded_error", "1-1-0001": "fabrication"},
        "fabrication": {"1-1-0001": "fabrication"},
        "ungrounded": {"1-1-0001": "fabrication"},
    }
    # without labels: the paper's definition, no type
    pairs, _ = pairs_and_counts(files, 0.5)
    assert pairs["hallucination_type"].null_count() == pairs.height == 4
    with pytest.raises(ValueError, match="needs the taxonomy labels"):
        pairs_and_counts(files, 0.5, definition="fabrication")
