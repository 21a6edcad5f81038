"""Section 2 of the paper (Theory): a simulator of the context-Jacobian recurrence, and its
measurement on a real Whisper decoder.

The recurrence (PAPER.md, "Theory"): J_l = A_l J_{l-1} + B_l, J_0 = 0, with propagator
A_l = s_l u_l v_l^T + R_l, relative noise eps_l = ||R_l|| / s_l, alignment
rho_l = |<v_l, u_{l-1}>| and per-layer gain gamma_l = s_l rho_l.

* :func:`simulate` builds one instance with the (s, rho, eps) it is given and returns
  ||J_L||, sigma_2/sigma_1 of J_L, the Lemma 1 error of the rank-1 dominant path, and the
  bounds of Theorem 1 / Lemma 1 as stated and as corrected (see below).
* :func:`phase_diagram` sweeps a (gamma, rho) grid and labels each cell with its regime.
* :func:`measure` estimates, per decoder layer of a transformers Whisper at the decoded tokens
  of one utterance, the top singular triplets of A_l = dh_l/dh_{l-1} and B_l = dh_l/dc and the
  singular-value head of J_L = dh_L/dc, by randomized block Krylov (power) iteration on
  jvp / vjp (never the full Jacobian).
* :func:`theory_table`, :func:`place_on_diagram`, :func:`phase_figure`: summaries of the
  measurements for the workflow and the figure.

What holds and what does not, for the bounds as PAPER.md states them (the tests check both):

* Lemma 1 as stated, relative error <= (1 + eps/rho)^n - 1, fails when the noise R_l leaks
  from the orthogonal part of u_{l-1} into the orthogonal part of v_{l+1} (``noise=
  "adversarial"``): an interior R costs eps/rho^2, not eps/rho, because it breaks two alignment
  links. What holds for any R: prod_j (1 + eps_j / (rho_j rho_{j+1})) - 1 with rho := 1 outside
  the product (:func:`lemma1_bound`, ``corrected=True``). With random R in high dimension the
  stated bound holds in practice, since a random R leaks only ~1/sqrt(d) along the path.
* Theorem 1 Regime I as stated, ||J_L|| <= max||B|| / (1 - gamma) with
  gamma = sup s(rho + eps), fails when s_l is large and rho_l small: gamma limits the gain
  *along* the path, but an injection entering along v_{l+1} is amplified by the full s_{l+1}
  (and R-leaked components likewise). What holds for any instance is the transfer bound
  (:func:`transfer_bound`): ||A_L..A_{l+1}|| <= N from the 2 x 2 recursion
  a' = s (rho' a + eps N), N' = s (a + eps N); its growth rate, the spectral radius of
  s [[rho, eps], [1, eps]], is ~ s (rho + eps/rho), not s (rho + eps).
* Theorem 1 Regime II holds on the sampled instances: with coherent injections B_l = beta_l
  u_l w^T, path gain >= 1, rho >= 0.2 and L eps/rho <= 0.5, J_L is within L eps/rho (relative)
  of sigma u_L w^T; with random injections sigma_2/sigma_1 of J_L falls with L (the propagator
  product collapses to rank 1), ending below L eps/rho.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

__all__ = [
    "INJECTIONS",
    "MEASURE_SCHEMA",
    "NOISES",
    "REGIMES",
    "SimResult",
    "expected_random_alignment",
    "lemma1_bound",
    "measure",
    "measure_decoder",
    "phase_diagram",
    "phase_figure",
    "place_on_diagram",
    "random_alignment",
    "simulate",
    "theory_table",
    "top_singular",
    "transfer_bound",
    "transfer_rate",
]

# ---------------------------------------------------------------------------- simulator

NOISES = ("random", "adversarial")
INJECTIONS = ("coherent", "random", "worst")


@dataclass(frozen=True)
class SimResult:
    """One simulated instance; arrays are per layer l = 1..L (index 0 is layer 1)."""

    norm_j: float  # ||J_L||_2
    sv_ratio: float  # sigma_2 / sigma_1 of J_L
    sv: np.ndarray  # singular values of J_L, descending
    rank1_residual: float  # ||J_L - u_L u_L^T J_L|| / ||J_L||: distance from "u_L x^T"
    path_residual: float  # ||J_L - sigma u_L w^T|| / ||J_L||, sigma = u_L^T J_L w; NaN if random
    lemma1_error: float  # ||P - P1|| / ||P1||, P = A_L..A_1, P1 = product of rank-1 parts
    lemma1_stated: float  # (1 + max eps / min rho)^L - 1, the bound as PAPER.md states it
    lemma1_corrected: float  # prod (1 + eps_j / (rho_j rho_{j+1})) - 1, holds for any R
    gamma: float  # sup_{l>=2} s_l (rho_l + eps_l), Theorem 1's gamma (A_1 never acts)
    regime1_stated: float  # max ||B_l|| / (1 - gamma); inf when gamma >= 1
    regime1_transfer: float  # sum_l ||B_l|| * transfer bound of ||A_L..A_{l+1}||: always holds
    rank1_bound: float  # bound on ||J_L - J_L^(1)|| / ||J_L|| from the corrected Lemma 1
    cumulative_gain: float  # prod_{l>=2} s_l rho_l = |u_L^T P1_{L:2} u_1|, the path's gain
    s: np.ndarray
    rho: np.ndarray  # rho_1 is |<v_1, u_0>| with u_0 a random unit vector (no layer 0)
    eps: np.ndarray
    gamma_l: np.ndarray  # s_l * rho_l
    norms: np.ndarray  # ||J_l|| for l = 1..L
    sv_ratios: np.ndarray  # sigma_2 / sigma_1 of J_l for l = 1..L
    extra: dict = field(default_factory=dict)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x)


def _orth_unit(rng: np.random.Generator, d: int, against: Sequence[np.ndarray]) -> np.ndarray:
    """A random unit vector orthogonal to the (unit, not necessarily orthogonal) ``against``."""
    q, _ = np.linalg.qr(np.stack(against, axis=1))
    x = rng.standard_normal(d)
    return _unit(x - q @ (q.T @ x))


def _per_layer(value, n: int, name: str) -> np.ndarray:
    arr = np.broadcast_to(np.asarray(value, dtype=float), (n,)).copy()
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    return arr


def lemma1_bound(eps: np.ndarray, rho: np.ndarray, corrected: bool = True) -> float:
    """Bound on ||P - P1|| / ||P1|| for P = A_n..A_1 (eps, rho per factor 1..n).

    ``rho[j]`` is the link |<v_j, u_{j-1}>|; rho[0] (the link into the first factor) is not
    part of the product and is ignored. Stated (PAPER.md): (1 + max eps / min rho)^n - 1 over
    the links. Corrected: each R_j breaks the links on both its sides, j and j+1, so it costs
    eps_j / (rho_j rho_{j+1}) with rho := 1 for links outside the product.
    """
    eps, rho = np.asarray(eps, float), np.asarray(rho, float)
    n = len(eps)
    links = rho[1:]
    if not corrected:
        r = links.min() if n > 1 else 1.0
        return float((1.0 + eps.max() / r) ** n - 1.0)
    left = np.concatenate([[1.0], links])  # link into factor j
    right = np.concatenate([links, [1.0]])  # link out of factor j
    return float(np.prod(1.0 + eps / (left * right)) - 1.0)


def transfer_bound(s: np.ndarray, rho: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """Upper bounds N[k] >= ||A_n..A_{n-k+1}|| for k = 0..n (N[0] = 1), any R_l, any B.

    With a = ||v_{next}^T Q|| and N = ||Q|| for the partial product Q, one more factor
    A = s u v^T + R gives a' <= s (|<v_next, u>| a + eps N) and N' <= s (a + eps N); a_0 = N_0 = 1.
    ``rho[j]`` is the link |<v_j, u_{j-1}>|, as in :func:`simulate`.
    """
    s, rho, eps = (np.asarray(x, float) for x in (s, rho, eps))
    n = len(s)
    out = np.ones(n + 1)
    for k in range(1, n + 1):
        first = n - k  # the product A_n..A_{first+1}, built from the right
        a, big = 1.0, 1.0
        for j in range(first, n):
            nxt = rho[j + 1] if j + 1 < n else 1.0
            a, big = s[j] * (nxt * a + eps[j] * big), s[j] * (a + eps[j] * big)
        out[k] = big
    return out


def simulate(
    s: float | Sequence[float] = 1.0,
    rho: float | Sequence[float] | None = 0.9,
    eps: float | Sequence[float] = 0.05,
    depth: int = 8,
    width: int = 64,
    context: int | None = None,
    injection: str = "coherent",
    noise: str = "random",
    beta: tuple[float, float] = (0.5, 1.0),
    incoherent: float = 0.0,
    seed: int | np.random.Generator = 0,
    keep_matrices: bool = False,
) -> SimResult:
    """Simulate J_l = A_l J_{l-1} + B_l, J_0 = 0, for l = 1..depth in width d.

    Construction (matches the hypotheses of Lemma 1 / Theorem 1):

    * u_l: random unit vectors in R^d (u_0 too, only to define rho_1).
    * v_l = rho_l u_{l-1} + sqrt(1 - rho_l^2) o_l with o_l a random unit vector orthogonal to
      u_{l-1}, so <v_l, u_{l-1}> = +rho_l (constant sign along the path). ``rho=None`` draws v_l
      at random instead (the chance baseline, E|<v, u>| ~ sqrt(2 / (pi d))).
    * R_l has spectral norm exactly eps_l s_l, u_l^T R_l = 0 and R_l v_l = 0, so for eps_l < 1,
      s_l u_l v_l^T is exactly the top singular triplet of A_l and ||R_l|| / s_l = eps_l.
      ``noise="random"``: R_l = (I - u u^T) G (I - v v^T), G Gaussian, rescaled.
      ``noise="adversarial"``: rank 1, from the part of u_{l-1} orthogonal to v_l into the part
      of v_{l+1} orthogonal to u_l: the worst leak along the dominant path.
    * B_l (d x m, m = ``context`` or d), with beta_l uniform in ``beta`` (positive):
      ``"coherent"``: beta_l u_l w^T with w a fixed unit vector of R^m (a common direction,
      bounded projection beta_l, constant sign), plus ``incoherent`` * beta_l * G_l / ||G_l||;
      ``"random"``: beta_l G_l / ||G_l||; ``"worst"``: beta_l v_{l+1} w^T (u_L for the last),
      the injection the next layer amplifies by its full s_{l+1}.

    ``keep_matrices`` puts A, B (lists, layer 1 first), u (u_0..u_L) and v (v_1..v_L) in
    ``extra``.
    """
    if noise not in NOISES:
        raise ValueError(f"noise must be one of {NOISES}, not {noise!r}")
    if injection not in INJECTIONS:
        raise ValueError(f"injection must be one of {INJECTIONS}, not {injection!r}")
    if depth < 1 or width < 3:
        raise ValueError("need depth >= 1 and width >= 3")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    n, d = depth, width
    m = context or d
    s_arr = _per_layer(s, n, "s")
    eps_arr = _per_layer(eps, n, "eps")
    if np.any(s_arr <= 0) or np.any(eps_arr < 0) or np.any(eps_arr >= 1):
        raise ValueError("need s > 0 and 0 <= eps < 1 (so s u v^T is the top triplet)")

    u = [_unit(rng.standard_normal(d)) for _ in range(n + 1)]  # u[0] is u_0
    v = [None] * (n + 1)  # v[l] for l = 1..n
    if rho is None:
        for layer in range(1, n + 1):
            v[layer] = _unit(rng.standard_normal(d))
        rho_arr = np.array([abs(v[j] @ u[j - 1]) for j in range(1, n + 1)])
    else:
        rho_arr = _per_layer(rho, n, "rho")
        if np.any(rho_arr < 0) or np.any(rho_arr > 1):
            raise ValueError("rho must lie in [0, 1]")
        for layer in range(1, n + 1):
            o = _orth_unit(rng, d, [u[layer - 1]])
            r = rho_arr[layer - 1]
            v[layer] = r * u[layer - 1] + math.sqrt(max(0.0, 1.0 - r * r)) * o

    a_mats, rank1 = [], []
    for layer in range(1, n + 1):
        sl, el = s_arr[layer - 1], eps_arr[layer - 1]
        uu, vv = u[layer], v[layer]
        if noise == "random":
            g = rng.standard_normal((d, d))
            g = g - np.outer(uu, uu @ g)
            g = g - np.outer(g @ vv, vv)
        else:
            nxt = v[layer + 1] if layer < n else rng.standard_normal(d)
            x = nxt - (uu @ nxt) * uu
            x = _orth_unit(rng, d, [uu]) if np.linalg.norm(x) < 1e-9 else _unit(x)
            y = u[layer - 1] - (vv @ u[layer - 1]) * vv
            y = _orth_unit(rng, d, [vv]) if np.linalg.norm(y) < 1e-9 else _unit(y)
            g = np.outer(x, y)
        top = np.linalg.norm(g, 2)
        r_mat = g * (el * sl / top) if top > 0 else g
        p1 = sl * np.outer(uu, vv)
        rank1.append(p1)
        a_mats.append(p1 + r_mat)

    w = _unit(rng.standard_normal(m))
    betas = rng.uniform(beta[0], beta[1], size=n)
    b_mats = []
    for layer in range(1, n + 1):
        bl = betas[layer - 1]
        if injection == "coherent":
            b = bl * np.outer(u[layer], w)
            if incoherent:
                g = rng.standard_normal((d, m))
                b = b + incoherent * bl * g / np.linalg.norm(g, 2)
        elif injection == "random":
            g = rng.standard_normal((d, m))
            b = bl * g / np.linalg.norm(g, 2)
        else:
            b = bl * np.outer(v[layer + 1] if layer < n else u[n], w)
        b_mats.append(b)

    j = np.zeros((d, m))
    norms, ratios = np.empty(n), np.empty(n)
    for layer in range(n):
        j = a_mats[layer] @ j + b_mats[layer]
        sv_l = np.linalg.svd(j, compute_uv=False)
        norms[layer] = sv_l[0]
        ratios[layer] = sv_l[1] / sv_l[0] if sv_l[0] > 0 else np.nan
    sv = np.linalg.svd(j, compute_uv=False)

    prod, prod1 = np.eye(d), np.eye(d)
    for layer in range(n):
        prod = a_mats[layer] @ prod
        prod1 = rank1[layer] @ prod1
    lemma1_error = np.linalg.norm(prod - prod1, 2) / np.linalg.norm(prod1, 2)

    b_norms = np.array([np.linalg.norm(b, 2) for b in b_mats])
    # A_1 never acts (J_0 = 0), and rho_1 links to no layer: gamma is a sup over l >= 2.
    gamma = float(np.max(s_arr[1:] * (rho_arr[1:] + eps_arr[1:]), initial=0.0))
    tb = transfer_bound(s_arr, rho_arr, eps_arr)  # tb[k] bounds a product of the last k
    # J_L^(1): every injection but the last carried by the rank-1 path only.
    j1 = np.zeros((d, m))
    for layer in range(n - 1):
        seg = np.eye(d)
        for k in range(layer + 1, n):
            seg = rank1[k] @ seg
        j1 = j1 + seg @ b_mats[layer]
    rank1_bound = b_norms[-1]
    for layer in range(n - 1):
        seg_s, seg_e, seg_r = s_arr[layer + 1 :], eps_arr[layer + 1 :], rho_arr[layer + 1 :]
        p1_norm = np.prod(seg_s) * np.prod(seg_r[1:])
        rank1_bound += p1_norm * lemma1_bound(seg_e, seg_r) * b_norms[layer]
    proj = np.outer(u[n], u[n] @ j)
    if injection == "random":
        path_residual = math.nan
    else:
        sigma = u[n] @ j @ w
        path_residual = float(np.linalg.norm(j - sigma * np.outer(u[n], w), 2) / sv[0])
    return SimResult(
        norm_j=float(sv[0]),
        sv_ratio=float(sv[1] / sv[0]) if sv[0] > 0 else math.nan,
        sv=sv,
        rank1_residual=float(np.linalg.norm(j - proj, 2) / sv[0]),
        path_residual=path_residual,
        lemma1_error=float(lemma1_error),
        lemma1_stated=lemma1_bound(eps_arr, rho_arr, corrected=False),
        lemma1_corrected=lemma1_bound(eps_arr, rho_arr, corrected=True),
        gamma=gamma,
        regime1_stated=float(b_norms.max() / (1 - gamma)) if gamma < 1 else math.inf,
        regime1_transfer=float(sum(b_norms[layer] * tb[n - 1 - layer] for layer in range(n))),
        rank1_bound=float(rank1_bound / sv[0]),
        cumulative_gain=float(np.prod(s_arr[1:] * rho_arr[1:])),
        s=s_arr,
        rho=rho_arr,
        eps=eps_arr,
        gamma_l=s_arr * rho_arr,
        norms=norms,
        sv_ratios=ratios,
        extra={"j_minus_rank1_path": float(np.linalg.norm(j - j1, 2) / sv[0])}
        | ({"A": a_mats, "B": b_mats, "u": u, "v": v[1:]} if keep_matrices else {}),
    )


def transfer_rate(s: float, rho: float, eps: float) -> float:
    """Spectral radius of s [[rho, eps], [1, eps]]: the per-layer growth rate of the transfer
    bound for constant (s, rho, eps); equals s rho when eps = 0, ~ s (rho + eps/rho) for small
    eps. Depth-independent boundedness needs this below 1, not s (rho + eps)."""
    tr, det = rho + eps, rho * eps - eps
    return float(s * (tr + math.sqrt(tr * tr - 4 * det)) / 2)


def expected_random_alignment(d: int) -> float:
    """E|<a, b>| for independent uniform unit vectors in R^d: Gamma(d/2) / (sqrt(pi)
    Gamma((d+1)/2)), which is sqrt(2 / (pi d)) (1 + O(1/d))."""
    return math.exp(math.lgamma(d / 2) - math.lgamma((d + 1) / 2)) / math.sqrt(math.pi)


def random_alignment(d: int, n: int = 20000, seed: int = 0) -> tuple[float, float]:
    """Monte-Carlo E|<a, b>| over n pairs of random unit vectors in R^d: (mean, standard error)."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, d))
    b = rng.standard_normal((n, d))
    dots = np.abs(np.einsum("ij,ij->i", a, b)) / (
        np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    )
    return float(dots.mean()), float(dots.std(ddof=1) / math.sqrt(n))


