"""The report page's HTML pieces: styles, escaping, captioned tables and figures."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import altair as alt
import polars as pl

from whisper_spi import schemas
from whisper_spi.analysis.figures import FIGURES
from whisper_spi.analysis.markdown import number
from whisper_spi.charts import chart_svg

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


def _read(frame: pl.DataFrame | str | Path, name: str) -> pl.DataFrame:
    """``frame`` itself, or its file (CSV or Parquet) read under contract ``name``."""
    if isinstance(frame, pl.DataFrame):
        return frame
    p = Path(frame)
    return (
        schemas.read_csv(p, name)
        if p.suffix == ".csv"
        else schemas.scan_parquet([p], name).collect()
    )
