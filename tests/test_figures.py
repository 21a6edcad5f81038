"""whisper_spi.figures and whisper_spi.report on the synthetic pipeline of test_tables."""

from __future__ import annotations

import re
import struct
import zlib

import altair as alt
import polars as pl
import pytest

from tests.test_tables import MODELS, run_pipeline, write_dataset
from whisper_spi import figures, report
from whisper_spi.analysis.options import MetricOptions

CONDITIONS = ("time_stretch", "speaker_mix", "gaussian_noise", "hell")


def decode_png(data: bytes) -> tuple[int, int]:
    """Check a PNG fully (signature, chunk CRCs, inflated image size); return (width, height)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r}"
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        pos += 12 + length
    assert header is not None
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and interlace == 0
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color]
    raw = zlib.decompress(idat)
    assert len(raw) == height * (1 + width * channels)  # one filter byte per scanline
    return width, height


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    root = tmp_path_factory.mktemp("fig")
    paths = write_dataset(root / "decode")
    opts = MetricOptions(n_boot=50, pooled_n_boot=10)
    out = run_pipeline(root / "results", paths, opts, seed=3)
    return root, out


def test_charts_build(frames):
    _, out = frames
    charts = figures.make_figures(out["layer_summary"], out["rank_profile"])
    assert set(charts) == set(figures.FIGURES)
    for chart in charts.values():
        assert isinstance(chart, alt.TopLevelMixin)
        chart.to_dict()  # validates against the Vega-Lite schema
    phase = figures.phase_data(out["layer_summary"])
    # one point per model x component x condition, clean included, at each final layer
    assert phase.height == len(MODELS) * 3 * (len(CONDITIONS) + 1)
    assert set(phase["layer"]) == {n - 1 for n in MODELS.values()}
    assert (
        phase.select("neff_lo", "neff_hi", "alpha_lo", "alpha_hi").null_count().sum_horizontal()[0]
        == 0
    )


def test_save_chart_writes_html_and_png(frames, tmp_path):
    _, out = frames
    chart = figures.phase_diagram(out["layer_summary"])
    html_path, png_path = figures.save_chart(chart, tmp_path / "sub" / "phase")
    assert html_path == tmp_path / "sub" / "phase.html" and png_path.suffix == ".png"
    width, height = decode_png(png_path.read_bytes())
    assert width > 100 and height > 100
    html = html_path.read_text()
    assert "<html" in html.lower()
    assert not re.search(r"<script[^>]+src=['\"]?https?://", html)  # vega bundled, no CDN
    assert not list(tmp_path.glob("sub/.*"))  # no temp files left behind


def test_report_self_contained(frames, tmp_path):
    root, out = frames
    charts = figures.make_figures(out["layer_summary"], out["rank_profile"])
    versions = report.collect_versions()
    assert {"python", "torch", "transformers", "polars", "numpy", "whisper-spi"} <= set(versions)
    config = {"seed": 3, "models": {m: "ct2:x" for m in MODELS}, "metrics": {"k": [10, 50]}}
    page = report.write_report(
        tmp_path / "report.html", root / "results" / "tables", charts, out["pair_counts"], config
    ).read_text()
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=['\"]?https?://", page)
    assert "<script" not in page
    assert page.count("<svg") >= len(figures.FIGURES)
    assert "fig-phase_diagram" in page
    for name in (*MODELS, "clean", *CONDITIONS):
        assert name in page
    assert "Table 1" in page and "Table 2" in page and "seed: 3" in page
    assert f"<td class='l'>{versions['polars']}</td>" in page


def test_report_from_png_directory(frames, tmp_path):
    root, out = frames
    figures.make_figures(out["layer_summary"], out["rank_profile"], tmp_path / "figs")
    page = report.write_report(
        tmp_path / "r.html",
        root / "results" / "tables",
        tmp_path / "figs",
        root / "results" / "tables" / "pair_counts.csv",
        {"seed": 3},
        {"python": "3.11"},
    ).read_text()
    assert page.count("data:image/png;base64,") == len(figures.FIGURES)
    with pytest.raises(FileNotFoundError):
        report.write_report(tmp_path / "x.html", root / "results" / "tables", tmp_path,
                            pl.DataFrame(), {})  # fmt: skip


def test_nothing_kept_still_reports(tmp_path):
    """No pair above the threshold: empty tables, placeholder figures, a report all the same."""
    paths = write_dataset(tmp_path / "decode")
    out = run_pipeline(tmp_path / "results", paths, MetricOptions(n_boot=10, pooled_n_boot=2),
                       threshold=5.0)  # fmt: skip
    assert out["tables"].height == 0 and out["pair_counts"]["n_pairs"].sum() == 0
    charts = figures.make_figures(out["layer_summary"], out["rank_profile"], tmp_path / "figs")
    assert decode_png((tmp_path / "figs" / "phase_diagram.png").read_bytes())[0] > 100
    page = report.write_report(tmp_path / "r.html", tmp_path / "results" / "tables", charts,
                               out["pair_counts"], {})  # fmt: skip
    assert "nothing to tabulate" in page.read_text()