REGIMES = ("I", "II", "transition")


def phase_diagram(
    gammas: Sequence[float],
    rhos: Sequence[float],
    eps: float = 0.05,
    depth: int = 12,
    width: int = 64,
    n_seeds: int = 3,
    injection: str = "random",
    noise: str = "random",
    collapse: float = 0.1,
    growth_tol: float = 0.1,
    seed: int = 0,
) -> pl.DataFrame:
    """Simulated regime of every (gamma, rho) cell: s = gamma / rho in every layer.

    Random injections by default: with coherent rank-1 injections J_L is rank 1 whatever the
    regime, so sigma_2/sigma_1 would not tell the regimes apart. Medians over ``n_seeds``.

    Columns: gamma (= s rho, the per-layer gain), rho, eps, s, depth, width,
    gamma_sup (= s (rho + eps), Theorem 1's gamma), transfer_rate (spectral radius of the
    transfer recursion, the true per-layer growth bound), norm_j (||J_L||), sv_ratio
    (sigma_2/sigma_1 of J_L), growth (per-layer growth factor of ||J_l|| over the second half,
    (||J_L|| / ||J_{L/2}||)^(1 / (L - L/2))), lemma1_error, regime:
    "I" (bounded: growth < 1 + growth_tol, and dispersed: sv_ratio >= collapse),
    "II" (growing and collapsed to rank 1: sv_ratio < collapse), "transition" otherwise.
    """
    if depth < 2:
        raise ValueError("phase_diagram needs depth >= 2 to measure growth")
    rows = []
    half = depth // 2
    rng = np.random.default_rng(seed)
    for gamma in gammas:
        for rho in rhos:
            s = gamma / rho
            res = [
                simulate(s, rho, eps, depth, width, injection=injection, noise=noise, seed=rng)
                for _ in range(n_seeds)
            ]
            growth = float(
                np.median([(r.norms[-1] / r.norms[half - 1]) ** (1 / (depth - half)) for r in res])
            )
            ratio = float(np.median([r.sv_ratio for r in res]))
            bounded, collapsed = growth < 1 + growth_tol, ratio < collapse
            regime = "transition"
            if bounded and not collapsed:
                regime = "I"
            elif collapsed and not bounded:
                regime = "II"
            rows.append(
                {
                    "gamma": float(gamma),
                    "rho": float(rho),
                    "eps": float(eps),
                    "s": float(s),
                    "depth": depth,
                    "width": width,
                    "gamma_sup": float(s * (rho + eps)),
                    "transfer_rate": transfer_rate(s, rho, eps),
                    "norm_j": float(np.median([r.norm_j for r in res])),
                    "sv_ratio": ratio,
                    "growth": growth,
                    "lemma1_error": float(np.median([r.lemma1_error for r in res])),
                    "regime": regime,
                }
            )
    return pl.DataFrame(rows)


