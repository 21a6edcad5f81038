"""One self-contained HTML report: tables, figures, pair counts, config and versions.

The page opens with a summary (the headline cells with their intervals, the phase diagram,
the pair counts, what was left out), then the full tables, the figures and the sections
beyond the paper. Every table and figure carries a caption in words, and the page fits a
1,400 px wide window. It works offline: figures are inline SVG rendered by vl-convert (or
PNGs embedded as ``data:`` URIs), styles are inline, and there is no script to fetch.
"""

from __future__ import annotations

import base64
import html
import importlib.metadata
import platform
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import altair as alt
import polars as pl
import yaml

from . import schemas
from .analysis.markdown import number
from .analysis.markdown import signed as _num
from .analysis.tables import PAPER_K, TABLE_NAMES
from .figures import FIGURES, chart_svg
from .io import atomic_path
from .names import HELL
from .skipped import read_rejected, unreached_line, unreached_prefixes

__all__ = ["collect_versions", "write_report"]

_PACKAGES = (
    "torch",
    "transformers",
    "polars",
    "numpy",
    "pyarrow",
    "altair",
    "vl-convert-python",
    "whisper-spi",
)

_CSS = """
* { box-sizing: border-box; }
body { font-family: system-ui, sans-serif; margin: 1.5em auto; padding: 0 1em;
       max-width: 1380px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0 1.5em; }
caption { caption-side: top; text-align: left; font-size: .95em; color: #444;
          padding: .3em 0; max-width: 70em; }
th, td { border: 1px solid #ddd; padding: .25em .5em; text-align: right; }
th { background: #f3f3f3; } td.l, th.l { text-align: left; }
td:not(.l), td:first-child { white-space: nowrap; }  /* a number and its CI, a model name */
td.no { background: #fde2e2; } td.yes { background: #e3f6e3; }
figure { margin: 1em 0 2em; } figcaption { font-size: .9em; color: #555; max-width: 70em; }
figure svg, figure img { max-width: 100%; height: auto; }
pre { background: #f7f7f7; padding: 1em; overflow-x: auto; font-size: .85em;
      white-space: pre-wrap; }
.note { color: #555; font-size: .9em; max-width: 70em; }
.summary { background: #fafafa; border: 1px solid #ddd; padding: 0 1em; }
details > summary { cursor: pointer; font-weight: 600; margin: .5em 0; }
"""

# Captions of the figures the sections beyond the paper bring (keyed by the PNG's stem).
EXTRA_FIGURES: dict[str, str] = {
    "roc": "ROC curves of the spectral detector (ours: logistic regression on one decode "
    "pass's spectral features) and of Whisper's own heuristics, from out-of-fold scores on "
    "speaker-grouped folds; one panel per setting (all decodes, or stressed ones only).",
    "theory_phase": "Theorem 1's phase diagram: the simulated singular-value ratio of the "
    "context Jacobian over effective gain gamma and alignment rho (log axes), with the "
    "measured decoders placed at their median gamma and rho.",
}

