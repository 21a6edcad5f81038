"""The paper's run rehearsed end to end: config/paper.yaml's whole DAG, to the report.

Three random-weight models with the paper's layouts (whisper_spi.decode.layouts: tiny 4+4
layers, small 12+12, large-v3-turbo 32+4 with 128 mel bins and large-v3's tokens; d = 64)
and a LibriSpeech-layout corpus with test-clean and test-other, run through
config/paper.yaml with only the model specs, the corpus root and the sizes overridden
(tests/rehearsal/overrides.yaml), under profiles/local. Not under profiles/slurm on the test
cluster: there every one of the DAG's 205 jobs is an sbatch job that parses the workflow
again (5 to 7 s each on 2 cores, measured), about 20 minutes in all; the SLURM path is
tested by tests/test_slurm.py (a live run) and tests/test_paper_config.py (the paper
shapes' resources in the SLURM dry run).

Random weights decode noise, so every stressed decode "hallucinates" and the detector's,
taxonomy's and interventions' edge cases (one class, nothing to mitigate) are met on the way.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import polars as pl
import pytest
import soundfile as sf

from tests.snakemake_runner import BIN, ENV, ROOT

WIDTH = 64
WINDOW_S = 10  # the feature extractor's window: encoders of 500 positions
OVERRIDES = ROOT / "tests" / "rehearsal" / "overrides.yaml"
DECODER_LAYERS = {"tiny": 4, "small": 12, "large-v3-turbo": 4}
RESULTS = "results-paper"  # config/paper.yaml's results_dir
CLIP_S = 4  # seconds of each demo utterance kept: decode cost, not coverage, grows with it

pytestmark = pytest.mark.slow


def _librispeech(root: Path) -> int:
    """The first utterance of each of the demo corpus's 7 speakers (6 speakers are needed
    for the speaker mix), in a LibriSpeech layout split over test-clean and test-other."""
    from whisper_spi.corpus.manifest import demo_root

    chapters = sorted(p for p in demo_root().glob("test-clean/*/*") if p.is_dir())
    for i, chapter in enumerate(chapters):
        split = "test-clean" if i % 2 == 0 else "test-other"
        trans = (chapter / f"{chapter.parent.name}-{chapter.name}.trans.txt").read_text()
        utt, text = trans.splitlines()[0].split(" ", 1)
        out = root / split / chapter.parent.name / chapter.name
        out.mkdir(parents=True)
        wave, sr = sf.read(chapter / f"{utt}.flac", dtype="float32")
        sf.write(out / f"{utt}.flac", wave[: CLIP_S * sr], sr)
        (out / f"{chapter.parent.name}-{chapter.name}.trans.txt").write_text(f"{utt} {text}\n")
    return len(chapters)


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    from whisper_spi.decode.layouts import write_layout

    base = tmp_path_factory.mktemp("rehearsal")
    n = _librispeech(base / "LibriSpeech")
    specs = {
        name: f"dir:{write_layout(name, base / 'models' / name, d_model=WIDTH, window_s=WINDOW_S)}"
        for name in DECODER_LAYERS
    }
    local = base / "local.yaml"  # where this machine put the models and the corpus
    models = "".join(f"  {name}: {spec!r}\n" for name, spec in specs.items())
    local.write_text(f"corpus:\n  root: {str(base / 'LibriSpeech')!r}\nmodels:\n{models}")
    args = [
        str(BIN / "snakemake"),
        "--snakefile", str(ROOT / "Snakefile"),
        "--directory", str(base / "run"),
        "--profile", str(ROOT / "profiles" / "local"),
        "--configfile", str(ROOT / "config" / "paper.yaml"), str(OVERRIDES), str(local),
    ]  # fmt: skip
    run = subprocess.run([*args, "-j", "2"], capture_output=True, text=True, env=ENV, cwd=ROOT)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-8000:]
    return {"dir": base / "run" / RESULTS, "args": args, "n": n, "specs": specs,
            "log": run.stdout + run.stderr}  # fmt: skip


def test_the_run_names_what_it_resolved(rehearsal):
    log = rehearsal["log"]
    for name, spec in rehearsal["specs"].items():
        assert f"  {name}: {spec} ({DECODER_LAYERS[name]} decoder layers)" in log
    assert "splits test-clean, test-other (every utterance)" in log
    assert f": {rehearsal['n']} utterances" in log


# the Snakefile's wildcard constraints, so that layer-0-profile.parquet is no layer-{layer}
WILDCARDS = {"{layer}": r"\d+", "{shard}": r"\d{3}"}


def _template_regex(template: str) -> re.Pattern:
    parts = re.split(r"(\{\w+\})", template)
    return re.compile(
        "".join(WILDCARDS.get(p, "[^/]+") if p.startswith("{") else re.escape(p) for p in parts)
    )


def _outputs(rehearsal) -> list[Path]:
    """Every output file of the DAG, from Snakemake's own summary (all of them present)."""
    run = subprocess.run(
        [*rehearsal["args"], "--summary"], capture_output=True, text=True,
        env=ENV, cwd=ROOT,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [line.split("\t") for line in run.stdout.splitlines() if "\t" in line]
    header, rows = rows[0], rows[1:]
    status = header.index("status")
    assert rows and all(r[status] == "ok" for r in rows), [r for r in rows if r[status] != "ok"]
    return [Path(rehearsal["dir"]).parent / r[0] for r in rows]


def test_every_output_exists_and_keeps_its_contract(rehearsal):
    from whisper_spi.schemas import CONTRACTS, FILES, check_parquet, read_csv

    templates = {name: _template_regex(c.path) for name, c in CONTRACTS.items()}
    files = {name: _template_regex(path) for name, path in FILES.items()}
    outputs = _outputs(rehearsal)
    checked = set()
    for path in outputs:
        rel = path.relative_to(rehearsal["dir"]).as_posix()
        if rel.startswith(("logs/", "benchmarks/")):
            continue
        assert path.exists(), rel
        contract = [name for name, rx in templates.items() if rx.fullmatch(rel)]
        if contract:
            (name,) = contract
            if rel.endswith(".csv"):
                assert read_csv(path, name).height > 0, rel
            else:
                check_parquet(path, name)
            checked.add(name)
        else:
            # a contract-less file (figure, report, directory) or a table's Markdown
            rel = rel.removesuffix(".md")
            known = [*files.values(), *templates.values()]
            assert any(rx.fullmatch(rel) or rx.fullmatch(rel + ".csv") for rx in known), rel
    assert checked == set(CONTRACTS)  # the paper DAG writes a file of every contract


def test_every_decoder_layer_of_every_model_is_in_the_per_layer_tables(rehearsal):
    results = rehearsal["dir"]
    want = {m: set(range(n)) for m, n in DECODER_LAYERS.items()}
    for name in ("layer_summary", "rank_profile"):
        df = pl.read_parquet(results / "tables" / f"{name}.parquet")
        # layer -1: layer_summary's mean over the model's layers (Table 2)
        have = {m: set(df.filter(pl.col("model") == m)["layer"].to_list()) - {-1} for m in want}
        assert have == want, name
    tables = pl.read_parquet(results / "tables" / "tables.parquet")  # Table 1: the final layer
    final = {m: set(tables.filter(pl.col("model") == m)["layer"].to_list()) for m in want}
    assert final == {m: {-1, n - 1} for m, n in DECODER_LAYERS.items()}
    for name in ("metrics", "pooled"):
        have = {
            m: {int(p.stem.split("-")[1]) for p in (results / name / m).rglob("layer-*.parquet")
                if "profile" not in p.stem}
            for m in want
        }  # fmt: skip
        assert have == want, name


def test_the_report_shows_the_resolved_config(rehearsal):
    html = (rehearsal["dir"] / "report.html").read_text("utf-8")
    for name, spec in rehearsal["specs"].items():
        assert name in html and spec.removeprefix("dir:") in html
    assert "test-other" in html
