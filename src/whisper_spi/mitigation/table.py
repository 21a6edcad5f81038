"""The mitigation table: every intervention x strength and every baseline, per model.

Arms: ``plain`` (the decode stage's transcripts, strength 0), ``gating`` (the plain decode
with OpenAI's no-speech skip: emptied where :func:`whisper_spi.mitigation.fallback.is_silence`),
the decoded baselines (OpenAI's fallback and transcribe(), faster-whisper's arms:
registry.DECODED_BASELINES) and each intervention at each strength. Per
utterance: hallucination (WER > the threshold; for an empty reference, any word), WER,
the taxonomy type (:func:`whisper_spi.taxonomy.labels.label_transcripts`) and the decoded length.
Intervals resample speakers with all their utterances (a cluster bootstrap; on non-speech
inputs, which no one speaks, each item is its own unit), with the same replicates for every
arm of a model x condition (seeded by model/condition only), so the differences to the
fallback, to the plain decode and to the model's best baseline are paired. The best baseline
is the arm users already have (registry.USER_BASELINES) with the lowest hallucination rate on
the pooled stresses (ties: on the non-speech inputs), chosen per model on the point
estimates: an intervention is then judged against the strongest of them, never against a
weak one picked after the fact. ``stressed`` pools the stresses and ``nonspeech`` the
non-speech inputs.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from itertools import product
from pathlib import Path

import numpy as np
import polars as pl

from whisper_spi import schemas
from whisper_spi.analysis.bootstrap import (
    TABLE_BLOCK,
    count_blocks,
    mean_replicates,
    percentile_interval,
    seeded_rng,
)
from whisper_spi.analysis.markdown import number, with_interval
from whisper_spi.errors import WhisperSpiError
from whisper_spi.mitigation.fallback import OPENAI, FallbackOptions, is_silence
from whisper_spi.registry import (
    BASELINES,
    CLEAN,
    FALLBACK,
    GATING,
    INTERVENTIONS,
    NO_SPEECH,
    NONSPEECH,
    PLAIN,
    POOLED,
    STRESSED,
    STRESSES,
    USER_BASELINES,
)
from whisper_spi.taxonomy.labels import HER_THRESHOLD, TYPES, hallucination_expr, label_transcripts
from whisper_spi.text import HALLUCINATION_WER

__all__ = [
    "arms_frame",
    "best_baselines",
    "mitigation_table",
    "summary",
    "verdicts",
]

ERROR_TYPES = tuple(t for t in TYPES if t != "correct")
METRICS = ("hallucination_rate", "wer", *(f"rate:{t}" for t in ERROR_TYPES), "mean_tokens")
_COLS = ["model", "method", "strength", "condition", "utt_id", "speaker", "reference",
         "hypothesis", "hit_max_length", "n_tokens"]  # fmt: skip


def _gated(plain: pl.DataFrame, opts: FallbackOptions) -> pl.DataFrame:
    drop = [
        is_silence(lp, ns, opts)
        for lp, ns in plain.select("avg_logprob", "no_speech_prob").iter_rows()
    ]
    return plain.with_columns(
        pl.Series("_drop", drop),
    ).with_columns(
        pl.when("_drop").then(pl.lit("")).otherwise("hypothesis").alias("hypothesis"),
        pl.when("_drop").then(pl.lit(0)).otherwise("n_tokens").alias("n_tokens"),
        pl.lit(GATING).alias("method"),
    ).drop("_drop")  # fmt: skip


def arms_frame(
    plain: pl.DataFrame,
    mitigated: pl.DataFrame,
    partners: Mapping[tuple[str, str], Sequence[str]],
    references: Mapping[str, str],
    threshold: float,
    opts: FallbackOptions = OPENAI,
    definition: str = "wer",
    her_threshold: float = HER_THRESHOLD,
) -> pl.DataFrame:
    """One row per arm x utterance: the per-utterance values the table averages.

    ``plain``: decode-contract transcripts; ``mitigated``: mitigation_transcripts rows
    (interventions and fallback). A decode hallucinates under the config's ``definition``
    (:func:`whisper_spi.taxonomy.labels.hallucination_expr`; ``threshold`` on WER,
    ``her_threshold`` on HER), from its taxonomy label.
    """
    base = plain.with_columns(pl.lit(PLAIN).alias("method"), pl.lit(0.0).alias("strength"))
    gated = _gated(base, opts).with_columns(pl.lit(float("nan")).alias("strength"))
    keep = [*_COLS, "avg_logprob", "no_speech_prob"]
    arms = pl.concat(
        [f.select(keep) for f in (base, gated, mitigated.select(keep))], how="vertical_relaxed"
    ).with_columns(pl.col("n_tokens").cast(pl.Int32))
    labels = label_transcripts(arms, partners, references)
    hallucinated = labels.select(
        hallucination_expr(definition, threshold, her_threshold).cast(pl.Float64)
    ).to_series()
    out = arms.select(_COLS).with_columns(
        hallucinated.alias("hallucination_rate"),
        labels["wer"].alias("wer"),  # NaN on a non-speech input: no reference
        pl.col("n_tokens").cast(pl.Float64).alias("mean_tokens"),
        *[pl.Series(f"rate:{t}", (labels["type"] == t).cast(pl.Float64)) for t in ERROR_TYPES],
    )
    return out


def mitigation_table(
    arms: pl.DataFrame, seed: int, n_boot: int = 1000, ci: float = 0.95
) -> pl.DataFrame:
    """The ``mitigation`` contract's rows of one or more models (see the module doc)."""
    arms = arms.with_columns(pl.col("condition").alias("source"))
    pooled = [
        arms.filter(pl.col("condition").is_in(parts)).with_columns(pl.lit(name).alias("condition"))
        for name, parts in POOLED.items()
    ]
    out = []
    best = best_baselines(arms)
    for (model, condition), group in pl.concat([arms, *pooled]).group_by(
        "model", "condition", maintain_order=True
    ):
        out += _cells(group, model, condition, best.get(model), seed, n_boot, ci)
    if not out:
        raise WhisperSpiError("mitigation: no decoded utterance to summarise")
    return schemas.frame_from_rows(out, "mitigation").sort(
        "model", "condition", "method", "strength", "metric", nulls_last=True
    )