# ------------------------------------------------------------------------- measurement


def top_singular(
    matvec,
    rmatvec,
    n_in: int,
    n_out: int,
    k: int = 8,
    iters: int = 20,
    seed=0,
    krylov=True,
    device=None,
):
    """Top-k singular triplets of a linear map known only through products: randomized block
    Krylov (block power iteration with re-orthonormalisation, keeping every block) and a
    Rayleigh-Ritz step on the whole Krylov space; ``krylov=False`` keeps only the last block
    (plain subspace iteration).

    ``matvec`` maps a (b, n_in) float64 block of row vectors to (b, n_out); ``rmatvec`` the
    transpose, (b, n_out) -> (b, n_in). Costs iters + 1 matvec and iters + 1 rmatvec blocks of
    k, and (iters + 1) k (n_in + n_out) doubles of memory with ``krylov``. Returns
    (S, U, V, resid): S (k,) descending, U (k, n_out) and V (k, n_in) rows the singular vectors,
    resid (k,) = ||A^T u_i - S_i v_i|| / S_1 (A v_i = S_i u_i holds exactly in the Ritz basis).
    Block Krylov converges like exp(-2 iters sqrt(gap)) where power iteration goes like
    (sigma_{k+1} / sigma_i)^(2 iters): it matters when sigma_2 / sigma_1 is near 1.
    The basis lives on ``device`` (default CPU), the start block is drawn on the CPU from
    ``seed`` so results do not depend on the device's generator.
    """
    import torch

    k = max(1, min(k, n_in, n_out))
    gen = torch.Generator().manual_seed(int(seed))

    def orth(block):
        q, _ = torch.linalg.qr(block.T)
        return q.T

    basis_v: list = []
    basis_w: list = []
    v = orth(torch.randn(k, n_in, generator=gen, dtype=torch.float64).to(device or "cpu"))
    for it in range(iters + 1):
        if krylov and basis_v:
            prev = torch.cat(basis_v)
            for _ in range(2):  # twice is enough (Kahan), once loses orthogonality
                v = v - (v @ prev.T) @ prev
            keep = torch.linalg.norm(v, dim=1) > 1e-10
            if not bool(keep.any()):
                break  # the Krylov space is exhausted (tiny maps)
            v = orth(v[keep])
            room = n_in - prev.shape[0]
            v = v[:room]
        w = matvec(v)  # rows: A v_j
        if krylov:
            basis_v.append(v)
            basis_w.append(w)
        else:
            basis_v, basis_w = [v], [w]
        if it == iters or (krylov and sum(b.shape[0] for b in basis_v) >= n_in):
            break
        v = orth(rmatvec(orth(w)))
    q, aq = torch.cat(basis_v), torch.cat(basis_w)  # A Q^T = aq^T
    p, s, qh = torch.linalg.svd(aq.T, full_matrices=False)
    u, v = p.T[:k], (qh @ q)[:k]
    s = s[:k]
    resid = torch.linalg.norm(rmatvec(u) - s[:, None] * v, dim=1) / s[0].clamp_min(1e-300)
    # A fixed sign, so repeated runs agree: the largest-magnitude entry of u is positive.
    sign = torch.sign(u.gather(1, u.abs().argmax(1, keepdim=True))).squeeze(1)
    sign[sign == 0] = 1
    return s, u * sign[:, None], v * sign[:, None], resid


