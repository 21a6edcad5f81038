"""One self-contained HTML report: tables, figures, pair counts, config and versions.

The page opens with the findings (one line per claim with its verdict, the interval it rests
on and, if undecided, the n that would decide it: :mod:`whisper_spi.report.findings`), then a
summary (the headline cells with their intervals, the phase diagram, the pair counts, what was
left out), then the full tables, the figures and the sections beyond the paper. Every table
and figure carries a caption in words, and the page fits a 1,400 px wide window. It works
offline: figures are inline SVG rendered by vl-convert (or PNGs embedded as ``data:`` URIs),
styles are inline, and there is no script to fetch.
"""

from __future__ import annotations

import importlib.metadata
import platform
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from whisper_spi import schemas
from whisper_spi.analysis.figures import FIGURES
from whisper_spi.analysis.markdown import scope_sentence
from whisper_spi.analysis.tables import TABLE_NAMES
from whisper_spi.io import atomic_path
from whisper_spi.registry import DEFAULT_FRONT_END, FRONT_ENDS
from whisper_spi.report.findings import findings_from_files, write_findings
from whisper_spi.report.html import _CSS, _esc, _figure_html, _figures, _frame_html, _read
from whisper_spi.report.sections import (
    _extra_html,
    _summary_html,
    _tables_section,
    findings_html,
    report_centered,
    report_options,
)
from whisper_spi.skipped import read_rejected

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


def collect_versions() -> dict[str, str]:
    """Python and package versions, read from the installed metadata (nothing imported)."""
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _front_end(config) -> str:
    """The front end the decodes used (config decode.features; the schema's default when a
    partial config leaves it out), as the report's header names it."""
    name = config.get("decode", {}).get("features", DEFAULT_FRONT_END)
    return f"{name} ({FRONT_ENDS[name]})"


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
    theory: str | Path | None = None,
    by_type: Sequence[str | Path] = (),
    mitigation: str | Path | None = None,
    findings_out: str | Path | None = None,
) -> Path:
    """Write the report page to ``out_html``.

    ``extras``: further sections "beyond the paper", each (title, CSV table, PNG figure or
    None), e.g. the measured theory and the detector's results; ``comparisons``: the
    detector's comparison.csv files (ours minus each baseline), shown under its results.

    ``tables_dir`` holds the tables stage's ``tables.parquet``; ``figures`` is a mapping name ->
    altair chart (inlined as SVG) or -> PNG path, or a directory holding ``<name>.png`` for
    every name of :data:`whisper_spi.analysis.figures.FIGURES`; ``pair_counts`` a frame or a file
    (Parquet or CSV) of the ``pair_counts`` contract; ``versions`` defaults to
    :func:`collect_versions`. ``rejected`` (contract ``rejected``) and ``pairs`` (contract
    ``pairs``, a frame or files) feed the summary's lines on rejected audio and on
    configured prefix lengths (``config['decode']['prefix_lengths']``) no pair reaches.

    The Findings section opens the page: the claims the tables, ``comparisons`` and, where
    given, ``theory`` (theory_table.csv), ``by_type`` (the detector's by_type.csv files) and
    ``mitigation`` (mitigation/mitigation.csv) support; ``findings_out``: also write them to
    that CSV (contract ``findings``) with its Markdown beside it.
    """
    tables_dir = Path(tables_dir)
    tables = schemas.scan_parquet([tables_dir / "tables.parquet"], "tables").collect()
    pair_counts = _read(pair_counts, "pair_counts")
    if rejected is not None and not isinstance(rejected, pl.DataFrame):
        rejected = read_rejected(rejected)
    if pairs is not None and not isinstance(pairs, pl.DataFrame):
        pairs = schemas.scan_parquet(pairs, "pairs").collect()
    comparison = (
        pl.concat([schemas.read_csv(c, "detect_comparison") for c in comparisons])
        if comparisons
        else None
    )
    versions = dict(versions or collect_versions())
    figs = _figures(figures)
    if "phase_diagram" not in figs:
        raise ValueError("write_report: the phase diagram (figure 'phase_diagram') is required")

    opts = report_options(config)
    findings = findings_from_files(
        tables,
        comparisons=comparisons,
        theory=theory,
        by_type=by_type,
        mitigation=mitigation,
        paper_models=opts.paper_models,
    )
    if findings_out is not None:
        write_findings(findings, findings_out)
    models = sorted(set(pair_counts["model"]) | set(tables["model"]))
    conditions = list(dict.fromkeys([*pair_counts["condition"], *tables["condition"]]))
    config_yaml = yaml.safe_dump(dict(config), sort_keys=False, allow_unicode=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")

    body = [
        "<h1>whisper-spi: spectral dynamics of Whisper hallucination</h1>",
        f"<p class='note'>Reproduction of Viakhirev et al., arXiv 2604.08591. Generated {stamp}. "
        f"Models: <b>{_esc(', '.join(models))}</b>. Conditions: "
        f"<b>{_esc(', '.join(['clean', *conditions]))}</b>. Log-mel front end: "
        f"<b>{_esc(_front_end(config))}</b>.</p>",
        findings_html(findings),
        _summary_html(tables, figs, pair_counts, config, rejected, pairs),
        "<p class='note'>A pair is a stressed utterance and its clean twin, kept when the "
        "stressed WER exceeds the threshold; hell is the union of the three stresses' kept "
        "pairs. Deltas: ΔN_eff % = 100 (s − c) / c; Δlog10 Kf and Δα are differences; "
        "'adj.' = length-adjusted. "
        + _esc(scope_sentence("utterance", opts.resample_unit, opts.ci))
        + " "
        + _esc(scope_sentence("pooled", opts.resample_unit, opts.ci, opts.pooled_fraction))
        + " Paper values (hell vs clean, K = 50, from a digest of the paper, layer "
        "aggregation unstated) sit beside the rows closest to its definition (every kept "
        "pair, full length); 'approx' marks a stand-in model.</p>",
        _tables_section(
            tables,
            TABLE_NAMES["final"],
            "Table 1: stressed vs clean, final decoder layer",
            opts,
            report_centered(config),
        ),
        _tables_section(
            tables,
            TABLE_NAMES["mean"],
            "Table 2: stressed vs clean, mean over decoder layers",
            opts,
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
