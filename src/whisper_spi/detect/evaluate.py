"""AUROC and AUPRC of the out-of-fold scores, with a stratified, paired bootstrap."""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from whisper_spi import schemas
from whisper_spi.analysis.bootstrap import count_blocks, percentile_interval
from whisper_spi.analysis.markdown import number, with_interval
from whisper_spi.detect.crossval import BASELINES, METHODS, REFERENCES
from whisper_spi.io import derive_seed, stable_hash

__all__ = ["comparison_table", "evaluate", "markdown_report", "results_table"]

_BOOT_ELEMENTS = 1 << 22  # counts per block of replicates: bounded memory


def _weighted_auc_ap(scores: np.ndarray, y: np.ndarray, W: np.ndarray) -> tuple:
    """AUROC (ties count 1/2) and average precision, one per row of the weight matrix ``W``.

    A bootstrap replicate is a vector of counts, so each replicate is the weighted metric on
    the original sample; this evaluates many replicates with one sort (the distinct score
    levels) and a bincount, no Python loop over replicates. Matches scikit-learn's
    roc_auc_score / average_precision_score with sample_weight.
    """
    levels, inv = np.unique(scores, return_inverse=True)
    L, B = len(levels), W.shape[0]
    pos = y.astype(bool)
    base = (np.arange(B) * L)[:, None]
    wp = np.bincount((base + inv[pos]).ravel(), W[:, pos].ravel(), B * L).reshape(B, L)
    wn = np.bincount((base + inv[~pos]).ravel(), W[:, ~pos].ravel(), B * L).reshape(B, L)
    P, N = wp.sum(axis=1), wn.sum(axis=1)
    below = np.cumsum(wn, axis=1) - wn
    tp = np.cumsum(wp[:, ::-1], axis=1)
    fp = np.cumsum(wn[:, ::-1], axis=1)
    with np.errstate(all="ignore"):
        auc = (wp * (below + 0.5 * wn)).sum(axis=1) / (P * N)
        prec = tp / np.where(tp + fp > 0, tp + fp, 1.0)
        ap = (wp[:, ::-1] * prec).sum(axis=1) / P
    bad = (P <= 0) | (N <= 0)
    auc[bad] = np.nan
    ap[bad] = np.nan  # one class only: no detection task (AP would be a trivial 1)
    return auc, ap