@contextlib.contextmanager
def _eager_attention(model):
    """Forward-mode AD has no rule for the fused CPU attention kernel: run eager attention,
    which computes the same function, and restore the model's choice afterwards."""
    old = model.config._attn_implementation
    if old != "eager":
        model.set_attn_implementation("eager")
    try:
        yield
    finally:
        if old != "eager":
            model.set_attn_implementation(old)


class _DecoderMaps:
    """The decoder as functions of (kept rows of h_{l-1}, encoder output c).

    Rows before ``first`` (forced-prompt positions not kept) are frozen at their nominal
    values: they feed the kept rows through self-attention but are not part of the state, so
    J_l = A_l J_{l-1} + B_l holds exactly for the maps measured here (with first = 0 they are
    the true Jacobians of the decoder).
    """

    def __init__(self, model, encoder_out, input_ids, first: int):
        import torch

        self.model = model
        dec = model.model.decoder
        self.layers = list(dec.layers)
        ids = torch.as_tensor(input_ids, device=encoder_out.device).reshape(1, -1)
        n = ids.shape[1]
        self.first = first
        self.c0 = encoder_out.reshape(-1, encoder_out.shape[-1]).detach()
        with torch.no_grad():
            pos = torch.arange(n, device=ids.device)[None]
            h = dec.embed_tokens(ids) + dec.embed_positions(ids, cache_length=0, position_ids=pos)
            h = h[0].to(self.c0.dtype)
            big = torch.finfo(h.dtype).min
            self.mask = torch.full((n, n), big, dtype=h.dtype, device=h.device).triu(1)[None, None]
            self.h = [h]  # nominal h_0 .. h_L, all rows
            for layer in self.layers:
                self.h.append(self._layer(layer, self.h[-1], self.c0))

    def _layer(self, layer, h, c):
        out = layer(
            h[None],
            attention_mask=self.mask,
            encoder_hidden_states=c[None],
            cache=None,
            use_cache=False,
        )
        return (out[0] if isinstance(out, tuple) else out)[0]

    def step(self, index: int, x, c):
        """Kept rows of h_index from kept rows x of h_{index-1} (0-based layer index)."""
        import torch

        full = torch.cat([self.h[index][: self.first], x], dim=0)
        return self._layer(self.layers[index], full, c)[self.first :]

    def kept(self, index: int):
        return self.h[index][self.first :]

    def context_map(self, upto: int):
        """c -> kept rows of h_upto (upto >= 1), prompt rows frozen at every layer."""

        def f(c):
            x = self.kept(0)
            for index in range(upto):
                x = self.step(index, x, c)
            return x

        return f


