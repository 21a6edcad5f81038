"""The mitigation table: per-utterance values, paired speaker-bootstrap CIs (coverage on
synthetic data with a known rate), verdicts, figures, and the contracts of its files."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from whisper_spi import schemas
from whisper_spi.mitigation.figures import dose_response_chart, tradeoff_chart
from whisper_spi.mitigation.table import (
    METRICS,
    arms_frame,
    markdown,
    mitigation_table,
    summary,
    verdicts,
)


def _transcript(utt, speaker, condition, ref, hyp, lp=-0.3, ns=0.01, model="m"):
    n = len(hyp.split())
    return {
        "utt_id": utt,
        "speaker": speaker,
        "model": model,
        "condition": condition,
        "reference": ref,
        "hypothesis": hyp,
        "token_ids": list(range(n)),
        "n_tokens": n,
        "hit_max_length": False,
        "avg_logprob": lp,
        "compression_ratio": 1.2,
        "no_speech_prob": ns,
        "wer": 0.0,
        "hallucination": False,
    }


def _mitigated(row, method, strength, hyp):
    n = len(hyp.split())
    return row | {
        "hypothesis": hyp,
        "token_ids": list(range(n)),
        "n_tokens": n,
        "method": method,
        "strength": strength,
        "layers": "" if method == "fallback" else "0,1",
        "component": "",
        "fold": -1,
        "temperature": 0.0,
        "dropped": False,
    }


REF = "the cat sat on the mat today"


def test_arms_frame_values_against_their_definitions():
    plain = [
        _transcript("a", "s1", "clean", REF, REF),
        # a fabrication under noise; plain and fallback keep it, the intervention fixes it
        _transcript("a", "s1", "gaussian_noise", REF, "purple elephants dance wildly at night"),
        # looks like silence to OpenAI's rule: gating empties it (WER 1: a hallucination by
        # the WER definition, an omission by type)
        _transcript("b", "s2", "gaussian_noise", REF, REF, lp=-1.5, ns=0.9),
        # no speech at all: any word is a hallucination
        _transcript("c", "s2", "silence", "", "thank you"),
    ]
    mit = [
        _mitigated(plain[1], "cross_gain", 0.5, REF),
        _mitigated(plain[1], "fallback", float("nan"), plain[1]["hypothesis"]),
    ]
    frame = schemas.frame_from_rows(plain, "transcripts")
    arms = arms_frame(frame, schemas.frame_from_rows(mit, "mitigation_transcripts"), {}, {}, 0.5)
    got = {
        (m, c, u): (h, w, f)
        for m, c, u, h, w, f in arms.select(
            "method", "condition", "utt_id", "hallucination_rate", "wer", "rate:fabrication"
        ).iter_rows()
    }
    assert got["plain", "gaussian_noise", "a"] == (1.0, 1.0, 1.0)
    assert got["cross_gain", "gaussian_noise", "a"] == (0.0, 0.0, 0.0)
    assert got["fallback", "gaussian_noise", "a"][0] == 1.0
    assert got["plain", "gaussian_noise", "b"][:2] == (0.0, 0.0)
    assert got["gating", "gaussian_noise", "b"][:2] == (1.0, 1.0)
    gated = arms.filter((pl.col("method") == "gating") & (pl.col("utt_id") == "b"))
    assert gated["rate:omission"].item() == 1.0 and gated["hypothesis"].item() == ""
    h, w, _ = got["plain", "silence", "c"]
    assert h == 1.0 and np.isnan(w)
    # the config's definition decides, as for the pairs: under "fabrication" the gated
    # omission is no hallucination, the fabrication and the non-speech words still are
    fab = arms_frame(
        frame, schemas.frame_from_rows(mit, "mitigation_transcripts"), {}, {}, 0.5,
        definition="fabrication",
    )  # fmt: skip
    cols = ["method", "condition", "utt_id", "hallucination_rate"]
    flags = {(m, c, u): h for m, c, u, h in fab.select(cols).iter_rows()}
    assert flags["gating", "gaussian_noise", "b"] == 0.0
    assert flags["plain", "gaussian_noise", "a"] == 1.0 and flags["plain", "silence", "c"] == 1.0


def _synthetic_arms(rng, n_speakers=12, per=5, p=0.3, effect=0.0, model="m"):
    """Utterances nested in speakers (speaker random effect); plain and fallback share the
    rate p, cross_gain at 1.0 shifts it by ``effect``."""
    rows = []
    for s in range(n_speakers):
        ps = np.clip(p + rng.normal(0, 0.1), 0, 1)
        for u in range(per):
            base = float(rng.random() < ps)
            for cond in ("clean", "gaussian_noise"):
                for method, strength, hall in (
                    ("plain", 0.0, base),
                    ("fallback", float("nan"), base),
                    ("gating", float("nan"), base),
                    ("cross_gain", 1.0, float(rng.random() < np.clip(ps + effect, 0, 1))),
                ):
                    v = {k: 0.0 for k in METRICS} | {"hallucination_rate": hall, "wer": hall}
                    rows.append(
                        {"model": model, "method": method, "strength": strength,
                         "condition": cond, "utt_id": f"{s}-{u}", "speaker": f"s{s}"} | v
                    )  # fmt: skip
    return pl.DataFrame(rows)


def test_table_is_paired_and_points_lie_inside_their_intervals():
    arms = _synthetic_arms(np.random.default_rng(0), effect=-0.25)
    table = mitigation_table(arms, seed=1, n_boot=300)
    schemas.conform(table, "mitigation")  # the writer's frame matches the contract
    rows = table.filter(pl.col("metric") == "hallucination_rate")
    assert ((rows["lo"] <= rows["value"]) & (rows["value"] <= rows["hi"])).all()
    same = rows.filter(pl.col("method") == "gating")  # identical to the fallback per utterance
    assert (same.select("d_fallback", "d_lo", "d_hi").to_numpy() == 0).all()
    iv = rows.filter((pl.col("method") == "cross_gain") & (pl.col("condition") == "stressed"))
    fb = rows.filter((pl.col("method") == "fallback") & (pl.col("condition") == "stressed"))
    assert iv["d_fallback"].item() == pytest.approx(iv["value"].item() - fb["value"].item())
    assert iv["n_speakers"].item() == 12 and iv["n"].item() == 60
    # the same seed gives the same table; job order never enters
    again = mitigation_table(arms.sample(fraction=1.0, shuffle=True, seed=3), seed=1, n_boot=300)
    assert again.equals(table)


def test_speaker_bootstrap_interval_covers_the_known_rate():
    """Coverage of the 95% interval for a known rate, speakers drawn afresh each time."""
    rng = np.random.default_rng(5)
    p, hits, sims = 0.3, 0, 120
    for i in range(sims):
        arms = _synthetic_arms(rng, n_speakers=15, per=4, p=p).filter(
            pl.col("condition") == "clean"
        )
        t = mitigation_table(arms, seed=i, n_boot=200).filter(
            (pl.col("metric") == "hallucination_rate") & (pl.col("method") == "plain")
        )
        hits += int(t["lo"].item() <= p <= t["hi"].item())
    assert 0.85 <= hits / sims <= 1.0, hits / sims


def test_verdicts_name_a_real_win_and_say_no_otherwise():
    rng = np.random.default_rng(1)
    win = mitigation_table(_synthetic_arms(rng, n_speakers=20, effect=-0.3), seed=0, n_boot=300)
    # the synthetic cross_gain lowers hallucinations and, as WER = hallucination here, WER
    v = verdicts(win)
    beats = v.filter(pl.col("question").str.starts_with("beats"))["answer"].item()
    assert beats.startswith("yes: cross_gain 1:")
    regime = v.filter(pl.col("question").str.starts_with("Regime I"))["answer"].item()
    assert "(lower)" in regime
    none = verdicts(mitigation_table(_synthetic_arms(rng, effect=0.0), seed=0, n_boot=300))
    assert (
        none.filter(pl.col("question").str.starts_with("beats"))["answer"].item().startswith("no")
    )
    schemas.conform(v, "mitigation_verdict")
    s = summary(win)
    schemas.conform(s, "mitigation_summary")
    assert set(s["method"]) == {"plain", "fallback", "gating", "cross_gain"}
    assert set(s["best"]) == {"gating"}  # ties with the fallback everywhere: the registry's order
    assert "| cross_gain | 1 |" in markdown(s, v)


def test_figures_build():
    table = mitigation_table(_synthetic_arms(np.random.default_rng(2)), seed=0, n_boot=50)
    assert tradeoff_chart(table).to_dict()["facet"]
    assert dose_response_chart(table, "m").to_dict()["facet"]


def test_non_speech_items_are_their_own_units_and_reach_the_summary_and_verdicts():
    """Non-speech items reuse a corpus speaker's ids, but no one speaks in them: each item is
    resampled on its own (here all from one speaker, whose cluster would give a zero-width
    interval), pooled as ``nonspeech``; gating that empties most of them is reported lower."""
    rng = np.random.default_rng(4)
    speech = _synthetic_arms(rng, n_speakers=6, per=3)
    rows = []
    for cond in ("silence", "noise_only"):
        for i in range(20):
            gated = float(i % 4 == 0)  # gating leaves 1 in 4 non-empty
            for method, strength, hall in (("plain", 0.0, 1.0), ("fallback", float("nan"), 1.0),
                                           ("gating", float("nan"), gated),
                                           ("cross_gain", 1.0, 1.0)):  # fmt: skip
                v = {k: 0.0 for k in METRICS} | {"hallucination_rate": hall, "wer": float("nan")}
                key = {"model": "m", "method": method, "strength": strength,
                       "condition": cond, "utt_id": f"0-{i}", "speaker": "s0"}  # fmt: skip
                rows.append(key | v)
    table = mitigation_table(pl.concat([speech, pl.DataFrame(rows)]), seed=2, n_boot=300)
    schemas.conform(table, "mitigation")
    cell = table.filter((pl.col("condition") == "nonspeech") & (pl.col("method") == "gating")
                        & (pl.col("metric") == "hallucination_rate"))  # fmt: skip
    assert cell["n"].item() == 40 and cell["n_speakers"].item() == 40
    assert cell["value"].item() == pytest.approx(0.25)
    assert cell["lo"].item() < 0.25 < cell["hi"].item()  # a real interval, not one cluster's
    assert cell["d_hi"].item() < 0  # below the fallback's 1.0
    s = summary(table)
    schemas.conform(s, "mitigation_summary")
    gate = s.filter(pl.col("method") == "gating")
    assert gate["hall_nonspeech"].item().startswith("0.250 [")
    v = verdicts(table)
    question, answer = (
        v.filter(pl.col("question").str.starts_with("non-speech"))
        .select("question", "answer")
        .row(0)
    )
    assert question.endswith("vs gating")  # tied with the fallback on the stresses, lower here
    assert "fallback: +0.750 [" in answer and "(higher)" in answer
    assert "cross_gain 1: +0.750" in answer and "gating:" not in answer
    regime = v.filter(pl.col("question").str.starts_with("Regime I (cross_gain up): non-speech"))
    assert regime["answer"].item().startswith("1: +0.000")  # cross_gain = plain on these items
    # without non-speech inputs the column says so and no verdict row is made
    speech_only = mitigation_table(speech, seed=2, n_boot=50)
    assert set(summary(speech_only)["hall_nonspeech"]) == {"–"}
    assert not verdicts(speech_only)["question"].str.starts_with("non-speech").any()


def test_dose_response_panels_in_condition_order():
    arms = _synthetic_arms(np.random.default_rng(3))
    silent = arms.filter(pl.col("condition") == "clean").with_columns(condition=pl.lit("silence"))
    table = mitigation_table(pl.concat([arms, silent]), seed=0, n_boot=50)
    spec = dose_response_chart(table, "m").to_dict()
    assert spec["facet"]["sort"] == ["clean", "gaussian_noise", "stressed", "silence", "nonspeech"]


def test_an_intervention_is_judged_against_the_strongest_baseline_users_have():
    """A faster_vad arm with no hallucination becomes the reference: cross_gain beats the
    fallback but not it, so the verdict says no, and the table's d_best is paired to it."""
    rng = np.random.default_rng(7)
    arms = _synthetic_arms(rng, n_speakers=20, effect=-0.2)
    vad = arms.filter(pl.col("method") == "fallback").with_columns(
        method=pl.lit("faster_vad"), hallucination_rate=pl.lit(0.0), wer=pl.lit(0.0)
    )
    table = mitigation_table(pl.concat([arms, vad]), seed=0, n_boot=300)
    assert set(table["best"]) == {"faster_vad"}
    rows = table.filter(
        (pl.col("metric") == "hallucination_rate") & (pl.col("condition") == "stressed")
    )
    by = {m: r for m, r in zip(rows["method"], rows.iter_rows(named=True), strict=True)}
    assert by["cross_gain"]["d_best"] == pytest.approx(
        by["cross_gain"]["value"] - by["faster_vad"]["value"]
    )
    assert by["faster_vad"]["d_best"] == 0.0
    assert by["cross_gain"]["d_hi"] < 0 < by["cross_gain"]["db_lo"]  # beats fallback, not vad
    v = verdicts(table)
    q, a = v.filter(pl.col("question").str.starts_with("beats")).select("question", "answer").row(0)
    assert "(faster_vad)" in q and a.startswith("no:") and "faster_vad's" in a
    assert set(summary(table)["best"]) == {"faster_vad"}


def test_best_baseline_ties_go_to_the_lower_non_speech_rate_then_the_registry_order():
    from whisper_spi.mitigation.table import best_baselines

    def rows(method, stressed, silent):
        return [{"model": "m", "method": method, "condition": c, "hallucination_rate": h}
                for c, h in (("time_stretch", stressed), ("silence", silent))]  # fmt: skip

    arms = pl.DataFrame(
        rows("plain", 0.0, 0.0)  # not a baseline users have: never chosen
        + rows("gating", 0.5, 0.4) + rows("faster", 0.5, 0.1) + rows("faster_vad", 0.5, 0.1)
        + rows("fallback", 0.6, 0.0)
    )  # fmt: skip
    assert best_baselines(arms) == {"m": "faster"}  # tied with faster_vad: registry order
    assert best_baselines(arms.filter(pl.col("method") != "faster")) == {"m": "faster_vad"}