# Readable headers for the columns of the tables the report shows as they are.
_LABELS: dict[str, str] = {
    "model": "model",
    "condition": "condition",
    "n_total": "all pairs",
    "n_pairs": "kept pairs",
    "frac_kept": "fraction kept",
    "n_hit_max_length": "kept, stressed decode hit max length",
    "threshold": "WER threshold",
    "path": "file",
    "reason": "reason",
    "layer": "decoder layer",
    "n_utts": "utterances",
    "n_layers": "layers",
    "gamma_median": "gain γ (median)",
    "rho_median": "alignment ρ (median)",
    "eps_median": "relative noise ε (median)",
    "rho_chance_median": "ρ of random vectors",
    "j_ratio_median": "σ2/σ1 of J_L",
    "purity": "purity L·ε/ρ",
    "path_gain": "path gain Πγ",
    "regime1_hypothesis": "Regime I hypothesis (γ_sup < 1)",
    "regime2_hypothesis": "Regime II hypothesis",
    "regime": "nearest simulated regime",
    "n_speakers": "speakers",
    "gamma_lo": "γ 95% CI low",
    "gamma_hi": "γ 95% CI high",
    "rho_lo": "ρ 95% CI low",
    "rho_hi": "ρ 95% CI high",
    "align_median": "subspace alignment (median)",
    "align_lo": "alignment 95% CI low",
    "align_hi": "alignment 95% CI high",
    "align_chance_median": "alignment of random subspaces",
    "align_gap_median": "gap conditioning the alignment",
    "regime1": "Regime I verdict (speaker CI)",
    "regime2": "Regime II verdict (speaker CI)",
    "verdict": "verdict",
    "package": "package",
    "version": "version",
}
_THEORY_COLS = (
    "model", "condition", "layer", "n_utts", "n_speakers", "gamma_median", "gamma_lo",
    "gamma_hi", "rho_median", "rho_lo", "rho_hi", "rho_chance_median", "align_median",
    "align_lo", "align_hi", "align_chance_median", "align_gap_median", "eps_median",
    "j_ratio_median", "purity", "path_gain", "regime1_hypothesis", "regime2_hypothesis",
    "regime1", "regime2", "regime", "verdict",
)  # fmt: skip


def collect_versions() -> dict[str, str]:
    """Python and package versions, read from the installed metadata (nothing imported)."""
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _esc(x: Any) -> str:
    return html.escape(str(x))


def _caption(text: str) -> str:
    return f"<caption>{_esc(text)}</caption>"


