"""The report's Findings (whisper_spi.report.findings): the one verdict rule, the power
calculation, each claim builder on small frames shaped like the contracts, and the demo run's
outputs when they are there."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest

from whisper_spi import schemas
from whisper_spi.report import findings as fd
from whisper_spi.report import verdicts as vd
from whisper_spi.report.sections import findings_html
from whisper_spi.report.verdicts import ABOVE, BELOW, FAILS, HOLDS, NOT_RUN, UNDECIDED

# --------------------------------------------------------------------------- verdict


@pytest.mark.parametrize(
    ("lo", "hi", "direction", "threshold", "n", "want"),
    [
        (-2.0, -1.0, BELOW, 0.0, 50, HOLDS),
        (0.5, 1.0, BELOW, 0.0, 50, FAILS),
        (0.0, 0.0, BELOW, 0.0, 50, FAILS),  # a difference of exactly 0 is not "lower"
        (-1.0, 1.0, BELOW, 0.0, 50, UNDECIDED),  # straddles
        (-1.0, 0.0, BELOW, 0.0, 50, UNDECIDED),  # touches the threshold from the claimed side
        (1.0, 2.0, ABOVE, 0.0, 50, HOLDS),
        (-2.0, -1.0, ABOVE, 0.0, 50, FAILS),
        (-2.0, 0.0, ABOVE, 0.0, 50, FAILS),
        (-1.0, 1.0, ABOVE, 0.0, 50, UNDECIDED),
        (0.02, 0.03, ABOVE, 0.01, 50, HOLDS),  # above a chance level
        (0.005, 0.03, ABOVE, 0.01, 50, UNDECIDED),
        (0.001, 0.009, ABOVE, 0.01, 50, FAILS),
        (0.2, 0.9, BELOW, 1.0, 50, HOLDS),  # a gain below 1
        (1.2, 3.0, BELOW, 1.0, 50, FAILS),
        (-2.0, -1.0, BELOW, 0.0, 3, UNDECIDED),  # decisive interval, n too small
        (1.0, 2.0, ABOVE, 0.0, 9, UNDECIDED),
        (1.0, 2.0, ABOVE, 0.0, 10, HOLDS),  # n at the minimum
        (1.0, 2.0, ABOVE, 0.0, None, HOLDS),  # n not checked
        (math.nan, 2.0, ABOVE, 0.0, 50, UNDECIDED),  # non-finite
        (1.0, math.inf, ABOVE, 0.0, 50, UNDECIDED),
        (None, None, BELOW, 0.0, 50, UNDECIDED),
        (2.0, 1.0, ABOVE, 0.0, 50, UNDECIDED),  # lo > hi
    ],
)
def test_verdict(lo, hi, direction, threshold, n, want):
    assert vd.verdict(lo, hi, direction, threshold, n) == want


def test_verdict_minimum_and_direction_are_checked():
    assert vd.verdict(1.0, 2.0, ABOVE, 0.0, n=4, n_min=5) == UNDECIDED
    assert vd.verdict(1.0, 2.0, ABOVE, 0.0, n=5, n_min=5) == HOLDS
    with pytest.raises(ValueError, match="direction"):
        vd.verdict(1.0, 2.0, "positive")


# --------------------------------------------------------------------------- power


def test_power_n_matches_the_closed_form_of_a_normal_interval():
    """A 95% normal interval value ± z σ / √n excludes the threshold once z σ / √n < |e|: at
    n = (z σ / e)², whatever n the interval was computed at."""
    z, sigma, effect = 1.959964, 2.0, 0.3
    for n in (20, 40, 80):
        w = z * sigma / math.sqrt(n)
        got = vd.power_n(effect, effect - w, effect + w, n)
        assert got == math.ceil((z * sigma / effect) ** 2)  # 171
        assert vd.verdict(effect - w, effect + w, ABOVE, 0.0, n) == UNDECIDED


def test_power_n_uses_the_side_facing_the_threshold():
    # value 1 > threshold 0: the lower end faces it, w = 1 - (-1) = 2, e = 1: 50 * 4
    assert vd.power_n(1.0, -1.0, 3.0, 50) == 200
    # value -0.5 < 0: the upper end faces it, w = 1.5, e = 0.5: 10 * 9
    assert vd.power_n(-0.5, -0.6, 1.0, 10) == 90
    # a chance level as threshold: e = 0.02 - 0.01, w = 0.02 - 0.005
    assert vd.power_n(0.02, 0.005, 0.04, 100, threshold=0.01) == 225


def test_power_n_floor_and_what_is_not_estimable():
    assert vd.power_n(2.0, 1.0, 3.0, 4) == vd.N_MIN  # decided interval, n too small
    assert vd.power_n(2.0, 1.0, 3.0, 4, n_min=5) == 5
    assert vd.power_n(0.0, -1.0, 1.0, 50) is None  # effect 0
    assert vd.power_n(5.0, 5.0, 5.0, 1) is None  # zero spread
    assert vd.power_n(math.nan, -1.0, 1.0, 50) is None
    assert vd.power_n(1.0, None, 2.0, 50) is None
    assert vd.power_n(1.0, -1.0, 2.0, 0) is None
    assert vd.power_n(1.0, -1.0, 2.0, 50, threshold=math.nan) is None  # no chance level
    assert vd.verdict(1.0, 2.0, ABOVE, math.nan, 50) == UNDECIDED


def test_power_n_asks_for_more_than_n_when_the_interval_reaches_the_threshold():
    """[-0.02, 0] about -0.0067 touches 0 (undecided: the threshold is included), and the
    formula's n (w = |e|) is n itself: deciding it takes more than the n it was computed at."""
    assert vd.verdict(-0.02, 0.0, BELOW, 0.0, 150) == UNDECIDED
    assert vd.power_n(-1 / 150, -0.02, 0.0, 150) == 151
    # just inside the interval: the formula alone already asks for more
    assert vd.power_n(1.0, -0.5, 3.0, 40) == 90


