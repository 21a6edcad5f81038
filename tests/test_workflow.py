"""The whole workflow on a small demo config, through `snakemake --profile local -j 8`."""

from __future__ import annotations

import json
import re
import shutil
import struct
import zipfile

import polars as pl
import pytest
import yaml

from .snakemake_runner import CONFIG, ROOT, job_counts, snakemake

pytestmark = pytest.mark.slow

FIGURES = ["trajectories", "phase_diagram", "tail_energy", "scree", "theory_phase"]


@pytest.fixture(scope="module")
def run(workflow_run):
    return workflow_run


def test_the_end_of_the_run_says_what_was_left_out(run):
    log = (run / "first-run.log").read_text()
    rejected = pl.read_parquet(run / "results" / "corpus" / "rejected.parquet")
    assert rejected.height == 0  # the demo's ten utterances are all usable
    assert "whisper-spi: no input audio was rejected." in log
    # 64 new tokens at most: no kept pair has 32 rows on both sides, so prefix 32 is named
    tables = pl.read_parquet(run / "results" / "tables" / "tables.parquet")
    assert 32 not in set(tables["prefix"])
    assert "whisper-spi: decode.prefix_lengths 32: no length-matched rows for tiny-en" in log
    assert "whisper-spi: report at results/report.html" in log


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
    # detection: readable headers and the ours-minus-best-baseline rows of comparison.csv
    assert "<th>AUROC [95% CI]</th>" in report and "<th>auroc</th>" not in report
    best = pl.read_csv(res / "detect" / "tiny-en" / "comparison.csv").filter("best_baseline")
    assert best.height > 0
    for r in best.iter_rows(named=True):
        assert f"<td class='l'>{r['method']}</td><td class='l'>{r['baseline']}</td>" in report


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
        page.set_viewport_size({"width": 1400, "height": 900})
        page.goto((run / "results" / "report.html").as_uri(), wait_until="load")
        # the page fits a 1,400 px window: nothing sticks out to the right, no sideways scroll,
        # also with every collapsed section open
        page.evaluate("() => document.querySelectorAll('details').forEach(d => d.open = true)")
        width = page.evaluate(
            """() => ({scroll: document.documentElement.scrollWidth,
                       client: document.documentElement.clientWidth,
                       widest: Math.max(...[...document.querySelectorAll('table, figure, svg, img')]
                                        .map(e => e.getBoundingClientRect().right))})"""
        )
        # every table and figure has a caption in words (not a bare file name)
        captions = page.eval_on_selector_all(
            "table, figure",
            """els => els.map(e => {
                const c = e.querySelector(e.tagName === 'TABLE' ? 'caption' : 'figcaption');
                return {tag: e.tagName, text: c ? c.textContent : ''}; })""",
        )
        first_heading = page.eval_on_selector("h2", "h => h.textContent")
        summary = page.eval_on_selector(
            "#summary",
            """s => ({tables: s.querySelectorAll('table').length,
                      phase: s.querySelectorAll('#fig-phase_diagram svg, #fig-phase_diagram img')
                              .length, text: s.textContent})""",
        )
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
    assert width["scroll"] <= width["client"] <= 1400, width
    assert width["widest"] <= width["client"], width
    assert len(captions) >= len(FIGURES) + 8
    for c in captions:
        assert len(c["text"].split()) >= 5, c
    assert first_heading == "Findings"  # the findings open the page, then the summary
    assert summary["tables"] >= 2 and summary["phase"] == 1
    assert "Headline" in summary["text"] and "Rejected inputs: none" in summary["text"]
    assert "[" in summary["text"]  # the headline cells carry their intervals
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


def test_what_the_readme_says_about_rerunning_one_step(run):
    """After the two forced reruns above (identical outputs), as the README says."""
    readme = (ROOT / "README.md").read_text()
    assert 'it says "Nothing to be done"' in readme
    assert "-R results/metrics/base/clean/layer-5.parquet" in readme
    out = snakemake(run, "-n")
    assert job_counts(out) == {} and "Nothing to be done" in out.stdout + out.stderr
    # -R: the job and everything downstream of it, in one run
    target = "results/metrics/tiny-en/clean/layer-0.parquet"
    jobs = job_counts(snakemake(run, "-n", "-R", target))
    assert jobs == {"layer_metrics": 1, "tables": 1, "figures": 1, "report": 1, "all": 1}
    # an input past the checksum size limit counts as changed by its newer time stamp
    jobs = job_counts(snakemake(run, "-n", "--max-checksum-file-size", "0"))
    assert {"layer_metrics", "pairs", "tables", "figures", "report"} <= set(jobs)


