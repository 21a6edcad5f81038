"""The report's Findings: one line per claim, its verdict, the cell it rests on and, for an
undecided claim, what it would take to decide it.

A claim is an inequality on one cell, value < threshold (``below``) or value > threshold
(``above``): 0 for a sign, a chance level, 1 for Theorem 1's gains, judged by the one rule
and power calculation of whisper_spi.report.verdicts. ``not run here`` marks a claim of the
paper about a model no run model stands for (config ``metrics.paper_models``): no verdict on
data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from whisper_spi import registry, schemas
from whisper_spi.analysis.markdown import number
from whisper_spi.analysis.options import DEFAULT_PAPER_MODELS
from whisper_spi.analysis.tables import PAPER_K, PAPER_VALUES, TABLE_NAMES
from whisper_spi.io import atomic_path
from whisper_spi.report.verdicts import (
    ABOVE,
    BELOW,
    N_MIN,
    NOT_RUN,
    RULE,
    UNDECIDED,
    approx_n,
    finite,
    power_n,
    verdict,
    why_not,
)
from whisper_spi.theory.summary import MIN_SPEAKERS

__all__ = ["FAMILIES", "build_findings", "findings_from_dir", "findings_from_files",
           "write_findings"]  # fmt: skip

FAMILIES = {
    "paper": "The paper's claims (Tables 1 and 2)",
    "length": "Do the length-adjusted deltas keep the raw signs?",
    "theory": "Theorem 1's hypotheses, measured",
    "detector": "The spectral detector against Whisper's heuristics and a decoder-state probe",
    "mitigation": "Each intervention and each baseline against the best baseline users have",
    "error_types": "Which error types carry the spectral signature",
}


def _line(family, claim, model, condition, source, direction, threshold, cell, n_unit, note="",
          n_min=N_MIN) -> dict[str, Any]:  # fmt: skip
    """One findings row from ``cell`` = (value, lo, hi, n): the verdict and, if undecided,
    what it would take (and why not, or why the interval alone is not enough, in the note)."""
    value, lo, hi, n = cell
    v = verdict(lo, hi, direction, threshold, n or 0, n_min)
    needed = None
    if v == UNDECIDED:
        needed = power_n(value, lo, hi, n, threshold, n_min)
        if (alone := verdict(lo, hi, direction, threshold)) != UNDECIDED:
            note += f"; the interval alone says {alone}, but n = {n} < {n_min}"
        if needed is None:
            note += f"; {why_not(value, lo, hi, n, threshold)}"
        note = note.removeprefix("; ")
    return {
        "family": family, "claim": claim, "model": model, "condition": condition,
        "source": source, "direction": direction, "threshold": threshold, "verdict": v,
        "value": value, "lo": lo, "hi": hi, "n": n, "n_unit": n_unit, "n_needed": needed,
        "note": note,
    }  # fmt: skip


def _not_run(claim: str, model: str, note: str) -> dict[str, Any]:
    row = _line("paper", claim, model, "", "", BELOW, 0.0, (None,) * 4, "", note)
    return {**row, "verdict": NOT_RUN, "n_needed": None, "note": note}


# --------------------------------------------------------------------------- the paper's claims

# (claim, component, observable, direction, the paper's models it is made for)
PAPER_CLAIMS = (
    ("Regime I: cross-attention rank collapses under hallucination (ΔN_eff % < 0)",
     "cross_attn", "neff", BELOW, ("tiny", "small")),
    ("Regime II: self-attention compresses rank (ΔN_eff % < 0)",
     "self_attn", "neff", BELOW, ("large-v3-turbo",)),
    ("Regime II: the self-attention spectral slope hardens (Δα > 0)",
     "self_attn", "alpha", ABOVE, ("large-v3-turbo",)),
)  # fmt: skip
_SCALE_CLAIM = (
    "the scale trend: cross-attention collapses less in large-v3-turbo than in the smallest "
    "model (ΔN_eff % cross_attn, large minus small > 0)"
)


def _cell(tables, table, model, comp, cond, k, obs, adj=False):
    """(value, lo, hi, n) of observable ``obs``'s delta (length-adjusted if ``adj``) in the
    tables' cell of scope utterance, every kept pair, full length; None if there is none."""
    rows = tables.filter(
        (pl.col("table") == table) & (pl.col("scope") == "utterance")
        & (pl.col("pair_set") == "all") & (pl.col("prefix") == 0) & (pl.col("model") == model)
        & (pl.col("component") == comp) & (pl.col("condition") == cond) & (pl.col("k") == k)
    )  # fmt: skip
    if not rows.height:
        return None
    r, c = rows.row(0, named=True), registry.OBSERVABLE_SPECS[obs].column + ("_adj" if adj else "")
    return r[c], r[f"{c}_ci_low"], r[f"{c}_ci_high"], r[f"n_{obs}"]


