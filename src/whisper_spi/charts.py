"""Saving altair charts: HTML that opens offline, PNG, and inline SVG for the report."""

from __future__ import annotations

from pathlib import Path

import altair as alt
import vl_convert as vlc

from whisper_spi.io import atomic_path

__all__ = ["chart_svg", "save_chart"]


def chart_svg(chart: alt.TopLevelMixin) -> str:
    """The chart as a standalone SVG string (no script, no network)."""
    svg = vlc.vegalite_to_svg(chart.to_dict())
    return svg[svg.index("<svg") :] if "<svg" in svg else svg


def save_chart(chart: alt.TopLevelMixin, stem: str | Path) -> tuple[Path, Path]:
    """Write ``stem.html`` (Vega bundled inline: opens offline) and ``stem.png``, atomically."""
    stem = Path(stem)
    spec = chart.to_dict()
    html = vlc.vegalite_to_html(spec, bundle=True)
    png = vlc.vegalite_to_png(spec, scale=2)
    html_path, png_path = stem.with_suffix(".html"), stem.with_suffix(".png")
    with atomic_path(html_path, suffix=".html.tmp") as tmp:
        tmp.write_text(html, encoding="utf-8")
    with atomic_path(png_path, suffix=".png.tmp") as tmp:
        tmp.write_bytes(png)
    return html_path, png_path
