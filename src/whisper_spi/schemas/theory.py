"""Contract of the theory measurements (whisper_spi.theory)."""

from __future__ import annotations

import pyarrow as pa

from ._core import F64, I32, STR, Col, Contract, add

add(
    Contract(
        "theory_measurements",
        "theory/{model}/{condition}.parquet",
        "Theorem 1's quantities measured on a real decoder (whisper_spi.theory.measure), one row "
        "per sampled utterance x decoder layer. h_l = residual stream after layer l at the "
        "positions that emitted the decoded tokens; c = encoder output.",
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
            Col("b_norm", F64, "sigma_1 of the injection B_l = dh_l/dc"),
            Col("a_sv", pa.list_(F64), "top singular values of A_l"),
            Col("b_sv", pa.list_(F64), "top singular values of B_l"),
            Col("a_resid", F64, "power-iteration residual ||A^T u - s v|| / s"),
            Col("b_resid", F64, "same for B_l"),
            Col("j_sv", pa.list_(F64), "top singular values of J_L = dh_L/dc (last layer only)"),
            Col("j_ratio", F64, "sigma_2 / sigma_1 of J_L (last layer only)"),
            Col("j_resid", F64, "power-iteration residual for J_L"),
        ),
    )
)
