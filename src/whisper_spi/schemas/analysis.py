"""Contracts of the analysis stages (whisper_spi.analysis)."""

from __future__ import annotations

from whisper_spi.schemas._core import BOOL, F64, I32, I64, STR, Col, Contract, add

_DELTA_DOC = (
    "Delta per pair, stressed vs its clean twin: percent change 100*(s-c)/c for neff, "
    "difference s-c for log10_kf, alpha and tail_energy"
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
            Col("neff", F64, "effective rank exp(H(p)) of the top K (metrics.neff_power)"),
            Col(
                "alpha",
                F64,
                "spectral alpha: minus the LSQ slope of log s_i vs log i over ranks "
                "alpha_start+1..K (default 2..K, the tail)",
            ),
            Col(
                "log10_kf",
                F64,
                "log10 Kirchhoff index K*sum 1/lambda_i of the top-K second-moment eigenvalues "
                "s^2/(n_rows-1) above the relative floor (covariance eigenvalues only when the "
                "spectra are centred)",
                "log10(1/activation units^2)",
            ),
            Col("tail_energy", F64, "sum_{i>K} s_i^2 / sum_i s_i^2 over the full spectrum"),
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
            Col("condition", STR, "time_stretch, speaker_mix, gaussian_noise, or hell"),
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
            Col("condition", STR, "time_stretch, speaker_mix, gaussian_noise, or hell"),
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
            Col("condition", STR, "time_stretch, speaker_mix, gaussian_noise, or hell"),
            Col("layer", I32, "decoder layer, 0-based; -1 = mean over the model's layers"),
            Col("component", STR, "cross_attn, self_attn, ffn or residual"),
            Col("prefix", I32, "0 = full length; L = length-matched on the first L rows"),
            Col("k", I32, "top-K"),
            Col("observable", STR, "neff, log10_kf, alpha or tail_energy"),
            Col("delta_kind", STR, "percent (neff) or difference (the others)"),
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
            Col("condition", STR, "time_stretch, speaker_mix, gaussian_noise, or hell"),
            Col("k", I32, "top-K"),
            Col("n", I64, "pairs in the cell (the largest of the per-observable n)"),
            Col("n_neff", I64, "pairs with a finite Delta N_eff"),
            Col("d_neff_pct", F64, "Delta N_eff", "%"),
            Col("d_neff_pct_ci_low", F64, "its interval, lower", "%"),
            Col("d_neff_pct_ci_high", F64, "its interval, upper", "%"),
            Col("d_neff_pct_median", F64, "median over pairs (null for pooled)", "%"),
            Col(
                "d_neff_pct_adj",
                F64,
                "length-adjusted (layer_summary.delta_adj; null for pooled)",
                "%",
            ),
            Col("d_neff_pct_adj_ci_low", F64, "its interval, lower", "%"),
            Col("d_neff_pct_adj_ci_high", F64, "its interval, upper", "%"),
            Col("n_log10_kf", I64, "pairs with a finite Delta log10 Kf"),
            Col("d_log10_kf", F64, "Delta log10 Kf (difference of logs)"),
            Col("d_log10_kf_ci_low", F64, "its interval, lower"),
            Col("d_log10_kf_ci_high", F64, "its interval, upper"),
            Col("d_log10_kf_median", F64, "median over pairs (null for pooled)"),
            Col(
                "d_log10_kf_adj", F64, "length-adjusted (layer_summary.delta_adj; null for pooled)"
            ),
            Col("d_log10_kf_adj_ci_low", F64, "its interval, lower"),
            Col("d_log10_kf_adj_ci_high", F64, "its interval, upper"),
            Col("n_alpha", I64, "pairs with a finite Delta alpha"),
            Col("d_alpha", F64, "Delta alpha (difference)"),
            Col("d_alpha_ci_low", F64, "its interval, lower"),
            Col("d_alpha_ci_high", F64, "its interval, upper"),
            Col("d_alpha_median", F64, "median over pairs (null for pooled)"),
            Col("d_alpha_adj", F64, "length-adjusted (layer_summary.delta_adj; null for pooled)"),
            Col("d_alpha_adj_ci_low", F64, "its interval, lower"),
            Col("d_alpha_adj_ci_high", F64, "its interval, upper"),
            Col("paper_model", STR, "the paper's model this row is compared with (or null)"),
            Col("paper_match", STR, "exact, approx (a stand-in model), or null"),
            Col("paper_d_neff_pct", F64, "the paper's Delta N_eff", "%"),
            Col("paper_d_log10_kf", F64, "the paper's Delta log10 Kf"),
            Col("paper_d_alpha", F64, "the paper's Delta alpha"),
            Col("sign_agrees_neff", BOOL, "sign(ours) == sign(paper) for Delta N_eff"),
            Col("sign_agrees_log10_kf", BOOL, "same for Delta log10 Kf"),
            Col("sign_agrees_alpha", BOOL, "same for Delta alpha"),
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
        "rank_profile). delta: 100*(s-c)/c for neff, s-c for the others.",
        (
            Col("model", STR, "model name"),
            Col("pair_set", STR, _PAIR_SET_DOC),
            Col("condition", STR, "time_stretch, speaker_mix, gaussian_noise, or hell"),
            Col("layer", I32, "decoder layer, 0-based"),
            Col("component", STR, "cross_attn, self_attn, ffn or residual"),
            Col("n", I64, "pairs pooled (rows of the N x d matrix; hell: the stresses' sum)"),
            Col("n_units", I64, "units the subsamples draw from (speakers or utterances)"),
            Col("n_drawn", I64, "units a subsample keeps, no replacement (replicate -1: n_units)"),
            Col("replicate", I32, "-1 = point estimate; 0..B-1 = subsample replicate"),
            Col("k", I32, "top-K"),
            Col("observable", STR, "neff, log10_kf, alpha or tail_energy"),
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
            Col("condition", STR, "time_stretch, speaker_mix, gaussian_noise, or hell"),
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
            Col("condition", STR, "time_stretch, speaker_mix, gaussian_noise, or hell"),
            Col("prefix", I32, "L, the first L decoded rows"),
            Col("n_pairs", I64, "pairs with both spectra at prefix L (final layer)"),
            Col("n_full", I64, "pairs at full length"),
            Col("median_stressed_rows", F64, "median decoded rows T of the stressed side (hell)"),
            Col("shown", BOOL, "L <= median_stressed_rows: the tables show this prefix"),
        ),
    )
)
