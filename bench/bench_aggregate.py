"""Aggregation-scale benchmark (issue 7): layer_metrics -> pairs -> tables at paper scale.

Writes synthetic decode output with the paper run's row counts (5,559 utterances x 4
conditions; per model decoder layers x 3 components x (1 full-length + 2 prefix rows) spectra,
in shards of ``--shard-size`` utterances, one file per model x condition x shard x layer as the
decode jobs write them; contracts ``spectra`` and ``transcripts``): spectrum lengths T = the
decoded rows, mostly ~30 with hallucinations at the 224-token cap, noisy power-law singular
values, d-float row means. Then runs the workflow's path exactly as its jobs do (the library
functions the CLI calls), each stage in a child process, and prints its wall time and peak
RSS:

* ``layer_metrics``: ``analysis.layer_metrics`` + ``write_layer_metrics`` per (model,
  condition, layer) -- 80 jobs at paper scale, run one after the other here;
* ``pairs``: ``analysis.pairs.pairs_and_counts`` + ``write_pairs`` per model;
* ``pooled``: ``analysis.pooled.pooled_layer`` + ``write_pooled_layer`` per (model, layer),
  20 jobs;
* ``tables``: ``analysis.tables.build_tables`` once.

Goal: <= 60 s in total and <= 4 GB; printed both as the sum of all jobs run one after the other
on this machine and as the DAG's critical path (the slowest job of each stage). Each set of
metrics options (``--tables-options``; default: without the pooled scope, and config/
paper.yaml's) runs pooled + tables. The pooled scope's exact bootstrap (``pooled_n_boot``
re-decompositions of d x d Gram matrices per cell) is measured on layer 0 of each model
(``--no-pooled-probe`` skips it) and extrapolated linearly in replicates and layers.

Reference: a straightforward pandas implementation of the per-row observables (a row-wise
``DataFrame.apply``) and of the utterance scope (merge, per-pair deltas, ``groupby().apply``
with a bootstrap of means per group), on the same data -- on a subset (``--pandas-frac`` of
the shards for the observables; one model for the utterance scope), with our code timed on the
identical subset for the ratio and the pandas time scaled linearly to the full size.

Run:  .venv/bin/python bench/bench_aggregate.py [--models tiny small large-v3-turbo]
      [--data DIR (keep and reuse the synthetic data)] [--tables-options JSON]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]

# model -> (decoder layers, d_model) of the paper's checkpoints
PAPER_MODELS = {"tiny": (4, 384), "small": (12, 768), "large-v3-turbo": (4, 1280)}
CONDITIONS = ("clean", "time_stretch", "speaker_mix", "gaussian_noise")
COMPONENTS = ("cross_attn", "self_attn", "ffn")
PREFIXES = (16, 32)
N_UTT = 5559
N_SPEAKERS = 73  # test-clean 40 + test-other 33
MAX_T = 224
# share of stressed utterances whose WER > 0.5 (kept pairs); an assumption, on the high side
# (the pooled scope's cost grows with N): hell then stacks ~8,000 pairs per model.
KEEP = {"time_stretch": 0.55, "speaker_mix": 0.6, "gaussian_noise": 0.35}
SEED = 20260408


def paper_metrics() -> str:
    """config/paper.yaml's metrics section, as the tables options of the paper run."""
    import yaml

    return json.dumps(yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())["metrics"])


# the metrics options run by default: without the pooled scope (the paper's own scope only),
# and the paper run's; the exact pooled bootstrap is measured on one layer per model and
# extrapolated (it takes hours).
DEFAULT_TABLES = ['{"pooled": false}', paper_metrics()]


# --------------------------------------------------------------------------- synthetic data


def utt_ids() -> list[str]:
    return sorted(f"{100 + i % N_SPEAKERS}-{1000 + i % 177}-{i:04d}" for i in range(N_UTT))


def _seed(*key) -> int:
    from whisper_spi.io import derive_seed

    return derive_seed(SEED, "bench", "/".join(map(str, key)))