def evaluate(
    oof: pl.DataFrame, *, seed: int = 0, n_boot: int = 1000, ci: float = 0.95
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(:func:`results_table`, :func:`comparison_table`) from one set of bootstrap replicates.

    Replicates resample speakers with replacement (every utterance of a drawn speaker counts
    once per draw), within each class, the same replicates
    for every method of a (model, setting) (a paired bootstrap), from
    ``default_rng([derive_seed(seed, "detect", model), stable_hash(setting)])``. CIs are
    percentile intervals of coverage ``ci``. The comparison has one row per (ours-family
    method, baseline), the baselines being the heuristics and the reference detectors
    (:data:`~whisper_spi.detect.crossval.REFERENCES`: the decoder-state probe), which are
    compared against, not with the heuristics; ``best_baseline`` marks the heuristic baseline
    with the highest point AUROC (chosen on the same data, which favours the baseline).
    ``p_boot`` is the fraction of replicates where ours does not beat the baseline
    (d_auroc <= 0).
    """
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci!r}")
    res_rows, cmp_rows = [], []
    for (model, setting), grp in oof.group_by(["model", "setting"], maintain_order=True):
        wide = grp.pivot(on="method", index=["condition", "utt_id"], values="score")
        labels = grp.filter(pl.col("method") == grp["method"][0]).select(
            "condition", "utt_id", "speaker", "hallucination"
        )
        wide = labels.join(wide, on=["condition", "utt_id"], how="left", maintain_order="left")
        names = [m for m in grp["method"].unique(maintain_order=True).to_list()]
        y = wide["hallucination"].cast(pl.Int8).to_numpy()
        speakers = wide["speaker"].cast(pl.String).to_numpy()
        S = {m: wide[m].to_numpy().astype(np.float64) for m in names}
        rng = np.random.default_rng([derive_seed(seed, "detect", model), stable_hash(setting)])
        point = {m: _weighted_auc_ap(S[m], y, np.ones((1, len(y)))) for m in names}
        reps: dict[str, list] = {m: [[], []] for m in names}
        block = max(1, _BOOT_ELEMENTS // max(len(y), 1))
        # speakers resampled whole (utterances of a speaker are not independent, and there
        # are few), within each class, so that no replicate lacks one (AUROC undefined)
        for W in count_blocks(rng, len(y), n_boot, block, strata=y, groups=speakers):
            for m in names:
                a, p = _weighted_auc_ap(S[m], y, W)
                reps[m][0].append(a)
                reps[m][1].append(p)
        boot = {m: tuple(np.concatenate(r) if r else np.empty(0) for r in reps[m]) for m in names}

        def interval(x: np.ndarray) -> tuple[float, float]:
            if x.size == 0 or not np.isfinite(x).any():
                return math.nan, math.nan
            lo, hi = percentile_interval(x, ci)
            return float(lo), float(hi)

        for m in names:
            a_lo, a_hi = interval(boot[m][0])
            p_lo, p_hi = interval(boot[m][1])
            res_rows.append(
                {
                    "model": model,
                    "setting": setting,
                    "method": m,
                    "auroc": float(point[m][0][0]),
                    "auroc_lo": a_lo,
                    "auroc_hi": a_hi,
                    "auprc": float(point[m][1][0]),
                    "auprc_lo": p_lo,
                    "auprc_hi": p_hi,
                    "n": len(y),
                    "n_pos": int(y.sum()),
                }
            )
        heur = [m for m in names if m in BASELINES and np.isfinite(point[m][0][0])]
        best = max(heur, key=lambda m: point[m][0][0]) if heur else None
        against = {n for n, meth in METHODS.items() if meth.baseline} | set(REFERENCES)
        for m in names:
            if m in against:
                continue
            for b in names:
                if b not in against:
                    continue
                da = boot[m][0] - boot[b][0]
                dp = boot[m][1] - boot[b][1]
                finite = da[np.isfinite(da)]
                cmp_rows.append(
                    {
                        "model": model,
                        "setting": setting,
                        "method": m,
                        "baseline": b,
                        "best_baseline": b == best,
                        "d_auroc": float(point[m][0][0] - point[b][0][0]),
                        "d_auroc_lo": interval(da)[0],
                        "d_auroc_hi": interval(da)[1],
                        "d_auprc": float(point[m][1][0] - point[b][1][0]),
                        "d_auprc_lo": interval(dp)[0],
                        "d_auprc_hi": interval(dp)[1],
                        "p_boot": float((finite <= 0).mean()) if finite.size else math.nan,
                        "n": len(y),
                        "n_pos": int(y.sum()),
                    }
                )
    return (
        schemas.frame_from_rows(res_rows, "detect_results"),
        schemas.frame_from_rows(cmp_rows, "detect_comparison"),
    )


def results_table(
    oof: pl.DataFrame, *, seed: int = 0, n_boot: int = 1000, ci: float = 0.95
) -> pl.DataFrame:
    """model, setting, method, auroc, auroc_lo, auroc_hi, auprc, auprc_lo, auprc_hi, n, n_pos."""
    return evaluate(oof, seed=seed, n_boot=n_boot, ci=ci)[0]


def comparison_table(
    oof: pl.DataFrame, *, seed: int = 0, n_boot: int = 1000, ci: float = 0.95
) -> pl.DataFrame:
    """Paired bootstrap differences ours - baseline (see :func:`evaluate`)."""
    return evaluate(oof, seed=seed, n_boot=n_boot, ci=ci)[1]


def markdown_report(results: pl.DataFrame, comparison: pl.DataFrame) -> str:
    """Both tables as Markdown, with a line on how to read them."""
    out = [
        "# Hallucination detection from one decode pass",
        "",
        "Out-of-fold scores, speaker-grouped CV (no speaker in both train and test). Setting "
        "`all`: clean and stressed decodes (partly detects stressed audio); `stressed`: "
        "stressed conditions only. Brackets: 95% bootstrap CIs over speakers (whole speakers "
        "resampled within each class).",
        "",
        "| model | setting | method | AUROC | AUPRC | n | n_pos |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results.iter_rows(named=True):
        out.append(
            f"| {r['model']} | {r['setting']} | {r['method']} | "
            f"{with_interval(r['auroc'], r['auroc_lo'], r['auroc_hi'], '.3f')} | "
            f"{with_interval(r['auprc'], r['auprc_lo'], r['auprc_hi'], '.3f')} | "
            f"{r['n']} | {r['n_pos']} |"
        )
    out += [
        "",
        "## Ours minus the best heuristic baseline (paired bootstrap)",
        "",
        "| model | setting | method | best baseline | ΔAUROC | ΔAUPRC | p_boot |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in comparison.filter(pl.col("best_baseline")).iter_rows(named=True):
        out.append(_comparison_line(r))
    probe = comparison.filter(pl.col("baseline").is_in(list(REFERENCES)))
    if probe.height:
        out += [
            "",
            "## Ours minus the decoder-state probe (paired bootstrap)",
            "",
            "The probe: an L2 logistic regression on the row means of every captured layer and "
            "component (the same decodes, the same speaker folds; C chosen by an inner "
            "speaker-grouped search).",
            "",
            "| model | setting | method | reference | ΔAUROC | ΔAUPRC | p_boot |",
            "|---|---|---|---|---|---|---|",
            *[_comparison_line(r) for r in probe.iter_rows(named=True)],
        ]
    return "\n".join(out) + "\n"


def _comparison_line(r: dict) -> str:
    return (
        f"| {r['model']} | {r['setting']} | {r['method']} | {r['baseline']} | "
        f"{with_interval(r['d_auroc'], r['d_auroc_lo'], r['d_auroc_hi'], '.3f')} | "
        f"{with_interval(r['d_auprc'], r['d_auprc_lo'], r['d_auprc_hi'], '.3f')} | "
        f"{number(r['p_boot'], '.3f')} |"
    )
