"""The report's sections: the findings, the summary, the delta tables, prefixes and rejected
audio, and the sections beyond the paper (detection, theory)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from whisper_spi import schemas
from whisper_spi.analysis.figures import FIGURES
from whisper_spi.analysis.markdown import (
    DIGITS,
    delta_headers,
    number,
    scope_sentence,
    with_interval,
)
from whisper_spi.analysis.markdown import signed as _num
from whisper_spi.analysis.options import MetricOptions
from whisper_spi.analysis.tables import PAPER_K, TABLE_NAMES
from whisper_spi.captions import captions
from whisper_spi.registry import HELL, OBSERVABLE_SPECS, PAPER_OBSERVABLES
from whisper_spi.report.findings import FAMILIES, _shown
from whisper_spi.report.html import _caption, _esc, _figure_html, _frame_html
from whisper_spi.report.levels import levels_html
from whisper_spi.report.mitigation import MITIGATION_FIGURES, mitigation_html
from whisper_spi.report.taxonomy import TAXONOMY_FIGURES, taxonomy_html
from whisper_spi.report.verdicts import FAILS, HOLDS, RULE, VERDICTS
from whisper_spi.skipped import unreached_line, unreached_prefixes

# The theory table as shown: a median with its interval in one cell (so that it can wrap),
# chance levels and gaps beside the alignments, the verdicts last.
_THEORY_SHOWN = (
    ("gamma", "gain γ [95% CI]"), ("rho", "alignment ρ [95% CI]"),
    ("rho_chance_median", "ρ chance"), ("align", "subspace alignment [95% CI]"),
    ("align_chance_median", "alignment chance"), ("align_gap_median", "alignment gap"),
    ("eps", "noise ε [95% CI]"), ("j_ratio", "σ2/σ1 of J_L [95% CI]"),
    ("path_gain", "path gain Πγ [95% CI]"), ("purity", "purity L·ε/ρ [95% CI]"),
    ("regime1", "Regime I"), ("regime2", "Regime II"),
)  # fmt: skip


# Captions of the figures the sections beyond the paper bring (keyed by the PNG's stem).
EXTRA_FIGURES: dict[str, str] = {
    **captions("roc", "theory_phase", "levels"),
    **TAXONOMY_FIGURES,
    **MITIGATION_FIGURES,
}


def _value_ci(r: Mapping[str, Any], name: str, digits: int) -> str:
    ci = ""
    if r.get(f"{name}_ci_low") is not None:
        ci = f" [{_num(r[f'{name}_ci_low'], digits)}, {_num(r[f'{name}_ci_high'], digits)}]"
    return f"{_num(r.get(name), digits)}{ci}"


def _with_ci(r: Mapping[str, Any], name: str, digits: int) -> str:
    """The raw delta with its interval and, below it, the length-adjusted one (if any)."""
    adj = ""
    if r.get(f"{name}_adj") is not None:
        adj = f"<br>adj. {_value_ci(r, f'{name}_adj', digits)}"
    return f"<td>{_value_ci(r, name, digits)}{adj}</td>"


def _pairs(r: Mapping[str, Any]) -> str:
    """n, or n per observable (N_eff / Kf / alpha) where they differ."""
    ns = [r.get(f"n_{o}") for o in PAPER_OBSERVABLES]
    if None in ns or len(set(ns)) == 1:
        return str(r["n"])
    return "/".join(map(str, ns))


def _paper_cells(r: Mapping[str, Any]) -> str:
    """The paper's three values in one cell and whether each sign agrees with ours."""
    if r["paper_model"] is None:
        return "<td class='l'>–</td><td>–</td>"
    values = ", ".join(_num(r["paper_" + name], d) for name, d in DIGITS.items())
    signs = [r[f"sign_agrees_{o}"] for o in PAPER_OBSERVABLES]
    cls = "yes" if all(s is True for s in signs) else "no"
    txt = ", ".join("–" if s is None else ("yes" if s else "NO") for s in signs)
    return (
        f"<td class='l'>{_esc(r['paper_model'])} ({_esc(r['paper_match'])}): {values}</td>"
        f"<td class='{cls}'>{txt}</td>"
    )


_PAPER_HEAD = (
    f"<th class='l'>paper model: {', '.join(OBSERVABLE_SPECS[o].label for o in PAPER_OBSERVABLES)}"
    "</th><th>sign agrees (N, Kf, α)</th>"
)