def draw_decodes(model: str) -> dict[str, dict[str, np.ndarray]]:
    """Per condition: T (decoded rows), wer, kept flag, for every utterance of one model."""
    rng = np.random.default_rng(_seed("decodes", model))
    out = {}
    for cond in CONDITIONS:
        T = np.clip(np.round(rng.lognormal(math.log(30), 0.35, N_UTT)), 20, MAX_T)
        if cond == "clean":
            wer = np.abs(rng.normal(0.0, 0.08, N_UTT))
            kept = np.zeros(N_UTT, bool)
        else:
            kept = rng.random(N_UTT) < KEEP[cond]
            wer = np.where(kept, 0.5 + 1e-3 + rng.exponential(0.6, N_UTT),
                           rng.uniform(0, 0.5, N_UTT))  # fmt: skip
            hall = kept & (rng.random(N_UTT) < 0.4)  # runaway hallucinations to the cap
            T = np.where(hall, MAX_T, np.where(kept, np.clip(T * 1.5, 20, MAX_T), T))
        out[cond] = {"T": T.astype(np.int64), "wer": wer, "kept": kept}
    return out


def _list_array(lengths: np.ndarray, values: np.ndarray, mask: np.ndarray | None = None):
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.ListArray.from_arrays(
        pa.array(offsets), pa.array(values), mask=None if mask is None else pa.array(mask)
    )


def write_transcripts(path: Path, model, cond, ids, speakers, T, wer, rng) -> None:
    from whisper_spi import schemas

    n = len(ids)
    n_tok = T - 1
    table = pa.table(
        {
            "utt_id": ids,
            "speaker": speakers,
            "model": [model] * n,
            "condition": [cond] * n,
            "reference": ["THE QUICK BROWN FOX JUMPED OVER THE LAZY DOG"] * n,
            "hypothesis": ["the quick brown fox jumped over the lazy dog"] * n,
            "token_ids": _list_array(
                n_tok, rng.integers(0, 50000, int(n_tok.sum())).astype(np.int32)
            ),
            "n_tokens": n_tok.astype(np.int32),
            "hit_max_length": T >= MAX_T,
            "avg_logprob": rng.normal(-0.4, 0.2, n),
            "compression_ratio": rng.normal(1.6, 0.3, n),
            "no_speech_prob": rng.uniform(0, 0.1, n),
            "wer": wer,
            "hallucination": wer > 0.5,
        }
    )
    schemas.write_parquet(table, "transcripts", path)


def write_spectra(path: Path, model, cond, layer, ids, T, d, base_rm, rng) -> None:
    """One decode job's layer file: per utterance x component the full and prefix spectra."""
    from whisper_spi import schemas

    rows = []  # (utt index, component, prefix, n_rows)
    for u, t in enumerate(T):
        for comp in COMPONENTS:
            rows.append((u, comp, 0, t))
            rows += [(u, comp, L, L) for L in PREFIXES if t >= L]
    u_idx = np.array([r[0] for r in rows])
    prefix = np.array([r[2] for r in rows], dtype=np.int32)
    n_rows = np.array([r[3] for r in rows], dtype=np.int64)
    n_sv = np.minimum(n_rows, d)
    # noisy power law s_i = c * i**-a * exp(eps), sorted descending
    a = rng.uniform(0.5, 1.1, len(rows)) + (0.15 if cond != "clean" else 0.0)
    c = np.exp(rng.normal(2.0, 0.3, len(rows)))
    starts = np.repeat(np.cumsum(n_sv) - n_sv, n_sv)
    rank = np.arange(int(n_sv.sum())) - starts + 1
    row = np.repeat(np.arange(len(rows)), n_sv)
    sv = c[row] * rank ** -a[row] * np.exp(rng.normal(0, 0.05, rank.size))
    order = np.lexsort((-sv, row))
    sv = sv[order]
    full = prefix == 0
    n_full = int(full.sum())
    # row means: the utterance's base vector (shared by layers and conditions) plus noise
    rm = base_rm[u_idx[full]] + rng.normal(0, 0.3, (n_full, d)).astype(np.float32)
    rm_len = np.where(full, d, 0)
    table = pa.table(
        {
            "utt_id": [ids[u] for u in u_idx],
            "model": [model] * len(rows),
            "condition": [cond] * len(rows),
            "layer": np.full(len(rows), layer, dtype=np.int32),
            "component": [r[1] for r in rows],
            "prefix": prefix,
            "n_rows": n_rows.astype(np.int32),
            "centered": np.zeros(len(rows), bool),
            "sv": _list_array(n_sv, sv),
            "row_mean": _list_array(rm_len, rm.ravel(), mask=~full),
        }
    )
    schemas.write_parquet(table, "spectra", path)


