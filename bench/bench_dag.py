"""DAG-scale benchmark (issue 7): `snakemake -n` on the paper run's shape.

Builds, in a temp dir, a LibriSpeech-layout tree with the paper's 5,559 utterances
(test-clean 2,620 in 87 chapters of 40 speakers, test-other 2,939 in 90 chapters of 33
speakers, as the real splits; valid transcripts, 0.2 s FLAC files of low noise) and three
offline `dir:` models with random weights and the paper models' decoder depths (tiny 4,
small 12, large-v3-turbo 4 layers; d_model tiny, since only config.json is read to plan the
DAG). Then, for each shard size, times `snakemake -n` on config/paper.yaml pointed at them
and prints the job count per rule from Snakemake's "Job stats" table. Goal: <= 60 s.

Run:  .venv/bin/python bench/bench_dag.py [--shard-sizes 64 128] [--keep]
"""

from __future__ import annotations

import argparse
import io
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))
from tests.snakemake_runner import job_counts  # noqa: E402

# (split, utterances, speakers, chapters): the real LibriSpeech test splits.
SPLITS = (("test-clean", 2620, 40, 87), ("test-other", 2939, 33, 90))
# model name -> decoder layers of the paper's checkpoint
DEPTHS = {"tiny": 4, "small": 12, "large-v3-turbo": 4}
WORDS = [
    *("THE", "OF", "AND", "TO", "A", "IN", "HE", "WAS", "THAT", "IT", "HIS", "HAD", "WITH"),
    *("AS", "FOR", "YOU", "HER", "NOT", "BUT", "AT", "SHE", "ON", "BE", "HIM", "BY", "WHICH"),
    *("SO", "ALL", "THIS", "THEY", "HAVE", "WERE", "ONE", "FROM", "SAID", "MY", "WOULD"),
]


def _split_sizes(total: int, parts: int, rng: np.random.Generator) -> list[int]:
    """``parts`` positive sizes summing to ``total``, unequal like real chapters."""
    w = rng.gamma(4.0, size=parts)
    sizes = np.maximum(1, np.floor(w / w.sum() * total)).astype(int)
    sizes[np.argmax(sizes)] += total - sizes.sum()
    return sizes.tolist()


def build_corpus(root: Path, seed: int = 0) -> int:
    """Write the LibriSpeech-layout tree under ``root``; return the number of utterances."""
    rng = np.random.default_rng(seed)
    flacs = []
    for _ in range(8):  # a few distinct 0.2 s clips of low noise, cycled
        buf = io.BytesIO()
        wave = (rng.normal(0, 0.01, 3200)).astype(np.float32)
        sf.write(buf, wave, 16000, format="FLAC", subtype="PCM_16")
        flacs.append(buf.getvalue())
    used_speakers: set[int] = set()
    n = 0
    for split, n_utt, n_spk, n_chap in SPLITS:
        chapters_per_spk = _split_sizes(n_chap, n_spk, rng)
        utts_per_chap = iter(_split_sizes(n_utt, n_chap, rng))
        for n_c in chapters_per_spk:
            spk = int(rng.integers(61, 8500))
            while spk in used_speakers:
                spk = int(rng.integers(61, 8500))
            used_speakers.add(spk)
            for chap in sorted(rng.choice(np.arange(10000, 300000), n_c, replace=False)):
                d = root / split / str(spk) / str(chap)
                d.mkdir(parents=True)
                lines = []
                for u in range(next(utts_per_chap)):
                    utt = f"{spk}-{chap}-{u:04d}"
                    (d / f"{utt}.flac").write_bytes(flacs[n % len(flacs)])
                    words = rng.choice(WORDS, int(rng.integers(3, 30)))
                    lines.append(f"{utt} {' '.join(words)}")
                    n += 1
                (d / f"{spk}-{chap}.trans.txt").write_text("\n".join(lines) + "\n")
    return n


def build_models(root: Path) -> dict[str, str]:
    """Random-weight Whisper models with the paper's decoder depths, as `dir:` specs."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration
    from transformers.utils import logging

    logging.disable_progress_bar()

    specs = {}
    for name, layers in DEPTHS.items():
        cfg = WhisperConfig(
            vocab_size=51865,
            d_model=32,
            encoder_layers=1,
            decoder_layers=layers,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            max_source_positions=1500,
            max_target_positions=448,
        )
        path = root / name
        WhisperForConditionalGeneration(cfg).save_pretrained(path)
        specs[name] = f"dir:{path}"
    return specs


def paper_config(corpus: Path, models: dict[str, str], shard_size: int) -> dict:
    cfg = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    cfg["corpus"]["root"] = str(corpus)
    cfg["corpus"]["shard_size"] = shard_size
    assert set(cfg["models"]) == set(models), (cfg["models"], models)
    cfg["models"] = models
    return cfg


def dry_run(config: Path, workdir: Path) -> tuple[float, dict[str, int]]:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", HF_HUB_OFFLINE="1")
    cmd = [
        str(BIN / "snakemake"), "-n",
        "--snakefile", str(ROOT / "Snakefile"),
        "--directory", str(workdir),
        "--configfile", str(config),
        "--profile", str(ROOT / "profiles" / "local"),
        "-j", "8",
    ]  # fmt: skip
    t0 = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    if run.returncode != 0:
        sys.exit(f"snakemake -n failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
    counts = job_counts(run)
    return wall, {**counts, "total": sum(counts.values())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shard-sizes", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (printed)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-dag-"))
    try:
        t0 = time.perf_counter()
        n = build_corpus(tmp / "LibriSpeech")
        t_corpus = time.perf_counter() - t0
        t0 = time.perf_counter()
        models = build_models(tmp / "models")
        t_models = time.perf_counter() - t0
        print(f"fixture: {n} utterances in {t_corpus:.1f} s; models "
              f"{ {m: DEPTHS[m] for m in models} } layers in {t_models:.1f} s")  # fmt: skip

        results = {}
        for size in args.shard_sizes:
            cfg = tmp / f"paper-{size}.yaml"
            cfg.write_text(yaml.safe_dump(paper_config(tmp / "LibriSpeech", models, size)))
            workdir = tmp / f"run-{size}"
            workdir.mkdir()
            results[size] = dry_run(cfg, workdir)

        rules = sorted({r for _, c in results.values() for r in c if r != "total"})
        head = f"{'rule':<24}" + "".join(f"{f'shard {s}':>12}" for s in results)
        print("\n`snakemake -n` on the paper run (5,559 utts x 4 conditions x 3 models)")
        print(head)
        print("-" * len(head))
        for rule in [*rules, "total"]:
            print(f"{rule:<24}" + "".join(f"{c.get(rule, 0):>12}" for _, c in results.values()))
        print(f"{'wall time (s)':<24}" + "".join(f"{w:>12.1f}" for w, _ in results.values()))
        files = {s: 4 * math.ceil(n / s) * sum(DEPTHS.values()) for s in results}
        print(f"{'spectra files (decode)':<24}" + "".join(f"{f:>12}" for f in files.values()))
        worst = max(w for w, _ in results.values())
        print(f"\ngoal <= 60 s: {'met' if worst <= 60 else 'NOT met'} (slowest {worst:.1f} s)")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
