"""The one number formatter, and the Markdown renderings of the tables and pair counts."""

from __future__ import annotations

import math
from typing import Any

import polars as pl

from whisper_spi.registry import OBSERVABLE_SPECS, PAPER_OBSERVABLES

__all__ = [
    "alpha_label",
    "centering_label",
    "counts_markdown",
    "delta_headers",
    "number",
    "prefix_markdown",
    "scope_sentence",
    "table_markdown",
]

MISSING = "–"
_PAPER = [OBSERVABLE_SPECS[o] for o in PAPER_OBSERVABLES]
# digits of each delta column of the tables (report and Markdown alike)
DIGITS = {o.column: o.digits for o in _PAPER}


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


def alpha_label(alpha_start: int, alpha_stop: int | None, method: str = "lsq") -> str:
    """The alpha fit range (1-based ranks) and method, for column headers."""
    stop = "K" if alpha_stop is None else str(alpha_stop)
    return f"{method} fit, ranks {alpha_start + 1}..{stop}"


def centering_label(centered: bool | None) -> str:
    """What the eigenvalues are: of the covariance (centred) or uncentred second moments."""
    if centered is None:
        return "centring mixed"
    return "centred (covariance)" if centered else "uncentred second moments"


def delta_headers(opts: Any, centered: bool | None) -> dict[str, str]:
    """Each delta column of the tables -> its header, with what the values depend on (the
    alpha fit, the eigenvalues' centring); ``opts``: the MetricOptions."""
    notes = {
        "alpha": alpha_label(opts.alpha_start, opts.alpha_stop, opts.alpha_method),
        "log10_kf": centering_label(centered),
    }
    return {o.column: o.label + (f" ({notes[o.name]})" if o.name in notes else "") for o in _PAPER}


def scope_sentence(scope: str, resample_unit: str, ci: float, fraction: float = 0.5) -> str:
    """One sentence: what a row of ``scope`` is and what its interval resamples."""
    unit = "speakers (each with all its pairs and clean twins)" if resample_unit == "speaker" \
        else "utterances (each with all its pairs)"  # fmt: skip
    pct = round(ci * 100)
    if scope == "utterance":
        return (
            "Scope utterance: a row is the mean over the kept pairs of the per-pair delta "
            "(stressed decode vs its clean twin, each its own T x d spectrum; hell = every "
            f"kept pair of the three stresses); its {pct}% interval is a percentile bootstrap "
            f"that resamples {unit}, the length fit redone in each replicate."
        )
    return (
        "Scope pooled: a row is the delta between two spectra, of the N x d matrices of "
        "per-utterance row means of the clean twins and of the stressed decodes (each "
        "utterance once; hell = the pair-weighted mean of the three stresses' deltas); its "
        f"{pct}% interval comes from subsamples of {round(fraction * 100)}% of the {unit} "
        "drawn without replacement, centred and rescaled by sqrt(f / (1 - f))."
    )


def table_markdown(table: pl.DataFrame, title: str, opts: Any, centered: bool | None = None) -> str:
    """A Markdown rendering of Table 1 or 2: one section per (scope, pair set, prefix), a row
    per cell, raw and length-adjusted deltas side by side (``opts``: the MetricOptions)."""
    ci = opts.ci
    heads = delta_headers(opts, centered)
    lines = [
        f"# {title}",
        "",
        f"{scope_sentence('utterance', opts.resample_unit, ci)} "
        f"{scope_sentence('pooled', opts.resample_unit, ci, opts.pooled_fraction)} "
        "Delta N_eff % = 100 (s - c) / c; Delta log10 Kf and Delta alpha are differences. "
        "adj. = length-adjusted: the effect of log(T_s / T_c) fitted on the clean twins "
        "removed (utterance scope only). prefix 0 = full length, L = length-matched on the "
        f"first L decoded positions. Eigenvalues: {centering_label(centered)}. "
        "n = pairs with a finite value per observable (N_eff, Kf, alpha). "
        "Paper values: Hell vs clean, K = 50, from a digest of the paper (layer aggregation "
        "unstated), beside the rows closest to its definition (every kept pair, full "
        "length); 'approx' marks a stand-in model.",
        "",
    ]
    header = (
        "| model | component | condition | K | n (N, Kf, α) | "
        + "".join(f"{heads[o.column]} | {o.label} adj. | " for o in _PAPER)
        + "paper model | "
        + "".join(f"paper {o.label} | " for o in _PAPER)
        + "signs agree (N, Kf, α) |"
    )
    for (scope, pair_set, prefix), g in table.group_by(
        "scope", "pair_set", "prefix", maintain_order=True
    ):
        label = "full length" if prefix == 0 else f"length-matched, first {prefix} rows"
        lines += [
            f"## scope {scope}, pairs {pair_set}, {label}",
            "",
            header,
            "|" + "---|" * (header.count("|") - 1),
        ]
        for r in g.iter_rows(named=True):
            paper = (
                f"{r['paper_model']} ({r['paper_match']})"
                if r["paper_model"] is not None
                else MISSING
            )
            signs = ", ".join(sign_word(r[f"sign_agrees_{o}"]) for o in PAPER_OBSERVABLES)
            cells = []
            for n, d in DIGITS.items():
                for v in (n, f"{n}_adj"):
                    cells.append(
                        with_interval(r[v], r[f"{v}_ci_low"], r[f"{v}_ci_high"], f"+.{d}f")
                    )
            ns = ", ".join(str(r[f"n_{o}"]) for o in PAPER_OBSERVABLES)
            lines.append(
                f"| {r['model']} | {r['component']} | {r['condition']} | {r['k']} | {ns} | "
                + " | ".join(cells)
                + f" | {paper} | "
                + " | ".join(signed(r[f"paper_{n}"], d) for n, d in DIGITS.items())
                + f" | {signs if r['paper_model'] is not None else MISSING} |"
            )
        lines.append("")
    return "\n".join(lines)


def prefix_markdown(counts: pl.DataFrame) -> str:
    lines = [
        "# Pairs per length-matched prefix",
        "",
        "A prefix L compares the first L decoded rows of both sides, so a pair needs L rows on "
        "each. The tables show a prefix only when it is no longer than the median stressed "
        "decode (rows T) of the model's kept pairs.",
        "",
        "| model | condition | prefix L | pairs at L | pairs at full length "
        "| median stressed T | shown |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in counts.iter_rows(named=True):
        lines.append(
            f"| {r['model']} | {r['condition']} | {r['prefix']} | {r['n_pairs']} | "
            f"{r['n_full']} | {number(r['median_stressed_rows'], 'g')} | "
            f"{'yes' if r['shown'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def counts_markdown(counts: pl.DataFrame) -> str:
    lines = [
        "# Pairs per model and condition",
        "",
        "A pair is a stressed utterance and its clean twin; it is kept when the stressed WER "
        "exceeds the threshold. hell = the union of the three stresses' kept pairs.",
        "",
        "| model | condition | kept pairs | all pairs | fraction kept | excluded (clean WER, "
        "min tokens) | kept, hit max length | threshold |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in counts.iter_rows(named=True):
        lines.append(
            f"| {r['model']} | {r['condition']} | {r['n_pairs']} | {r['n_total']} | "
            f"{number(r['frac_kept'], '.3f')} | {r['n_excluded']} | {r['n_hit_max_length']} | "
            f"{number(r['threshold'], 'g')} |"
        )
    return "\n".join(lines) + "\n"