def test_approx_n_shows_two_significant_digits_from_a_thousand():
    assert [vd.approx_n(n) for n in (10, 999, 1000, 1087, 6567, 37_126_668)] == [
        "10", "999", "1,000", "1,100", "6,600", "37,000,000",
    ]  # fmt: skip
    row = {"verdict": UNDECIDED, "n_needed": 6567, "n_unit": "utterances", "value": 0.003,
           "lo": -0.007, "hi": 0.013, "direction": ABOVE, "threshold": 0.0}  # fmt: skip
    assert fd._shown(row)[2] == "n ≈ 6,600 utterances"


# --------------------------------------------------------------------------- claim builders


def _cell(model, comp, cond, neff, alpha, table="table1_final_layer", n=40, k=50):
    """One tables row: (value, lo, hi) for Delta N_eff % and Delta alpha; adj = raw / 2."""
    row = {"table": table, "scope": "utterance", "pair_set": "all", "prefix": 0, "model": model,
           "layer": -1 if table == "table2_layer_mean" else 3, "component": comp,
           "condition": cond, "k": k, "n": n}  # fmt: skip
    for col, (v, lo, hi) in (("d_neff_pct", neff), ("d_alpha", alpha)):
        obs = col.split("_")[1]
        row |= {f"n_{obs}": n, col: v, f"{col}_ci_low": lo, f"{col}_ci_high": hi}
        row |= {f"{col}_adj": v / 2, f"{col}_adj_ci_low": lo / 2, f"{col}_adj_ci_high": hi / 2}
    return row


