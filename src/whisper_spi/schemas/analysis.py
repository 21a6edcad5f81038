"""Contracts of the analysis stages (whisper_spi.analysis)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from whisper_spi.registry import (
    HELL,
    OBSERVABLE_SPECS,
    OBSERVABLES,
    PAPER_OBSERVABLES,
    STRESSES,
    Observable,
)
from whisper_spi.schemas._core import BOOL, F64, I32, I64, STR, Col, Contract, add


def _listing(names: Sequence[str], last: str) -> str:
    """The names as prose: "a, b and c" (``last`` = "and")."""
    return f"{', '.join(names[:-1])} {last} {names[-1]}" if len(names) > 1 else names[0]


_STRESSED_CONDITIONS = f"{', '.join(STRESSES)}, or {HELL}"
_PERCENT = _listing([o for o in OBSERVABLES if OBSERVABLE_SPECS[o].percent], "and")
_DIFFERENCE = _listing([o for o in OBSERVABLES if not OBSERVABLE_SPECS[o].percent], "and")
_DELTA_DOC = (
    f"Delta per pair, stressed vs its clean twin: percent change 100*(s-c)/c for {_PERCENT}, "
    f"difference s-c for {_DIFFERENCE}"
)
_PAIR_SET_DOC = (
    "all (every kept pair) or fabrication (kept pairs whose stressed transcript the taxonomy "
    "types fabrication; only when pairs.parquet has hallucination_type)"
)
_ADJ_DOC = (
    "length-adjusted delta (utterance scope, null for pooled): per pair the delta minus the "
    "effect of log(T_s / T_c) fitted on the clean twins, (s-c) - b log(T_s/T_c), for neff "
    "100((s/c)(T_c/T_s)^b - 1); mean over pairs"
)

# layer_metrics files have always had alpha before log10_kf: that column order is kept, any
# other observable follows in registry order
_METRICS_ORDER = ("neff", "alpha", "log10_kf")


def observable_cols(observables: Iterable[Observable]) -> tuple[Col, ...]:
    """layer_metrics' column of each observable."""
    first = {name: i for i, name in enumerate(_METRICS_ORDER)}
    ordered = sorted(observables, key=lambda o: first.get(o.name, len(first)))
    return tuple(Col(o.name, F64, o.doc, o.unit) for o in ordered)


def _table_cols() -> tuple[Col, ...]:
    """The tables' columns of the paper's observables: per observable n, the delta, its
    interval, median and length-adjusted value; then the paper's model and values; the signs."""
    specs = [OBSERVABLE_SPECS[o] for o in PAPER_OBSERVABLES]
    adj = "length-adjusted (layer_summary.delta_adj; null for pooled)"
    cols = []
    for o in specs:
        d, unit = o.column, "%" if o.percent else ""
        cols += [
            Col(f"n_{o.name}", I64, f"pairs with a finite Delta {o.title}"),
            Col(d, F64, f"Delta {o.title}" + ("" if o.percent else " (difference)"), unit),
            Col(f"{d}_ci_low", F64, "its interval, lower", unit),
            Col(f"{d}_ci_high", F64, "its interval, upper", unit),
            Col(f"{d}_median", F64, "median over pairs (null for pooled)", unit),
            Col(f"{d}_adj", F64, adj, unit),
            Col(f"{d}_adj_ci_low", F64, "its interval, lower", unit),
            Col(f"{d}_adj_ci_high", F64, "its interval, upper", unit),
        ]
    cols += [
        Col("paper_model", STR, "the paper's model this row is compared with (or null)"),
        Col("paper_match", STR, "exact, approx (a stand-in model), or null"),
    ]
    cols += [
        Col(f"paper_{o.column}", F64, f"the paper's Delta {o.title}", "%" if o.percent else "")
        for o in specs
    ]
    first = "sign(ours) == sign(paper)"
    cols += [
        Col(f"sign_agrees_{o.name}", BOOL, f"{'same' if i else first} for Delta {o.title}")
        for i, o in enumerate(specs)
    ]
    return tuple(cols)