def generate(data: Path, models: list[str], shard_size: int) -> dict:
    ids = utt_ids()
    speakers = np.array([u.split("-")[0] for u in ids])
    shards = [(s, slice(lo, lo + shard_size)) for s, lo in enumerate(range(0, N_UTT, shard_size))]
    n_files = 0
    for model in models:
        L, d = PAPER_MODELS[model]
        draws = draw_decodes(model)
        rng = np.random.default_rng(_seed("row_mean", model))
        # a realistic pooled matrix: a common mean direction plus power-law variance per axis
        scale = (np.arange(1, d + 1) ** -0.5).astype(np.float32)
        base = (rng.normal(0, 1, (N_UTT, d)).astype(np.float32) * scale * 4 + 1.0).astype(
            np.float32
        )
        for cond in CONDITIONS:
            dr = draws[cond]
            for s, sl in shards:
                out = data / "decode" / model / cond / f"shard-{s:03d}"
                rng = np.random.default_rng(_seed(model, cond, s))
                spk = speakers[sl].tolist()
                write_transcripts(out / "transcripts.parquet", model, cond, ids[sl], spk,
                                  dr["T"][sl], dr["wer"][sl], rng)  # fmt: skip
                for layer in range(L):
                    write_spectra(out / f"layer-{layer}.parquet", model, cond, layer, ids[sl],
                                  dr["T"][sl], d, base[sl], rng)  # fmt: skip
                n_files += 1 + L
    return {"files": n_files, "shards": len(shards)}


# --------------------------------------------------------------------------- workflow paths


def spectra_paths(data: Path, model: str, cond: str | None = None, layer: int | None = None,
                  shards: int | None = None) -> list[str]:  # fmt: skip
    conds = [cond] if cond else CONDITIONS
    layers = [layer] if layer is not None else range(PAPER_MODELS[model][0])
    out = []
    for c in conds:
        dirs = sorted((data / "decode" / model / c).glob("shard-*"))[:shards]
        out += [str(p / f"layer-{lay}.parquet") for p in dirs for lay in layers]
    return out


def transcript_paths(data: Path, model: str) -> list[str]:
    return [
        str(p / "transcripts.parquet")
        for c in CONDITIONS
        for p in sorted((data / "decode" / model / c).glob("shard-*"))
    ]


def metrics_path(data: Path, model: str, cond: str, layer: int) -> Path:
    return data / "metrics" / model / cond / f"layer-{layer}.parquet"


def pooled_paths(data: Path, model: str, layer: int) -> tuple[str, str]:
    base = data / "pooled" / model / f"layer-{layer}"
    return f"{base}.parquet", f"{base}-profile.parquet"


# --------------------------------------------------------------------------- pandas reference