def _tables(models=("tiny", "mystery")):
    rows = []
    for m in models:
        for cond in ("hell", "time_stretch", "speaker_mix", "gaussian_noise"):
            for table in ("table1_final_layer", "table2_layer_mean"):
                rows += [
                    _cell(m, "cross_attn", cond, (-12.0, -15.0, -9.0), (0.2, 0.1, 0.3), table),
                    _cell(m, "self_attn", cond, (5.0, 2.0, 8.0), (0.01, -0.02, 0.05), table),
                ]
        # a pooled row and a K = 10 row the claims must not read
        rows.append(_cell(m, "cross_attn", "hell", (9.0, 8.0, 10.0), (0.0, 0.0, 0.0), k=10))
    return schemas.frame_from_rows(rows, "tables")


def _by(rows, **keys):
    (row,) = [r for r in rows if all(r[k] == v for k, v in keys.items())]
    return row


def test_paper_claims_verdicts_and_not_run_lines():
    rows = fd.paper_claims(_tables())
    paper = [r for r in rows if r["family"] == "paper"]
    for model in ("tiny", "mystery"):
        cross = _by(paper, model=model, claim=fd.PAPER_CLAIMS[0][0])
        assert (cross["verdict"], cross["value"], cross["n"]) == (HOLDS, -12.0, 40)
        assert "time_stretch: holds" in cross["note"]
        assert "table2_layer_mean: holds" in cross["note"]
        assert "K = 50" in cross["source"] and "hell" in cross["source"]
        assert _by(paper, model=model, claim=fd.PAPER_CLAIMS[1][0])["verdict"] == FAILS
        alpha = _by(paper, model=model, claim=fd.PAPER_CLAIMS[2][0])
        assert alpha["verdict"] == UNDECIDED and alpha["n_needed"] == math.ceil(40 * 9)
    assert "paper (tiny): -11.98" in _by(paper, model="tiny", claim=fd.PAPER_CLAIMS[0][0])["note"]
    # small and large-v3-turbo are not run: one line per claim the paper makes for them
    not_run = [(r["model"], r["claim"]) for r in paper if r["verdict"] == NOT_RUN]
    assert ("small", fd.PAPER_CLAIMS[0][0]) in not_run
    assert ("large-v3-turbo", fd.PAPER_CLAIMS[1][0]) in not_run
    assert ("large-v3-turbo", fd.PAPER_CLAIMS[2][0]) in not_run
    assert ("tiny", fd.PAPER_CLAIMS[0][0]) not in not_run
    assert any(r["claim"] == fd._SCALE_CLAIM and r["verdict"] == NOT_RUN for r in paper)
    # length-adjusted companions: the sign of the raw delta, judged on the adjusted interval
    length = [r for r in rows if r["family"] == "length"]
    assert len(length) == 2 * len(fd.PAPER_CLAIMS)
    assert {r["verdict"] for r in length if "N_eff" in r["claim"]} == {HOLDS}
    self_neff = [r for r in length if "self_attn" in r["claim"] and "N_eff" in r["claim"]]
    assert {r["direction"] for r in self_neff} == {ABOVE}  # the raw delta is positive
    assert {r["value"] for r in length if "cross_attn" in r["claim"]} == {-6.0}


def test_the_scale_trend_when_both_ends_are_run():
    t = _tables(("tiny", "large-v3-turbo"))
    big = (pl.col("model") == "large-v3-turbo") & (pl.col("component") == "cross_attn")
    t = t.with_columns(
        pl.when(big).then(-4.0).otherwise(pl.col("d_neff_pct")).alias("d_neff_pct"),
        pl.when(big).then(-5.0).otherwise(pl.col("d_neff_pct_ci_low")).alias("d_neff_pct_ci_low"),
        pl.when(big).then(-2.0).otherwise(pl.col("d_neff_pct_ci_high")).alias("d_neff_pct_ci_high"),
    )  # fmt: skip
    (trend,) = [r for r in fd.paper_claims(t) if r["claim"] == fd._SCALE_CLAIM]
    assert trend["value"] == pytest.approx(8.0)  # -4 - (-12)
    assert trend["lo"] == pytest.approx(8.0 - math.hypot(1.0, 3.0))
    assert trend["hi"] == pytest.approx(8.0 + math.hypot(2.0, 3.0))
    assert trend["verdict"] == HOLDS and "+7.28" in trend["note"]
    assert not [r for r in fd.paper_claims(t) if r["verdict"] == NOT_RUN and r["model"] == "tiny"]