add(
    Contract(
        "layer_metrics",
        "metrics/{model}/{condition}/layer-{layer}.parquet",
        "Spectral observables of every spectrum of one (model, condition, layer), at each K of "
        "metrics.k (top-K singular values); one row per utterance x component x prefix x K.",
        (
            Col("utt_id", STR, "utterance id"),
            Col("model", STR, "model name"),
            Col("condition", STR, "condition"),
            Col("layer", I32, "decoder layer, 0-based"),
            Col("component", STR, "cross_attn, self_attn, ffn or residual"),
            Col("prefix", I32, "0 = all T rows; L = the first L rows"),
            Col("k", I32, "top-K singular values the observables are computed on"),
            Col("n_rows", I32, "rows of the activation matrix (T, or L)"),
            Col("n_sv", I32, "singular values stored for the spectrum (min(T, d))"),
            Col("centered", BOOL, "column mean removed before the SVD"),
            *observable_cols(OBSERVABLE_SPECS.values()),
        ),
    )
)

add(
    Contract(
        "pairs",
        "pairs/{model}/pairs.parquet",
        "The analysed (clean, stressed) pairs of one model: a stressed utterance and its clean "
        "twin (same utt_id), kept when the stressed decode is a hallucination under "
        "hallucination.definition (the paper's: stressed WER > threshold). condition 'hell' "
        "repeats every kept pair of the three stresses (their union).",
        (
            Col("model", STR, "model name"),
            Col("condition", STR, _STRESSED_CONDITIONS),
            Col("stress", STR, "the stress actually applied (= condition unless hell)"),
            Col("utt_id", STR, "utterance id"),
            Col("speaker", STR, "speaker id"),
            Col("wer_clean", F64, "WER of the clean twin"),
            Col("wer_stressed", F64, "WER of the stressed transcript (> threshold)"),
            Col("n_tokens_clean", I32, "decoded tokens, clean"),
            Col("n_tokens_stressed", I32, "decoded tokens, stressed"),
            Col("hit_max_length_clean", BOOL, "clean decode stopped by max_new_tokens"),
            Col("hit_max_length_stressed", BOOL, "stressed decode stopped by max_new_tokens"),
            Col("threshold", F64, "the stressed-WER threshold used"),
            Col(
                "hallucination_type",
                STR,
                "taxonomy type of the stressed decode (contract taxonomy; null without labels)",
            ),
        ),
    )
)

add(
    Contract(
        "pair_counts",
        "pairs/{model}/pair_counts.parquet",
        "Pairs per model and condition: how many (clean, stressed) pairs exist and how many "
        "survive the stressed-WER threshold. hell sums the three stresses.",
        (
            Col("model", STR, "model name"),
            Col("condition", STR, _STRESSED_CONDITIONS),
            Col("n_total", I64, "pairs with both a clean and a stressed transcript"),
            Col("n_pairs", I64, "pairs kept (stressed WER > threshold)"),
            Col("frac_kept", F64, "n_pairs / n_total"),
            Col(
                "n_excluded",
                I64,
                "pairs above the threshold dropped by pairs.clean_max_wer or pairs.min_tokens",
            ),
            Col("n_hit_max_length", I64, "kept pairs whose stressed decode hit max_new_tokens"),
            Col("threshold", F64, "the stressed-WER threshold used"),
        ),
    )
)

