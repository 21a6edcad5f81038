#!/usr/bin/env python3
"""Two finished runs side by side, as Markdown: the hallucination rate per model x condition
(speech and non-speech) with 95% bootstrap intervals (resampling speakers; items on a
non-speech input), the taxonomy counts, and Table 1's headline cells (hell vs clean,
utterance scope, every kept pair, full length, the final decoder layer, K = 50) with their
intervals.

    scripts/compare_runs.py openai=results transformers=results-transformers

Each run is ``label=<results_dir>``; the runs should share models and conditions. A
hallucination is decided by --definition (default the paper's, WER > 0.5; on a non-speech
input anything said), as the workflow decides it (taxonomy.labels.hallucination_expr).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import polars as pl

from whisper_spi import schemas
from whisper_spi.analysis.bootstrap import (
    count_blocks,
    mean_replicates,
    percentile_interval,
    seeded_rng,
)
from whisper_spi.registry import NONSPEECH, OBSERVABLE_SPECS, PAPER_OBSERVABLES
from whisper_spi.taxonomy.labels import DEFINITIONS, HER_THRESHOLD, hallucination_expr
from whisper_spi.text import HALLUCINATION_WER

N_BOOT = 2000
OBSERVABLES = tuple(OBSERVABLE_SPECS[o].column for o in PAPER_OBSERVABLES)  # delta columns


def rates(labels: pl.DataFrame, definition: str, seed: int = 0) -> pl.DataFrame:
    """Hallucination rate per model x condition; the interval resamples speakers (every
    decode of a drawn speaker counts; on a non-speech input, items), percentile, 95%."""
    labels = labels.with_columns(
        hallucination_expr(definition, HALLUCINATION_WER, HER_THRESHOLD).alias("h")
    )
    rows = []
    labels = labels.sort("model", "condition")
    for (model, condition), g in labels.group_by("model", "condition", maintain_order=True):
        v = g["h"].cast(pl.Float64).to_numpy()[:, None]
        key = f"compare/{model}/{condition}"
        units = g["utt_id"] if condition in NONSPEECH else g["speaker"]  # no speaker: items
        blocks = count_blocks(seeded_rng(seed, key), len(v), N_BOOT, 500, groups=units)
        lo, hi = percentile_interval(mean_replicates(v, blocks, N_BOOT), 0.95)
        rows.append({"model": model, "condition": condition, "n": len(v),
                     "rate": float(v.mean()), "lo": float(lo[0]), "hi": float(hi[0])})  # fmt: skip
    return pl.DataFrame(rows)


def _cell(value: float, lo: float, hi: float, digits: int) -> str:
    return f"{value:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs=2, metavar="LABEL=RESULTS_DIR")
    parser.add_argument("--definition", choices=DEFINITIONS, default="wer")
    args = parser.parse_args(argv)
    runs = dict(r.split("=", 1) for r in args.runs)
    labels, t1 = {}, {}
    for name, d in runs.items():
        paths = sorted(Path(d).glob("taxonomy/*/labels.parquet"))
        if not paths:
            sys.exit(f"compare_runs: no taxonomy/*/labels.parquet under {d}")
        labels[name] = schemas.scan_parquet(paths, "taxonomy").collect()
        t1[name] = pl.read_csv(Path(d) / "tables" / "table1_final_layer.csv")

    a, b = runs
    print("Hallucination rate (95% bootstrap interval: speakers; items on non-speech)\n")
    print(f"| model | condition | n | {a} | {b} |\n|---|---|---|---|---|")
    joined = rates(labels[a], args.definition).join(
        rates(labels[b], args.definition), on=["model", "condition", "n"], suffix="_b"
    )
    for r in joined.iter_rows(named=True):
        print(f"| {r['model']} | {r['condition']} | {r['n']} | "
              f"{_cell(r['rate'], r['lo'], r['hi'], 2)} | "
              f"{_cell(r['rate_b'], r['lo_b'], r['hi_b'], 2)} |")  # fmt: skip

    print(f"\nTaxonomy counts ({a} / {b})\n")
    counts = {n: df.group_by("model", "condition", "type").len() for n, df in labels.items()}
    wide = (
        counts[a]
        .join(counts[b], on=["model", "condition", "type"], how="full", coalesce=True, suffix="_b")
        .fill_null(0)
        .sort("model", "condition")
    )
    types = sorted(set(wide["type"]))
    print("| model | condition | " + " | ".join(types) + " |")
    print("|---|---|" + "---|" * len(types))
    for (model, condition), g in wide.group_by("model", "condition", maintain_order=True):
        got = {r["type"]: f"{r['len']} / {r['len_b']}" for r in g.iter_rows(named=True)}
        print(f"| {model} | {condition} | " + " | ".join(got.get(t, "0 / 0") for t in types)
              + " |")  # fmt: skip

    print(f"\nTable 1 headline cells, hell vs clean, final layer, K = 50 ({a} / {b})\n")
    print("| model | component | n pairs | " + " | ".join(OBSERVABLES) + " |")
    print("|---|---|---|" + "---|" * len(OBSERVABLES))
    keep = (
        (pl.col("scope") == "utterance") & (pl.col("pair_set") == "all") & (pl.col("prefix") == 0)
        & (pl.col("condition") == "hell") & (pl.col("k") == 50)
    )  # fmt: skip
    heads = {n: df.filter(keep) for n, df in t1.items()}
    for r in heads[a].iter_rows(named=True):
        other = heads[b].filter(
            (pl.col("model") == r["model"]) & (pl.col("component") == r["component"])
        )
        s = other.row(0, named=True) if other.height else None
        cells = []
        for o in OBSERVABLES:
            x = _cell(r[o], r[f"{o}_ci_low"], r[f"{o}_ci_high"], 2)
            y = _cell(s[o], s[f"{o}_ci_low"], s[f"{o}_ci_high"], 2) if s else "-"
            cells.append(f"{x} / {y}")
        n = f"{r['n']} / {s['n'] if s else 0}"
        print(f"| {r['model']} | {r['component']} | {n} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
