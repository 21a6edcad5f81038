"""whisper_spi.analysis.figures and whisper_spi.report on the synthetic pipeline of test_tables."""

from __future__ import annotations

import re
import struct
import zlib

import altair as alt
import polars as pl
import pytest

from tests.test_tables import MODELS, run_pipeline, write_dataset
from whisper_spi import charts, report, schemas
from whisper_spi.analysis import figures
from whisper_spi.analysis.options import MetricOptions
from whisper_spi.report.findings import PAPER_CLAIMS

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
    html_path, png_path = charts.save_chart(chart, tmp_path / "sub" / "phase")
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


REJECTED = pl.DataFrame(
    {
        "path": ["/data/LibriSpeech/test-clean/1/2/1-2-0003.flac", "/data/x/1/2/1-2-0009.flac"],
        "reason": ["empty audio", "unreadable: Error opening file"],
    }
)


def _summary(page: str) -> str:
    return re.search(r"<section class='summary' id='summary'>(.*?)</section>", page, re.S)[1]


def test_report_opens_with_a_summary(frames, tmp_path):
    root, out = frames
    res = root / "results"
    charts = figures.make_figures(out["layer_summary"], out["rank_profile"])
    config = {"decode": {"prefix_lengths": [16, 500]}, "metrics": {"k": [10, 50]}}
    page = report.write_report(
        tmp_path / "report.html", res / "tables", charts, out["pair_counts"], config,
        {"python": "3.11"}, rejected=REJECTED,
        pairs=[res / "pairs" / m / "pairs.parquet" for m in MODELS],
        findings_out=tmp_path / "findings.csv",
    ).read_text()  # fmt: skip
    summary = _summary(page)
    assert page.index("id='summary'") < page.index("Table 1") < page.index("<h2>Figures</h2>")
    # the findings open the page: a line per paper claim and model, also as CSV and Markdown
    assert page.index("<h1>") < page.index("id='findings'") < page.index("id='summary'")
    found = schemas.read_csv(tmp_path / "findings.csv", "findings")
    for model in MODELS:
        assert found.filter((pl.col("family") == "paper") & (pl.col("model") == model)).height == (
            len(PAPER_CLAIMS)
        )
    assert (tmp_path / "findings.md").read_text().startswith("# Findings")
    assert "fig-phase_diagram" in summary and page.count("fig-phase_diagram") == 1
    # the headline cells: hell vs clean, final layer, K = 50, scope utterance, full length
    head = out["tables"].filter(
        (pl.col("table") == "table1_final_layer") & (pl.col("scope") == "utterance")
        & (pl.col("condition") == "hell") & (pl.col("k") == 50) & (pl.col("prefix") == 0)
    )  # fmt: skip
    assert head.height == sum(3 for _ in MODELS)
    for r in head.iter_rows(named=True):
        lo, hi = r["d_neff_pct_ci_low"], r["d_neff_pct_ci_high"]
        assert f"{r['d_neff_pct']:+.2f} [{lo:+.2f}, {hi:+.2f}]" in summary
    for r in out["pair_counts"].iter_rows(named=True):  # the pair counts, every row
        assert f"<td class='l'>{r['condition']}</td><td>{r['n_total']}</td>" in summary
    # rejected inputs: the count and each reason
    assert "Rejected inputs: 2 audio files" in summary
    assert "empty audio (1)" in summary and "unreadable: Error opening file (1)" in summary
    assert "1/2/1-2-0003.flac" in summary
    # the prefix no pair reaches is named for each model, the one reached is not
    for model in MODELS:
        assert f"decode.prefix_lengths 500: no length-matched rows for {model}," in summary
        assert f"decode.prefix_lengths 16: no length-matched rows for {model}" not in summary