def test_changing_a_table_option_reruns_only_downstream(run, tmp_path):
    snakemake(run, "-j", "8")  # nothing to do after identical reruns; a no-op otherwise
    assert job_counts(snakemake(run, "-n")) == {}
    config = yaml.safe_load(CONFIG.read_text())
    config["metrics"]["n_boot"] = 150
    changed = tmp_path / "config.yaml"
    changed.write_text(yaml.safe_dump(config))
    jobs = job_counts(snakemake(run, "-n", config=changed))
    assert set(jobs) == {"tables", "figures", "levels", "report", "all"}

    config["metrics"]["k"] = [10, 40]
    config["metrics"]["figure_k"] = 40
    changed.write_text(yaml.safe_dump(config))
    jobs = job_counts(snakemake(run, "-n", config=changed))
    # 4 layers x (4 speech conditions + 3 non-speech inputs), the 2 graded levels' final layer
    assert jobs["layer_metrics"] == 30 and "decode_tiny_en" not in jobs and "stress" not in jobs
    assert jobs["pooled"] == 4  # one per decoder layer of tiny.en


def test_changing_the_hallucination_definition_reruns_pairs_and_after_not_decode(run, tmp_path):
    config = yaml.safe_load(CONFIG.read_text())
    config["hallucination"] = {"definition": "fabrication"}
    changed = tmp_path / "config.yaml"
    changed.write_text(yaml.safe_dump(config))
    jobs = job_counts(snakemake(run, "-n", config=changed))
    # everything that reads the pairs (or the detector's labels), nothing before them; the
    # project arm's subspace is fitted on the detector's labels, so it and its decodes rerun,
    # the baselines (which read only the plain decode) do not
    assert {"pairs", "pooled", "tables", "figures", "detect", "report", "all"} <= set(jobs)
    assert {"intervene_fit", "intervene", "mitigation"} <= set(jobs)
    assert set(jobs) <= {"pairs", "pooled", "tables", "figures", "detect", "theory_measure",
                         "theory_summary", "intervene_fit", "intervene", "mitigation",
                         "mitigation_summary", "levels", "report", "all"}  # fmt: skip
    # a taxonomy threshold relabels (taxonomy) and so reruns the pairs, still no decode
    config["hallucination"] = {"definition": "wer"}
    config["taxonomy"] = {"grounded_share": 0.6}
    changed.write_text(yaml.safe_dump(config))
    jobs = job_counts(snakemake(run, "-n", config=changed))
    assert {"taxonomy", "taxonomy_summary", "pairs"} <= set(jobs)
    assert not {"stress", "decode_tiny_en", "layer_metrics"} & set(jobs)


def test_changing_the_front_end_reruns_every_decoding_stage_with_it(run, tmp_path):
    config = yaml.safe_load(CONFIG.read_text())
    config["decode"]["features"] = "transformers"
    changed = tmp_path / "config.yaml"
    changed.write_text(yaml.safe_dump(config))
    dry = snakemake(run, "-n", config=changed)
    jobs = job_counts(dry)
    # every rule that computes features reruns, and what reads their outputs; the audio not
    assert {"decode_tiny_en", "intervene", "baselines", "theory_measure"} <= set(jobs)
    assert not {"corpus", "stress"} & set(jobs)
    log = dry.stdout + dry.stderr
    commands = re.findall(r"^(?:Shell command: )?(whisper-spi \S+ .*)$", log, re.M)
    decoding = [c for c in commands if c.split()[1] in {"decode", "intervene", "theory-measure"}]
    assert len(decoding) == sum(jobs[r] for r in ("decode_tiny_en", "intervene", "baselines",
                                                  "theory_measure"))  # fmt: skip
    assert all("--features transformers" in c for c in decoding)
    assert "transformers log-mel front end" in log  # the run's summary


