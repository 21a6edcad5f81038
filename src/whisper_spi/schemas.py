"""The data contracts: every Parquet file the workflow writes, its columns, types and units.

This module is the one place where they are defined. Writers go through
:func:`write_parquet`, which refuses a frame whose columns differ from the contract, and
``whisper-spi schemas`` prints this as Markdown (the README's "Data contracts" section).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from .io import atomic_path


@dataclass(frozen=True)
class Col:
    name: str
    dtype: pa.DataType
    doc: str
    unit: str = ""


@dataclass(frozen=True)
class Contract:
    name: str
    path: str  # where the workflow writes it, relative to results_dir
    doc: str
    cols: tuple[Col, ...]

    @property
    def arrow(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.dtype, nullable=True) for c in self.cols])


_F32 = pa.float32()
_F64 = pa.float64()
_I32 = pa.int32()
_I64 = pa.int64()
_STR = pa.string()
_BOOL = pa.bool_()

CONTRACTS: dict[str, Contract] = {}


def _add(contract: Contract) -> None:
    CONTRACTS[contract.name] = contract


_add(
    Contract(
        "manifest",
        "corpus/manifest.parquet",
        "One row per usable utterance of the corpus (after the bad-audio checks).",
        (
            Col("utt_id", _STR, "LibriSpeech id <speaker>-<chapter>-<utterance>"),
            Col("split", _STR, "split directory, e.g. test-clean"),
            Col("speaker", _STR, "speaker id"),
            Col("chapter", _STR, "chapter id"),
            Col("path", _STR, "absolute path of the source audio file"),
            Col("duration_s", _F64, "duration of the source audio", "s"),
            Col("sample_rate", _I32, "sample rate of the source file", "Hz"),
            Col("text", _STR, "reference transcript as in the .trans.txt file"),
            Col(
                "note",
                _STR,
                "non-fatal remark: resampled, downmixed, truncated to 30 s; empty if none",
            ),
        ),
    )
)

_add(
    Contract(
        "rejected",
        "corpus/rejected.parquet",
        "Audio files skipped under on_bad_audio: skip, with the reason.",
        (
            Col("path", _STR, "file that was skipped"),
            Col(
                "reason",
                _STR,
                "why: unreadable, empty, silent, too short, non-finite, no transcript, ...",
            ),
        ),
    )
)

_add(
    Contract(
        "stress_manifest",
        "stress/{condition}/shard-{shard}.parquet",
        "One row per utterance of a shard under one condition (clean included).",
        (
            Col("utt_id", _STR, "utterance id"),
            Col("stress", _STR, "condition: clean, time_stretch, speaker_mix, gaussian_noise"),
            Col("path", _STR, "absolute path of the 16 kHz mono FLAC written by the stress rule"),
            Col(
                "params",
                _STR,
                "JSON of the stress parameters: {} (clean), factor, snr_db, or n_speakers and"
                " partners (the mixed utt_ids)",
            ),
            Col("gain", _F64, "scale applied after stressing to avoid clipping (1.0 = none)"),
            Col("seed", _I64, "seed derived from (global seed, stress, utt_id)"),
        ),
    )
)


_add(
    Contract(
        "transcripts",
        "decode/{model}/{condition}/shard-{shard}/transcripts.parquet",
        "One row per decoded utterance: greedy transcript and Whisper's fallback statistics.",
        (
            Col("utt_id", _STR, "utterance id"),
            Col("speaker", _STR, "speaker id (for speaker-grouped cross-validation)"),
            Col("model", _STR, "model name (config key)"),
            Col("condition", _STR, "clean, time_stretch, speaker_mix or gaussian_noise"),
            Col("reference", _STR, "reference transcript"),
            Col("hypothesis", _STR, "greedy transcript"),
            Col(
                "token_ids", pa.list_(_I32), "generated token ids, without prompt and <|endoftext|>"
            ),
            Col("n_tokens", _I32, "len(token_ids)"),
            Col("hit_max_length", _BOOL, "stopped by decode.max_new_tokens, not by <|endoftext|>"),
            Col(
                "avg_logprob",
                _F64,
                "sum of chosen-token log-probs / (n_tokens + 1), as OpenAI",
                "nats",
            ),
            Col("compression_ratio", _F64, "len(text) / len(zlib(text)), as OpenAI's fallback"),
            Col(
                "no_speech_prob", _F64, "P(<|nospeech|>) at <|startoftranscript|>; NaN if no token"
            ),
            Col("wer", _F64, "jiwer WER after Whisper's English normaliser; may exceed 1"),
            Col("hallucination", _BOOL, "wer > decode.hallucination_wer"),
        ),
    )
)

_add(
    Contract(
        "spectra",
        "decode/{model}/{condition}/shard-{shard}/layer-{layer}.parquet",
        "Per utterance and component of one decoder layer: SVD spectrum of the T x d matrix of "
        "what the component adds to the residual stream (rows: the positions that emitted the "
        "decoded tokens and <|endoftext|>; prompt positions only with decode.include_prompt), "
        "and of its first L rows for each L in decode.prefix_lengths.",
        (
            Col("utt_id", _STR, "utterance id"),
            Col("model", _STR, "model name"),
            Col("condition", _STR, "condition"),
            Col("layer", _I32, "decoder layer, 0-based"),
            Col(
                "component",
                _STR,
                "cross_attn (encoder_attn out), self_attn (out), ffn (fc2 out), residual",
            ),
            Col("prefix", _I32, "0 = all T rows; L = the first L rows (present only if T >= L)"),
            Col("n_rows", _I32, "rows of the matrix whose spectrum this is (T, or L)"),
            Col("centered", _BOOL, "column mean removed before the SVD (decode.center)"),
            Col(
                "sv",
                pa.list_(_F64),
                "singular values, descending (float64 SVD)",
                "activation units",
            ),
            Col(
                "row_mean",
                pa.list_(_F32),
                "mean of the T rows (d values; null for prefix rows), for the pooled N x d scope",
                "activation units",
            ),
        ),
    )
)


# --------------------------------------------------------------------------- analysis (tables.py)

_DELTA_DOC = (
    "Delta per pair, stressed vs its clean twin: percent change 100*(s-c)/c for neff, "
    "difference s-c for log10_kf, alpha and tail_energy"
)

_add(
    Contract(
        "layer_metrics",
        "metrics/{model}/{condition}/layer-{layer}.parquet",
        "Spectral observables of every spectrum of one (model, condition, layer), at each K of "
        "metrics.k (top-K singular values); one row per utterance x component x prefix x K.",
        (
            Col("utt_id", _STR, "utterance id"),
            Col("model", _STR, "model name"),
            Col("condition", _STR, "condition"),
            Col("layer", _I32, "decoder layer, 0-based"),
            Col("component", _STR, "cross_attn, self_attn, ffn or residual"),
            Col("prefix", _I32, "0 = all T rows; L = the first L rows"),
            Col("k", _I32, "top-K singular values the observables are computed on"),
            Col("n_rows", _I32, "rows of the activation matrix (T, or L)"),
            Col("n_sv", _I32, "singular values stored for the spectrum (min(T, d))"),
            Col("centered", _BOOL, "column mean removed before the SVD"),
            Col("neff", _F64, "effective rank exp(H(p)) of the top K (metrics.neff_power)"),
            Col("alpha", _F64, "spectral alpha: minus the LSQ slope of log s_i vs log i, top K"),
            Col(
                "log10_kf",
                _F64,
                "log10 Kirchhoff index K*sum 1/lambda_i of the top-K covariance eigenvalues "
                "s^2/(n_rows-1) above the relative floor",
                "log10(1/activation units^2)",
            ),
            Col("tail_energy", _F64, "sum_{i>K} s_i^2 / sum_i s_i^2 over the full spectrum"),
        ),
    )
)

_add(
    Contract(
        "pairs",
        "pairs/{model}/pairs.parquet",
        "The analysed (clean, stressed) pairs of one model: a stressed utterance and its clean "
        "twin (same utt_id), kept when the stressed WER exceeds the threshold. condition 'hell' "
        "repeats every kept pair of the three stresses (their union).",
        (
            Col("model", _STR, "model name"),
            Col("condition", _STR, "time_stretch, speaker_mix, gaussian_noise, or hell"),
            Col("stress", _STR, "the stress actually applied (= condition unless hell)"),
            Col("utt_id", _STR, "utterance id"),
            Col("speaker", _STR, "speaker id"),
            Col("wer_clean", _F64, "WER of the clean twin"),
            Col("wer_stressed", _F64, "WER of the stressed transcript (> threshold)"),
            Col("n_tokens_clean", _I32, "decoded tokens, clean"),
            Col("n_tokens_stressed", _I32, "decoded tokens, stressed"),
            Col("hit_max_length_clean", _BOOL, "clean decode stopped by max_new_tokens"),
            Col("hit_max_length_stressed", _BOOL, "stressed decode stopped by max_new_tokens"),
            Col("threshold", _F64, "the stressed-WER threshold used"),
        ),
    )
)

_add(
    Contract(
        "pair_counts",
        "pairs/{model}/pair_counts.parquet",
        "Pairs per model and condition: how many (clean, stressed) pairs exist and how many "
        "survive the stressed-WER threshold. hell sums the three stresses.",
        (
            Col("model", _STR, "model name"),
            Col("condition", _STR, "time_stretch, speaker_mix, gaussian_noise, or hell"),
            Col("n_total", _I64, "pairs with both a clean and a stressed transcript"),
            Col("n_pairs", _I64, "pairs kept (stressed WER > threshold)"),
            Col("frac_kept", _F64, "n_pairs / n_total"),
            Col("n_hit_max_length", _I64, "kept pairs whose stressed decode hit max_new_tokens"),
            Col("threshold", _F64, "the stressed-WER threshold used"),
        ),
    )
)

_add(
    Contract(
        "layer_summary",
        "tables/layer_summary.parquet",
        "Per layer (and layer = -1: mean over layers) the clean and stressed levels of each "
        "observable and their delta, with percentile bootstrap CIs over pairs. scope utterance: "
        "per-pair observables, mean across pairs; scope pooled: one spectrum of the N x d "
        "matrix of per-utterance row means, bootstrap over utterances. " + _DELTA_DOC + ".",
        (
            Col("scope", _STR, "utterance or pooled"),
            Col("model", _STR, "model name"),
            Col("condition", _STR, "time_stretch, speaker_mix, gaussian_noise, or hell"),
            Col("layer", _I32, "decoder layer, 0-based; -1 = mean over the model's layers"),
            Col("component", _STR, "cross_attn, self_attn, ffn or residual"),
            Col("prefix", _I32, "0 = full length; L = length-matched on the first L rows"),
            Col("k", _I32, "top-K"),
            Col("observable", _STR, "neff, log10_kf, alpha or tail_energy"),
            Col("delta_kind", _STR, "percent (neff) or difference (the others)"),
            Col("n", _I64, "pairs contributing (finite delta)"),
            Col("clean", _F64, "clean level: mean over pairs (utterance) or pooled value"),
            Col("clean_ci_low", _F64, "bootstrap CI of clean, lower"),
            Col("clean_ci_high", _F64, "bootstrap CI of clean, upper"),
            Col("stressed", _F64, "stressed level: mean over pairs or pooled value"),
            Col("stressed_ci_low", _F64, "bootstrap CI of stressed, lower"),
            Col("stressed_ci_high", _F64, "bootstrap CI of stressed, upper"),
            Col("delta", _F64, "utterance: mean of per-pair deltas; pooled: delta of pooled"),
            Col("delta_median", _F64, "median of per-pair deltas (null for pooled)"),
            Col("delta_ci_low", _F64, "bootstrap CI of delta, lower"),
            Col("delta_ci_high", _F64, "bootstrap CI of delta, upper"),
            Col("n_boot", _I32, "bootstrap replicates (0: no CI)"),
        ),
    )
)

_add(
    Contract(
        "tables",
        "tables/tables.parquet",
        "The paper's Tables 1 (final decoder layer) and 2 (mean over layers): Delta N_eff %, "
        "Delta log10 Kf and Delta alpha per model x component x condition x K, each scope and "
        "prefix, with the paper's value beside ours where it reports one (hell, K=50, prefix 0).",
        (
            Col("table", _STR, "table1_final_layer or table2_layer_mean"),
            Col("scope", _STR, "utterance or pooled"),
            Col("prefix", _I32, "0 = full length; L = length-matched"),
            Col("model", _STR, "model name"),
            Col("layer", _I32, "final decoder layer (table 1); -1 = mean over layers (table 2)"),
            Col("component", _STR, "cross_attn, self_attn, ffn or residual"),
            Col("condition", _STR, "time_stretch, speaker_mix, gaussian_noise, or hell"),
            Col("k", _I32, "top-K"),
            Col("n", _I64, "pairs (finite Delta N_eff)"),
            Col("d_neff_pct", _F64, "Delta N_eff", "%"),
            Col("d_neff_pct_ci_low", _F64, "its bootstrap CI, lower", "%"),
            Col("d_neff_pct_ci_high", _F64, "its bootstrap CI, upper", "%"),
            Col("d_neff_pct_median", _F64, "median over pairs (null for pooled)", "%"),
            Col("d_log10_kf", _F64, "Delta log10 Kf (difference of logs)"),
            Col("d_log10_kf_ci_low", _F64, "its bootstrap CI, lower"),
            Col("d_log10_kf_ci_high", _F64, "its bootstrap CI, upper"),
            Col("d_log10_kf_median", _F64, "median over pairs (null for pooled)"),
            Col("d_alpha", _F64, "Delta alpha (difference)"),
            Col("d_alpha_ci_low", _F64, "its bootstrap CI, lower"),
            Col("d_alpha_ci_high", _F64, "its bootstrap CI, upper"),
            Col("d_alpha_median", _F64, "median over pairs (null for pooled)"),
            Col("paper_model", _STR, "the paper's model this row is compared with (or null)"),
            Col("paper_match", _STR, "exact, approx (a stand-in model), or null"),
            Col("paper_d_neff_pct", _F64, "the paper's Delta N_eff", "%"),
            Col("paper_d_log10_kf", _F64, "the paper's Delta log10 Kf"),
            Col("paper_d_alpha", _F64, "the paper's Delta alpha"),
            Col("sign_agrees_neff", _BOOL, "sign(ours) == sign(paper) for Delta N_eff"),
            Col("sign_agrees_log10_kf", _BOOL, "same for Delta log10 Kf"),
            Col("sign_agrees_alpha", _BOOL, "same for Delta alpha"),
        ),
    )
)

_add(
    Contract(
        "pooled_cells",
        "pooled/{model}/layer-{layer}.parquet",
        "Scope pooled of one model x decoder layer, before the tables: per condition x "
        "component x K x observable, the point estimate (replicate -1) and every bootstrap "
        "replicate of the clean and stressed pooled observables and their delta; the "
        "tables average the replicates over layers for layer = -1. The same job writes the "
        "layer's rank profiles to pooled/{model}/layer-{layer}-profile.parquet (contract "
        "rank_profile). delta: 100*(s-c)/c for neff, s-c for the others.",
        (
            Col("model", _STR, "model name"),
            Col("condition", _STR, "time_stretch, speaker_mix, gaussian_noise, or hell"),
            Col("layer", _I32, "decoder layer, 0-based"),
            Col("component", _STR, "cross_attn, self_attn, ffn or residual"),
            Col("n", _I64, "pairs pooled (rows of the N x d matrix)"),
            Col("replicate", _I32, "-1 = point estimate; 0..B-1 = bootstrap replicate"),
            Col("k", _I32, "top-K"),
            Col("observable", _STR, "neff, log10_kf, alpha or tail_energy"),
            Col("clean", _F64, "pooled clean value"),
            Col("stressed", _F64, "pooled stressed value"),
            Col("delta", _F64, "delta of the two"),
        ),
    )
)

_add(
    Contract(
        "rank_profile",
        "tables/rank_profile.parquet",
        "Mean full-length spectra per rank over the kept pairs (clean twins vs stressed), for "
        "the scree and tail-energy figures.",
        (
            Col("model", _STR, "model name"),
            Col("condition", _STR, "time_stretch, speaker_mix, gaussian_noise, or hell"),
            Col("layer", _I32, "decoder layer, 0-based"),
            Col("component", _STR, "cross_attn, self_attn, ffn or residual"),
            Col("rank", _I32, "1-based rank i"),
            Col("n", _I64, "pairs"),
            Col("clean_sv", _F64, "mean s_i of clean twins having rank i", "activation units"),
            Col("stressed_sv", _F64, "mean s_i of stressed having rank i", "activation units"),
            Col("clean_energy", _F64, "mean of s_i^2 / sum_j s_j^2 (0 beyond a spectrum's end)"),
            Col("stressed_energy", _F64, "same, stressed"),
            Col("energy_ratio", _F64, "stressed_energy / clean_energy"),
        ),
    )
)


_add(
    Contract(
        "theory_measurements",
        "theory/{model}/{condition}.parquet",
        "Theorem 1's quantities measured on a real decoder (whisper_spi.theory.measure), one row "
        "per measured utterance x decoder layer: the kept pairs' stressed utterances (clean: "
        "the clean twins of every stress's kept pairs), teacher-forced on the decode's tokens. "
        "h_l = residual stream after layer l at the positions that emitted the decoded tokens; "
        "c = encoder output.",
        (
            Col("model", _STR, "model name"),
            Col("condition", _STR, "condition"),
            Col("utt_id", _STR, "utterance id"),
            Col("layer", _I32, "decoder layer, 0-based"),
            Col("n_positions", _I32, "T, rows of h_l"),
            Col("d_model", _I32, "d"),
            Col("s", _F64, "sigma_1 of the propagator A_l = dh_l/dh_{l-1}"),
            Col("eps", _F64, "sigma_2 / sigma_1 of A_l (relative noise ||R_l|| / s_l)"),
            Col("rho", _F64, "|<v_l, u_{l-1}>|, alignment of consecutive layers; null at 0"),
            Col("gamma", _F64, "s_l * rho_l, effective gain"),
            Col("gamma_sup", _F64, "s_l (rho_l + eps_l), Theorem 1's gamma"),
            Col("rho_chance", _F64, "E|<a,b>| of random unit vectors in dimension T*d"),
            Col("rho_gap", _F64, "min(1 - eps_l, 1 - eps_{l-1}): the gap conditioning rho"),
            Col("subspace_k", _I32, "k', dimension of the compared singular subspaces"),
            Col(
                "align",
                _F64,
                "mean squared cosine of the principal angles between the top-k' right singular "
                "subspace of A_l and the top-k' left one of A_{l-1}; null at 0",
            ),
            Col("align_cos", pa.list_(_F64), "the k' principal cosines, descending"),
            Col("align_chance", _F64, "k' / (T d): align of random k'-dimensional subspaces"),
            Col("align_gap", _F64, "min(a_gap_l, a_gap_{l-1}): the gap conditioning align"),
            Col("a_gap", _F64, "1 - sigma_{k'+1} / sigma_k' of A_l"),
            Col("b_norm", _F64, "sigma_1 of the injection B_l = dh_l/dc"),
            Col("a_sv", pa.list_(_F64), "top singular values of A_l"),
            Col("b_sv", pa.list_(_F64), "top singular values of B_l"),
            Col("a_resid", _F64, "Krylov residual ||A^T u - s v|| / s"),
            Col("b_resid", _F64, "same for B_l"),
            Col("j_sv", pa.list_(_F64), "top singular values of J_L = dh_L/dc (last layer only)"),
            Col("j_ratio", _F64, "sigma_2 / sigma_1 of J_L (last layer only)"),
            Col("j_resid", _F64, "Krylov residual for J_L"),
            Col("n_tokens", _I32, "decoded tokens teacher-forced"),
            Col("hit_max_length", _BOOL, "the decode stopped at max_new_tokens (no <|endoftext|>)"),
        ),
    )
)


# The theory table's summarised quantities (whisper_spi.theory.summary imports this list).
THEORY_QUANTITIES = (
    "s",
    "eps",
    "rho",
    "gamma",
    "gamma_sup",
    "align",
    "b_norm",
    "j_norm",
    "j_ratio",
)


def _theory_table_cols() -> tuple[Col, ...]:
    boot = "95% speaker-grouped bootstrap interval (speakers, then their utterances)"
    cols = [
        Col("model", _STR, "model name"),
        Col("condition", _STR, "condition"),
        Col("layer", _I32, "decoder layer, 0-based; null = pooled over layers"),
        Col("n_utts", _I32, "utterances measured"),
        Col("n_speakers", _I32, "their speakers"),
        Col("n_layers", _I32, "decoder layers"),
    ]
    for q in THEORY_QUANTITIES:
        cols += [
            Col(f"{q}_median", _F64, f"median of {q} over utterances (and layers if pooled)"),
            Col(f"{q}_lo", _F64, f"lower end of {q}_median's {boot}"),
            Col(f"{q}_hi", _F64, f"upper end of {q}_median's {boot}"),
        ]
        if q in ("rho", "align"):
            cols += [
                Col(f"{q}_chance_median", _F64, f"median chance level of {q}"),
                Col(f"{q}_gap_median", _F64, f"median gap conditioning {q}"),
            ]
    cols += [
        Col(f"{q}_{name}", _F64, f"{name[1:]}th percentile of {q} over rows")
        for q in ("gamma", "rho")
        for name in ("q25", "q75")
    ]
    for name, doc in (
        ("path_gain", "product over layers >= 1 of the per-layer gamma_median"),
        ("gamma_sup_max", "max over layers >= 1 of the per-layer median s (rho + eps)"),
        ("purity", "n_layers * eps_median / rho_median (Regime II wants < 1)"),
    ):
        cols += [
            Col(name, _F64, f"{doc}; repeated on the group's rows"),
            Col(f"{name}_lo", _F64, f"lower end of its {boot}"),
            Col(f"{name}_hi", _F64, f"upper end of its {boot}"),
        ]
    cols += [
        Col("regime1_hypothesis", _BOOL, "gamma_sup_max < 1 at the point estimate"),
        Col("regime2_hypothesis", _BOOL, "path_gain >= 1 and purity < 1 at the point estimate"),
        Col("regime1", _STR, "Regime I's hypothesis from the intervals: holds/fails/undecided"),
        Col("regime2", _STR, "Regime II's hypotheses from the intervals: holds/fails/undecided"),
        Col("grid_gamma", _F64, "nearest simulated cell: gamma"),
        Col("grid_rho", _F64, "nearest simulated cell: rho"),
        Col("regime", _STR, "simulated regime of that cell (I, II, transition)"),
        Col("sim_sv_ratio", _F64, "simulated sigma_2/sigma_1 of J_L there"),
        Col("sim_norm_j", _F64, "simulated ||J_L|| there"),
        Col("in_grid", _BOOL, "the point lies inside the simulated grid"),
        Col("verdict", _STR, "the model's one-sentence verdict (on its first pooled row)"),
    ]
    return tuple(cols)


_add(
    Contract(
        "theory_table",
        "theory/theory_table.csv",
        "Theorem 1's quantities per model x condition x layer (and pooled, layer null, first) "
        "with speaker-grouped bootstrap intervals, chance levels and the regimes' verdicts "
        "(whisper_spi.theory.summary; CSV).",
        _theory_table_cols(),
    )
)


def contract(name: str) -> Contract:
    try:
        return CONTRACTS[name]
    except KeyError:
        raise KeyError(f"no data contract named {name!r}; known: {sorted(CONTRACTS)}") from None


def conform(df: pl.DataFrame | pa.Table, name: str) -> pa.Table:
    """Return ``df`` as an Arrow table with exactly the contract's columns, order and types.

    Refuses missing or extra columns (a writer out of step with the contract is a bug), and
    casts only safely (no silent truncation of values).
    """
    c = contract(name)
    table = df.to_arrow() if isinstance(df, pl.DataFrame) else df
    want = [col.name for col in c.cols]
    have = table.column_names
    if sorted(have) != sorted(want):
        missing = sorted(set(want) - set(have))
        extra = sorted(set(have) - set(want))
        raise ValueError(
            f"frame does not match contract {name!r}: missing {missing}, extra {extra}"
        )
    return table.select(want).cast(c.arrow, safe=True)


def write_parquet(df: pl.DataFrame | pa.Table, name: str, path: str | os.PathLike) -> None:
    """Write ``df`` under contract ``name`` atomically, zstd-compressed."""
    table = conform(df, name)
    with atomic_path(path, suffix=".parquet.tmp") as tmp:
        pq.write_table(table, tmp, compression="zstd")


def write_rows(rows: list[dict], name: str, path: str | os.PathLike) -> None:
    """Write a list of row dicts under contract ``name`` (an empty list gives an empty file)."""
    write_parquet(pa.Table.from_pylist(rows, schema=contract(name).arrow), name, path)


def to_markdown() -> str:
    """The contracts as Markdown, one table per file."""
    out = ["# Data contracts", ""]
    for c in CONTRACTS.values():
        out += [
            f"## `{c.name}`: `results/{c.path}`",
            "",
            c.doc,
            "",
            "| column | type | unit | meaning |",
            "|---|---|---|---|",
        ]
        out += [f"| `{col.name}` | {col.dtype} | {col.unit} | {col.doc} |" for col in c.cols]
        out.append("")
    return "\n".join(out)
