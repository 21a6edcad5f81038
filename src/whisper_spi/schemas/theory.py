"""Contracts of the theory stage (whisper_spi.theory): measurements and the summary table."""

from __future__ import annotations

import pyarrow as pa

from whisper_spi.schemas._core import BOOL, F64, I32, STR, Col, Contract, add

add(
    Contract(
        "theory_measurements",
        "theory/{model}/{condition}.parquet",
        "Theorem 1's quantities measured on a real decoder (whisper_spi.theory.measure), one row "
        "per measured utterance x decoder layer: the kept pairs' stressed utterances (clean: "
        "the clean twins of every stress's kept pairs), teacher-forced on the decode's tokens. "
        "h_l = residual stream after layer l at the positions that emitted the decoded tokens; "
        "c = encoder output.",
        (
            Col("model", STR, "model name"),
            Col("condition", STR, "condition"),
            Col("utt_id", STR, "utterance id"),
            Col("layer", I32, "decoder layer, 0-based"),
            Col("n_positions", I32, "T, rows of h_l"),
            Col("d_model", I32, "d"),
            Col("s", F64, "sigma_1 of the propagator A_l = dh_l/dh_{l-1}"),
            Col("eps", F64, "sigma_2 / sigma_1 of A_l (relative noise ||R_l|| / s_l)"),
            Col("rho", F64, "|<v_l, u_{l-1}>|, alignment of consecutive layers; null at 0"),
            Col("gamma", F64, "s_l * rho_l, effective gain"),
            Col("gamma_sup", F64, "s_l (rho_l + eps_l), Theorem 1's gamma"),
            Col("rho_chance", F64, "E|<a,b>| of random unit vectors in dimension T*d"),
            Col("rho_gap", F64, "min(1 - eps_l, 1 - eps_{l-1}): the gap conditioning rho"),
            Col("subspace_k", I32, "k', dimension of the compared singular subspaces"),
            Col(
                "align",
                F64,
                "mean squared cosine of the principal angles between the top-k' right singular "
                "subspace of A_l and the top-k' left one of A_{l-1}; null at 0",
            ),
            Col("align_cos", pa.list_(F64), "the k' principal cosines, descending"),
            Col("align_chance", F64, "k' / (T d): align of random k'-dimensional subspaces"),
            Col("align_gap", F64, "min(a_gap_l, a_gap_{l-1}): the gap conditioning align"),
            Col("a_gap", F64, "1 - sigma_{k'+1} / sigma_k' of A_l"),
            Col("b_norm", F64, "sigma_1 of the injection B_l = dh_l/dc"),
            Col("a_sv", pa.list_(F64), "top singular values of A_l"),
            Col("b_sv", pa.list_(F64), "top singular values of B_l"),
            Col("a_resid", F64, "Krylov residual ||A^T u - s v|| / s"),
            Col("b_resid", F64, "same for B_l"),
            Col("j_sv", pa.list_(F64), "top singular values of J_L = dh_L/dc (last layer only)"),
            Col("j_ratio", F64, "sigma_2 / sigma_1 of J_L (last layer only)"),
            Col("j_resid", F64, "Krylov residual for J_L"),
            Col("n_tokens", I32, "decoded tokens teacher-forced"),
            Col("hit_max_length", BOOL, "the decode stopped at max_new_tokens (no <|endoftext|>)"),
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
        Col("model", STR, "model name"),
        Col("condition", STR, "condition"),
        Col("layer", I32, "decoder layer, 0-based; null = pooled over layers"),
        Col("n_utts", I32, "utterances measured"),
        Col("n_speakers", I32, "their speakers"),
        Col("n_layers", I32, "decoder layers"),
    ]
    for q in THEORY_QUANTITIES:
        cols += [
            Col(f"{q}_median", F64, f"median of {q} over utterances (and layers if pooled)"),
            Col(f"{q}_lo", F64, f"lower end of {q}_median's {boot}"),
            Col(f"{q}_hi", F64, f"upper end of {q}_median's {boot}"),
        ]
        if q in ("rho", "align"):
            cols += [
                Col(f"{q}_chance_median", F64, f"median chance level of {q}"),
                Col(f"{q}_gap_median", F64, f"median gap conditioning {q}"),
            ]
    cols += [
        Col(f"{q}_{name}", F64, f"{name[1:]}th percentile of {q} over rows")
        for q in ("gamma", "rho")
        for name in ("q25", "q75")
    ]
    for name, doc in (
        ("path_gain", "product over layers >= 1 of the per-layer gamma_median"),
        ("gamma_sup_max", "max over layers >= 1 of the per-layer median s (rho + eps)"),
        ("purity", "n_layers * eps_median / rho_median (Regime II wants < 1)"),
    ):
        cols += [
            Col(name, F64, f"{doc}; repeated on the group's rows"),
            Col(f"{name}_lo", F64, f"lower end of its {boot}"),
            Col(f"{name}_hi", F64, f"upper end of its {boot}"),
        ]
    cols += [
        Col("regime1_hypothesis", BOOL, "gamma_sup_max < 1 at the point estimate"),
        Col("regime2_hypothesis", BOOL, "path_gain >= 1 and purity < 1 at the point estimate"),
        Col("regime1", STR, "Regime I's hypothesis from the intervals: holds/fails/undecided"),
        Col("regime2", STR, "Regime II's hypotheses from the intervals: holds/fails/undecided"),
        Col("grid_gamma", F64, "nearest simulated cell: gamma"),
        Col("grid_rho", F64, "nearest simulated cell: rho"),
        Col("regime", STR, "simulated regime of that cell (I, II, transition)"),
        Col("sim_sv_ratio", F64, "simulated sigma_2/sigma_1 of J_L there"),
        Col("sim_norm_j", F64, "simulated ||J_L|| there"),
        Col("in_grid", BOOL, "the point lies inside the simulated grid"),
        Col("verdict", STR, "the model's one-sentence verdict (on its first pooled row)"),
    ]
    return tuple(cols)


add(
    Contract(
        "theory_table",
        "theory/theory_table.csv",
        "Theorem 1's quantities per model x condition x layer (and pooled, layer null, first) "
        "with speaker-grouped bootstrap intervals, chance levels and the regimes' verdicts "
        "(whisper_spi.theory.summary; CSV).",
        _theory_table_cols(),
    )
)