def pandas_observables(paths: list[str], ks=(10, 50), rank_tol=1e-6, kf_floor=1e-10):
    """Per-row observables with a plain row-wise ``DataFrame.apply`` (the reference)."""
    import pandas as pd

    df = pd.concat([pd.read_parquet(p, columns=["utt_id", "model", "condition", "layer",
                                                "component", "prefix", "n_rows", "sv"])
                    for p in paths], ignore_index=True)  # fmt: skip

    def row_obs(r):
        s = np.sort(np.asarray(r["sv"], dtype=np.float64))[::-1]
        s = np.where(s <= rank_tol * s[0], 0.0, s)
        out = {}
        for K in ks:
            top = s[:K]
            p = top / top.sum()
            nz = p > 0
            out[f"neff_{K}"] = float(np.exp(-(p[nz] * np.log(p[nz])).sum()))
            pos = top > 0
            x, y = np.log(np.arange(1, top.size + 1)[pos]), np.log(top[pos])
            out[f"alpha_{K}"] = -np.polyfit(x, y, 1)[0] if pos.sum() >= 2 else np.nan
            lam = np.pad(top**2 / (r["n_rows"] - 1), (0, K - top.size))
            keep = lam > kf_floor * lam[0]
            out[f"log10_kf_{K}"] = float(np.log10(K * (1.0 / lam[keep]).sum()))
            e = s**2
            out[f"tail_energy_{K}"] = float(e[K:].sum() / e.sum())
        return pd.Series(out)

    obs = df.apply(row_obs, axis=1)
    return pd.concat([df.drop(columns="sv"), obs], axis=1)


def pandas_utterance(metric_paths: list[str], pairs_path: str, n_boot: int, ci: float, seed: int):
    """The utterance scope, plainly: merge, per-pair deltas, groupby().apply bootstrap of means.

    Per (model, condition, prefix, layer, component, k) and per pair the mean over layers
    (layer -1); for each group, mean, median and a percentile bootstrap CI of the means of
    clean, stressed and delta of the four observables.
    """
    import pandas as pd

    obs = ["neff", "log10_kf", "alpha", "tail_energy"]
    m = pd.concat([pd.read_parquet(p) for p in metric_paths], ignore_index=True)
    pairs = pd.read_parquet(pairs_path, columns=["model", "condition", "stress", "utt_id"])
    clean = m[m["condition"] == "clean"].drop(columns=["condition"])
    stressed = m[m["condition"] != "clean"].rename(columns={"condition": "stress"})
    keys = ["model", "utt_id", "layer", "component", "prefix", "k"]
    d = pairs.merge(stressed, on=["model", "stress", "utt_id"]).merge(
        clean[keys + obs], on=keys, suffixes=("", "_clean")
    )
    for o in obs:
        c, s = d[f"{o}_clean"], d[o]
        d[f"{o}_delta"] = 100 * (s - c) / c if o == "neff" else s - c
    cols = [f"{o}{q}" for o in obs for q in ("_clean", "", "_delta")]
    lay_mean = (
        d.groupby(["model", "condition", "stress", "utt_id", "prefix", "component", "k"])[cols]
        .mean()
        .reset_index()
        .assign(layer=-1)
    )
    d = pd.concat([d, lay_mean], ignore_index=True)
    rng = np.random.default_rng(seed)
    q = [(1 - ci) / 2, 1 - (1 - ci) / 2]

    def summarize(g):
        out = {}
        n = len(g)
        idx = rng.integers(0, n, (n_boot, n))
        for col in cols:
            v = g[col].to_numpy()
            boot = np.nanmean(v[idx], axis=1)
            lo, hi = np.nanquantile(boot, q)
            out[col] = np.nanmean(v)
            out[f"{col}_median"] = np.nanmedian(v)
            out[f"{col}_lo"], out[f"{col}_hi"] = lo, hi
        return pd.Series(out)

    groups = d.groupby(["model", "condition", "prefix", "layer", "component", "k"])
    return groups.apply(summarize).reset_index(), groups.ngroups


# --------------------------------------------------------------------------- child stages


def _report(result: dict) -> None:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    result["maxrss_mb"] = ru.ru_maxrss / 1024
    result["cpu"] = ru.ru_utime + ru.ru_stime
    print("RESULT " + json.dumps(result), flush=True)