def _source(table: str, comp: str, k: int, column: str) -> str:
    return (
        f"tables/tables.parquet: {table}, scope utterance, pair set all, full length, {comp}, "
        f"{registry.HELL}, K = {k}, {column} [_ci_low, _ci_high]"
    )


def _paper_note(model, pm, comp, obs, made_for) -> str:
    if pm is None:
        return "not a paper model"
    if (pm, comp) in PAPER_VALUES:
        value = PAPER_VALUES[(pm, comp)][registry.PAPER_OBSERVABLES.index(obs)]
        note = f"paper ({pm}{'' if pm == model else ', approx'}): {value:+g}"
    else:
        note = f"the paper reports no {comp} value for {pm}"
    return note + ("" if pm in made_for else f" (it makes this claim for {', '.join(made_for)})")


def paper_claims(tables: pl.DataFrame, paper_models: Mapping[str, str] | None = None,
                 k: int | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """The paper's Regime I and II claims (:data:`PAPER_CLAIMS`) on every run model, each on
    the cell closest to the paper's (hell vs clean, Table 1's final decoder layer, K = 50,
    scope utterance, every kept pair, full length), the stresses' and Table 2's verdicts in the
    note; each one's length-adjusted companion (family ``length``: does the adjusted delta keep
    the raw delta's sign?); ``not run here`` for the paper's models no run model stands for,
    and the scale trend (:func:`_scale_trend`)."""
    paper_models = dict(DEFAULT_PAPER_MODELS if paper_models is None else paper_models)
    if k is None:
        ks = set(tables["k"].to_list())
        k = PAPER_K if PAPER_K in ks or not ks else max(ks)
    final, mean, hell = TABLE_NAMES["final"], TABLE_NAMES["mean"], registry.HELL
    models = sorted(set(tables["model"].to_list()))
    out, length = [], []
    for claim, comp, obs, direction, made_for in PAPER_CLAIMS:
        column = registry.OBSERVABLE_SPECS[obs].column
        source = _source(final, comp, k, column)
        for model in models:
            note = _paper_note(model, paper_models.get(model), comp, obs, made_for)
            cell = _cell(tables, final, model, comp, hell, k, obs)
            if cell is None:
                cell, note = (None, None, None, 0), f"{note}; no cell (no kept pair)"
            else:
                for t, c in [*((final, s) for s in registry.STRESSES), (mean, hell)]:
                    near = _cell(tables, t, model, comp, c, k, obs)
                    v = "no cell" if near is None else verdict(*near[1:3], direction, 0.0, near[3])
                    note += f"; {c if t == final else t}: {v}"
            out.append(_line("paper", claim, model, hell, source, direction, 0.0, cell, "pairs",
                             note))  # fmt: skip
            if cell[0] is None:
                continue
            side = ABOVE if finite(cell[0]) and cell[0] > 0 else BELOW
            raw = f"raw {number(cell[0], '+.4g')} [{number(cell[1], '+.4g')}, " + (
                f"{number(cell[2], '+.4g')}]: {verdict(*cell[1:3], side, 0.0, cell[3])}"
            )
            adj = _cell(tables, final, model, comp, hell, k, obs, adj=True)
            length.append(_line(
                "length", f"length-adjusted {registry.OBSERVABLE_SPECS[obs].label} of {comp} "
                f"keeps the raw sign ({'+' if side == ABOVE else '−'}; {claim.split(':')[0]})",
                model, hell, source.replace(f"{column} [", f"{column}_adj ["), side, 0.0, adj,
                "pairs", raw,
            ))  # fmt: skip
    run = {paper_models[m] for m in models if m in paper_models}
    for claim, _, _, _, made_for in PAPER_CLAIMS:
        out += [_not_run(claim, pm, f"no run model stands for {pm} (metrics.paper_models)")
                for pm in made_for if pm not in run]  # fmt: skip
    return [*out, _scale_trend(tables, paper_models, models, k), *length]


def _scale_trend(tables, paper_models, models, k) -> dict[str, Any]:
    """Cross-attention ΔN_eff % of large-v3-turbo minus that of the smallest paper model run
    (> 0: less collapse at scale), its interval from the two as independent (each side's
    half-widths added in quadrature: a normal approximation)."""
    by_paper = {paper_models[m]: m for m in reversed(models) if m in paper_models}
    small = next((by_paper[p] for p in ("tiny", "small") if p in by_paper), None)
    large = by_paper.get("large-v3-turbo")
    if small is None or large is None:
        missing = "large-v3-turbo" if large is None else "tiny or small"
        return _not_run(_SCALE_CLAIM, "tiny/small vs large-v3-turbo",
                        f"no run model stands for {missing}")  # fmt: skip
    final, column = TABLE_NAMES["final"], "d_neff_pct"
    source, pair = _source(final, "cross_attn", k, column), f"{small} vs {large}"
    a = _cell(tables, final, large, "cross_attn", registry.HELL, k, "neff")
    b = _cell(tables, final, small, "cross_attn", registry.HELL, k, "neff")
    if a is None or b is None or not finite(*a[:3], *b[:3]):
        return _line("paper", _SCALE_CLAIM, pair, registry.HELL, source, ABOVE, 0.0,
                     (None, None, None, 0), "pairs", "no cell (no kept pair)")  # fmt: skip
    d = a[0] - b[0]
    lo, hi = d - math.hypot(a[0] - a[1], b[2] - b[0]), d + math.hypot(a[2] - a[0], b[0] - b[1])
    paper = PAPER_VALUES[("large-v3-turbo", "cross_attn")][0]
    paper -= PAPER_VALUES[(paper_models[small], "cross_attn")][0]
    note = (
        "the two models' intervals combined as independent (each side's half-widths in "
        f"quadrature, a normal approximation); paper: {paper:+.2f}"
    )
    return _line("paper", _SCALE_CLAIM, pair, registry.HELL, source, ABOVE, 0.0,
                 (d, lo, hi, min(a[3], b[3])), "pairs (the smaller n)", note)  # fmt: skip


# --------------------------------------------------------------------------- Theorem 1

# (claim, quantity column, its interval's stem, direction, threshold or its chance column)
THEORY_CLAIMS = (
    ("Regime I's hypothesis: γ = sup_l s_l (ρ_l + ε_l) < 1", "gamma_sup_max", "gamma_sup_max",
     BELOW, 1.0),
    ("Regime II: cumulative gain Π_l γ_l > 1", "path_gain", "path_gain", ABOVE, 1.0),
    ("Regime II: alignment ρ of consecutive layers above chance", "rho_median", "rho", ABOVE,
     "rho_chance_median"),
    ("Regime II: spectral purity L·ε/ρ < 1 (relative noise)", "purity", "purity", BELOW, 1.0),
)  # fmt: skip


def theory_claims(theory: pl.DataFrame) -> list[dict[str, Any]]:
    """Theorem 1's hypotheses (:data:`THEORY_CLAIMS`) per model x condition from the theory
    table's pooled rows (layer null): the median over utterances and layers with its
    speaker-grouped bootstrap interval; n = speakers, at least the theory stage's minimum."""
    pooled = theory.filter(pl.col("layer").is_null()).sort("model", "condition")
    out = []
    for claim, col, stem, direction, threshold in THEORY_CLAIMS:
        chance = isinstance(threshold, str)
        source = f"theory/theory_table.csv: pooled row (layer null), {col} [{stem}_lo, {stem}_hi]"
        for r in pooled.iter_rows(named=True):
            t, note = (r[threshold] if chance else threshold), f"{r['n_utts']} utterances"
            if stem == "rho":
                note += "; subspace alignment " + (
                    f"{number(r['align_median'], '.3g')} [{number(r['align_lo'], '.3g')}, "
                    f"{number(r['align_hi'], '.3g')}] vs chance "
                    f"{number(r['align_chance_median'], '.3g')}"
                )
            if not finite(t):
                t, note = math.nan, f"{note}; no chance level"
            cell = (r[col], r[f"{stem}_lo"], r[f"{stem}_hi"], r["n_speakers"])
            out.append(_line("theory", claim, r["model"], r["condition"],
                             source + (f" vs {threshold}" if chance else ""), direction, t, cell,
                             "speakers", note, MIN_SPEAKERS))  # fmt: skip
    return out


# --------------------------------------------------------------------------- the project's own


def detector_claims(comparison: pl.DataFrame) -> list[dict[str, Any]]:
    """Per model x setting: the spectral detector (ours) against the best heuristic baseline,
    ours+heuristics against the heuristics' own regression (do the spectra add to them?), and
    ours against the decoder-state probe (an L2 LR on every layer's row means, the strongest
    published kind of detector; does not hold = the probe detects at least as well): ΔAUROC
    > 0, paired speaker bootstrap; n = utterances."""
    specs = (
        ("the spectral detector beats Whisper's best heuristic (ΔAUROC > 0)",
         (pl.col("method") == "ours") & pl.col("best_baseline")),
        ("the spectral features add to Whisper's heuristics (ΔAUROC of ours+heuristics vs "
         "heuristics_lr > 0)",
         (pl.col("method") == "ours+heuristics") & (pl.col("baseline") == "heuristics_lr")),
        ("the spectral detector beats the decoder-state probe on the same decodes (ΔAUROC of "
         "ours vs probe > 0)",
         (pl.col("method") == "ours") & (pl.col("baseline") == "probe")),
    )  # fmt: skip
    out = []
    for claim, which in specs:
        for r in comparison.filter(which).sort("model", "setting").iter_rows(named=True):
            note = (
                f"baseline {r['baseline']}; ΔAUPRC {number(r['d_auprc'], '+.3f')} "
                f"[{number(r['d_auprc_lo'], '+.3f')}, {number(r['d_auprc_hi'], '+.3f')}]; "
                f"share of replicates ≤ 0: {number(r['p_boot'], '.3f')}; "
                f"{r['n_pos']} hallucinated"
            )
            source = (
                f"detect/{r['model']}/comparison.csv: setting {r['setting']}, method "
                f"{r['method']}, baseline {r['baseline']}, d_auroc [d_auroc_lo, d_auroc_hi]"
            )
            cell = (r["d_auroc"], r["d_auroc_lo"], r["d_auroc_hi"], r["n"])
            out.append(_line("detector", claim, r["model"], r["setting"], source, ABOVE, 0.0,
                             cell, "utterances", note))  # fmt: skip
    return out


_POOLED_NAMES = {registry.STRESSED: "stressed", registry.NO_SPEECH: "non-speech"}


def mitigation_claims(mitigation: pl.DataFrame) -> list[dict[str, Any]]:
    """Per model, on the stresses pooled and on the non-speech inputs pooled: each
    intervention x strength lowers the hallucination rate below the best baseline users
    have (d_best < 0, paired speaker bootstrap; n = utterances), the clean WER against the
    same baseline in the note; and each other baseline users have leaves a higher rate than
    the best one (d_best > 0: is the best one better, or do they tie?)."""
    arms = list(registry.INTERVENTIONS) + list(registry.USER_BASELINES)
    rates = mitigation.filter(
        pl.col("condition").is_in(list(_POOLED_NAMES)) & (pl.col("metric") == "hallucination_rate")
        & pl.col("method").is_in(arms) & (pl.col("method") != pl.col("best"))
    ).with_columns(
        _c=pl.col("condition").replace_strict(list(_POOLED_NAMES), range(len(_POOLED_NAMES))),
        _b=pl.col("method").is_in(list(registry.USER_BASELINES)),
    ).sort("model", "_c", "_b", "method", "strength").drop("_c", "_b")  # fmt: skip
    wer = mitigation.filter((pl.col("condition") == registry.CLEAN) & (pl.col("metric") == "wer"))
    out = []
    for r in rates.iter_rows(named=True):
        where = _POOLED_NAMES[r["condition"]]
        baseline = r["method"] in registry.USER_BASELINES
        arm = r["method"] if baseline else f"{r['method']} {number(r['strength'], 'g')}"
        note = f"best baseline: {r['best'] or 'none decoded'}"
        same = wer.filter(
            (pl.col("model") == r["model"]) & (pl.col("method") == r["method"])
            & (pl.col("strength").eq_missing(r["strength"]) | pl.lit(baseline))
        )  # fmt: skip
        for w in same.head(1).iter_rows(named=True):
            note += f"; clean WER vs it {number(w['d_best'], '+.3f')} " + (
                f"[{number(w['db_lo'], '+.3f')}, {number(w['db_hi'], '+.3f')}]"
            )
        if baseline:
            claim = (
                f"the baseline {r['method']} leaves a higher {where} hallucination rate than "
                f"the best baseline users have, {r['best']} (difference > 0)"
            )
        else:
            claim = (
                f"{r['method']} at strength {number(r['strength'], 'g')} lowers the {where} "
                "hallucination rate below the best baseline users have (difference < 0)"
            )
        source = (
            f"mitigation/mitigation.csv: {r['condition']}, hallucination_rate, {arm}, "
            "d_best [db_lo, db_hi]"
        )
        cell = (r["d_best"], r["db_lo"], r["db_hi"], r["n"])
        direction = ABOVE if baseline else BELOW
        unit = "items" if r["condition"] == registry.NO_SPEECH else "utterances"
        out.append(_line("mitigation", claim, r["model"], r["condition"], source, direction,
                         0.0, cell, unit, note))  # fmt: skip
    return out


def error_type_claims(by_type: pl.DataFrame, method="ours", setting="stressed") -> list[dict]:
    """Per model x contrast (each error type vs correct decodes, fabrication vs
    grounded_error): the spectral score ranks the positive type above the negative, AUROC >
    0.5, on the stressed decodes (setting all in the note); n = the smaller class."""
    rows = by_type.filter(pl.col("method") == method)
    out = []
    for r in rows.filter(pl.col("setting") == setting).iter_rows(named=True):
        p, q = r["positive"], r["negative"]
        claim = f"the spectral score ranks {p} above {q} (AUROC > 0.5)"
        if (p, q) == ("fabrication", "grounded_error"):
            claim = f"fabrication carries the spectral signature beyond grounded errors: {claim}"
        note = f"{r['n_pos']} {p}, {r['n_neg']} {q}"
        other = rows.filter(
            (pl.col("model") == r["model"]) & (pl.col("setting") != setting)
            & (pl.col("positive") == p) & (pl.col("negative") == q)
        )  # fmt: skip
        for o in other.iter_rows(named=True):
            v = verdict(o["auroc_lo"], o["auroc_hi"], ABOVE, 0.5, min(o["n_pos"], o["n_neg"]))
            note += f"; setting {o['setting']}: {number(o['auroc'], '.3f')}, {v}"
        source = (
            f"detect/{r['model']}/by_type.csv: setting {setting}, {p} vs {q}, method {method}, "
            "auroc [auroc_lo, auroc_hi]"
        )
        cell = (r["auroc"], r["auroc_lo"], r["auroc_hi"], min(r["n_pos"], r["n_neg"]))
        out.append(_line("error_types", claim, r["model"], setting, source, ABOVE, 0.5, cell,
                         "decodes (smaller class)", note))  # fmt: skip
    return out


# --------------------------------------------------------------------------- assembling


def build_findings(tables: pl.DataFrame, *, comparison=None, theory=None, by_type=None,
                   mitigation=None, paper_models=None, k=None) -> pl.DataFrame:  # fmt: skip
    """Every claim the given frames (contracts tables, detect_comparison, theory_table,
    detect_by_type, mitigation; None: left out) support, as a frame of contract ``findings``,
    families in the order of :data:`FAMILIES`."""
    rows = paper_claims(tables, paper_models, k)
    builders = ((theory, theory_claims), (comparison, detector_claims),
                (mitigation, mitigation_claims), (by_type, error_type_claims))  # fmt: skip
    for frame, build in builders:
        rows += [] if frame is None else build(frame)
    rows.sort(key=lambda r: list(FAMILIES).index(r["family"]))  # stable: builders' order kept
    return schemas.frame_from_rows(rows, "findings")


def findings_from_files(tables, *, comparisons: Sequence = (), theory=None, by_type: Sequence = (),
                        mitigation=None, paper_models=None) -> pl.DataFrame:  # fmt: skip
    """:func:`build_findings` from the files: tables.parquet (or its frame), the detector's
    comparison.csv and by_type.csv files, theory_table.csv, mitigation.csv (each optional)."""
    if not isinstance(tables, pl.DataFrame):
        tables = schemas.scan_parquet([tables], "tables").collect()

    def csvs(paths, name):
        return pl.concat([schemas.read_csv(p, name) for p in paths]) if paths else None

    return build_findings(
        tables,
        comparison=csvs(comparisons, "detect_comparison"),
        theory=csvs([theory] if theory else [], "theory_table"),
        by_type=csvs(by_type, "detect_by_type"),
        mitigation=csvs([mitigation] if mitigation else [], "mitigation"),
        paper_models=paper_models,
    )


def findings_from_dir(results_dir: str | Path, paper_models=None) -> pl.DataFrame:
    """:func:`findings_from_files` on a run's results directory (what exists of it)."""
    d = Path(results_dir)
    theory, mitigation = (Path(schemas.result_path(d, n)) for n in ("theory_table", "mitigation"))
    return findings_from_files(
        Path(schemas.result_path(d, "tables")),
        comparisons=sorted(d.glob("detect/*/comparison.csv")),
        theory=theory if theory.is_file() else None,
        by_type=sorted(d.glob("detect/*/by_type.csv")),
        mitigation=mitigation if mitigation.is_file() else None,
        paper_models=paper_models,
    )


# --------------------------------------------------------------------------- rendering


def _shown(r: Mapping[str, Any]) -> tuple[str, str, str]:
    """A row's "value [lo, hi]", its test ("< 0") and what it would take, as shown."""
    if r["verdict"] == NOT_RUN:
        return "–", "", ""
    needed = r["n_needed"]
    takes = "not estimable" if needed is None else f"n ≈ {approx_n(needed)} {r['n_unit']}"
    return (
        f"{number(r['value'], '.4g')} [{number(r['lo'], '.4g')}, {number(r['hi'], '.4g')}]",
        f"{'<' if r['direction'] == BELOW else '>'} {number(r['threshold'], '.4g')}",
        takes if r["verdict"] == UNDECIDED else "",
    )


def findings_lines(findings: pl.DataFrame) -> list[str]:
    """One plain-text line per claim."""
    out = []
    for r in findings.iter_rows(named=True):
        interval, test, takes = _shown(r)
        line = f"[{r['verdict']}] {r['claim']} — {r['model']}"
        line += f", {r['condition']}" if r["condition"] else ""
        if r["verdict"] != NOT_RUN:
            line += f": {interval} {test}, n = {r['n']} {r['n_unit']}"
        line += f"; what it would take: {takes}" if takes else ""
        out.append(line + (f" ({r['note']})" if r["note"] else ""))
    return out


def findings_markdown(findings: pl.DataFrame) -> str:
    """The findings as Markdown: the rule, then a bullet per claim under each family."""
    parts = ["# Findings", "", RULE, ""]
    for family, title in FAMILIES.items():
        if (part := findings.filter(pl.col("family") == family)).height:
            parts += [f"## {title}", "", *[f"- {x}" for x in findings_lines(part)], ""]
    return "\n".join(parts)


def write_findings(findings: pl.DataFrame, path: str | Path) -> Path:
    """findings.csv (contract ``findings``) and findings.md beside it."""
    path = Path(path)
    schemas.write_csv(findings, "findings", path)
    with atomic_path(path.with_suffix(".md"), suffix=".md.tmp") as tmp:
        tmp.write_text(findings_markdown(findings), encoding="utf-8")
    return path