def _operator(f, x0, seed, k, iters):
    """Top-k triplets of the Jacobian of f at x0 via vmap(jvp) and a reused vmap(vjp)."""
    import torch

    dtype, shape_in, device = x0.dtype, x0.shape, x0.device
    y0, vjp_fn = torch.func.vjp(f, x0)
    shape_out = y0.shape

    def jvp_one(t):
        return torch.func.jvp(f, (x0,), (t,))[1]

    batched_jvp = torch.func.vmap(jvp_one)
    batched_vjp = torch.func.vmap(lambda u: vjp_fn(u)[0])

    def matvec(v):
        t = v.to(dtype).reshape(-1, *shape_in)
        return batched_jvp(t).reshape(v.shape[0], -1).double()

    def rmatvec(u):
        t = u.to(dtype).reshape(-1, *shape_out)
        return batched_vjp(t).reshape(u.shape[0], -1).double()

    return top_singular(
        matvec, rmatvec, x0.numel(), y0.numel(), k=k, iters=iters, seed=seed, device=device
    )


def measure_decoder(
    model,
    encoder_out,
    input_ids: Sequence[int],
    first: int = 0,
    k: int = 4,
    iters: int = 6,
    seed: int = 0,
    context_every_layer: bool = False,
    return_vectors: bool = False,
):
    """Per-layer propagator / injection spectra of a transformers Whisper decoder, teacher-
    forced on ``input_ids`` (prompt and tokens), keeping rows ``first:`` (see :func:`measure`
    for the conventions and the columns). ``encoder_out``: (S, d) or (1, S, d), held fixed for
    A_l. With ``return_vectors`` also returns {(name, layer): (s, u, v)} (u, v flattened rows).
    """
    import torch

    model.eval()
    enc = encoder_out.detach().clone()  # an inference-mode tensor cannot enter autograd
    out_rows, vectors = [], {}
    # no_grad: the transforms differentiate w.r.t. their inputs anyway; it stops autograd from
    # also recording every product w.r.t. the weights.
    with _eager_attention(model), torch.no_grad():
        maps = _DecoderMaps(model, enc, list(input_ids), first)
        n_layers = len(maps.layers)
        n_rows, d = maps.kept(0).shape
        prev_u = None
        for index in range(n_layers):
            x0, c0 = maps.kept(index), maps.c0
            seed_l = seed * 1000 + index
            a_s, a_u, a_v, a_r = _operator(
                lambda x, i=index, c=c0: maps.step(i, x, c), x0, seed_l, k, iters
            )
            b_s, b_u, b_v, b_r = _operator(
                lambda c, i=index, x=x0: maps.step(i, x, c), c0, seed_l + 500, k, iters
            )
            row = {
                "layer": index,
                "n_positions": n_rows,
                "d_model": d,
                "s": float(a_s[0]),
                "eps": float(a_s[1] / a_s[0]) if len(a_s) > 1 else math.nan,
                "rho": None,
                "gamma": None,
                "gamma_sup": None,
                "rho_chance": expected_random_alignment(n_rows * d),
                "b_norm": float(b_s[0]),
                "a_sv": a_s.tolist(),
                "b_sv": b_s.tolist(),
                "a_resid": float(a_r[0]),
                "b_resid": float(b_r[0]),
                "j_sv": None,
                "j_ratio": None,
                "j_resid": None,
            }
            if prev_u is not None:
                rho = float(abs(a_v[0] @ prev_u))
                row.update(rho=rho, gamma=row["s"] * rho, gamma_sup=row["s"] * (rho + row["eps"]))
            prev_u = a_u[0]
            if context_every_layer or index == n_layers - 1:
                j_s, j_u, j_v, j_r = _operator(
                    maps.context_map(index + 1), c0, seed_l + 900, k, iters
                )
                row.update(
                    j_sv=j_s.tolist(),
                    j_ratio=float(j_s[1] / j_s[0]) if len(j_s) > 1 else math.nan,
                    j_resid=float(j_r[0]),
                )
                if return_vectors:
                    vectors[("J", index)] = (j_s, j_u, j_v)
            if return_vectors:
                vectors[("A", index)] = (a_s, a_u, a_v)
                vectors[("B", index)] = (b_s, b_u, b_v)
            out_rows.append(row)
    frame = pl.DataFrame(out_rows, schema=MEASURE_SCHEMA).with_columns(
        k=pl.lit(k, pl.Int32), iters=pl.lit(iters, pl.Int32)
    )
    return (frame, vectors) if return_vectors else frame


