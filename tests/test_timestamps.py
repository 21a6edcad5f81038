"""OpenAI's timestamp rules on constructed cases: for each state of a sequence, the tokens the
rules allow, written out by hand from the rules as OpenAI's ApplyTimestampRules states them
(not from our implementation), on a small vocabulary."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from whisper_spi.decode.timestamps import TimestampRules

EOT, NO_TS = 10, 15  # text tokens 0..9, eot 10, other specials 11..15
TS = NO_TS + 1  # <|0.00|>
VOCAB = TS + 40
RULES = TimestampRules(eot=EOT, no_timestamps=NO_TS, max_initial_index=5)
TEXT = set(range(EOT))
SPECIALS = set(range(EOT + 1, NO_TS))  # not touched by the rules (suppressed elsewhere)


def t(seconds_index: int) -> int:
    return TS + seconds_index


def allowed(seq, logits=None) -> set[int]:
    """The tokens left allowed; by default text logits far above the timestamps', so that
    rule 5 (the timestamps' total probability) stays out of the structural cases."""
    if logits is None:
        logits = torch.zeros(VOCAB)
        logits[:TS] = 10.0
    row = logits[None].clone()
    out = RULES.apply(row, [seq])[0]
    return {i for i in range(VOCAB) if out[i] > -math.inf}


STAMPS = set(range(TS, VOCAB))


@pytest.mark.parametrize(
    ("seq", "expected"),
    [
        # the first token: a timestamp no later than max_initial_index
        ([], {t(i) for i in range(6)}),
        # a first timestamp opens a segment: text (or the end) must follow
        ([t(0)], TEXT | {EOT} | SPECIALS),
        # after text: more text, the end, or a timestamp later than the segment's start
        ([t(2), 3], TEXT | {EOT} | SPECIALS | {s for s in STAMPS if s > t(2)}),
        # a lone timestamp closes the segment: the next opens at the same time or later, or
        # the decode ends; no text
        ([t(0), 3, 4, t(7)], {EOT} | SPECIALS | {s for s in STAMPS if s >= t(7)}),
        # a pair (end, start): the new segment's text must follow
        ([t(0), 3, t(7), t(7)], TEXT | {EOT} | SPECIALS),
        # text of the second segment: timestamps after its start (t(9)) only
        ([t(0), 3, t(7), t(9), 5], TEXT | {EOT} | SPECIALS | {s for s in STAMPS if s > t(9)}),
    ],
)
def test_rules_allow_what_openai_allows(seq, expected):
    assert allowed(seq) == expected - {NO_TS}


def test_notimestamps_is_never_allowed():
    assert all(NO_TS not in allowed(seq) for seq in ([], [t(0)], [t(0), 3], [t(0), 3, t(4)]))


def test_timestamp_forced_when_their_total_probability_beats_every_text_token():
    # 40 timestamps at logit 0 (total mass 40 e^0) vs one text token at logit 3 (e^3 ~ 20)
    logits = torch.full((VOCAB,), -30.0)
    logits[TS:] = 0.0
    logits[3] = 3.0
    got = allowed([t(0), 3], logits)
    assert got & TEXT == set() and EOT not in got
    assert got == {s for s in STAMPS if s > t(0)}
    # one text token far ahead (e^6 ~ 403 > 40): text stays allowed
    logits[3] = 6.0
    assert 3 in allowed([t(0), 3], logits)


def test_rows_follow_their_own_sequences():
    rows = [[], [t(0)], [t(0), 3, t(7)]]
    logits = torch.zeros(3, VOCAB)
    logits[:, :TS] = 10.0
    out = RULES.apply(logits, rows)
    assert [{i for i in range(VOCAB) if out[k, i] > -math.inf} for k in range(3)] == [
        allowed(seq) for seq in rows
    ]


def test_already_suppressed_tokens_stay_suppressed():
    logits = torch.zeros(VOCAB)
    logits[:TS] = 10.0
    logits[4] = -math.inf  # e.g. a suppress_tokens entry
    assert 4 not in allowed([t(0)], logits)


def test_no_initial_limit_when_disabled():
    rules = TimestampRules(eot=EOT, no_timestamps=NO_TS, max_initial_index=None)
    out = rules.apply(torch.zeros(1, VOCAB), [[]])[0]
    assert {i for i in range(VOCAB) if out[i] > -math.inf} == STAMPS


def test_timestamp_decode_equals_ctranslate2s_on_real_and_stressed_audio(
    tiny_en, librivox, looping_mix
):
    """Our timestamp-mode greedy decode against CTranslate2's own (its C++ implementation of
    the same rules) on the same features and the converted model: the same text tokens and
    the same number of sampled tokens (timestamps included), clip by clip, on real speech and
    on a 6-speaker mix that loops."""
    import ctranslate2
    import numpy as np

    from whisper_spi.decode.loop import encode, greedy_decode, log_mel
    from whisper_spi.mitigation.faster import ct2_dir

    bundle = replace(tiny_en, features="openai")
    waves = [wave for _, wave, _ in librivox] + [looping_mix]
    feats = log_mel(bundle, waves)
    ours = greedy_decode(bundle, encode(bundle, feats), timestamps=True)
    engine = ctranslate2.models.Whisper(str(ct2_dir(bundle.spec)), device="cpu")
    theirs = engine.generate(
        ctranslate2.StorageView.from_array(np.ascontiguousarray(feats.numpy())),
        [bundle.prompt_ids[:-1]] * len(waves),  # <|startoftranscript|>, no <|notimestamps|>
        beam_size=1,
        max_length=448,  # CTranslate2 decodes at most half of it: 224, as ours
        max_initial_timestamp_index=50,
        suppress_blank=True,
        suppress_tokens=[-1],
        return_scores=True,
    )
    n_stamps = []
    for d, r in zip(ours, theirs, strict=True):
        ids = r.sequences_ids[0]
        assert d.token_ids == [t for t in ids if t < bundle.eot_id]
        # CTranslate2's score: the summed log-probs (<|endoftext|>'s included) over the tokens
        # sampled before it, timestamps counted; ours keep OpenAI's count (+1) for avg_logprob
        if not d.hit_max_length:
            assert d.sum_logprob / len(ids) == pytest.approx(r.scores[0], abs=1e-3)
            assert d.avg_logprob == pytest.approx(d.sum_logprob / (len(ids) + 1))
        n_stamps.append(sum(t > bundle.prompt_ids[-1] for t in ids))
    assert min(n_stamps[:-1]) >= 2  # the speech: its opening and closing timestamps at least
    assert ours[-1].hit_max_length  # the mix: one opening timestamp, then the loop to the cap
