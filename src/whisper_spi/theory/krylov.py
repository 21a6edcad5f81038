"""Top singular triplets of linear maps known only through products (jvp / vjp): randomized
block Krylov iteration with a Rayleigh-Ritz step, for one map or a batch of maps at once."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["top_singular", "top_singular_batch"]


def _orth(block):
    """Orthonormal rows spanning the rows of (..., b, n) ``block`` (QR of its transpose)."""
    import torch

    return torch.linalg.qr(block.mT)[0].mT


def top_singular_batch(
    matvec,
    rmatvec,
    n_in: Sequence[int],
    n_out: Sequence[int],
    k: int = 8,
    iters: int = 20,
    seed=0,
    krylov=True,
    device=None,
    dtype=None,
):
    """Top-k singular triplets of U linear maps at once (see :func:`top_singular`).

    ``dtype``: of the basis and the blocks (default float64; the maps' own precision avoids
    a conversion and halves the memory traffic of the basis). ``matvec`` maps a
    (U, b, N_in) block (row vectors, item i's entries beyond
    ``n_in[i]`` zero) to (U, b, N_out), item i's entries beyond ``n_out[i]`` zero;
    ``rmatvec`` the transposes. N_in = max(n_in), N_out = max(n_out). Each item's start
    block is the one it gets alone (drawn from ``seed`` in its own dimension), and zero
    padding passes through QR, Gram-Schmidt and the Rayleigh-Ritz SVD unchanged, so item i's
    result is the one of its map alone. Items must share the clamp of k and, with several
    items, have room for the whole Krylov space (n_in > (iters + 1) k): an exhausted space
    (tiny maps) is only handled for a single item. Returns (S, U, V, resid) with a leading
    item axis, U and V zero-padded.
    """
    import torch

    n_items = len(n_in)
    k = max(1, min(k, min(n_in), min(n_out)))
    if n_items > 1 and krylov and min(n_in) <= (iters + 1) * k:
        raise ValueError("batched top_singular needs n_in > (iters + 1) k for every item")
    dev = device or "cpu"
    dtype = dtype or torch.float64
    big_in = max(n_in)
    v = torch.zeros(n_items, k, big_in, dtype=dtype, device=dev)
    for i, n in enumerate(n_in):  # the same start in any dtype: drawn in float64
        gen = torch.Generator().manual_seed(int(seed))
        start = _orth(torch.randn(k, n, generator=gen, dtype=torch.float64))
        v[i, :, :n] = start.to(device=dev, dtype=dtype)
    # The Krylov basis is filled in place: concatenating a growing (U, m, N) basis at every
    # round costs more than the Gram-Schmidt products on it when N is the S x d context.
    rounds = iters + 1 if krylov else 1
    basis_v = torch.zeros(n_items, rounds * k, big_in, dtype=dtype, device=dev)
    basis_w = None
    m = 0  # filled rows of the basis
    for it in range(iters + 1):
        if krylov and m:
            prev = basis_v[:, :m]
            for _ in range(2):  # twice is enough (Kahan), once loses orthogonality
                v = v - (v @ prev.mT) @ prev
            keep = (torch.linalg.norm(v, dim=2) > 1e-10).all(0)
            if not bool(keep.any()):
                break  # the Krylov space is exhausted (tiny maps)
            v = _orth(v[:, keep])
            v = v[:, : min(n_in) - m]
        w = matvec(v)  # rows: A v_j
        if basis_w is None:
            basis_w = w.new_zeros(n_items, rounds * k, w.shape[2])
        if not krylov:
            m = 0
        basis_v[:, m : m + v.shape[1]] = v
        basis_w[:, m : m + v.shape[1]] = w
        m += v.shape[1]
        if it == iters or (krylov and m >= min(n_in)):
            break
        v = _orth(rmatvec(_orth(w)))
    q, aq = basis_v[:, :m], basis_w[:, :m]  # A Q^T = aq^T
    p, s, qh = torch.linalg.svd(aq.mT, full_matrices=False)
    u, v = p.mT[:, :k], (qh @ q)[:, :k]
    s = s[:, :k]
    resid = torch.linalg.norm(rmatvec(u) - s[..., None] * v, dim=2)
    resid = resid / s[:, :1].clamp_min(1e-300)
    # A fixed sign, so repeated runs agree: the largest-magnitude entry of u is positive.
    sign = torch.sign(u.gather(2, u.abs().argmax(2, keepdim=True)))
    sign[sign == 0] = 1
    return s, u * sign, v * sign, resid


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
    out = top_singular_batch(
        lambda v: matvec(v[0])[None],
        lambda u: rmatvec(u[0])[None],
        [n_in],
        [n_out],
        k=k,
        iters=iters,
        seed=seed,
        krylov=krylov,
        device=device,
    )
    return tuple(x[0] for x in out)