def test_paper_claims_without_a_cell():
    rows = fd.paper_claims(schemas.frame_from_rows([], "tables"))
    assert {r["verdict"] for r in rows} == {NOT_RUN}  # no run model: every paper claim


def _theory(n_speakers, gamma_sup=(0.5, 0.4, 0.6), rho=(0.05, 0.03, 0.07)):
    base = {"model": "tiny", "condition": "clean", "n_utts": 3 * n_speakers,
            "n_speakers": n_speakers, "n_layers": 4, "rho_chance_median": 0.01,
            "align_median": 0.2, "align_lo": 0.1, "align_hi": 0.3, "align_chance_median": 0.001,
            "gamma_sup_max": gamma_sup[0], "gamma_sup_max_lo": gamma_sup[1],
            "gamma_sup_max_hi": gamma_sup[2], "path_gain": 2.0, "path_gain_lo": 0.5,
            "path_gain_hi": 4.0, "purity": 3.0, "purity_lo": 2.0, "purity_hi": 5.0,
            "rho_median": rho[0], "rho_lo": rho[1], "rho_hi": rho[2]}  # fmt: skip
    per_layer = {**base, "layer": 1, "gamma_sup_max_hi": 99.0}
    return schemas.frame_from_rows([base, per_layer], "theory_table")


def test_theory_claims():
    rows = fd.theory_claims(_theory(8))
    assert len(rows) == len(fd.THEORY_CLAIMS)  # the pooled row only
    got = {r["claim"].split(":")[0]: r for r in rows}
    verdicts = [r["verdict"] for r in rows]
    assert verdicts == [HOLDS, UNDECIDED, HOLDS, FAILS]  # γ < 1, gain, ρ > chance, purity
    assert rows[2]["threshold"] == 0.01 and "subspace alignment 0.2" in rows[2]["note"]
    assert rows[1]["n_needed"] == math.ceil(8 * (1.5 / 1.0) ** 2)
    assert rows[1]["n_unit"] == "speakers"
    assert got["Regime I's hypothesis"]["n"] == 8
    # below the theory stage's minimum of speakers: undecided whatever the interval says
    few = fd.theory_claims(_theory(1, gamma_sup=(0.5, 0.5, 0.5)))
    assert {r["verdict"] for r in few} == {UNDECIDED}
    assert "the interval alone says holds" in few[0]["note"] and few[0]["n_needed"] is None
    assert "not estimable" in few[0]["note"]


def test_detector_claims():
    rows = [
        {"model": "tiny", "setting": s, "method": m, "baseline": b, "best_baseline": best,
         "d_auroc": d, "d_auroc_lo": d - 0.02, "d_auroc_hi": d + 0.02, "d_auprc": 0.0,
         "d_auprc_lo": -0.1, "d_auprc_hi": 0.1, "p_boot": 0.5, "n": 100, "n_pos": 40}
        for s, m, b, best, d in [
            ("all", "ours", "avg_logprob", True, 0.05),
            ("stressed", "ours", "avg_logprob", True, -0.05),
            ("all", "ours", "compression_ratio", False, 0.3),  # not the best: no claim
            ("all", "ours+heuristics", "heuristics_lr", False, 0.01),
            ("all", "ours_no_T", "avg_logprob", True, 0.05),  # not a claimed method
        ]
    ]  # fmt: skip
    out = fd.detector_claims(schemas.frame_from_rows(rows, "detect_comparison"))
    assert [(r["condition"], r["verdict"]) for r in out] == [
        ("all", HOLDS), ("stressed", FAILS), ("all", UNDECIDED)
    ]  # fmt: skip
    assert out[2]["n_needed"] == math.ceil(100 * (0.02 / 0.01) ** 2)
    assert "baseline avg_logprob" in out[0]["note"] and out[0]["n_unit"] == "utterances"