def test_non_speech_inputs_are_decoded_labelled_and_reported(run):
    res = run / "results"
    for condition in ("silence", "noise_only", "environmental"):
        tr = pl.read_parquet(res / "decode" / "tiny-en" / condition / "shard-000" /
                             "transcripts.parquet")  # fmt: skip
        assert tr.height == 2 and set(tr["reference"]) == {""}
        assert tr["wer"].is_nan().all()
        assert (res / "metrics" / "tiny-en" / condition / "layer-3.parquet").is_file()
    labels = pl.read_parquet(res / "taxonomy" / "tiny-en" / "labels.parquet")
    assert labels.height == 10 * 6 + 2 * 3  # clean, 3 stresses, 2 graded levels; 3 x 2 items
    rate = pl.read_csv(res / "tables" / "nonspeech_rate.csv")
    assert set(rate["condition"]) == {"silence", "noise_only", "environmental"}
    pairs = pl.read_parquet(res / "pairs" / "tiny-en" / "pairs.parquet")
    assert not set(pairs["condition"]) & {"silence", "noise_only", "environmental"}
    assert pairs["hallucination_type"].null_count() == 0
    report = (res / "report.html").read_text()
    for title in ("Hallucination types", "Non-speech inputs", "Bag of hallucinations",
                  "Detection by hallucination type"):  # fmt: skip
        assert title in report
    # the intervention stage decodes them too: every arm, each item its own bootstrap unit
    mit = pl.read_csv(res / "mitigation" / "tiny-en" / "mitigation.csv")
    cells = mit.filter(pl.col("metric") == "hallucination_rate")
    for condition in ("silence", "noise_only", "environmental"):
        sel = cells.filter(pl.col("condition") == condition)
        assert set(sel["method"]) == {"plain", "gating", "fallback", "transcribe", "faster_vad",
                                      "project"}  # fmt: skip
        assert (sel["n"] == 2).all() and (sel["n_speakers"] == 2).all()
    pooled = cells.filter(pl.col("condition") == "nonspeech")
    assert (pooled["n"] == 6).all() and (pooled["n_speakers"] == 6).all()
    best = set(mit["best"])
    assert len(best) == 1 and best <= {"gating", "fallback", "transcribe", "faster_vad"}
    questions = pl.read_csv(res / "mitigation" / "verdict.csv")["question"].to_list()
    assert f"non-speech inputs: hallucination rate vs {best.pop()}" in questions
    # the baselines' own columns: faster-whisper's VAD drops what it hears no speech in
    vad = pl.read_parquet(
        res / "intervene" / "tiny-en" / "faster_vad" / "silence" / "shard-000.parquet"
    )
    assert vad["dropped"].all() and (vad["hypothesis"] == "").all()


def test_graded_stress_is_decoded_detected_and_plotted_apart_from_the_tables(run):
    """tests/workflow/config.yaml grades speaker_mix (2 speakers) and gaussian_noise (20 dB)."""
    res = run / "results"
    graded = ("speaker_mix@2", "gaussian_noise@20")
    # the paper's tables and pairs keep the paper's levels alone
    pairs = pl.read_parquet(res / "pairs" / "tiny-en" / "pairs.parquet")
    assert not set(pairs["condition"]) & set(graded)
    # each level its own stress: the mix at 2 speakers has one partner, recorded and used
    mix = pl.read_parquet(res / "stress" / "speaker_mix@2" / "shard-000.parquet")
    assert all(len(json.loads(p)["partners"]) == 1 for p in mix["params"])
    labels = pl.read_parquet(res / "taxonomy" / "tiny-en" / "labels.parquet")
    two = labels.filter(pl.col("condition") == "speaker_mix@2")
    assert two.height == 10 and all(len(s) == 2 for s in two["source_shares"])
    # the detector sees every decode, graded levels included
    oof = pl.read_csv(res / "detect" / "tiny-en" / "oof_scores.csv")
    assert set(graded) <= set(oof["condition"])
    # the levels table: a rate per level, harsher last, deltas over every pair
    levels = pl.read_csv(res / "tables" / "levels.csv")
    rate = levels.filter(pl.col("quantity") == "hallucination_rate")
    noise = rate.filter(pl.col("stress") == "gaussian_noise")
    assert noise["condition"].to_list() == ["gaussian_noise@20", "gaussian_noise"]
    assert noise["paper"].to_list() == [False, True] and (noise["n"] == 10).all()
    truth = labels.filter(pl.col("condition").is_in(graded + ("gaussian_noise",)))
    for r in rate.iter_rows(named=True):
        cell = truth.filter(pl.col("condition") == r["condition"])
        if cell.height:
            assert r["value"] == pytest.approx((cell["wer"] > 0.5).mean())
        assert r["ci_low"] <= r["value"] <= r["ci_high"]
    every = levels.filter(pl.col("pairs") == "every")
    assert set(every["condition"]) == {*graded, "speaker_mix", "gaussian_noise", "time_stretch"}
    png = (res / "figures" / "levels.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Graded stress" in (res / "report.html").read_text()


def test_compare_runs_prints_each_runs_rates_with_speaker_intervals(run, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "compare_runs", ROOT / "scripts" / "compare_runs.py"
    )
    compare_runs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare_runs)
    res = run / "results"
    assert compare_runs.main([f"a={res}", f"b={res}"]) == 0
    out = capsys.readouterr().out
    labels = pl.read_parquet(res / "taxonomy" / "tiny-en" / "labels.parquet")
    for condition, g in labels.group_by("condition"):
        wer = g["wer"].to_numpy()
        said = (g["type"] != "correct").to_numpy()
        rate = said.mean() if g["n_ref_words"].max() == 0 else (wer > 0.5).mean()
        row = re.search(
            rf"^\| tiny-en \| {condition[0]} \| {g.height} \| (.*) \| (.*) \|$", out, re.M
        )
        assert row, condition
        a, b = row.groups()
        assert a == b  # the same run on both sides
        point, lo, hi = map(float, re.findall(r"[-\d.]+", a))
        assert point == pytest.approx(rate, abs=0.005) and lo <= point <= hi
    assert "Table 1 headline cells" in out and "| tiny-en | cross_attn |" in out