def child(args: argparse.Namespace) -> None:
    import warnings

    warnings.simplefilter("ignore")
    import polars as pl

    from whisper_spi.analysis import tables
    from whisper_spi.analysis.layer_metrics import layer_metrics, write_layer_metrics
    from whisper_spi.analysis.options import MetricOptions
    from whisper_spi.analysis.pairs import pairs_and_counts, write_pairs
    from whisper_spi.analysis.pooled import pooled_layer, write_pooled_layer

    data = Path(args.data)
    models = args.models
    opts = MetricOptions.from_dict(json.loads(args.tables_options))
    t0 = time.perf_counter()
    extra: dict = {}
    if args.child == "generate":
        extra = generate(data, models, args.shard_size)
    elif args.child == "layer_metrics":
        jobs = []
        for m in models:
            for c in CONDITIONS:
                for layer in range(PAPER_MODELS[m][0]):
                    t1 = time.perf_counter()
                    df = layer_metrics(spectra_paths(data, m, c, layer), opts)
                    write_layer_metrics(df, metrics_path(data, m, c, layer))
                    jobs.append(time.perf_counter() - t1)
        extra = {"jobs": len(jobs), "max_job_s": max(jobs), "mean_job_s": float(np.mean(jobs))}
    elif args.child == "pairs":
        for m in models:
            p, c = pairs_and_counts(transcript_paths(data, m), threshold=0.5)
            write_pairs(p, c, data / "pairs" / m / "pairs.parquet",
                               data / "pairs" / m / "pair_counts.parquet")  # fmt: skip
        extra = {"pairs": {m: pl.read_parquet(data / "pairs" / m / "pair_counts.parquet")
                           .filter(pl.col("condition") == "hell")["n_pairs"].item()
                           for m in models}}  # fmt: skip
    elif args.child == "pooled":  # the pooled jobs, one per (model, layer), one after another
        jobs = []
        for m in models:
            pair_df = pl.read_parquet(data / "pairs" / m / "pairs.parquet")
            for layer in range(PAPER_MODELS[m][0]) if args.probe_layer < 0 else [args.probe_layer]:
                t1 = time.perf_counter()
                cells, profile = pooled_layer(
                    spectra_paths(data, m, layer=layer), pair_df, m, layer, opts, SEED
                )
                write_pooled_layer(cells, profile, *pooled_paths(data, m, layer))
                jobs.append(time.perf_counter() - t1)
        extra = {"jobs": len(jobs), "max_job_s": max(jobs), "mean_job_s": float(np.mean(jobs))}
    elif args.child == "tables":
        timings = {}
        for name in ("utterance_summary", "pooled_summary"):
            fn = getattr(tables, name)

            def timed(*a, _fn=fn, _name=name, **kw):
                t1 = time.perf_counter()
                try:
                    return _fn(*a, **kw)
                finally:
                    timings[_name] = time.perf_counter() - t1

            setattr(tables, name, timed)
        pooled = [pooled_paths(data, m, lay) for m in models for lay in range(PAPER_MODELS[m][0])]
        tables.build_tables(
            [str(metrics_path(data, m, c, lay)) for m in models for c in CONDITIONS
             for lay in range(PAPER_MODELS[m][0])],
            [str(data / "pairs" / m / "pairs.parquet") for m in models],
            [str(data / "pairs" / m / "pair_counts.parquet") for m in models],
            data / "tables",
            pooled_paths=[c for c, _ in pooled] if opts.pooled else (),
            profile_paths=[p for _, p in pooled] if opts.pooled else (),
            options=opts,
            seed=SEED,
        )  # fmt: skip
        extra = timings
    elif args.child == "ours_observables":  # our layer_metrics on the pandas subset
        for m in models:
            layer_metrics(spectra_paths(data, m, "clean", 0, args.pandas_shards), opts)
    elif args.child == "pandas_observables":
        ref = layer_metrics(spectra_paths(data, models[0], "clean", 0, 2), opts)
        for m in models:
            df = pandas_observables(spectra_paths(data, m, "clean", 0, args.pandas_shards))
        # check the reference computes the same numbers as ours
        chk = pandas_observables(spectra_paths(data, models[0], "clean", 0, 2))
        for o in ("neff", "alpha", "log10_kf", "tail_energy"):
            for K in (10, 50):
                a = ref.filter(pl.col("k") == K)[o].to_numpy()
                assert np.allclose(a, chk[f"{o}_{K}"].to_numpy(), rtol=1e-9, equal_nan=True), o
        extra = {"rows": len(df)}
    elif args.child == "ours_utterance":
        m = args.probe_model
        pair_df = pl.read_parquet(data / "pairs" / m / "pairs.parquet")
        tables.utterance_summary(
            [str(metrics_path(data, m, c, lay)) for c in CONDITIONS
             for lay in range(PAPER_MODELS[m][0])], pair_df, opts, SEED)  # fmt: skip
    elif args.child == "pandas_utterance":
        m = args.probe_model
        res, ngroups = pandas_utterance(
            [str(metrics_path(data, m, c, lay)) for c in CONDITIONS
             for lay in range(PAPER_MODELS[m][0])],
            str(data / "pairs" / m / "pairs.parquet"), opts.n_boot, opts.ci, SEED)  # fmt: skip
        # the point estimates must equal ours
        pair_df = pl.read_parquet(data / "pairs" / m / "pairs.parquet")
        ours = tables.utterance_summary(
            [str(metrics_path(data, m, "clean", 0))] + [str(metrics_path(data, m, c, 0))
             for c in CONDITIONS[1:]], pair_df, MetricOptions(n_boot=0), SEED)  # fmt: skip
        one = ours.filter((pl.col("layer") == 0) & (pl.col("observable") == "alpha"))
        mine = res[res["layer"] == 0].set_index(["condition", "prefix", "component", "k"])
        for r in one.iter_rows(named=True):
            theirs = mine.loc[(r["condition"], r["prefix"], r["component"], r["k"]), "alpha_delta"]
            assert np.isclose(r["delta"], theirs, rtol=1e-9), (r, theirs)
        extra = {"groups": ngroups}
    extra["wall"] = time.perf_counter() - t0
    _report(extra)