def test_detector_claim_against_the_decoder_state_probe():
    """ours - probe: holds when the interval is above 0 (ours better), does not hold when it
    is at or below 0 (the probe at least as good), undecided when it straddles 0."""
    rows = [
        {"model": m, "setting": s, "method": meth, "baseline": b, "best_baseline": False,
         "d_auroc": d, "d_auroc_lo": lo, "d_auroc_hi": hi, "d_auprc": 0.0,
         "d_auprc_lo": -0.1, "d_auprc_hi": 0.1, "p_boot": 0.5, "n": 200, "n_pos": 60}
        for m, s, meth, b, d, lo, hi in [
            ("base", "all", "ours", "probe", 0.04, 0.01, 0.07),
            ("base", "stressed", "ours", "probe", -0.10, -0.16, -0.04),
            ("tiny", "all", "ours", "probe", 0.01, -0.02, 0.04),
            ("tiny", "all", "ours_no_T", "probe", 0.3, 0.2, 0.4),  # not a claimed method
            ("tiny", "all", "ours", "heuristics_lr", 0.3, 0.2, 0.4),  # not the probe
        ]
    ]  # fmt: skip
    out = fd.detector_claims(schemas.frame_from_rows(rows, "detect_comparison"))
    assert all("decoder-state probe" in r["claim"] for r in out)
    assert [(r["model"], r["condition"], r["verdict"]) for r in out] == [
        ("base", "all", HOLDS), ("base", "stressed", FAILS), ("tiny", "all", UNDECIDED)
    ]  # fmt: skip
    assert out[2]["n_needed"] == math.ceil(200 * (0.03 / 0.01) ** 2)
    assert out[0]["direction"] == ABOVE and out[0]["threshold"] == 0.0
    assert "baseline probe" in out[0]["note"] and "baseline probe" in out[0]["source"]
    assert out[1]["n_needed"] is None and out[1]["family"] == "detector"


def test_mitigation_claims():
    def row(method, strength, cond, metric, d, lo, hi):
        return {"model": "tiny", "method": method, "strength": strength, "condition": cond,
                "metric": metric, "value": 0.5, "lo": 0.4, "hi": 0.6, "best": "gating",
                "d_best": d, "db_lo": lo, "db_hi": hi, "d_plain": d, "dp_lo": lo, "dp_hi": hi,
                "n": 30, "n_speakers": 10, "n_boot": 100}  # fmt: skip

    frame = schemas.frame_from_rows([
        row("cross_gain", 0.5, "stressed", "hallucination_rate", -0.2, -0.3, -0.1),
        row("cross_gain", 0.5, "clean", "wer", 0.01, 0.0, 0.02),
        row("self_damp", 0.5, "stressed", "hallucination_rate", 0.0, 0.0, 0.0),
        row("project", 0.25, "stressed", "hallucination_rate", -0.1, -0.2, 0.05),
        row("gating", math.nan, "stressed", "hallucination_rate", -0.5, -0.6, -0.4),  # baseline
        row("cross_gain", 0.5, "speaker_mix", "hallucination_rate", -0.5, -0.6, -0.4),
    ], "mitigation")  # fmt: skip
    out = fd.mitigation_claims(frame)
    assert [(r["claim"].split(" at")[0], r["verdict"]) for r in out] == [
        ("cross_gain", HOLDS), ("project", UNDECIDED), ("self_damp", FAILS)
    ]  # fmt: skip
    assert "clean WER vs it +0.010 [+0.000, +0.020]" in out[0]["note"]
    assert out[1]["n_needed"] == math.ceil(30 * (0.15 / 0.1) ** 2)


