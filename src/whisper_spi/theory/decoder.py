"""Theorem 1's operators on a transformers Whisper decoder, batched over utterances.

State: h_l is the residual stream after decoder layer l (before the final LayerNorm), its kept
rows flattened to a T*d vector; h_0 = token + position embeddings (independent of c); c = the
encoder output (S x d, fixed for A_l). Per layer, the top singular triplets of the propagator
A_l = dh_l/dh_{l-1} and the injection B_l = dh_l/dc, and the singular-value head of
J_L = dh_L/dc, by randomized block Krylov iteration on jvp / vjp (never the full Jacobian).
Rows not kept are frozen at their nominal values, which keeps J_l = A_l J_{l-1} + B_l exact
for the measured maps. The output columns are the ``theory_measurements`` contract's
(:mod:`whisper_spi.schemas.theory`).

Utterances are batched: their token sequences are padded at the end, which the causal
self-attention keeps out of every real row, and probe vectors and outputs are masked to each
utterance's own rows, so each utterance's operator is exactly the one it has alone
(tests/test_theory.py checks batched = one at a time, and both against explicit Jacobians).
The probe vectors of all utterances and all k block columns go through one vmap'ed jvp/vjp.
The c-side operators (B_l, J_L) dominate the cost, hence the reassociated cross-attention
(:func:`_cross_attention`). The Krylov basis is kept in the model's precision: run the model
in float32 or float64 (forward-mode AD in half precision is not meaningful).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import polars as pl

from whisper_spi.theory.krylov import top_singular_batch
from whisper_spi.theory.simulate import (
    expected_random_alignment,
    expected_subspace_alignment,
    subspace_alignment,
)

__all__ = ["MEASURE_SCHEMA", "measure_decoder"]


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


def _reassociate(n_heads: int, rows: int, d: int) -> bool:
    """Whether the c-side maps are cheaper reassociated (see :func:`_cross_attention`):
    per probe and layer 2 H T S d multiply-adds against 2 S d^2 + 2 T S d."""
    return n_heads * rows < d + rows


def _cross_attention(attn, x, c=None, kv=None, reassociate=False):
    """The decoder's cross-attention (eval mode, no mask, as transformers' eager attention)
    of normalised rows x (U, T, d) on the encoder output c (U, S, d).

    ``kv``: precomputed (K, V) = (c W_k^T, c W_v^T + b_v), for maps in which c is fixed.
    ``reassociate``: the same function with the products reordered so that c enters only
    through q_h W_k,h c^T and softmax(.) c (rows of a softmax sum to one, so
    P (c W_v,h^T + b) = (P c) W_v,h^T + b): a tangent of c then costs 2 H T S d per probe
    instead of the 2 S d^2 of projecting it to K and V, the lever when H T < d."""
    u, t, d = x.shape
    heads, dh = attn.num_heads, attn.head_dim
    q = (attn.q_proj(x) * attn.scaling).view(u, t, heads, dh).transpose(1, 2)  # U H T dh
    if reassociate:
        # heads x rows stacked into one axis: plain batched products with c, no broadcast
        # copies of c (or of its tangent) per head
        qk = (q @ attn.k_proj.weight.view(heads, dh, d)).reshape(u, heads * t, d)
        pc = (qk @ c.mT).softmax(-1) @ c  # U (H T) d
        o = pc.view(u, heads, t, d) @ attn.v_proj.weight.view(heads, dh, d).mT
        if attn.v_proj.bias is not None:
            o = o + attn.v_proj.bias.view(heads, 1, dh)
    else:
        k, v = kv if kv is not None else (attn.k_proj(c), attn.v_proj(c))
        k = k.view(u, -1, heads, dh).transpose(1, 2)
        v = v.view(u, -1, heads, dh).transpose(1, 2)
        o = (q @ k.mT).softmax(-1) @ v
    return attn.out_proj(o.transpose(1, 2).reshape(u, t, d))


class _DecoderMaps:
    """The decoder as functions of (kept rows of h_{l-1}, encoder output c), for U utterances.

    Sequences are padded at the end (the causal mask keeps padding out of the real rows).
    Rows before ``first`` (forced-prompt positions not kept) are frozen at their nominal
    values: they feed the kept rows through self-attention but are not part of the state, so
    J_l = A_l J_{l-1} + B_l holds exactly for the maps measured here (with first = 0 they are
    the true Jacobians of the decoder). ``rows[i]`` kept rows of utterance i are real; ``mask``
    (U, T, 1) is 1 on them. The layers are transformers' own modules, composed as
    WhisperDecoderLayer does in eval mode, with the cross-attention of
    :func:`_cross_attention`: K and V computed once for the maps in which c is fixed, and
    reassociated for those of c where that is cheaper (``reassociate``: None = by cost).
    """

    def __init__(
        self, model, encoder_out, sequences: Sequence[Sequence[int]], first: int,
        reassociate: bool | None = None,
    ):  # fmt: skip
        import torch

        dec = model.model.decoder
        self.layers = list(dec.layers)
        self.first = first
        self.c0 = encoder_out.detach()  # (U, S, d)
        n = max(len(s) for s in sequences)
        ids = torch.as_tensor(
            [list(s) + [s[-1]] * (n - len(s)) for s in sequences], device=self.c0.device
        )
        self.rows = [len(s) - first for s in sequences]
        pos = torch.arange(n - first, device=ids.device)
        self.mask = pos[None, :] < torch.as_tensor(self.rows, device=ids.device)[:, None]
        self.mask = self.mask[..., None].to(self.c0.dtype)
        attn = self.layers[0].encoder_attn
        if reassociate is None:
            reassociate = _reassociate(attn.num_heads, n, attn.embed_dim)
        self.reassociate = reassociate
        with torch.no_grad():
            pos = torch.arange(n, device=ids.device)[None]
            h = dec.embed_tokens(ids) + dec.embed_positions(ids, cache_length=0, position_ids=pos)
            h = h.to(self.c0.dtype)
            big = torch.finfo(h.dtype).min
            self.causal = torch.full((n, n), big, dtype=h.dtype, device=h.device).triu(1)
            self.causal = self.causal[None, None]
            self.kv = [
                (layer.encoder_attn.k_proj(self.c0), layer.encoder_attn.v_proj(self.c0))
                for layer in self.layers
            ]
            self.h = [h]  # nominal h_0 .. h_L, all rows
            for index in range(len(self.layers)):
                self.h.append(self._layer(index, self.h[-1], kv=self.kv[index]))

    def _layer(self, index, h, c=None, kv=None):
        layer = self.layers[index]
        out = layer.self_attn(layer.self_attn_layer_norm(h), attention_mask=self.causal)
        h = h + (out[0] if isinstance(out, tuple) else out)
        x = layer.encoder_attn_layer_norm(h)
        h = h + _cross_attention(layer.encoder_attn, x, c, kv, c is not None and self.reassociate)
        return h + layer.fc2(layer.activation_fn(layer.fc1(layer.final_layer_norm(h))))

    def step(self, index: int, x, c=None):
        """Kept rows of h_index from kept rows x of h_{index-1} (0-based layer index), on the
        nominal c when ``c`` is None."""
        import torch

        full = torch.cat([self.h[index][:, : self.first], x], dim=1)
        kv = self.kv[index] if c is None else None
        return self._layer(index, full, c, kv)[:, self.first :]

    def kept(self, index: int):
        return self.h[index][:, self.first :]

    def context_map(self, upto: int):
        """c -> kept rows of h_upto (upto >= 1), prompt rows frozen at every layer."""

        def f(c):
            x = self.kept(0)
            for index in range(upto):
                x = self.step(index, x, c)
            return x

        return f


def _operator(f, x0, mask_in, mask_out, n_in, n_out, seed, k, iters):
    """Top-k triplets of the Jacobian of f at x0 (leading axis: utterances) for every
    utterance, via vmap(jvp) and a reused vmap(vjp) over the probe block; ``mask_in`` /
    ``mask_out`` (broadcastable to x0 / f(x0), or None) zero the padding rows."""
    import torch

    dtype, n_items = x0.dtype, x0.shape[0]
    y0, vjp_fn = torch.func.vjp(f, x0)
    batched_jvp = torch.func.vmap(lambda t: torch.func.jvp(f, (x0,), (t,))[1])
    batched_vjp = torch.func.vmap(lambda u: vjp_fn(u)[0])

    def apply(fn, block, shape, mask_after):
        b = block.shape[1]
        t = block.to(dtype).reshape(n_items, b, *shape[1:])
        out = fn(t.transpose(0, 1))  # the probe axis is vmap's
        if mask_after is not None:
            out = out * mask_after
        return out.transpose(0, 1).reshape(n_items, b, -1)

    return top_singular_batch(
        lambda v: apply(batched_jvp, v, x0.shape, mask_out),
        lambda u: apply(batched_vjp, u, y0.shape, mask_in),
        n_in,
        n_out,
        k=k,
        iters=iters,
        seed=seed,
        device=x0.device,
        dtype=dtype,
    )


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
    "rho_gap": pl.Float64,
    "subspace_k": pl.Int32,
    "align": pl.Float64,
    "align_cos": pl.List(pl.Float64),
    "align_chance": pl.Float64,
    "align_gap": pl.Float64,
    "a_gap": pl.Float64,
    "b_norm": pl.Float64,
    "a_sv": pl.List(pl.Float64),
    "b_sv": pl.List(pl.Float64),
    "a_resid": pl.Float64,
    "b_resid": pl.Float64,
    "j_sv": pl.List(pl.Float64),
    "j_ratio": pl.Float64,
    "j_resid": pl.Float64,
}


def _layer_row(index, rows, d, a, b, prev, subspace_k):
    """One utterance's output row of layer ``index`` from its triplets of A_l and B_l and
    ``prev`` = (u, eps, a_gap) of A_{l-1} (None at layer 0)."""
    a_s, a_u, a_v, a_r = a
    b_s, _, _, b_r = b
    n = rows * d
    eps = float(a_s[1] / a_s[0]) if len(a_s) > 1 else math.nan
    kk = min(subspace_k, len(a_s) - 1)  # sigma_{k+1} must be measured for the gap
    gap = float(1 - a_s[kk] / a_s[kk - 1]) if kk >= 1 else math.nan
    row = {
        "layer": index,
        "n_positions": rows,
        "d_model": d,
        "s": float(a_s[0]),
        "eps": eps,
        "rho": None,
        "gamma": None,
        "gamma_sup": None,
        "rho_chance": expected_random_alignment(n),
        "rho_gap": None,
        "subspace_k": kk,
        "align": None,
        "align_cos": None,
        "align_chance": expected_subspace_alignment(kk, n) if kk >= 1 else None,
        "align_gap": None,
        "a_gap": gap,
        "b_norm": float(b_s[0]),
        "a_sv": a_s.tolist(),
        "b_sv": b_s.tolist(),
        "a_resid": float(a_r[0]),
        "b_resid": float(b_r[0]),
        "j_sv": None,
        "j_ratio": None,
        "j_resid": None,
    }
    if prev is not None:
        prev_u, prev_eps, prev_gap = prev
        rho = float(abs(a_v[0] @ prev_u[0]))
        row.update(rho=rho, gamma=row["s"] * rho, gamma_sup=row["s"] * (rho + eps))
        row["rho_gap"] = min(1 - eps, 1 - prev_eps)
        if kk >= 1:
            align, cos = subspace_alignment(a_v[:kk], prev_u[:kk])
            row.update(align=align, align_cos=cos.tolist(), align_gap=min(gap, prev_gap))
    return row


def measure_decoder(
    model,
    encoder_out,
    sequences: Sequence[Sequence[int]],
    first: int = 0,
    k: int = 4,
    iters: int = 6,
    seed: int = 0,
    subspace_k: int = 2,
    context_every_layer: bool = False,
    return_vectors: bool = False,
    reassociate: bool | None = None,
):
    """Per-layer propagator / injection spectra of a transformers Whisper decoder, teacher-
    forced on each of ``sequences`` (prompt and tokens; one per utterance), keeping rows
    ``first:`` (rows before them frozen; with first = 0 the maps are the decoder's true
    Jacobians). ``k``: Krylov block size, ``iters``: its rounds. ``encoder_out``:
    (U, S, d), or (S, d) with one sequence, held fixed for A_l. J is measured on the last
    layer, or on every layer with ``context_every_layer``. Returns one frame per
    utterance; with ``return_vectors`` also, per utterance, {(name, layer): (s, u, v)}
    (u, v flattened rows, padding removed). ``reassociate``: the form of the c-side
    cross-attention (:func:`_cross_attention`; None = the cheaper one), the same numbers.
    """
    import torch

    if not 1 <= subspace_k < k:
        raise ValueError(f"theory.subspace_k must lie in [1, theory.k), got {subspace_k} (k={k})")
    model.eval()
    enc = encoder_out.detach().clone()  # an inference-mode tensor cannot enter autograd
    if enc.dim() == 2:
        enc = enc[None]
    n_items = len(sequences)
    rows_of = [[] for _ in range(n_items)]
    vectors = [{} for _ in range(n_items)]
    # no_grad: the transforms differentiate w.r.t. their inputs anyway; it stops autograd from
    # also recording every product w.r.t. the weights.
    with _eager_attention(model), torch.no_grad():
        maps = _DecoderMaps(model, enc, sequences, first, reassociate)
        n_layers, d = len(maps.layers), enc.shape[-1]
        n_state = [r * d for r in maps.rows]
        n_ctx = [maps.c0[0].numel()] * n_items
        prev = [None] * n_items
        for index in range(n_layers):
            x0, c0, mask = maps.kept(index), maps.c0, maps.mask
            seed_l = seed * 1000 + index
            a = _operator(
                lambda x, i=index: maps.step(i, x),
                x0, mask, mask, n_state, n_state, seed_l, k, iters,
            )  # fmt: skip
            b = _operator(
                lambda c, i=index, x=x0: maps.step(i, x, c),
                c0, None, mask, n_ctx, n_state, seed_l + 500, k, iters,
            )  # fmt: skip
            j = None
            if context_every_layer or index == n_layers - 1:
                j = _operator(
                    maps.context_map(index + 1), c0, None, mask, n_ctx, n_state,
                    seed_l + 900, k, iters,
                )  # fmt: skip
            # the per-utterance summaries are float64 on the CPU (the maps may live on a GPU)
            a, b = (tuple(x.cpu().double() for x in op) for op in (a, b))
            j = None if j is None else tuple(x.cpu().double() for x in j)
            for i in range(n_items):
                n = n_state[i]
                a_i = (a[0][i], a[1][i, :, :n], a[2][i, :, :n], a[3][i])
                b_i = (b[0][i], b[1][i, :, :n], b[2][i], b[3][i])
                row = _layer_row(index, maps.rows[i], d, a_i, b_i, prev[i], subspace_k)
                prev[i] = (a_i[1], row["eps"], row["a_gap"])
                if j is not None:
                    j_s = j[0][i]
                    row.update(
                        j_sv=j_s.tolist(),
                        j_ratio=float(j_s[1] / j_s[0]) if len(j_s) > 1 else math.nan,
                        j_resid=float(j[3][i][0]),
                    )
                    if return_vectors:
                        vectors[i]["J", index] = (j_s, j[1][i, :, :n], j[2][i])
                if return_vectors:
                    vectors[i]["A", index] = a_i[:3]
                    vectors[i]["B", index] = b_i[:3]
                rows_of[i].append(row)
    frames = [
        pl.DataFrame(rows, schema=MEASURE_SCHEMA).with_columns(
            k=pl.lit(k, pl.Int32), iters=pl.lit(iters, pl.Int32)
        )
        for rows in rows_of
    ]
    return (frames, vectors) if return_vectors else frames
