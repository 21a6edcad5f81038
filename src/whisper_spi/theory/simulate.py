"""Section 2 of the paper (Theory): a simulator of the context-Jacobian recurrence.

The recurrence (PAPER.md, "Theory"): J_l = A_l J_{l-1} + B_l, J_0 = 0, with propagator
A_l = s_l u_l v_l^T + R_l, relative noise eps_l = ||R_l|| / s_l, alignment
rho_l = |<v_l, u_{l-1}>| and per-layer gain gamma_l = s_l rho_l.

* :func:`simulate` builds one instance with the (s, rho, eps) it is given and returns
  ||J_L||, sigma_2/sigma_1 of J_L, the Lemma 1 error of the rank-1 dominant path, and the
  bounds of Theorem 1 / Lemma 1 as stated and as corrected (see below).
* :func:`phase_diagram` sweeps a (gamma, rho) grid and labels each cell with its regime.
* :func:`expected_random_alignment`, :func:`expected_subspace_alignment`: the chance levels of
  the measured alignments (random vectors / subspaces of the same dimensions).

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

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

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


def subspace_alignment(v: np.ndarray, u: np.ndarray) -> tuple[float, np.ndarray]:
    """Alignment of the row spaces of ``v`` and ``u`` (k x n each, orthonormal rows): the
    cosines of their k principal angles (singular values of V U^T, descending) and their
    mean square, ||V U^T||_F^2 / k (1 for equal subspaces, 0 for orthogonal ones). For k = 1
    the mean square is rho^2, the squared top-vector cosine."""
    cos = np.clip(np.linalg.svd(np.asarray(v) @ np.asarray(u).T, compute_uv=False), 0.0, 1.0)
    return float(np.mean(cos**2)), cos


def expected_subspace_alignment(k: int, n: int) -> float:
    """E ||V U^T||_F^2 / k for independent uniformly random k-dimensional subspaces of R^n:
    exactly k / n (E P_U = (k / n) I, so E tr(P_V P_U) = k^2 / n)."""
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    return k / n


def random_subspace_alignment(k: int, n: int, draws: int = 2000, seed: int = 0):
    """Monte-Carlo :func:`subspace_alignment` of ``draws`` pairs of random k-dimensional
    subspaces of R^n: (mean, standard error); checks :func:`expected_subspace_alignment`."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(draws):
        v = np.linalg.qr(rng.standard_normal((n, k)))[0].T
        u = np.linalg.qr(rng.standard_normal((n, k)))[0].T
        values.append(subspace_alignment(v, u)[0])
    arr = np.asarray(values)
    return float(arr.mean()), float(arr.std(ddof=1) / math.sqrt(draws))


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
