"""The one number formatter, and the Markdown renderings of the tables and pair counts."""

from __future__ import annotations

import math
from typing import Any

import polars as pl

__all__ = ["counts_markdown", "number", "table_markdown"]

MISSING = "–"
# digits of each table column (report and Markdown alike)
DIGITS = {"d_neff_pct": 2, "d_log10_kf": 2, "d_alpha": 3}


def number(x: Any, spec: str) -> str:
    """``x`` formatted with the format ``spec`` (e.g. "+.2f", ".3f", ".4g"); None, NaN and
    infinities give a dash."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return MISSING
    return format(x, spec)


def signed(x: Any, digits: int) -> str:
    return number(x, f"+.{digits}f")


def with_interval(value: Any, lo: Any, hi: Any, spec: str) -> str:
    """ "value [lo, hi]", or the value alone without an interval."""
    if lo is None or hi is None:
        return number(value, spec)
    return f"{number(value, spec)} [{number(lo, spec)}, {number(hi, spec)}]"


def sign_word(v: bool | None) -> str:
    return MISSING if v is None else ("yes" if v else "NO")


def table_markdown(table: pl.DataFrame, title: str, ci: float) -> str:
    """A Markdown rendering of Table 1 or 2: one section per (scope, prefix), a row per cell."""
    lines = [
        f"# {title}",
        "",
        f"Mean over pairs (scope utterance) or value of the pooled spectrum (scope pooled), "
        f"with the {round(ci * 100)}% percentile bootstrap CI over pairs in brackets. "
        "Delta N_eff % = 100 (s - c) / c; Delta log10 Kf and Delta alpha are differences. "
        "prefix 0 = full length, L = length-matched on the first L decoded positions. "
        "Paper values: Hell vs clean, K = 50, from a digest of the paper (layer aggregation "
        "unstated); 'approx' marks a stand-in model.",
        "",
    ]
    header = (
        "| model | component | condition | K | n | ΔN_eff % | Δlog10 Kf | Δα "
        "| paper model | paper ΔN_eff % | paper Δlog10 Kf | paper Δα | signs agree (N, Kf, α) |"
    )
    for (scope, prefix), g in table.group_by("scope", "prefix", maintain_order=True):
        label = "full length" if prefix == 0 else f"length-matched, first {prefix} rows"
        lines += [f"## scope {scope}, {label}", "", header, "|" + "---|" * 13]
        for r in g.iter_rows(named=True):
            paper = (
                f"{r['paper_model']} ({r['paper_match']})"
                if r["paper_model"] is not None
                else MISSING
            )
            signs = ", ".join(
                sign_word(r[c])
                for c in ("sign_agrees_neff", "sign_agrees_log10_kf", "sign_agrees_alpha")
            )
            cells = [
                with_interval(r[n], r[f"{n}_ci_low"], r[f"{n}_ci_high"], f"+.{d}f")
                for n, d in DIGITS.items()
            ]
            lines.append(
                f"| {r['model']} | {r['component']} | {r['condition']} | {r['k']} | {r['n']} | "
                + " | ".join(cells)
                + f" | {paper} | "
                + " | ".join(signed(r[f"paper_{n}"], d) for n, d in DIGITS.items())
                + f" | {signs if r['paper_model'] is not None else MISSING} |"
            )
        lines.append("")
    return "\n".join(lines)


def counts_markdown(counts: pl.DataFrame) -> str:
    lines = [
        "# Pairs per model and condition",
        "",
        "A pair is a stressed utterance and its clean twin; it is kept when the stressed WER "
        "exceeds the threshold. hell = the union of the three stresses' kept pairs.",
        "",
        "| model | condition | kept pairs | all pairs | fraction kept | kept, hit max length "
        "| threshold |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in counts.iter_rows(named=True):
        lines.append(
            f"| {r['model']} | {r['condition']} | {r['n_pairs']} | {r['n_total']} | "
            f"{number(r['frac_kept'], '.3f')} | {r['n_hit_max_length']} | "
            f"{number(r['threshold'], 'g')} |"
        )
    return "\n".join(lines) + "\n"