def _frame_html(df: pl.DataFrame, caption: str) -> str:
    """A plain HTML table of a frame (floats to 4 significant digits, readable headers)."""
    head = "".join(f"<th class='l'>{_esc(_LABELS.get(c, c))}</th>" for c in df.columns)
    rows = []
    for r in df.iter_rows():
        cells = []
        for v in r:
            if isinstance(v, float):
                cells.append(f"<td>{number(v, '.4g')}</td>")
            elif v is None:
                cells.append("<td>–</td>")
            elif isinstance(v, int) and not isinstance(v, bool):
                cells.append(f"<td>{v}</td>")
            else:
                cells.append(f"<td class='l'>{_esc(v)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f"<table>{_caption(caption)}<thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


_OBS = (("d_neff_pct", "ΔN_eff %", 2), ("d_log10_kf", "Δlog10 Kf", 2), ("d_alpha", "Δα", 3))
_SIGNS = ("sign_agrees_neff", "sign_agrees_log10_kf", "sign_agrees_alpha")


def _with_ci(r: Mapping[str, Any], name: str, digits: int) -> str:
    ci = ""
    if r[f"{name}_ci_low"] is not None:
        ci = f" [{_num(r[f'{name}_ci_low'], digits)}, {_num(r[f'{name}_ci_high'], digits)}]"
    return f"<td>{_num(r[name], digits)}{ci}</td>"


def _paper_cells(r: Mapping[str, Any]) -> str:
    """The paper's three values in one cell and whether each sign agrees with ours."""
    if r["paper_model"] is None:
        return "<td class='l'>–</td><td>–</td>"
    values = ", ".join(_num(r["paper_" + name], d) for name, _, d in _OBS)
    signs = [r[s] for s in _SIGNS]
    cls = "yes" if all(s is True for s in signs) else "no"
    txt = ", ".join("–" if s is None else ("yes" if s else "NO") for s in signs)
    return (
        f"<td class='l'>{_esc(r['paper_model'])} ({_esc(r['paper_match'])}): {values}</td>"
        f"<td class='{cls}'>{txt}</td>"
    )


_PAPER_HEAD = (
    "<th class='l'>paper model: ΔN_eff %, Δlog10 Kf, Δα</th><th>sign agrees (N, Kf, α)</th>"
)


def _length(r: Mapping[str, Any]) -> str:
    return "full" if r["prefix"] == 0 else f"first {r['prefix']} rows"


# The leading columns of a delta table: (header, row -> value, left-aligned).
_TABLE_LEAD = (
    ("model", lambda r: r["model"], True),
    ("component", lambda r: r["component"], True),
    ("condition", lambda r: r["condition"], True),
    ("K", lambda r: r["k"], False),
    ("pairs", lambda r: r["n"], False),
)
_LEFT = {True: " class='l'", False: ""}
_HEADLINE_LEAD = (*_TABLE_LEAD[:2], ("length", _length, True), _TABLE_LEAD[4])


def _delta_table_html(t: pl.DataFrame, caption: str, lead=_TABLE_LEAD) -> str:
    """One row per cell of ``t`` (contract ``tables``): the ``lead`` columns, each delta with
    its CI, the paper's values and whether the signs agree."""
    head = (
        "<tr>"
        + "".join(f"<th{_LEFT[left]}>{_esc(h)}</th>" for h, _, left in lead)
        + "".join(f"<th>{_esc(title)} [95% CI]</th>" for _, title, _ in _OBS)
        + _PAPER_HEAD
        + "</tr>"
    )
    rows = []
    for r in t.iter_rows(named=True):
        cells = [
            *[f"<td{_LEFT[left]}>{_esc(get(r))}</td>" for _, get, left in lead],
            *[_with_ci(r, name, d) for name, _, d in _OBS],
            _paper_cells(r),
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table>{_caption(caption)}<thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


def _scope_words(scope: str, prefix: int) -> str:
    length = "full length" if prefix == 0 else f"length-matched on the first {prefix} rows"
    how = (
        "mean over pairs of per-pair deltas, 95% percentile bootstrap CI over pairs"
        if scope == "utterance"
        else "one spectrum of the N × d matrix of per-utterance row means, bootstrap CI over "
        "utterances"
    )
    return f"scope {scope} ({how}), {length}"


def _tables_section(tables: pl.DataFrame, table: str, title: str) -> str:
    t = tables.filter(pl.col("table") == table)
    parts = [f"<h2>{_esc(title)}</h2>"]
    if t.height == 0:
        return parts[0] + "<p>No pairs survived the threshold: nothing to tabulate.</p>"
    for (scope, prefix), g in t.group_by("scope", "prefix", maintain_order=True):
        caption = f"{title}, {_scope_words(scope, prefix)}; every model × component × condition."
        body = _delta_table_html(g, caption)
        if scope == "utterance" and prefix == 0:
            parts.append(body)
        else:
            label = "full length" if prefix == 0 else f"length-matched, first {prefix} rows"
            parts.append(
                f"<details><summary>{_esc(f'scope {scope}, {label}')}</summary>{body}</details>"
            )
    return "".join(parts)


def _figure_html(name: str, fig: alt.TopLevelMixin | str | Path, caption: str) -> str:
    if isinstance(fig, (str, Path)):
        data = base64.b64encode(Path(fig).read_bytes()).decode()
        body = f"<img alt='{_esc(caption)}' src='data:image/png;base64,{data}'>"
    else:
        body = chart_svg(fig)
    return f"<figure id='fig-{_esc(name)}'>{body}<figcaption>{_esc(caption)}</figcaption></figure>"


def _figures(figures: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """Charts by name, or from a directory: ``<name>.png`` for each known figure name."""
    if isinstance(figures, Mapping):
        return dict(figures)
    d = Path(figures)
    found = {name: d / f"{name}.png" for name in FIGURES if (d / f"{name}.png").is_file()}
    missing = sorted(set(FIGURES) - set(found))
    if missing:
        raise FileNotFoundError(f"figures missing from {d}: {', '.join(missing)}")
    return found


# --------------------------------------------------------------------------- summary


def _headline_html(tables: pl.DataFrame, k: int) -> str:
    """Hell vs clean at the final layer, scope utterance, at K: full length and the shortest
    length-matched prefix, per model x component."""
    t = tables.filter(
        (pl.col("table") == TABLE_NAMES["final"])
        & (pl.col("scope") == "utterance")
        & (pl.col("condition") == HELL)
        & (pl.col("k") == k)
    )
    if t.height == 0:
        return "<p>No pair survived the threshold: there is no headline cell.</p>"
    matched = sorted(p for p in set(t["prefix"]) if p > 0)
    t = t.filter(pl.col("prefix").is_in([0, *matched[:1]])).sort("model", "prefix")
    caption = (
        f"Headline: hell (every kept stressed pair) vs its clean twins at the final decoder "
        f"layer, K = {k}, per-utterance scope: mean over pairs of the per-pair delta with its "
        "95% percentile bootstrap CI over pairs. Length-matched rows compare only the first L "
        "decoded positions, since hallucinations run long and length alone moves Kf. The "
        "paper's values (hell vs clean, K = 50) sit beside ours where it reports one."
    )
    return _delta_table_html(t, caption, _HEADLINE_LEAD)


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


def _summary_html(
    tables: pl.DataFrame,
    figs: Mapping[str, Any],
    pair_counts: pl.DataFrame,
    config: Mapping[str, Any],
    rejected: pl.DataFrame | None,
    pairs: pl.DataFrame | None,
) -> str:
    ks = list(config.get("metrics", {}).get("k", [PAPER_K]))
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
        + _headline_html(tables, k)
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
    from .detect import METHODS

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
        "decodes, stressed = stressed decodes only. 95% stratified bootstrap CIs over "
        "utterances."
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
        "same data, which favours the baseline): paired bootstrap over utterances, the same "
        "replicates for both methods, 95% CI."
    )
    return out + (
        f"<table>{_caption(caption)}<thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _theory_html(table: pl.DataFrame) -> str:
    cols = [c for c in _THEORY_COLS if c in table.columns]
    pooled = table.filter(pl.col("layer").is_null()) if "layer" in table.columns else table
    out = _frame_html(
        pooled.select([c for c in cols if c != "layer"]),
        "Theorem 1's quantities measured on the real decoders, per model and condition: "
        "medians over the sampled utterances and decoder layers (randomized power iteration "
        "on Jacobian-vector products), Theorem 1's hypotheses read at those medians, and the "
        "regime of the nearest simulated cell.",
    )
    if "layer" in table.columns and pooled.height < table.height:
        per_layer = table.filter(pl.col("layer").is_not_null()).select(cols)
        out += (
            "<details><summary>per decoder layer</summary>"
            + _frame_html(per_layer, "The same quantities per decoder layer (medians over the "
                                     "sampled utterances).")
            + "</details>"
        )  # fmt: skip
    return out


def _extra_html(
    title: str, table: str | Path, png: str | Path | None, comparison: pl.DataFrame | None
) -> str:
    df = pl.read_csv(table)
    if {"method", "auroc"} <= set(df.columns):
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


def _read(frame: pl.DataFrame | str | Path) -> pl.DataFrame:
    if isinstance(frame, pl.DataFrame):
        return frame
    p = Path(frame)
    return pl.read_csv(p) if p.suffix == ".csv" else pl.read_parquet(p)


def write_report(
    out_html: str | Path,
    tables_dir: str | Path,
    figures: Mapping[str, Any] | str | Path,
    pair_counts: pl.DataFrame | str | Path,
    config: Mapping[str, Any],
    versions: Mapping[str, str] | None = None,
    extras: Sequence[tuple[str, str | Path, str | Path | None]] = (),
    *,
    rejected: pl.DataFrame | str | Path | None = None,
    pairs: pl.DataFrame | Sequence[str | Path] | None = None,
    comparisons: Sequence[str | Path] = (),
) -> Path:
    """Write the report page to ``out_html``.

    ``extras``: further sections "beyond the paper", each (title, CSV table, PNG figure or
    None), e.g. the measured theory and the detector's results; ``comparisons``: the
    detector's comparison.csv files (ours minus each baseline), shown under its results.

    ``tables_dir`` holds the tables stage's ``tables.parquet``; ``figures`` is a mapping name ->
    altair chart (inlined as SVG) or -> PNG path, or a directory holding ``<name>.png`` for
    every name of :data:`whisper_spi.figures.FIGURES`; ``pair_counts`` a frame or a file
    (Parquet or CSV) of the ``pair_counts`` contract; ``versions`` defaults to
    :func:`collect_versions`. ``rejected`` (contract ``rejected``) and ``pairs`` (contract
    ``pairs``, a frame or files) feed the summary's lines on rejected audio and on
    configured prefix lengths (``config['decode']['prefix_lengths']``) no pair reaches.
    """
    tables_dir = Path(tables_dir)
    tables = schemas.scan_parquet([tables_dir / "tables.parquet"], "tables").collect()
    pair_counts = _read(pair_counts)
    if rejected is not None and not isinstance(rejected, pl.DataFrame):
        rejected = read_rejected(rejected)
    if pairs is not None and not isinstance(pairs, pl.DataFrame):
        pairs = pl.read_parquet([str(p) for p in pairs])
    comparison = pl.concat([pl.read_csv(c) for c in comparisons]) if comparisons else None
    versions = dict(versions or collect_versions())
    figs = _figures(figures)
    if "phase_diagram" not in figs:
        raise ValueError("write_report: the phase diagram (figure 'phase_diagram') is required")

    models = sorted(set(pair_counts["model"]) | set(tables["model"]))
    conditions = list(dict.fromkeys([*pair_counts["condition"], *tables["condition"]]))
    config_yaml = yaml.safe_dump(dict(config), sort_keys=False, allow_unicode=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")

    body = [
        "<h1>whisper-spi: spectral dynamics of Whisper hallucination</h1>",
        f"<p class='note'>Reproduction of Viakhirev et al., arXiv 2604.08591. Generated {stamp}. "
        f"Models: <b>{_esc(', '.join(models))}</b>. Conditions: "
        f"<b>{_esc(', '.join(['clean', *conditions]))}</b>.</p>",
        _summary_html(tables, figs, pair_counts, config, rejected, pairs),
        "<p class='note'>A pair is a stressed utterance and its clean twin, kept when the "
        "stressed WER exceeds the threshold; hell is the union of the three stresses' kept "
        "pairs. Deltas: ΔN_eff % = 100 (s − c) / c; Δlog10 Kf and Δα are differences. Scope "
        "utterance: mean over pairs of per-pair deltas (95% percentile bootstrap CI over pairs); "
        "scope pooled: one spectrum of the N × d matrix of per-utterance row means (bootstrap "
        "over utterances). Paper values (hell vs clean, K = 50, from a digest of the paper, "
        "layer aggregation unstated) sit beside ours; 'approx' marks a stand-in model.</p>",
        _tables_section(
            tables, TABLE_NAMES["final"], "Table 1: stressed vs clean, final decoder layer"
        ),
        _tables_section(
            tables, TABLE_NAMES["mean"], "Table 2: stressed vs clean, mean over decoder layers"
        ),
        "<h2>Figures</h2>",
        *[
            _figure_html(name, fig, FIGURES.get(name, name))
            for name, fig in figs.items()
            if name != "phase_diagram"  # in the summary
        ],
        *[_extra_html(title, table, png, comparison) for title, table, png in extras],
        "<h2>Configuration</h2>",
        f"<pre>{_esc(config_yaml)}</pre>",
        "<h2>Versions</h2>",
        _frame_html(
            pl.DataFrame({"package": list(versions), "version": list(versions.values())}),
            "The Python and package versions this report was made with.",
        ),
    ]
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<title>whisper-spi report</title>"
        f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>"
    )
    out = Path(out_html)
    with atomic_path(out, suffix=".html.tmp") as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out
