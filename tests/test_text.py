"""The English normaliser behind every WER (whisper_spi.text.normalize) on the cases OpenAI
publishes for its own normaliser (openai/whisper, tests/test_normalizer.py): the pinned
whisper-normalizer package must give OpenAI's outputs, so WER means what Whisper's papers mean."""

from __future__ import annotations

import pytest

from whisper_spi.text import hallucinated, normalize, spoke, wer

# (input, OpenAI's expected output): numbers, currencies, ordinals, spellings, contractions,
# units and titles.
OPENAI_CASES = [
    ("two", "2"), ("thirty one", "31"), ("five twenty four", "524"),
    ("nineteen ninety nine", "1999"), ("twenty nineteen", "2019"),
    ("two point five million", "2500000"), ("four point two billions", "4200000000s"),
    ("200 thousand", "200000"), ("200 thousand dollars", "$200000"),
    ("$20 million", "$20000000"), ("€52.4 million", "€52400000"),
    ("£77 thousands", "£77000s"), ("two double o eight", "2008"),
    ("three thousand twenty nine", "3029"),
    ("forty three thousand two hundred sixty", "43260"),
    ("forty three thousand two hundred and sixty", "43260"),
    ("nineteen fifties", "1950s"), ("thirty first", "31st"),
    ("thirty three thousand and three hundred and thirty third", "33333rd"),
    ("three billion", "3000000000"), ("millions", "1000000s"),
    ("july third twenty twenty", "july 3rd 2020"),
    ("august twenty sixth twenty twenty one", "august 26th 2021"),
    ("3 14", "3 14"), ("3.14", "3.14"), ("3 point 2", "3.2"), ("3 point 14", "3.14"),
    ("fourteen point 4", "14.4"), ("two point two five dollars", "$2.25"),
    ("two hundred million dollars", "$200000000"), ("$20.1 million", "$20100000"),
    ("ninety percent", "90%"), ("seventy six per cent", "76%"),
    ("double oh seven", "007"), ("double zero seven", "007"), ("nine one one", "911"),
    ("nine double one", "911"), ("one triple oh one", "10001"),
    ("two thousandth", "2000th"), ("thirty two thousandth", "32000th"),
    ("minus 500", "-500"), ("positive twenty thousand", "+20000"),
    ("two dollars and seventy cents", "$2.70"), ("3 cents", "¢3"), ("$0.36", "¢36"),
    ("three euros and sixty five cents", "€3.65"),
    ("three and a half million", "3500000"), ("forty eight and a half dollars", "$48.5"),
    ("b747", "b 747"), ("10 th", "10th"), ("10th", "10th"),
    ("mobilisation", "mobilization"), ("cancelation", "cancellation"),
    ("Let's", "let us"), ("he's like", "he is like"), ("she's been like", "she has been like"),
    ("10km", "10 km"), ("10mm", "10 mm"), ("RC232", "rc 232"),
    ("Mr. Park visited Assoc. Prof. Kim Jr.",
     "mister park visited associate professor kim junior"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "want"), OPENAI_CASES)
def test_normalize_gives_openais_published_outputs(text, want):
    assert normalize(text) == want


def test_the_normaliser_is_pinned_to_the_tested_version():
    from importlib.metadata import requires, version

    pin = next(r for r in requires("whisper-spi") if r.startswith("whisper-normalizer"))
    assert pin.split(";")[0].strip() == f"whisper-normalizer=={version('whisper-normalizer')}"


def test_a_filler_on_a_non_speech_input_is_said_punctuation_is_not():
    # the normaliser deletes fillers, so a WER-based flag alone would miss them
    assert normalize("Hmm. Hmm hmm.") == ""
    assert spoke("Hmm. Hmm hmm.") and hallucinated("", "Hmm. Hmm hmm.", float("nan"), 0.5)
    assert not spoke(" . ... ") and not hallucinated("", " . ", float("nan"), 0.5)
    assert wer("a b c d", "a b x d") == pytest.approx(0.25)


def test_the_hallucination_thresholds_have_one_default():
    """The config schema's defaults are the constants every signature defaults to."""
    from whisper_spi.config import validate
    from whisper_spi.taxonomy.labels import HER_THRESHOLD
    from whisper_spi.text import HALLUCINATION_WER

    config = validate({})
    assert config["decode"]["hallucination_wer"] == HALLUCINATION_WER
    assert config["hallucination"]["her_threshold"] == HER_THRESHOLD