MEASURE_SCHEMA = {
    "layer": pl.Int32,
    "n_positions": pl.Int32,
    "d_model": pl.Int32,
    "s": pl.Float64,
    "eps": pl.Float64,
    "rho": pl.Float64,
    "gamma": pl.Float64,
    "gamma_sup": pl.Float64,
    "rho_chance": pl.Float64,
    "b_norm": pl.Float64,
    "a_sv": pl.List(pl.Float64),
    "b_sv": pl.List(pl.Float64),
    "a_resid": pl.Float64,
    "b_resid": pl.Float64,
    "j_sv": pl.List(pl.Float64),
    "j_ratio": pl.Float64,
    "j_resid": pl.Float64,
}


def measure(
    bundle,
    wave,
    tokens: Sequence[int] | None = None,
    k: int = 4,
    iters: int = 6,
    seed: int = 0,
    include_prompt: bool = False,
    max_positions: int | None = None,
    context_every_layer: bool = False,
) -> pl.DataFrame:
    """Measure the theory's quantities on one utterance (16 kHz mono ``wave``).

    Tokens: the model's greedy transcript (:func:`whisper_spi.decode.greedy_decode`), or
    ``tokens`` teacher-forced (then followed by <|endoftext|>, like capture's reference mode).
    Positions (as :mod:`whisper_spi.capture`): the rows that emit the decoded tokens and the
    final <|endoftext|> (when emitted), optionally capped to the first ``max_positions``; with
    ``include_prompt`` also the forced-prompt rows before them. Rows not kept are frozen at
    their nominal values (their own dependence on c is ignored), which keeps
    J_l = A_l J_{l-1} + B_l exact for the measured maps; with ``include_prompt`` the maps are
    the decoder's true Jacobians.

    State: h_l is the residual stream after decoder layer l (before the final LayerNorm), kept
    rows flattened to a T*d vector; h_0 = token + position embeddings (independent of c);
    c = encoder output (S x d, fixed for A_l). A_l = dh_l/dh_{l-1}, B_l = dh_l/dc,
    J_L = dh_L/dc of the whole decoder. Triplets by block power iteration (block size ``k``,
    ``iters`` rounds) on vmap'ed jvp / vjp, in eager attention, never the full Jacobian.

    Returns one row per decoder layer (0-based, as capture):
    layer, n_positions (T), d_model, s (sigma_1 of A_l), eps (sigma_2 / sigma_1 of A_l, i.e.
    ||R_l|| / s_l), rho (|<v_l, u_{l-1}>|; null at layer 0), gamma (s rho), gamma_sup
    (s (rho + eps)), rho_chance (E|<a,b>| for random unit vectors in R^(T d)), b_norm
    (sigma_1 of B_l), a_sv / b_sv (top-k singular values), a_resid / b_resid (relative
    residual ||A^T u - s v|| / s of the top triplet: convergence check), j_sv (top-k singular
    values of J_L on the last layer's row, of J_l on every row with ``context_every_layer``;
    null elsewhere), j_ratio (sigma_2 / sigma_1 of that J), j_resid, k, iters,
    n_tokens (decoded tokens), hit_max_length.

    Cost: (iters + 1) blocks of k jvps and as many vjps for each of the 2 L + 1 operators; the
    c-side ones (B_l, J_L) dominate, through the cross-attention K/V projections of the S x d
    encoder output. tiny.en, one 3-7 s utterance, defaults (k=4, iters=6): 4-8 s on 2 idle
    CPU cores. Run the model in float32 (forward-mode AD in half precision is not meaningful).
    """
    from .decode import encode, greedy_decode, log_mel

    enc = encode(bundle, log_mel(bundle, [wave]))
    if tokens is None:
        decoded = greedy_decode(bundle, enc)[0]
        token_ids, eot = list(decoded.token_ids), not decoded.hit_max_length
    else:
        token_ids, eot = list(tokens), True
    n_prompt = len(bundle.prompt_ids)
    emitted = len(token_ids) + int(eot)
    if max_positions is not None:
        if max_positions < 1:
            raise ValueError("max_positions must be >= 1")
        emitted = min(emitted, max_positions)
    seq = (list(bundle.prompt_ids) + token_ids)[: n_prompt - 1 + emitted]
    first = 0 if include_prompt else n_prompt - 1
    frame = measure_decoder(
        bundle.model,
        enc[0],
        seq,
        first,
        k=k,
        iters=iters,
        seed=seed,
        context_every_layer=context_every_layer,
    )
    return frame.with_columns(
        n_tokens=pl.lit(len(token_ids), pl.Int32), hit_max_length=pl.lit(not eot)
    )