def best_baselines(arms: pl.DataFrame) -> dict[str, str]:
    """model -> its best baseline users have: of registry.USER_BASELINES present, the one with
    the lowest hallucination rate over the stressed decodes; ties go to the lower rate on the
    non-speech inputs, then to the registry's order."""
    rate = pl.col("hallucination_rate")
    rates = (
        arms.filter(pl.col("method").is_in(USER_BASELINES))
        .group_by("model", "method")
        .agg(
            stressed=rate.filter(pl.col("condition").is_in(STRESSES)).mean(),
            silent=rate.filter(pl.col("condition").is_in(NONSPEECH)).mean(),
        )
        .with_columns(
            order=pl.col("method").replace_strict(
                {m: i for i, m in enumerate(USER_BASELINES)}, return_dtype=pl.Int32
            )
        )
        .sort("model", "stressed", "silent", "order", nulls_last=True)
        .unique("model", keep="first", maintain_order=True)
    )
    return dict(rates.select("model", "method").iter_rows())


def _cells(group, model, condition, best, seed, n_boot, ci) -> list[dict]:
    """Every arm x metric of one model x condition, on one set of speaker replicates;
    ``best``: the model's best baseline (:func:`best_baselines`), None if it has none."""
    key = ["source", "utt_id"]  # "stressed" holds an utterance once per stress
    units = group.filter(pl.col("method") == PLAIN).select(*key, "speaker").sort(key)
    if condition == NO_SPEECH or condition in NONSPEECH:  # no speaker: each item its own unit
        units = units.with_columns(speaker=pl.concat_str("source", "utt_id", separator="/"))
    arms = group.select("method", "strength").unique().sort("method", "strength", nulls_last=True)
    values = {}
    for method, strength in arms.iter_rows():
        same = pl.col("strength").is_nan() if np.isnan(strength) else pl.col("strength") == strength
        sel = group.filter((pl.col("method") == method) & same).select(*key, *METRICS)
        aligned = units.join(sel, on=key, how="left")
        if sel.height != units.height or aligned[METRICS[0]].null_count():
            raise WhisperSpiError(
                f"mitigation: {model}/{condition}: arm {method} at strength {strength} has "
                f"{sel.height} utterances, the plain decode {units.height}"
            )
        values[method, strength] = aligned.select(METRICS).to_numpy().astype(np.float64)
    fallback = next((v for (m, _), v in values.items() if m == FALLBACK), None)
    strongest = next((v for (m, _), v in values.items() if m == best), None)
    plain = values[PLAIN, 0.0]
    # columns: each arm's metrics, then its differences to the fallback, plain and the best
    blocks, names = [], []
    for arm, v in values.items():
        d_fb = v - fallback if fallback is not None else np.full_like(v, np.nan)
        d_best = v - strongest if strongest is not None else np.full_like(v, np.nan)
        blocks += [v, d_fb, v - plain, d_best]
        names.append(arm)
    V = np.concatenate(blocks, axis=1)
    groups = units["speaker"].to_numpy()
    rng = seeded_rng(seed, f"mitigation/{model}/{condition}")
    W = count_blocks(rng, V.shape[0], n_boot, TABLE_BLOCK, groups=groups)
    boot = mean_replicates(V, W, n_boot)
    lo, hi = percentile_interval(boot, ci)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a column with no value: NaN
        point = np.nanmean(np.where(np.isfinite(V), V, np.nan), axis=0)
    m = len(METRICS)
    rows = []
    for a, (method, strength) in enumerate(names):
        for j, metric in enumerate(METRICS):
            c, d, p, b = ((4 * a + k) * m + j for k in range(4))
            rows.append(
                {
                    "model": model,
                    "method": method,
                    "strength": strength,
                    "condition": condition,
                    "metric": metric,
                    "value": point[c],
                    "lo": lo[c],
                    "hi": hi[c],
                    "d_fallback": point[d],
                    "d_lo": lo[d],
                    "d_hi": hi[d],
                    "d_plain": point[p],
                    "dp_lo": lo[p],
                    "dp_hi": hi[p],
                    "best": best or "",
                    "d_best": point[b],
                    "db_lo": lo[b],
                    "db_hi": hi[b],
                    "n": V.shape[0],
                    "n_speakers": len(np.unique(groups)),
                    "n_boot": n_boot,
                }
            )
    return rows