def run_child(stage: str, args: argparse.Namespace, **over) -> dict:
    argv = [sys.executable, __file__, "--child", stage, "--data", str(args.data),
            "--models", *over.get("models", args.models),
            "--tables-options", over.get("options", "{}"),
            "--shard-size", str(args.shard_size),
            "--pandas-shards", str(args.pandas_shards),
            "--probe-model", over.get("probe_model", args.probe_model),
            "--probe-layer", str(over.get("probe_layer", 0)),
            "--n-utt", str(N_UTT)]  # fmt: skip
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    run = subprocess.run(argv, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if run.returncode != 0:
        sys.exit(f"stage {stage} failed:\n{run.stdout[-3000:]}\n{run.stderr[-5000:]}")
    line = [x for x in run.stdout.splitlines() if x.startswith("RESULT ")][-1]
    res = json.loads(line[len("RESULT ") :])
    res["process_wall"] = wall
    res["load"] = max(load, os.getloadavg()[0])  # the machine's 1-min load around the stage
    return res


def du(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**30


def row(label: str, r: dict | None = None, width: int = 56) -> str:
    """label, wall s, CPU s, peak RSS MB, load average."""
    if r is None:
        return f"{label:<{width}}{'wall s':>9}{'CPU s':>9}{'RSS MB':>9}{'load':>7}"
    return (f"{label:<{width}}{r['wall']:>9.1f}{r['cpu']:>9.1f}{r['maxrss_mb']:>9.0f}"
            f"{r['load']:>7.1f}")  # fmt: skip


def main() -> None:
    global N_UTT
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=list(PAPER_MODELS), choices=list(PAPER_MODELS))
    ap.add_argument("--data", help="directory for the synthetic data (kept, reused if present)")
    ap.add_argument("--shard-size", type=int, default=64)
    ap.add_argument("--tables-options", action="append",
                    help="metrics options (JSON) of one tables run; repeatable. Default: "
                         + ", ".join(DEFAULT_TABLES))  # fmt: skip
    ap.add_argument("--no-pooled-probe", action="store_true")
    ap.add_argument("--probe-boot", type=int, default=10, help="replicates of the pooled probe")
    ap.add_argument("--no-pandas", action="store_true")
    ap.add_argument("--pandas-shards", type=int, default=9, help="shards of the pandas subset")
    ap.add_argument("--probe-model", default="tiny", choices=list(PAPER_MODELS))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--probe-layer", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--n-utt", type=int, default=N_UTT, help=argparse.SUPPRESS)  # quick checks
    args = ap.parse_args()
    N_UTT = args.n_utt
    if args.child:
        args.tables_options = (args.tables_options or ["{}"])[-1]
        return child(args)
    runs = args.tables_options if args.tables_options is not None else DEFAULT_TABLES

    keep = args.data is not None
    data = Path(args.data) if keep else Path(tempfile.mkdtemp(prefix="bench-agg-"))
    args.data = data
    try:
        if not (data / "decode").is_dir():
            res = run_child("generate", args)
            print(f"synthetic data: {res['files']} files ({res['shards']} shards), "
                  f"{du(data):.1f} GiB, written in {res['wall']:.0f} s", flush=True)  # fmt: skip
        stages = {}
        for stage in ("layer_metrics", "pairs"):
            stages[stage] = run_child(stage, args)
            print(f"{stage}: {stages[stage]}", flush=True)
        n_rows = {m: N_UTT * 4 * PAPER_MODELS[m][0] * 3 * 3 for m in args.models}
        print(f"hell pairs per model: {stages['pairs']['pairs']}; "
              f"spectra rows (full + 2 prefixes) per model: {n_rows}", flush=True)  # fmt: skip
        tables_runs = {}
        for opt in runs:
            r = {}
            if json.loads(opt).get("pooled", True):
                r["pooled"] = run_child("pooled", args, options=opt, probe_layer=-1)
            r["tables"] = run_child("tables", args, options=opt)
            tables_runs[opt] = r
            print(f"run {opt}: {r}", flush=True)
        probes = {}
        if not args.no_pooled_probe:
            # the exact pooled scope of layer 0 of each model, without and with probe_boot
            # replicates: its time is fixed + B * per-replicate, extrapolated to B and layers
            for m in args.models:
                probes[m] = {
                    b: run_child("pooled", args, models=[m], probe_layer=0, options=json.dumps(
                        {"pooled_boot_rank": 0, "pooled_n_boot": b}))
                    for b in (0, args.probe_boot)
                }  # fmt: skip
                print(f"pooled probe {m} layer 0 (exact): {probes[m]}", flush=True)
        pandas = {}
        if not args.no_pandas:
            for stage in ("ours_observables", "pandas_observables", "ours_utterance",
                          "pandas_utterance"):  # fmt: skip
                pandas[stage] = run_child(stage, args)
                print(f"{stage}: {pandas[stage]}", flush=True)

        print(f"\n=== ours at paper scale: {', '.join(args.models)}, shard size "
              f"{args.shard_size}, 2 cores ===")  # fmt: skip
        print(row("stage", None))
        base = stages["layer_metrics"]["wall"] + stages["pairs"]["wall"]
        lm = stages["layer_metrics"]
        print(row(f"layer_metrics ({lm['jobs']} jobs, one after the other)", lm))
        print(f"  per job: max {lm['max_job_s']:.2f} s, mean {lm['mean_job_s']:.2f} s")
        print(row("pairs (3 jobs)", stages["pairs"]))
        for opt, r in tables_runs.items():
            print(f"metrics options {opt}:")
            serial, critical = base, lm["max_job_s"] + stages["pairs"]["wall"]
            if "pooled" in r:
                po = r["pooled"]
                print(row(f"  pooled ({po['jobs']} jobs, one after the other)", po))
                print(f"    per job: max {po['max_job_s']:.2f} s, mean {po['mean_job_s']:.2f} s")
                serial += po["wall"]
                critical += po["max_job_s"]
            t = r["tables"]
            print(row("  tables (1 job)", t))
            parts = [f"{k} {t[k]:.1f} s" for k in ("utterance_summary", "pooled_summary") if k in t]
            print("    " + ", ".join(parts))
            serial += t["wall"]
            critical += t["wall"]
            print(f"    layer_metrics -> pairs -> [pooled ->] tables: {serial:.1f} s one job after "
                  f"another on this machine; {critical:.1f} s as the DAG's critical path (the "
                  "slowest job of each stage, jobs of a stage in parallel)")  # fmt: skip
            rss = max(x["maxrss_mb"] for x in (lm, stages["pairs"], *r.values()))
            print(f"    peak RSS of any job {rss:.0f} MB")
        if probes:
            B, pb = 200, args.probe_boot
            est = 0.0
            print(f"\npooled scope, exact (pooled_boot_rank 0, pooled_n_boot {B}): layer 0 "
                  f"measured with 0 and {pb} replicates, extrapolated linearly to {B} and to "
                  "all layers")  # fmt: skip
            for m, r in probes.items():
                L = PAPER_MODELS[m][0]
                fixed, per = r[0]["wall"], (r[pb]["wall"] - r[0]["wall"]) / pb
                if per <= 0:
                    print(f"  {m:<16} replicates too cheap to measure at this size")
                    continue
                t = (fixed + B * per) * L
                est += t
                print(f"  {m:<16} layer 0: {fixed:6.1f} s + {B} x {per:6.3f} s; x {L:>2} layers "
                      f"= {t:7.0f} s   peak RSS {max(x['maxrss_mb'] for x in r.values()):.0f} MB"
                      f"  load {max(x['load'] for x in r.values()):.1f}")  # fmt: skip
            print(f"  {'all models':<16} {est:7.0f} s = {est / 3600:.2f} h")

        if pandas:
            m = args.probe_model
            print("\n=== reference: straightforward pandas vs ours, same data ===")
            print(f"{'':<56}{'ours s':>9}{'pandas s':>10}{'pandas/ours':>12}{'RSS ours/pd MB':>16}")
            frac = min(1.0, args.pandas_shards * args.shard_size / N_UTT)
            lm_full = stages["layer_metrics"]["wall"]
            pd_lm_full = pandas["pandas_observables"]["wall"] / frac * len(CONDITIONS) * sum(
                PAPER_MODELS[x][0] for x in args.models) / len(args.models)  # fmt: skip
            first = next(iter(tables_runs.values()), None)
            uf = first["tables"]["utterance_summary"] if first else float("nan")
            scale = sum(PAPER_MODELS[x][0] + 1 for x in args.models) / (PAPER_MODELS[m][0] + 1)
            lines = [
                (f"observables: clean, layer 0, {args.pandas_shards} shards, each model",
                 pandas["ours_observables"], pandas["pandas_observables"]),
                ("observables: all layer_metrics jobs (pandas scaled)",
                 {"wall": lm_full}, {"wall": pd_lm_full}),
                (f"utterance scope: {m} ({pandas['pandas_utterance']['groups']} groups)",
                 pandas["ours_utterance"], pandas["pandas_utterance"]),
                ("utterance scope: all models (pandas scaled)",
                 {"wall": uf}, {"wall": pandas["pandas_utterance"]["wall"] * scale}),
            ]  # fmt: skip
            for label, ours, theirs in lines:
                rss = (f"{ours['maxrss_mb']:>9.0f}/{theirs['maxrss_mb']:.0f}"
                       if "maxrss_mb" in ours else "")  # fmt: skip
                print(f"{label:<56}{ours['wall']:>9.2f}{theirs['wall']:>10.1f}"
                      f"{theirs['wall'] / ours['wall']:>12.1f}{rss}")  # fmt: skip
            print("pandas scaled linearly: observables by rows, the utterance scope by groups; "
                  "our layer_metrics time includes writing the files")  # fmt: skip
    finally:
        if not keep:
            shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