def _length(r: Mapping[str, Any]) -> str:
    return "full" if r["prefix"] == 0 else f"first {r['prefix']} rows"


# The leading columns of a delta table: (header, row -> value, left-aligned).


_TABLE_LEAD = (
    ("model", lambda r: r["model"], True),
    ("component", lambda r: r["component"], True),
    ("condition", lambda r: r["condition"], True),
    ("K", lambda r: r["k"], False),
    ("pairs (N/Kf/α)", _pairs, False),
)


_LEFT = {True: " class='l'", False: ""}


_HEADLINE_LEAD = (
    *_TABLE_LEAD[:2],
    ("pairs set", lambda r: r["pair_set"], True),
    ("length", _length, True),
    _TABLE_LEAD[4],
)


def _delta_table_html(
    t: pl.DataFrame,
    caption: str,
    lead=_TABLE_LEAD,
    opts: MetricOptions | None = None,
    centered: bool | None = None,
) -> str:
    """One row per cell of ``t`` (contract ``tables``): the ``lead`` columns, each delta with
    its CI (and the length-adjusted one below), the paper's values and whether the signs
    agree."""
    opts = opts or MetricOptions()
    pct = round(opts.ci * 100)
    head = (
        "<tr>"
        + "".join(f"<th{_LEFT[left]}>{_esc(h)}</th>" for h, _, left in lead)
        + "".join(
            f"<th>{_esc(title)} [{pct}% CI]</th>"
            for title in delta_headers(opts, centered).values()
        )
        + _PAPER_HEAD
        + "</tr>"
    )
    rows = []
    for r in t.iter_rows(named=True):
        cells = [
            *[f"<td{_LEFT[left]}>{_esc(get(r))}</td>" for _, get, left in lead],
            *[_with_ci(r, name, d) for name, d in DIGITS.items()],
            _paper_cells(r),
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table>{_caption(caption)}<thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


def _scope_words(scope: str, prefix: int, pair_set: str, opts: MetricOptions) -> str:
    length = "full length" if prefix == 0 else f"length-matched on the first {prefix} rows"
    pairs = "every kept pair" if pair_set == "all" else f"pairs typed {pair_set}"
    sentence = scope_sentence(scope, opts.resample_unit, opts.ci, opts.pooled_fraction)
    return f"{pairs}, {length}. {sentence}"


def _tables_section(
    tables: pl.DataFrame,
    table: str,
    title: str,
    opts: MetricOptions | None = None,
    centered: bool | None = None,
) -> str:
    opts = opts or MetricOptions()
    t = tables.filter(pl.col("table") == table)
    parts = [f"<h2>{_esc(title)}</h2>"]
    if t.height == 0:
        return parts[0] + "<p>No pairs survived the threshold: nothing to tabulate.</p>"
    groups = t.group_by("scope", "pair_set", "prefix", maintain_order=True)
    for (scope, pair_set, prefix), g in groups:
        words = _scope_words(scope, prefix, pair_set, opts)
        caption = f"{title}, scope {scope}: {words} Every model × component × condition."
        body = _delta_table_html(g, caption, opts=opts, centered=centered)
        if scope == "utterance" and prefix == 0 and pair_set == "all":
            parts.append(body)
        else:
            label = "full length" if prefix == 0 else f"length-matched, first {prefix} rows"
            summary = f"scope {scope}, pairs {pair_set}, {label}"
            parts.append(f"<details><summary>{_esc(summary)}</summary>{body}</details>")
    return "".join(parts)


def _headline_html(
    tables: pl.DataFrame, k: int, opts: MetricOptions | None = None, centered: bool | None = None
) -> str:
    """Hell vs clean at the final layer, scope utterance, at K: full length and the shortest
    length-matched prefix, per model x component x pair set."""
    opts = opts or MetricOptions()
    t = tables.filter(
        (pl.col("table") == TABLE_NAMES["final"])
        & (pl.col("scope") == "utterance")
        & (pl.col("condition") == HELL)
        & (pl.col("k") == k)
    )
    if t.height == 0:
        return "<p>No pair survived the threshold: there is no headline cell.</p>"
    matched = sorted(p for p in set(t["prefix"]) if p > 0)
    t = t.filter(pl.col("prefix").is_in([0, *matched[:1]])).sort("model", "pair_set", "prefix")
    caption = (
        f"Headline: hell (every kept stressed pair; 'fabrication' rows: only those the "
        f"taxonomy types so) vs its clean twins at the final decoder layer, K = {k}. "
        f"{scope_sentence('utterance', opts.resample_unit, opts.ci)} Each cell: the raw delta, "
        "and below it the length-adjusted one (the effect of log(T_s / T_c) fitted on the "
        "clean twins removed), since decoded length alone moves N_eff and Kf. "
        "Length-matched rows compare only the first L decoded positions. The paper's values "
        "(hell vs clean, K = 50) sit beside the rows closest to its definition (every kept "
        "pair, full length, raw)."
    )
    return _delta_table_html(t, caption, _HEADLINE_LEAD, opts, centered)


def _prefix_html(
    tables: pl.DataFrame, prefix_lengths: Sequence[int], pairs: pl.DataFrame | None
) -> str:
    if not prefix_lengths:
        return ""
    reached = sorted(
        p for p in set(tables.filter(pl.col("scope") == "utterance")["prefix"]) if p > 0
    )
    text = (
        f"Length-matched prefixes configured (decode.prefix_lengths): "
        f"{', '.join(map(str, sorted(prefix_lengths)))}; with rows: "
        f"{', '.join(map(str, reached)) or 'none'}."
    )
    items = []
    if pairs is not None:
        items = [unreached_line(e) for e in unreached_prefixes(tables, prefix_lengths, pairs)]
    listed = "".join(f"<li>{_esc(i)}</li>" for i in items)
    return f"<p class='note'>{_esc(text)}</p>" + (
        f"<ul class='note'>{listed}</ul>" if listed else ""
    )


def report_options(config: Mapping[str, Any]) -> MetricOptions:
    """The metric options of the run the report describes (its config's ``metrics``)."""
    return MetricOptions.from_dict(config.get("metrics") or {})


def report_centered(config: Mapping[str, Any]) -> bool:
    """Whether the run's spectra are centred (decode.center; default off)."""
    return bool((config.get("decode") or {}).get("center", False))


def _rejected_html(rejected: pl.DataFrame | None) -> str:
    if rejected is None:
        return ""
    if rejected.height == 0:
        return "<p>Rejected inputs: none; every audio file of the corpus was usable.</p>"
    reasons = rejected.group_by("reason").len().sort("len", "reason", descending=[True, False])
    summary = "; ".join(f"{r} ({n})" for r, n in reasons.iter_rows())
    # the last three parts (<speaker>/<chapter>/<file> in LibriSpeech): absolute paths are
    # long words a table cannot wrap
    shown = rejected.with_columns(
        pl.col("path").map_elements(lambda p: "/".join(Path(p).parts[-3:]), return_dtype=pl.String)
    )
    table = _frame_html(
        shown,
        "Every audio file the corpus stage skipped (corpus.on_bad_audio: skip) and why (the "
        "end of each path; the full paths are in corpus/rejected.parquet).",
    )
    return (
        f"<p><b>Rejected inputs: {rejected.height} audio file"
        f"{'' if rejected.height == 1 else 's'}</b>, left out of every table: {_esc(summary)}.</p>"
        f"<details><summary>the rejected files</summary>{table}</details>"
    )


def findings_html(findings: pl.DataFrame) -> str:
    """The report's Findings section: the rule, then per family a table, a row per claim, under
    a line counting its verdicts (the paper's claims and their length check shown open)."""
    heads = ("verdict", "claim", "model", "condition", "value [95% CI]", "test", "n",
             "what it would take", "rests on", "note")  # fmt: skip
    head = "".join(f"<th{_LEFT[i not in (4, 5)]}>{h}</th>" for i, h in enumerate(heads))
    parts = ["<section class='findings' id='findings'><h2>Findings</h2>",
             f"<p class='note'>{_esc(RULE)}</p>"]  # fmt: skip
    for family, title in FAMILIES.items():
        if not (part := findings.filter(pl.col("family") == family)).height:
            continue
        rows = []
        for r in part.iter_rows(named=True):
            cls = {HOLDS: " yes", FAILS: " no"}.get(r["verdict"], "")
            interval, test, takes = _shown(r)
            cells = (r["claim"], r["model"], r["condition"] or "–", interval, test,
                     "–" if r["n"] is None else f"{r['n']} {r['n_unit']}", takes,
                     r["source"], r["note"])  # fmt: skip
            tds = "".join(  # the value [interval] and its test: unwrapped
                f"<td{_LEFT[i not in (3, 4)]}>{_esc(c)}</td>" for i, c in enumerate(cells)
            )
            rows.append(f"<tr><td class='l{cls}'>{_esc(r['verdict'])}</td>{tds}</tr>")
        got = part["verdict"].to_list()
        tally = ", ".join(f"{got.count(v)} {v}" for v in VERDICTS if v in got)
        caption = f"{title}: a row per claim, its verdict and the interval it rests on."
        shown = " open" if family in ("paper", "length") else ""
        parts.append(f"<details{shown}><summary>{_esc(title)}: {_esc(tally)}</summary>"
                     f"<table>{_caption(caption)}<thead><tr>{head}</tr></thead>"
                     f"<tbody>{''.join(rows)}</tbody></table></details>")  # fmt: skip
    return "".join(parts) + "</section>"


def _summary_html(
    tables: pl.DataFrame,
    figs: Mapping[str, Any],
    pair_counts: pl.DataFrame,
    config: Mapping[str, Any],
    rejected: pl.DataFrame | None,
    pairs: pl.DataFrame | None,
) -> str:
    opts = report_options(config)
    ks = list(opts.k)
    k = PAPER_K if PAPER_K in ks else max(ks)
    prefix_lengths = config.get("decode", {}).get("prefix_lengths", [])
    counts = _frame_html(
        pair_counts,
        "Pairs per model and condition: a pair is a stressed utterance and its clean twin, "
        "kept when the stressed WER exceeds the threshold; hell is the union of the three "
        "stresses' kept pairs.",
    )
    return (
        "<section class='summary' id='summary'><h2>Summary</h2>"
        + _headline_html(tables, k, opts, report_centered(config))
        + _figure_html("phase_diagram", figs["phase_diagram"], FIGURES["phase_diagram"])
        + counts
        + _prefix_html(tables, prefix_lengths, pairs)
        + _rejected_html(rejected)
        + "</section>"
    )


# --------------------------------------------------------------------------- beyond the paper


def _three(x: Any) -> str:
    return number(x, ".3f")


def _detection_html(results: pl.DataFrame, comparison: pl.DataFrame | None) -> str:
    from whisper_spi.detect import METHODS

    head = (
        "<tr><th class='l'>model</th><th class='l'>setting</th><th class='l'>method</th>"
        "<th class='l'>what it scores</th><th>AUROC [95% CI]</th><th>AUPRC [95% CI]</th>"
        "<th>utterances</th><th>hallucinated</th></tr>"
    )
    rows = []
    for r in results.iter_rows(named=True):
        what = METHODS[r["method"]].doc if r["method"] in METHODS else ""
        rows.append(
            "<tr>"
            f"<td class='l'>{_esc(r['model'])}</td><td class='l'>{_esc(r['setting'])}</td>"
            f"<td class='l'>{_esc(r['method'])}</td><td class='l'>{_esc(what)}</td>"
            f"<td>{_three(r['auroc'])} [{_three(r['auroc_lo'])}, {_three(r['auroc_hi'])}]</td>"
            f"<td>{_three(r['auprc'])} [{_three(r['auprc_lo'])}, {_three(r['auprc_hi'])}]</td>"
            f"<td>{r['n']}</td><td>{r['n_pos']}</td></tr>"
        )
    caption = (
        "Hallucination detection from one decode pass: out-of-fold scores on speaker-grouped "
        "folds (no speaker in both training and test). Setting all = clean and stressed "
        "decodes, stressed = stressed decodes only; ours uses the decoded length T, ours_no_T "
        "does not. 95% bootstrap CIs over speakers (whole speakers resampled within each "
        "class)."
    )
    out = f"<table>{_caption(caption)}<thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"
    if comparison is None:
        return out
    best = comparison.filter(
        pl.col("best_baseline") & pl.col("model").is_in(results["model"].unique().to_list())
    )
    head = (
        "<tr><th class='l'>model</th><th class='l'>setting</th><th class='l'>method</th>"
        "<th class='l'>best baseline</th><th>ΔAUROC [95% CI]</th><th>ΔAUPRC [95% CI]</th>"
        "<th>share of replicates with ours ≤ baseline</th></tr>"
    )
    rows = [
        "<tr>"
        f"<td class='l'>{_esc(r['model'])}</td><td class='l'>{_esc(r['setting'])}</td>"
        f"<td class='l'>{_esc(r['method'])}</td><td class='l'>{_esc(r['baseline'])}</td>"
        f"<td>{_num(r['d_auroc'], 3)} [{_num(r['d_auroc_lo'], 3)}, {_num(r['d_auroc_hi'], 3)}]</td>"
        f"<td>{_num(r['d_auprc'], 3)} [{_num(r['d_auprc_lo'], 3)}, {_num(r['d_auprc_hi'], 3)}]</td>"
        f"<td>{_three(r['p_boot'])}</td></tr>"
        for r in best.iter_rows(named=True)
    ]
    caption = (
        "Ours minus the best heuristic baseline (the heuristic with the highest AUROC on the "
        "same data, which favours the baseline): paired bootstrap over speakers, the same "
        "replicates for both methods, 95% CI."
    )
    return out + (
        f"<table>{_caption(caption)}<thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _theory_frame(table: pl.DataFrame, keys: Sequence[str]) -> pl.DataFrame:
    cells = {k: table[k] for k in keys if k in table.columns}
    if {"n_utts", "n_speakers"} <= set(table.columns):
        cells["utterances / speakers"] = [
            f"{u} / {k}" for u, k in zip(table["n_utts"], table["n_speakers"], strict=True)
        ]
    for name, label in _THEORY_SHOWN:
        mid = f"{name}_median" if f"{name}_median" in table.columns else name
        if mid not in table.columns:
            continue
        if table[mid].dtype == pl.String:
            cells[label] = table[mid]
            continue
        ends = [f"{name}_{end}" for end in ("lo", "hi")]
        lo, hi = (table[e] if e in table.columns else [None] * table.height for e in ends)
        cells[label] = [
            with_interval(m, a, b, ".3g") for m, a, b in zip(table[mid], lo, hi, strict=True)
        ]
    return pl.DataFrame(cells)


def _theory_html(table: pl.DataFrame) -> str:
    has_layer = "layer" in table.columns
    pooled = table.filter(pl.col("layer").is_null()) if has_layer else table
    out = _frame_html(
        _theory_frame(pooled, ("model", "condition")),
        "Theorem 1's quantities measured on the real decoders, per model and condition: "
        "medians over the measured utterances and decoder layers with 95% speaker-grouped "
        "bootstrap intervals, the chance levels and gaps beside the alignments, and the "
        "verdict on each regime's hypotheses.",
    )
    if "verdict" in pooled.columns:
        verdicts = pooled.filter(pl.col("verdict").is_not_null()).unique("model", keep="first")
        out += "".join(
            f"<p><b>{_esc(m)}</b>: {_esc(v)}</p>"
            for m, v in verdicts.select("model", "verdict").sort("model").iter_rows()
        )
    if has_layer and pooled.height < table.height:
        per_layer = table.filter(pl.col("layer").is_not_null())
        out += (
            "<details><summary>per decoder layer</summary>"
            + _frame_html(_theory_frame(per_layer, ("model", "condition", "layer")),
                          "The same quantities per decoder layer (medians over the measured "
                          "utterances, with their intervals).")
            + "</details>"
        )  # fmt: skip
    return out


def _extra_html(
    title: str, table: str | Path, png: str | Path | None, comparison: pl.DataFrame | None
) -> str:
    df = schemas.read_csv(table)  # whichever table's contract its header names
    if (
        (typed := taxonomy_html(df)) is not None
        or (typed := mitigation_html(df)) is not None
        or (typed := levels_html(df)) is not None
    ):
        body = typed
    elif {"method", "auroc"} <= set(df.columns):
        body = _detection_html(df, comparison)
    elif {"gamma_median", "rho_median"} <= set(df.columns):
        body = _theory_html(df)
    else:
        body = _frame_html(df, f"{title} ({Path(table).name}).")
    parts = [f"<h2>{_esc(title)}</h2>", body]
    if png:
        stem = Path(png).stem
        parts.append(_figure_html(stem, png, EXTRA_FIGURES.get(stem, title)))
    return "".join(parts)