# ------------------------------------------------------------------- tables and figure

_SUMMARY = ("gamma", "rho", "eps", "s", "gamma_sup", "b_norm", "rho_chance", "j_ratio")


def _summaries() -> list[pl.Expr]:
    exprs = []
    for col in _SUMMARY:
        exprs.append(pl.col(col).median().alias(f"{col}_median"))
        if col in ("gamma", "rho"):
            exprs.append(pl.col(col).quantile(0.25, "linear").alias(f"{col}_q25"))
            exprs.append(pl.col(col).quantile(0.75, "linear").alias(f"{col}_q75"))
    return exprs


def theory_table(measurements: pl.DataFrame, by: Sequence[str] = ("model", "condition")):
    """Summarise :func:`measure` rows (concatenated, with the ``by`` columns added) per group.

    One row per (group, layer) and one pooled row per group with layer null (medians over
    utterances and layers; gamma and rho exist from layer 1 on). Columns: the ``by`` columns,
    layer, n_utts (distinct utt_id if present, else rows), n_layers, then the medians
    <x>_median for x in gamma, rho, eps, s, gamma_sup, b_norm, rho_chance, j_ratio, the
    quartiles gamma_q25/q75 and rho_q25/q75, and the hypotheses of Theorem 1 read at the
    medians: purity (= n_layers * eps / rho, Regime II wants << 1), path_gain (product over
    layers >= 1 of the per-layer median gamma; the pooled row's, repeated), regime1_hypothesis
    (gamma_sup < 1), regime2_hypothesis (path_gain >= 1 and purity < 1).
    """
    by = list(by)
    units = pl.col("utt_id").n_unique() if "utt_id" in measurements.columns else pl.len()
    n_layers = measurements.group_by(by).agg(pl.col("layer").n_unique().alias("n_layers"))
    per_layer = measurements.group_by([*by, "layer"]).agg(units.alias("n_utts"), *_summaries())
    gains = (  # in layer order: a float product must not depend on group_by's row order
        per_layer.filter(pl.col("layer") >= 1)
        .sort([*by, "layer"])
        .group_by(by, maintain_order=True)
        .agg(pl.col("gamma_median").product().alias("path_gain"))
    )
    pooled = (
        measurements.group_by(by)
        .agg(units.alias("n_utts"), *_summaries())
        .with_columns(pl.lit(None, pl.Int32).alias("layer"))
    )
    out = pl.concat(
        [per_layer.with_columns(pl.col("layer").cast(pl.Int32)), pooled], how="diagonal"
    )
    out = out.join(n_layers, on=by, how="left").join(gains, on=by, how="left")
    out = out.with_columns(
        purity=pl.col("n_layers") * pl.col("eps_median") / pl.col("rho_median"),
        regime1_hypothesis=pl.col("gamma_sup_median") < 1,
    ).with_columns(
        regime2_hypothesis=(pl.col("path_gain") >= 1) & (pl.col("purity") < 1),
    )
    return out.sort([*by, pl.col("layer").fill_null(-1)])