def test_mitigation_claims_on_non_speech_and_for_each_baseline():
    def row(method, strength, cond, d, lo, hi, metric="hallucination_rate"):
        return {"model": "base", "method": method, "strength": strength, "condition": cond,
                "metric": metric, "value": 0.5, "lo": 0.4, "hi": 0.6, "best": "faster_vad",
                "d_best": d, "db_lo": lo, "db_hi": hi, "d_plain": d, "dp_lo": lo, "dp_hi": hi,
                "n": 150 if cond == "nonspeech" else 60, "n_speakers": 7,
                "n_boot": 100}  # fmt: skip

    frame = schemas.frame_from_rows([
        row("faster_vad", math.nan, "stressed", 0.0, 0.0, 0.0),  # the best: no line
        row("gating", math.nan, "stressed", 0.0, -0.02, 0.03),  # ties the best
        row("fallback", math.nan, "nonspeech", 0.3, 0.2, 0.4),  # worse than the best
        row("fallback", math.nan, "clean", 0.002, 0.0, 0.004, metric="wer"),
        row("self_damp", 0.5, "nonspeech", -0.1, -0.2, -0.05),
        row("plain", 0.0, "nonspeech", 0.5, 0.4, 0.6),  # not a baseline users have
        row("gating", math.nan, "silence", 0.5, 0.4, 0.6),  # one input: the pooled cell only
    ], "mitigation")  # fmt: skip
    out = fd.mitigation_claims(frame)
    got = [(r["condition"], r["claim"].split(" ")[0:3], r["direction"], r["verdict"]) for r in out]
    assert got == [
        ("stressed", ["the", "baseline", "gating"], ABOVE, UNDECIDED),
        ("nonspeech", ["self_damp", "at", "strength"], BELOW, HOLDS),
        ("nonspeech", ["the", "baseline", "fallback"], ABOVE, HOLDS),
    ]  # fmt: skip
    assert "non-speech hallucination rate below the best baseline" in out[1]["claim"]
    assert "than the best baseline users have, faster_vad" in out[2]["claim"]
    assert "clean WER vs it +0.002 [+0.000, +0.004]" in out[2]["note"]
    assert out[1]["n_unit"] == "items" and out[0]["n_unit"] == "utterances"


def test_error_type_claims():
    def row(setting, pos, neg, auroc, lo, hi, n_pos, n_neg, method="ours"):
        return {"model": "tiny", "setting": setting, "positive": pos, "negative": neg,
                "method": method, "auroc": auroc, "auroc_lo": lo, "auroc_hi": hi,
                "n_pos": n_pos, "n_neg": n_neg, "n_speakers": 9}  # fmt: skip

    frame = schemas.frame_from_rows([
        row("stressed", "fabrication", "correct", 0.9, 0.8, 0.95, 40, 20),
        row("all", "fabrication", "correct", 0.95, 0.9, 0.99, 60, 40),
        row("stressed", "fabrication", "grounded_error", 0.4, 0.3, 0.45, 40, 12),
        row("stressed", "looping", "correct", 0.9, 0.8, 0.95, 3, 20),  # too few loops
        row("stressed", "omission", "correct", math.nan, math.nan, math.nan, 0, 20),
        row("stressed", "fabrication", "correct", 0.5, 0.4, 0.6, 40, 20, "avg_logprob"),
    ], "detect_by_type")  # fmt: skip
    out = fd.error_type_claims(frame)
    assert [(r["claim"].split(" (")[0][-35:], r["verdict"]) for r in out] == [
        ("spectral score ranks fabrication above correct"[-35:], HOLDS),
        ("ranks fabrication above grounded_error"[-35:], FAILS),
        ("spectral score ranks looping above correct"[-35:], UNDECIDED),
        ("spectral score ranks omission above correct"[-35:], UNDECIDED),
    ]  # fmt: skip
    assert out[0]["threshold"] == 0.5 and "setting all: 0.950, holds" in out[0]["note"]
    assert out[1]["claim"].startswith("fabrication carries the spectral signature")
    assert out[2]["n"] == 3 and out[2]["n_needed"] == vd.N_MIN
    assert out[3]["n_needed"] is None and "not estimable" in out[3]["note"]