add(
    Contract(
        "layer_summary",
        "tables/layer_summary.parquet",
        "Per layer (and layer = -1: mean over layers) the clean and stressed levels of each "
        "observable and their delta, with percentile intervals that resample whole speakers "
        "(or utterances: metrics.resample_unit). scope utterance: per-pair observables, mean "
        "across pairs, bootstrap; scope pooled: one spectrum of the N x d matrix of "
        "per-utterance row means, m-of-n subsamples without replacement, rescaled. "
        + _DELTA_DOC
        + ".",
        (
            Col("scope", STR, "utterance or pooled"),
            Col("model", STR, "model name"),
            Col("pair_set", STR, _PAIR_SET_DOC),
            Col("condition", STR, _STRESSED_CONDITIONS),
            Col("layer", I32, "decoder layer, 0-based; -1 = mean over the model's layers"),
            Col("component", STR, "cross_attn, self_attn, ffn or residual"),
            Col("prefix", I32, "0 = full length; L = length-matched on the first L rows"),
            Col("k", I32, "top-K"),
            Col("observable", STR, _listing(OBSERVABLES, "or")),
            Col("delta_kind", STR, f"percent ({_PERCENT}) or difference (the others)"),
            Col("n", I64, "pairs contributing (finite delta)"),
            Col("clean", F64, "clean level: mean over pairs (utterance) or pooled value"),
            Col("clean_ci_low", F64, "bootstrap CI of clean, lower"),
            Col("clean_ci_high", F64, "bootstrap CI of clean, upper"),
            Col("stressed", F64, "stressed level: mean over pairs or pooled value"),
            Col("stressed_ci_low", F64, "bootstrap CI of stressed, lower"),
            Col("stressed_ci_high", F64, "bootstrap CI of stressed, upper"),
            Col("delta", F64, "utterance: mean of per-pair deltas; pooled: delta of pooled"),
            Col("delta_median", F64, "median of per-pair deltas (null for pooled)"),
            Col("delta_ci_low", F64, "bootstrap CI of delta, lower"),
            Col("delta_ci_high", F64, "bootstrap CI of delta, upper"),
            Col("delta_adj", F64, _ADJ_DOC),
            Col("delta_adj_ci_low", F64, "its interval (the fit redone per replicate), lower"),
            Col("delta_adj_ci_high", F64, "its interval, upper"),
            Col("length_slope", F64, "slope b of the observable (log N_eff) on log T, clean twins"),
            Col("n_boot", I32, "replicates (0: no CI)"),
        ),
    )
)

add(
    Contract(
        "tables",
        "tables/tables.parquet",
        "The paper's Tables 1 (final decoder layer) and 2 (mean over layers): Delta N_eff %, "
        "Delta log10 Kf and Delta alpha per model x component x condition x K, each scope and "
        "prefix and pair set, raw and length-adjusted, with the paper's value beside the rows "
        "closest to its definition (pair set all, hell, K=50, full length).",
        (
            Col("table", STR, "table1_final_layer or table2_layer_mean"),
            Col("scope", STR, "utterance or pooled"),
            Col("pair_set", STR, _PAIR_SET_DOC),
            Col("prefix", I32, "0 = full length; L = length-matched"),
            Col("model", STR, "model name"),
            Col("layer", I32, "final decoder layer (table 1); -1 = mean over layers (table 2)"),
            Col("component", STR, "cross_attn, self_attn, ffn or residual"),
            Col("condition", STR, _STRESSED_CONDITIONS),
            Col("k", I32, "top-K"),
            Col("n", I64, "pairs in the cell (the largest of the per-observable n)"),
            *_table_cols(),
        ),
    )
)

add(
    Contract(
        "pooled_cells",
        "pooled/{model}/layer-{layer}.parquet",
        "Scope pooled of one model x decoder layer, before the tables: per condition x "
        "component x K x observable, the point estimate (replicate -1) and every subsample "
        "replicate (m of the n_units speakers or utterances, without replacement) of the clean "
        "and stressed pooled observables and their delta; hell is the pair-weighted mean of "
        "the three stresses, replicate by replicate; the tables average the replicates over "
        "layers for layer = -1. The same job writes the "
        "layer's rank profiles to pooled/{model}/layer-{layer}-profile.parquet (contract "
        f"rank_profile). delta: 100*(s-c)/c for {_PERCENT}, s-c for the others.",
        (
            Col("model", STR, "model name"),
            Col("pair_set", STR, _PAIR_SET_DOC),
            Col("condition", STR, _STRESSED_CONDITIONS),
            Col("layer", I32, "decoder layer, 0-based"),
            Col("component", STR, "cross_attn, self_attn, ffn or residual"),
            Col("n", I64, "pairs pooled (rows of the N x d matrix; hell: the stresses' sum)"),
            Col("n_units", I64, "units the subsamples draw from (speakers or utterances)"),
            Col("n_drawn", I64, "units a subsample keeps, no replacement (replicate -1: n_units)"),
            Col("replicate", I32, "-1 = point estimate; 0..B-1 = subsample replicate"),
            Col("k", I32, "top-K"),
            Col("observable", STR, _listing(OBSERVABLES, "or")),
            Col("clean", F64, "pooled clean value"),
            Col("stressed", F64, "pooled stressed value"),
            Col("delta", F64, "delta of the two"),
        ),
    )
)