def _cell(table: pl.DataFrame, condition: str, metric: str) -> pl.DataFrame:
    return table.filter((pl.col("condition") == condition) & (pl.col("metric") == metric))


def _fmt(v, lo, hi, spec=".3f") -> str:
    return with_interval(v, lo, hi, spec)


def summary(table: pl.DataFrame) -> pl.DataFrame:
    """One row per model x arm (contract ``mitigation_summary``): hallucination rate on the
    pooled stresses, clean WER and the hallucination rate on the pooled non-speech inputs,
    each with its CI and its paired difference to the fallback, the stressed and clean
    differences to the model's best baseline, and the decoded length."""
    hall = _cell(table, STRESSED, "hallucination_rate")
    clean = _cell(table, CLEAN, "wer")
    tokens = _cell(table, STRESSED, "mean_tokens")
    silent = _cell(table, NO_SPEECH, "hallucination_rate")
    key = ["model", "method", "strength"]
    rows = []
    joined = (
        hall.join(clean, on=key, suffix="_w", how="left")
        .join(silent, on=key, suffix="_n", how="left")
        .join(tokens.select(*key, pl.col("value").alias("tok")), on=key, how="left")
    )
    for r in joined.sort("model", "method", "strength", nulls_last=True).iter_rows(named=True):
        rows.append(
            {
                "model": r["model"],
                "method": r["method"],
                "strength": number(r["strength"], "g"),
                "hall_stressed": _fmt(r["value"], r["lo"], r["hi"]),
                "d_hall_vs_fallback": _fmt(r["d_fallback"], r["d_lo"], r["d_hi"], "+.3f"),
                "wer_clean": _fmt(r["value_w"], r["lo_w"], r["hi_w"]),
                "d_wer_clean_vs_fallback": _fmt(
                    r["d_fallback_w"], r["d_lo_w"], r["d_hi_w"], "+.3f"
                ),
                "hall_nonspeech": _fmt(r["value_n"], r["lo_n"], r["hi_n"]),
                "d_hall_nonspeech_vs_fallback": _fmt(
                    r["d_fallback_n"], r["d_lo_n"], r["d_hi_n"], "+.3f"
                ),
                "best": r["best"],
                "d_hall_vs_best": _fmt(r["d_best"], r["db_lo"], r["db_hi"], "+.3f"),
                "d_wer_clean_vs_best": _fmt(r["d_best_w"], r["db_lo_w"], r["db_hi_w"], "+.3f"),
                "tokens_stressed": number(r["tok"], ".1f"),
            }
        )
    return schemas.frame_from_rows(rows, "mitigation_summary")