def test_build_findings_keeps_its_contract_and_writes_csv_and_markdown(tmp_path):
    frame = fd.build_findings(_tables(), theory=_theory(8))
    assert frame.columns == schemas.contract("findings").names
    assert frame["family"].to_list()[0] == "paper" and set(frame["verdict"]) <= set(vd.VERDICTS)
    fd.write_findings(frame, tmp_path / "findings.csv")
    back = schemas.read_csv(tmp_path / "findings.csv", "findings")
    assert back.height == frame.height
    md = (tmp_path / "findings.md").read_text()
    assert md.startswith("# Findings") and md.count("\n- [") == frame.height
    html = findings_html(frame)
    assert html.startswith("<section class='findings' id='findings'><h2>Findings</h2>")
    assert html.count("<tr><td class='l") == frame.height
    assert "n_needed = n (w / |e|)²" in html


# --------------------------------------------------------------------------- the demo run


@pytest.mark.slow
def test_every_claim_of_a_workflow_run_gets_a_line_and_a_valid_verdict(workflow_run):
    """On the outputs of the session's workflow run (tests/workflow/config.yaml): the builders
    give every claim a line and a valid verdict, and the report rule wrote the same rows."""
    results = workflow_run / "results"
    frame = fd.findings_from_dir(results)
    schemas.conform(frame, "findings")
    written = schemas.read_csv(results / "findings.csv", "findings")
    assert written.select("claim", "model", "verdict").equals(
        frame.select("claim", "model", "verdict")
    )
    assert set(frame["verdict"]) <= set(vd.VERDICTS)
    undecided = frame.filter(pl.col("verdict") == UNDECIDED)
    assert undecided.filter(pl.col("n_needed").is_null() & ~pl.col("note").str.contains(
        "not estimable")).height == 0  # fmt: skip
    tables = pl.read_parquet(results / "tables" / "tables.parquet")
    for model in set(tables["model"]):
        lines = frame.filter((pl.col("family") == "paper") & (pl.col("model") == model))
        assert lines.height == len(fd.PAPER_CLAIMS), model
    for path in results.glob("detect/*/comparison.csv"):
        comp = schemas.read_csv(path, "detect_comparison")
        best = comp.filter((pl.col("method") == "ours") & pl.col("best_baseline"))
        model = comp["model"][0]
        got = frame.filter((pl.col("family") == "detector") & (pl.col("model") == model))
        assert got.height >= best.height > 0
    for family, name in (("theory", "theory_table"), ("mitigation", "mitigation")):
        if Path(schemas.result_path(results, name)).is_file():
            assert frame.filter(pl.col("family") == family).height > 0, family
    assert frame.filter(pl.col("family") == "error_types").height > 0


def test_the_report_rule_reads_the_optional_tables_only_when_their_stages_run():
    import copy
    import importlib.machinery
    import importlib.util

    import yaml

    root = Path(__file__).resolve().parents[1]
    loader = importlib.machinery.SourceFileLoader(
        "common_smk_findings", str(root / "workflow" / "rules" / "common.smk")
    )
    common = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(common)
    cfg = yaml.safe_load((root / "config" / "config.yaml").read_text())
    common.validate_config(cfg)
    assert common.get_findings_input("R", cfg, "theory_table") == ["R/theory/theory_table.csv"]
    assert common.get_findings_input("R", cfg, "mitigation") == ["R/mitigation/mitigation.csv"]
    off = copy.deepcopy(cfg)
    off["theory"]["n_utterances"] = 0
    off["intervene"]["methods"], off["intervene"]["baselines"] = [], []
    assert common.get_findings_input("R", off, "theory_table") == []
    assert common.get_findings_input("R", off, "mitigation") == []