add(
    Contract(
        "rank_profile",
        "tables/rank_profile.parquet",
        "Mean full-length spectra per rank over the kept pairs (clean twins vs stressed), for "
        "the scree and tail-energy figures.",
        (
            Col("model", STR, "model name"),
            Col("condition", STR, _STRESSED_CONDITIONS),
            Col("layer", I32, "decoder layer, 0-based"),
            Col("component", STR, "cross_attn, self_attn, ffn or residual"),
            Col("rank", I32, "1-based rank i"),
            Col("n", I64, "pairs"),
            Col("clean_sv", F64, "mean s_i of clean twins having rank i", "activation units"),
            Col("stressed_sv", F64, "mean s_i of stressed having rank i", "activation units"),
            Col("clean_energy", F64, "mean of s_i^2 / sum_j s_j^2 (0 beyond a spectrum's end)"),
            Col("stressed_energy", F64, "same, stressed"),
            Col("energy_ratio", F64, "stressed_energy / clean_energy"),
        ),
    )
)

add(
    Contract(
        "prefix_counts",
        "tables/prefix_counts.csv",
        "How many pairs each stored length-matched prefix L keeps (a pair needs L decoded rows "
        "on both sides), per model and condition, and whether Tables 1 and 2 show it: only "
        "prefixes no longer than the median stressed decode of the model's kept pairs.",
        (
            Col("model", STR, "model name"),
            Col("condition", STR, _STRESSED_CONDITIONS),
            Col("prefix", I32, "L, the first L decoded rows"),
            Col("n_pairs", I64, "pairs with both spectra at prefix L (final layer)"),
            Col("n_full", I64, "pairs at full length"),
            Col("median_stressed_rows", F64, "median decoded rows T of the stressed side (hell)"),
            Col("shown", BOOL, "L <= median_stressed_rows: the tables show this prefix"),
        ),
    )
)

add(
    Contract(
        "levels",
        "tables/levels.csv",
        "Graded stress (whisper_spi.analysis.levels): per model, stress and level, the "
        "hallucination rate over every decode (quantity hallucination_rate) and each "
        "observable's mean delta at the final decoder layer (full length, the figures' K) "
        "over every pair or the hallucinated pairs; intervals resample whole speakers "
        "(metrics.resample_unit). Rows run from the mildest level to the harshest.",
        (
            Col("model", STR, "model name"),
            Col("stress", STR, _listing(STRESSES, "or")),
            Col("condition", STR, "the stress at its own level, or <stress>@<level>"),
            Col("level", F64, "time_stretch factor, speaker_mix speakers or gaussian_noise SNR dB"),
            Col("paper", BOOL, "the stress's own level (Tables 1 and 2 use it)"),
            Col("quantity", STR, f"hallucination_rate, or {_listing(OBSERVABLES, 'or')}"),
            Col("component", STR, "decoder component of a delta (null for the rate)"),
            Col("pairs", STR, "every or hallucinated: the pairs a delta averages (null: rate)"),
            Col("n", I64, "decodes (rate) or pairs (delta)"),
            Col("value", F64, f"the rate, or the mean delta ({_DELTA_DOC})"),
            Col("ci_low", F64, "interval's lower end (null without resampling)"),
            Col("ci_high", F64, "interval's upper end"),
        ),
    )
)