def _effect(lo: float, hi: float) -> str:
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "undetermined"
    return "lower" if hi < 0 else "higher" if lo > 0 else "no detectable change"


def _arm(method: str, strength: float) -> str:
    return method if method in BASELINES else f"{method} {strength:g}"


def verdicts(table: pl.DataFrame) -> pl.DataFrame:
    """Per model, the causal questions answered from the table (contract
    ``mitigation_verdict``): does an intervention beat the best baseline users have at equal
    clean WER, which way does each regime's intervention move the stressed hallucination
    rate, and which way does each arm move the non-speech inputs' rate against the best
    baseline's."""
    rows = []
    silent = _cell(table, NO_SPEECH, "hallucination_rate")
    hall = _cell(table, STRESSED, "hallucination_rate")
    clean = _cell(table, CLEAN, "wer")
    key = ["model", "method", "strength"]
    both = hall.join(clean, on=key, suffix="_w")
    for model in sorted(table["model"].unique().to_list()):
        mine = both.filter((pl.col("model") == model) & ~pl.col("method").is_in(BASELINES))
        best = next(iter(both.filter(pl.col("model") == model)["best"]), "")
        lower = pl.col("db_hi") < 0
        wins = mine.filter(lower & (pl.col("db_hi_w") >= 0) & (pl.col("db_lo_w") <= 0))
        wins = wins.vstack(mine.filter(lower & (pl.col("db_hi_w") < 0)))
        if not best or not mine["d_best"].is_finite().any():
            answer = "undetermined: no baseline decode to compare with"
        elif wins.height:
            answer = "yes: " + "; ".join(
                f"{r['method']} {r['strength']:g}: "
                f"{_fmt(r['d_best'], r['db_lo'], r['db_hi'], '+.3f')} vs {best}, clean WER "
                f"{_fmt(r['d_best_w'], r['db_lo_w'], r['db_hi_w'], '+.3f')}"
                for r in wins.iter_rows(named=True)
            )
        else:
            answer = (
                f"no: no intervention x strength has a stressed hallucination rate below "
                f"{best}'s (95% CI of the difference below 0) without a higher clean WER"
            )
        rows.append(
            {
                "model": model,
                "question": f"beats the best baseline users have ({best or 'none'}) at equal "
                "clean WER",
                "answer": answer,
            }
        )
        regimes = [(name, m.regime) for name, m in INTERVENTIONS.items() if m.regime]
        for (method, regime), (inputs, cells) in product(
            regimes, (("stressed", hall), ("non-speech", silent))
        ):
            dose = cells.filter((pl.col("model") == model) & (pl.col("method") == method))
            if not dose.height:
                continue
            parts = [
                f"{r['strength']:g}: {_fmt(r['d_plain'], r['dp_lo'], r['dp_hi'], '+.3f')} "
                f"({_effect(r['dp_lo'], r['dp_hi'])})"
                for r in dose.sort("strength").iter_rows(named=True)
            ]
            rows.append(
                {
                    "model": model,
                    "question": f"{regime}: {inputs} hallucination rate vs plain, by strength",
                    "answer": "; ".join(parts),
                }
            )
        arms = silent.filter((pl.col("model") == model) & (pl.col("method") != best))
        if best and arms.height and arms["d_best"].is_finite().any():
            parts = [
                f"{_arm(r['method'], r['strength'])}: "
                f"{_fmt(r['d_best'], r['db_lo'], r['db_hi'], '+.3f')} "
                f"({_effect(r['db_lo'], r['db_hi'])})"
                for r in arms.sort("method", "strength", nulls_last=True).iter_rows(named=True)
            ]
            rows.append(
                {
                    "model": model,
                    "question": f"non-speech inputs: hallucination rate vs {best}",
                    "answer": "; ".join(parts),
                }
            )
    return schemas.frame_from_rows(rows, "mitigation_verdict")