def place_on_diagram(table: pl.DataFrame, grid: pl.DataFrame) -> pl.DataFrame:
    """Attach to every row of :func:`theory_table` (with gamma_median and rho_median > 0) the
    nearest cell of a :func:`phase_diagram` grid in (log gamma, log rho): grid_gamma, grid_rho,
    regime, sim_sv_ratio, sim_norm_j, and in_grid (the point lies within the grid's range;
    outside it the nearest cell is an extrapolation). Rows without a finite positive
    gamma/rho get nulls."""
    g = np.log(grid["gamma"].to_numpy())
    r = np.log(grid["rho"].to_numpy())
    found = {k: [] for k in ("grid_gamma", "grid_rho", "regime", "sim_sv_ratio", "sim_norm_j")}
    inside = []
    for gamma, rho in zip(table["gamma_median"], table["rho_median"], strict=True):
        if gamma is None or rho is None or not (gamma > 0 and rho > 0):
            for col in found.values():
                col.append(None)
            inside.append(None)
            continue
        i = int(np.argmin((g - math.log(gamma)) ** 2 + (r - math.log(rho)) ** 2))
        cell = grid.row(i, named=True)
        found["grid_gamma"].append(cell["gamma"])
        found["grid_rho"].append(cell["rho"])
        found["regime"].append(cell["regime"])
        found["sim_sv_ratio"].append(cell["sv_ratio"])
        found["sim_norm_j"].append(cell["norm_j"])
        inside.append(
            bool(g.min() <= math.log(gamma) <= g.max() and r.min() <= math.log(rho) <= r.max())
        )
    return table.with_columns(
        pl.Series("grid_gamma", found["grid_gamma"], pl.Float64),
        pl.Series("grid_rho", found["grid_rho"], pl.Float64),
        pl.Series("regime", found["regime"], pl.String),
        pl.Series("sim_sv_ratio", found["sim_sv_ratio"], pl.Float64),
        pl.Series("sim_norm_j", found["sim_norm_j"], pl.Float64),
        pl.Series("in_grid", inside, pl.Boolean),
    )


def _edges(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cell edges of sorted positive grid values, at geometric midpoints (log axes)."""
    v = np.sort(np.unique(values))
    if len(v) == 1:
        return v / 1.5, v * 1.5
    mid = np.sqrt(v[1:] * v[:-1])
    lo = np.concatenate([[v[0] ** 2 / mid[0]], mid])
    hi = np.concatenate([mid, [v[-1] ** 2 / mid[-1]]])
    return lo, hi


def phase_figure(sim_grid: pl.DataFrame, measured: pl.DataFrame, value: str = "sv_ratio"):
    """The simulated phase diagram over gamma x rho (log axes; heatmap of ``value``:
    "sv_ratio" or "regime") with the measured points overlaid: x = gamma_median,
    y = rho_median of the pooled rows (layer null) of :func:`theory_table`, or of every row if
    it has no layer column; colour = model, shape = condition."""
    import altair as alt

    if value not in ("sv_ratio", "regime"):
        raise ValueError("value must be 'sv_ratio' or 'regime'")
    cells = sim_grid
    for col, (lo, hi) in (
        ("gamma", _edges(cells["gamma"].to_numpy())),
        ("rho", _edges(cells["rho"].to_numpy())),
    ):
        keys = np.sort(np.unique(cells[col].to_numpy()))
        edges = pl.DataFrame({col: keys, f"{col}_lo": lo, f"{col}_hi": hi})
        cells = cells.join(edges, on=col, how="left")
    eps, depth = cells["eps"][0], cells["depth"][0]
    pts = measured
    if "layer" in pts.columns:
        pts = pts.filter(pl.col("layer").is_null())
    pts = pts.filter((pl.col("gamma_median") > 0) & (pl.col("rho_median") > 0))
    for col in ("model", "condition"):
        if col not in pts.columns:
            pts = pts.with_columns(pl.lit("measured").alias(col))
    # Tight log domains around the grid and the points (vega's nice rounding adds decades).
    x_all = np.concatenate([cells["gamma_lo"], cells["gamma_hi"], pts["gamma_median"]])
    y_all = np.concatenate([cells["rho_lo"], cells["rho_hi"], pts["rho_median"]])
    xs = alt.Scale(type="log", domain=[float(x_all.min()), float(x_all.max())], nice=False)
    ys = alt.Scale(type="log", domain=[float(y_all.min()), float(y_all.max())], nice=False)
    if value == "sv_ratio":
        color = alt.Color(
            "sv_ratio:Q", title="sigma2/sigma1 of J_L", scale=alt.Scale(scheme="viridis")
        )
    else:
        color = alt.Color(
            "regime:N",
            title="simulated regime",
            scale=alt.Scale(domain=list(REGIMES), range=["#9ecae1", "#fdae6b", "#d9d9d9"]),
        )
    heat = (
        alt.Chart(cells)
        .mark_rect()
        .encode(
            x=alt.X("gamma_lo:Q", scale=xs, title="gamma = s * rho (per layer)"),
            x2="gamma_hi:Q",
            y=alt.Y("rho_lo:Q", scale=ys, title="rho = |<v_l, u_(l-1)>|"),
            y2="rho_hi:Q",
            color=color,
            tooltip=["gamma", "rho", "regime", "sv_ratio", "norm_j", "growth", "transfer_rate"],
        )
    )
    points = (
        alt.Chart(pts)
        .mark_point(filled=True, size=90, stroke="white", strokeWidth=1)
        .encode(
            x=alt.X("gamma_median:Q", scale=xs),
            y=alt.Y("rho_median:Q", scale=ys),
            color=alt.Color("model:N", title="model", scale=alt.Scale(scheme="set1")),
            shape=alt.Shape("condition:N", title="condition"),
            tooltip=[
                c
                for c in (
                    "model",
                    "condition",
                    "gamma_median",
                    "rho_median",
                    "eps_median",
                    "n_utts",
                )
                if c in pts.columns
            ],
        )
    )
    return (
        alt.layer(heat, points)
        .resolve_scale(color="independent")
        .properties(
            width=360,
            height=300,
            title=f"Simulated phase diagram (eps = {eps:.3g}, L = {depth}) and measured decoders",
        )
    )
