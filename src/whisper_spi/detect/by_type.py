"""Can the detector's scores tell the kinds of hallucination apart? AUROC per taxonomy type.

The out-of-fold scores (trained on the configured hallucination definition) are reused: for
each error type, the AUROC of telling its decodes from the correct ones, and, the question of
issue 16, of telling a fabrication from a grounded recognition error.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from whisper_spi import schemas
from whisper_spi.analysis.bootstrap import count_blocks, percentile_interval
from whisper_spi.detect.evaluate import _BOOT_ELEMENTS, _weighted_auc_ap
from whisper_spi.io import derive_seed, stable_hash
from whisper_spi.taxonomy.labels import TYPES

__all__ = ["CONTRASTS", "METHODS_BY_TYPE", "auroc_by_type"]

# (positive type, negative type): each error type against correct decodes, and fabrication
# against grounded errors.
CONTRASTS = (
    *((t, "correct") for t in TYPES if t != "correct"),
    ("fabrication", "grounded_error"),
)
# ours with and without the decoded length T, the decoder-state probe, T alone, and
# Whisper's heuristics
METHODS_BY_TYPE = ("ours", "ours_no_T", "probe", "length", "avg_logprob", "compression_ratio",
                   "no_speech_prob")  # fmt: skip


def auroc_by_type(
    oof: pl.DataFrame,
    labels: pl.DataFrame,
    *,
    seed: int = 0,
    n_boot: int = 1000,
    ci: float = 0.95,
) -> pl.DataFrame:
    """Contract ``detect_by_type``: per model, setting, contrast and method, the AUROC of the
    out-of-fold scores with a speaker bootstrap interval (whole speakers resampled within each
    class, from ``default_rng([derive_seed(seed, "detect_by_type", model),
    stable_hash(setting/positive/negative)])``; the same replicates for every method)."""
    typed = oof.join(
        labels.select("model", "condition", "utt_id", "type"),
        on=["model", "condition", "utt_id"],
        how="inner",
    ).filter(pl.col("method").is_in(list(METHODS_BY_TYPE)))
    rows = []
    for (model, setting), grp in typed.group_by(["model", "setting"], maintain_order=True):
        wide = grp.pivot(on="method", index=["condition", "utt_id", "speaker", "type"],
                         values="score")  # fmt: skip
        methods = [m for m in METHODS_BY_TYPE if m in wide.columns]
        for pos, neg in CONTRASTS:
            sub = wide.filter(pl.col("type").is_in([pos, neg]))
            y = (sub["type"] == pos).cast(pl.Int8).to_numpy()
            n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
            boot: dict[str, np.ndarray] = {m: np.empty(0) for m in methods}
            if n_pos and n_neg and n_boot:
                rng = np.random.default_rng(
                    [derive_seed(seed, "detect_by_type", model),
                     stable_hash(f"{setting}/{pos}/{neg}")]
                )  # fmt: skip
                speakers = sub["speaker"].cast(pl.String).to_numpy()
                block = max(1, _BOOT_ELEMENTS // len(y))
                parts: dict[str, list[np.ndarray]] = {m: [] for m in methods}
                for W in count_blocks(rng, len(y), n_boot, block, strata=y, groups=speakers):
                    for m in methods:
                        parts[m].append(_weighted_auc_ap(sub[m].to_numpy(), y, W)[0])
                boot = {m: np.concatenate(parts[m]) for m in methods}
            for m in methods:
                point = (
                    float(_weighted_auc_ap(sub[m].to_numpy(), y, np.ones((1, len(y))))[0][0])
                    if n_pos and n_neg
                    else math.nan
                )
                lo = hi = math.nan
                if boot[m].size and np.isfinite(boot[m]).any():
                    lo, hi = (float(v) for v in percentile_interval(boot[m], ci))
                rows.append(
                    {
                        "model": model,
                        "setting": setting,
                        "positive": pos,
                        "negative": neg,
                        "method": m,
                        "auroc": point,
                        "auroc_lo": lo,
                        "auroc_hi": hi,
                        "n_pos": n_pos,
                        "n_neg": n_neg,
                        "n_speakers": int(sub["speaker"].n_unique()),
                    }
                )
    return schemas.frame_from_rows(rows, "detect_by_type")