def markdown(summary_df: pl.DataFrame, verdict_df: pl.DataFrame, ci: float = 0.95) -> str:
    """The summary and the verdicts as Markdown."""
    cols = summary_df.columns
    lines = [
        "# Mitigation: interventions vs the baselines users run",
        "",
        f"Hallucination rate on the pooled stresses, WER on clean audio and hallucination rate "
        f"(any word) on the pooled non-speech inputs, {ci:.0%} speaker-grouped bootstrap CIs "
        "(non-speech: items resampled); differences paired on the same utterances.",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
        *["| " + " | ".join(str(v) for v in row) + " |" for row in summary_df.iter_rows()],
        "",
        "## Verdicts",
        "",
        *[f"- **{m}**, {q}: {a}" for m, q, a in verdict_df.iter_rows()],
        "",
    ]
    return "\n".join(lines)


def run_mitigation(
    model_name: str,
    transcripts: Sequence[str | Path],
    mitigated: Sequence[str | Path],
    stress_manifests: Sequence[str | Path],
    corpus_manifest: str | Path,
    out_dir: str | Path,
    *,
    threshold: float = HALLUCINATION_WER,
    seed: int = 0,
    n_boot: int = 1000,
    definition: str = "wer",
    her_threshold: float = HER_THRESHOLD,
) -> None:
    """The ``mitigation`` stage: one model's table (CSV), summary (CSV) and dose-response
    figure, into ``out_dir``, from its plain decode ``transcripts``, the intervention stage's
    ``mitigated`` transcripts (none: the baselines only) and the ``stress_manifests`` (their
    speaker_mix partners); a decode hallucinates under ``definition`` (:func:`arms_frame`)."""
    from whisper_spi.charts import save_chart
    from whisper_spi.mitigation.figures import dose_response_chart
    from whisper_spi.taxonomy.labels import mix_partners

    plain = schemas.scan_parquet(transcripts, "transcripts").collect()
    edited = (
        schemas.scan_parquet(mitigated, "mitigation_transcripts").collect() if mitigated else None
    )
    partners: dict[tuple[str, str], list[str]] = {}
    for path in stress_manifests:
        partners |= mix_partners(schemas.scan_parquet([path], "stress_manifest").collect())
    corpus = schemas.scan_parquet([corpus_manifest], "manifest").collect()
    references = dict(corpus.select("utt_id", "text").iter_rows())
    if edited is None:
        edited = plain.clear().with_columns(method=pl.lit(""), strength=pl.lit(0.0))
    else:  # every arm on the utterances the intervention stage decoded
        plain = plain.join(
            edited.select("condition", "utt_id").unique(), on=["condition", "utt_id"]
        )
    arms = arms_frame(
        plain, edited, partners, references, threshold,
        definition=definition, her_threshold=her_threshold,
    )  # fmt: skip
    table = mitigation_table(arms, seed, n_boot)
    out = Path(out_dir)
    schemas.write_csv(table, "mitigation", out / "mitigation.csv")
    schemas.write_csv(summary(table), "mitigation_summary", out / "summary.csv")
    save_chart(dose_response_chart(table, model_name), out / "dose_response")


def run_summary(tables: Sequence[str], out_dir) -> None:
    """The ``mitigation-summary`` subcommand: every model's table joined (CSV + Markdown),
    the verdicts (CSV) and the trade-off figure."""
    from pathlib import Path

    from whisper_spi.charts import save_chart
    from whisper_spi.io import atomic_path
    from whisper_spi.mitigation.figures import tradeoff_chart

    table = pl.concat([schemas.read_csv(t, "mitigation") for t in tables])
    out = Path(out_dir)
    verdict = verdicts(table)
    schemas.write_csv(table, "mitigation", out / "mitigation.csv")
    schemas.write_csv(verdict, "mitigation_verdict", out / "verdict.csv")
    with atomic_path(out / "mitigation.md", suffix=".md.tmp") as tmp:
        tmp.write_text(markdown(summary(table), verdict))
    save_chart(tradeoff_chart(table), out / "tradeoff")
