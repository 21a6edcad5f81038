"""One self-contained HTML report: tables, figures, pair counts, config and versions.

The page works offline: figures are inline SVG rendered by vl-convert (or PNGs embedded as
``data:`` URIs), styles are inline, and there is no script or stylesheet to fetch.
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
from .analysis.markdown import DIGITS, number, sign_word, signed
from .analysis.tables import TABLE_NAMES
from .figures import FIGURES, chart_svg
from .io import atomic_path

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
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1500px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0 1.5em; }
th, td { border: 1px solid #ddd; padding: .25em .5em; text-align: right; }
th { background: #f3f3f3; } td.l, th.l { text-align: left; }
td.no { background: #fde2e2; } td.yes { background: #e3f6e3; }
figure { margin: 1em 0 2em; } figcaption { font-size: .9em; color: #555; max-width: 60em; }
pre { background: #f7f7f7; padding: 1em; overflow-x: auto; font-size: .85em; }
.note { color: #555; font-size: .9em; max-width: 70em; }
details > summary { cursor: pointer; font-weight: 600; margin: .5em 0; }
"""


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


def _frame_html(df: pl.DataFrame) -> str:
    """A plain HTML table of a frame (floats to 4 significant digits)."""
    head = "".join(f"<th class='l'>{_esc(c)}</th>" for c in df.columns)
    rows = []
    for r in df.iter_rows():
        cells = []
        for v in r:
            if isinstance(v, float) or v is None:
                cells.append(f"<td>{number(v, '.4g')}</td>")
            else:
                cells.append(f"<td class='l'>{_esc(v)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


_TITLES = {"d_neff_pct": "ΔN_eff %", "d_log10_kf": "Δlog10 Kf", "d_alpha": "Δα"}
_OBS = tuple((name, _TITLES[name], d) for name, d in DIGITS.items())
_SIGNS = ("sign_agrees_neff", "sign_agrees_log10_kf", "sign_agrees_alpha")


def _delta_table_html(t: pl.DataFrame) -> str:
    head = (
        "<tr><th class='l'>model</th><th class='l'>component</th><th class='l'>condition</th>"
        "<th>K</th><th>n</th>"
        + "".join(f"<th>{_esc(title)} [95% CI]</th>" for _, title, _ in _OBS)
        + "<th class='l'>paper model</th>"
        + "".join(f"<th>paper {_esc(title)}</th>" for _, title, _ in _OBS)
        + "<th>sign agrees (N, Kf, α)</th></tr>"
    )
    rows = []
    for r in t.iter_rows(named=True):
        cells = [
            f"<td class='l'>{_esc(r['model'])}</td>",
            f"<td class='l'>{_esc(r['component'])}</td>",
            f"<td class='l'>{_esc(r['condition'])}</td>",
            f"<td>{r['k']}</td>",
            f"<td>{r['n']}</td>",
        ]
        for name, _, d in _OBS:
            ci = ""
            if r[f"{name}_ci_low"] is not None:
                ci = f" [{signed(r[f'{name}_ci_low'], d)}, {signed(r[f'{name}_ci_high'], d)}]"
            cells.append(f"<td>{signed(r[name], d)}{ci}</td>")
        if r["paper_model"] is None:
            cells.append("<td class='l'>–</td>" + "<td>–</td>" * 3 + "<td>–</td>")
        else:
            cells.append(f"<td class='l'>{_esc(r['paper_model'])} ({_esc(r['paper_match'])})</td>")
            cells += [f"<td>{signed(r['paper_' + name], d)}</td>" for name, _, d in _OBS]
            signs = [r[s] for s in _SIGNS]
            cls = "yes" if all(s is True for s in signs) else "no"
            txt = ", ".join(sign_word(s) for s in signs)
            cells.append(f"<td class='{cls}'>{txt}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


def _tables_section(tables: pl.DataFrame, table: str, title: str) -> str:
    t = tables.filter(pl.col("table") == table)
    parts = [f"<h2>{_esc(title)}</h2>"]
    if t.height == 0:
        return parts[0] + "<p>No pairs survived the threshold: nothing to tabulate.</p>"
    for (scope, prefix), g in t.group_by("scope", "prefix", maintain_order=True):
        label = "full length" if prefix == 0 else f"length-matched, first {prefix} rows"
        heading = f"scope {scope}, {label}"
        body = _delta_table_html(g)
        if scope == "utterance" and prefix == 0:
            parts.append(f"<h3>{_esc(heading)}</h3>{body}")
        else:
            parts.append(f"<details><summary>{_esc(heading)}</summary>{body}</details>")
    return "".join(parts)


def _figure_html(name: str, fig: alt.TopLevelMixin | str | Path) -> str:
    if isinstance(fig, (str, Path)):
        data = base64.b64encode(Path(fig).read_bytes()).decode()
        body = f"<img alt='{_esc(name)}' style='max-width:100%' src='data:image/png;base64,{data}'>"
    else:
        body = chart_svg(fig)
    caption = FIGURES.get(name, name)
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


def _extra_html(title: str, table: str | Path, png: str | Path | None) -> str:
    parts = [f"<h2>{_esc(title)}</h2>", _frame_html(pl.read_csv(table))]
    if png:
        parts.append(_figure_html(Path(png).stem, png))
    return "".join(parts)


def write_report(
    out_html: str | Path,
    tables_dir: str | Path,
    figures: Mapping[str, Any] | str | Path,
    pair_counts: pl.DataFrame | str | Path,
    config: Mapping[str, Any],
    versions: Mapping[str, str] | None = None,
    extras: Sequence[tuple[str, str | Path, str | Path | None]] = (),
) -> Path:
    """Write the report page to ``out_html``.

    ``extras``: further sections "beyond the paper", each (title, CSV table, PNG figure or
    None), e.g. the measured theory and the detector's results.

    ``tables_dir`` holds the tables stage's ``tables.parquet``; ``figures`` is a mapping name ->
    altair chart (inlined as SVG) or -> PNG path, or a directory holding ``<name>.png`` for
    every name of :data:`whisper_spi.figures.FIGURES`; ``pair_counts`` a frame or a file
    (Parquet or CSV) of the ``pair_counts`` contract; ``versions`` defaults to
    :func:`collect_versions`.
    """
    tables_dir = Path(tables_dir)
    tables = schemas.scan_parquet([tables_dir / "tables.parquet"], "tables").collect()
    if not isinstance(pair_counts, pl.DataFrame):
        p = Path(pair_counts)
        if p.suffix == ".csv":
            pair_counts = schemas.read_csv(p, "pair_counts")
        else:
            pair_counts = schemas.scan_parquet([p], "pair_counts").collect()
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
        "<p class='note'>A pair is a stressed utterance and its clean twin, kept when the "
        "stressed WER exceeds the threshold; hell is the union of the three stresses' kept "
        "pairs. Deltas: ΔN_eff % = 100 (s − c) / c; Δlog10 Kf and Δα are differences. Scope "
        "utterance: mean over pairs of per-pair deltas (95% percentile bootstrap CI over pairs); "
        "scope pooled: one spectrum of the N × d matrix of per-utterance row means (bootstrap "
        "over utterances). Paper values (hell vs clean, K = 50, from a digest of the paper, "
        "layer aggregation unstated) sit beside ours; 'approx' marks a stand-in model.</p>",
        "<h2>Pairs per model and condition</h2>",
        _frame_html(pair_counts),
        _tables_section(
            tables, TABLE_NAMES["final"], "Table 1: stressed vs clean, final decoder layer"
        ),
        _tables_section(
            tables, TABLE_NAMES["mean"], "Table 2: stressed vs clean, mean over decoder layers"
        ),
        "<h2>Figures</h2>",
        *[_figure_html(name, fig) for name, fig in figs.items()],
        *[_extra_html(title, table, png) for title, table, png in extras],
        "<h2>Configuration</h2>",
        f"<pre>{_esc(config_yaml)}</pre>",
        "<h2>Versions</h2>",
        _frame_html(pl.DataFrame({"package": list(versions), "version": list(versions.values())})),
    ]
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<title>whisper-spi report</title>"
        f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>"
    )
    out = Path(out_html)
    with atomic_path(out, suffix=".html.tmp") as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out