def test_every_table_and_figure_has_a_caption_in_words(frames, tmp_path):
    root, out = frames
    charts = figures.make_figures(out["layer_summary"], out["rank_profile"])
    page = report.write_report(
        tmp_path / "report.html", root / "results" / "tables", charts, out["pair_counts"],
        {"decode": {"prefix_lengths": [16]}}, {"python": "3.11"}, rejected=REJECTED,
    ).read_text()  # fmt: skip
    tables = re.findall(r"<table>(.*?)</table>", page, re.S)
    assert len(tables) >= 4
    for t in tables:
        caption = re.match(r"<caption>(.*?)</caption>", t, re.S)
        assert caption and len(caption[1].split()) >= 5, t[:200]
    captions = re.findall(r"<figure id='fig-([^']+)'>.*?<figcaption>(.*?)</figcaption>", page, re.S)
    assert {name for name, _ in captions} == set(figures.FIGURES)
    for name, caption in captions:
        assert len(caption.split()) >= 8 and caption != name
    assert "<th class='l'>n_pairs</th>" not in page and "<th class='l'>kept pairs</th>" in page


def test_rejected_audio_and_unreached_prefixes_at_the_end_of_a_run(frames, tmp_path):
    from whisper_spi import schemas
    from whisper_spi.skipped import end_of_run_lines

    root, _ = frames
    res = root / "results"
    assert end_of_run_lines(tmp_path, [16], MODELS) == []  # nothing built yet: nothing to say
    schemas.write_parquet(REJECTED, "rejected", tmp_path / "corpus" / "rejected.parquet")
    (line,) = end_of_run_lines(tmp_path, [16], MODELS)
    assert line.startswith("whisper-spi: 2 input audio files were rejected")
    assert "1-2-0003.flac: empty audio; 1 more" in line and "rejected.parquet" in line

    lines = end_of_run_lines(res, [16, 500], MODELS)
    pairs = pl.read_parquet([res / "pairs" / m / "pairs.parquet" for m in MODELS])
    for model in MODELS:
        kept = pairs.filter((pl.col("model") == model) & (pl.col("condition") != "hell"))
        longest = kept.select(pl.min_horizontal("n_tokens_clean", "n_tokens_stressed")).max()
        assert (
            f"whisper-spi: decode.prefix_lengths 500: no length-matched rows for {model}, since "
            f"none of its {kept.height} kept pairs has 500 rows on both sides (the longest has "
            f"{longest.item()} decoded tokens on its shorter side)."
        ) in lines
    assert not any("prefix_lengths 16" in line for line in lines)


def test_taxonomy_sections_render_with_captions(frames, tmp_path):
    from tests.test_taxonomy import _labels
    from whisper_spi import schemas
    from whisper_spi.detect.by_type import CONTRASTS
    from whisper_spi.taxonomy.run import summarize

    root, out = frames
    schemas.write_parquet(_labels(), "taxonomy", tmp_path / "labels.parquet")
    summarize([tmp_path / "labels.parquet"], ["silence"], 5, tmp_path, tmp_path / "taxonomy")
    by_type = schemas.frame_from_rows(
        [
            {"model": "tiny", "setting": "all", "positive": p, "negative": n, "method": m,
             "auroc": 0.7, "auroc_lo": 0.6, "auroc_hi": 0.8, "n_pos": 3, "n_neg": 4,
             "n_speakers": 2}
            for p, n in CONTRASTS for m in ("ours", "ours_no_T")
        ],
        "detect_by_type",
    )  # fmt: skip
    schemas.write_csv(by_type, "detect_by_type", tmp_path / "by_type.csv")
    extras = [
        ("Hallucination types", tmp_path / "taxonomy_counts.csv", tmp_path / "taxonomy.png"),
        ("Non-speech inputs", tmp_path / "nonspeech_rate.csv", None),
        ("Bag of hallucinations", tmp_path / "bag_of_hallucinations.csv", None),
        ("Detection by hallucination type: tiny", tmp_path / "by_type.csv", None),
    ]
    charts = figures.make_figures(out["layer_summary"], out["rank_profile"])
    page = report.write_report(
        tmp_path / "report.html", root / "results" / "tables", charts, out["pair_counts"],
        {"decode": {"prefix_lengths": [16]}}, {"python": "3.11"}, extras,
    ).read_text()  # fmt: skip
    expected = (
        "Decodes per model x condition x error type", "any non-empty transcript",
        "Bag of hallucinations: the most frequent", "0.70 [0.60, 0.80]",
        "fabrication vs grounded_error", "Share of decodes of each error type",
    )  # fmt: skip
    for words in expected:
        assert words in page, words
    assert "thank you" in page  # the bag's top phrase
