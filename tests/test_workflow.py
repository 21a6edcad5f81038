"""The whole workflow on a small demo config, through `snakemake --profile local -j 8`."""

from __future__ import annotations

import re
import shutil
import struct
import zipfile

import polars as pl
import pytest
import yaml

from .snakemake_runner import CONFIG, job_counts, snakemake

pytestmark = pytest.mark.slow

FIGURES = ["trajectories", "phase_diagram", "tail_energy", "scree", "theory_phase"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("workflow")
    snakemake(workdir, "-j", "8")
    return workdir


def test_tables_figures_and_report_are_written(run):
    res = run / "results"
    for name in ["table1_final_layer", "table2_layer_mean", "pair_counts"]:
        assert pl.read_csv(res / "tables" / f"{name}.csv").height > 0
        assert (res / "tables" / f"{name}.md").read_text().startswith(("#", "|"))
    tables = pl.read_parquet(res / "tables" / "tables.parquet")
    assert set(tables["model"]) == {"tiny-en"}
    assert {"time_stretch", "speaker_mix", "gaussian_noise", "hell"} <= set(tables["condition"])
    for name in FIGURES:
        png = (res / "figures" / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk
        assert width > 100 and height > 100 and len(png) > 5000
        assert (res / "figures" / f"{name}.html").stat().st_size > 1000
    report = (res / "report.html").read_text()
    for word in ["tiny-en", "clean", "time_stretch", "speaker_mix", "gaussian_noise", "hell"]:
        assert word in report
    assert not re.search(r"""(src|href)=["']https?://""", report)


def test_snakemake_report_zip(run):
    """Snakemake's own report beside ours: every report()-flagged table and figure inside."""
    snakemake(run, "--report", "report.zip")
    names = zipfile.ZipFile(run / "report.zip").namelist()
    for f in ["table1_final_layer.csv", "pair_counts.csv", "phase_diagram.png", "roc.png",
              "theory_table.csv", "report.html"]:  # fmt: skip
        assert any(n.endswith(f) for n in names), f
    assert any(n.endswith("report.html") and "/results/" not in n for n in names)


def test_report_renders_offline_in_chromium(run):
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Debian package chromium is missing (the README's test command installs it)")
    failed, external = [], []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        page = browser.new_page()
        page.on("requestfailed", lambda r: failed.append(r.url))

        def block(route):  # network disabled: anything but the file itself is an error
            external.append(route.request.url)
            route.abort()

        page.route(re.compile(r"^(https?|wss?)://"), block)
        page.goto((run / "results" / "report.html").as_uri(), wait_until="load")
        figures = page.eval_on_selector_all(
            "figure",
            """els => els.map(f => {
                const svg = f.querySelector('svg'), img = f.querySelector('img');
                if (svg) { const b = svg.getBoundingClientRect();
                           return {kind: 'svg', w: b.width, h: b.height,
                                   n: svg.querySelectorAll('path,rect,text,line').length}; }
                if (img) return {kind: 'img', w: img.naturalWidth, h: img.naturalHeight, n: 1};
                return {kind: 'none', w: 0, h: 0, n: 0};
            })""",
        )
        browser.close()
    assert failed == [] and external == []
    assert len(figures) >= len(FIGURES) + 1  # + the ROC curve of the detector
    for fig in figures:
        assert fig["kind"] != "none" and fig["w"] > 100 and fig["h"] > 100 and fig["n"] > 0, fig


def test_one_layer_metrics_job_reruns_alone(run):
    target = "results/metrics/tiny-en/clean/layer-0.parquet"
    before = pl.read_parquet(run / target)
    out = snakemake(run, "-j", "1", "--force", target)
    assert job_counts(out) == {"layer_metrics": 1}
    assert pl.read_parquet(run / target).equals(before)


def test_one_decode_shard_reruns_alone_and_identically(run):
    shard = "results/decode/tiny-en/speaker_mix/shard-001"
    before = [pl.read_parquet(run / shard / f) for f in ("transcripts.parquet", "layer-3.parquet")]
    out = snakemake(run, "-j", "1", "--force", f"{shard}/transcripts.parquet")
    assert job_counts(out) == {"decode_tiny_en": 1}
    after = [pl.read_parquet(run / shard / f) for f in ("transcripts.parquet", "layer-3.parquet")]
    for a, b in zip(before, after, strict=True):
        assert a.equals(b)


def test_changing_a_table_option_reruns_only_downstream(run, tmp_path):
    snakemake(run, "-j", "8")  # bring everything downstream of the forced reruns up to date
    assert job_counts(snakemake(run, "-n")) == {}
    config = yaml.safe_load(CONFIG.read_text())
    config["metrics"]["n_boot"] = 150
    changed = tmp_path / "config.yaml"
    changed.write_text(yaml.safe_dump(config))
    jobs = job_counts(snakemake(run, "-n", config=changed))
    assert set(jobs) == {"tables", "figures", "report", "all"}

    config["metrics"]["k"] = [10, 40]
    config["metrics"]["figure_k"] = 40
    changed.write_text(yaml.safe_dump(config))
    jobs = job_counts(snakemake(run, "-n", config=changed))
    assert jobs["layer_metrics"] == 16 and "decode_tiny_en" not in jobs and "stress" not in jobs
    assert jobs["pooled"] == 4  # one per decoder layer of tiny.en
