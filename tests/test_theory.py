"""The theory module: simulator bounds (as stated and as corrected), the Jacobian measurement
against explicit Jacobians of a tiny random Whisper, and the summary table / figure."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from whisper_spi import theory
from whisper_spi.theory.decoder import _cross_attention, _DecoderMaps, _eager_attention

from .conftest import random_whisper

TOL = 1e-9  # relative slack for float rounding in the bound checks


def _random_instance(rng, rho_min=0.05, eps_max=0.5, gamma_max=0.99, depth_max=12):
    """Per-layer (s, rho, eps) with gamma = sup s (rho + eps) < 1, random width and depth."""
    depth = int(rng.integers(1, depth_max + 1))
    width = int(rng.integers(8, 64))
    rho = rng.uniform(rho_min, 1.0, depth)
    eps = rng.uniform(0.0, eps_max, depth)
    gamma = rng.uniform(0.05, gamma_max)
    s = gamma / (rho + eps) * rng.uniform(0.5, 1.0, depth)
    return dict(s=s, rho=rho, eps=eps, depth=depth, width=width)


# ---------------------------------------------------------------------------- simulator


@pytest.mark.parametrize("noise", theory.NOISES)
def test_construction_matches_the_hypotheses(noise):
    """s u v^T is the top triplet of A_l, ||R_l|| = eps s, <v_l, u_{l-1}> = rho."""
    s, rho, eps = [3.0, 2.0, 0.5, 1.5], [0.9, 0.3, 0.6, 0.1], [0.2, 0.05, 0.4, 0.1]
    r = theory.simulate(s, rho, eps, depth=4, width=20, noise=noise, keep_matrices=True)
    for layer in range(4):
        a = r.extra["A"][layer]
        u, sv, vt = np.linalg.svd(a)
        assert sv[0] == pytest.approx(s[layer], rel=1e-12)
        assert sv[1] == pytest.approx(eps[layer] * s[layer], rel=1e-12)
        assert abs(u[:, 0] @ r.extra["u"][layer + 1]) == pytest.approx(1.0, abs=1e-12)
        assert abs(vt[0] @ r.extra["v"][layer]) == pytest.approx(1.0, abs=1e-12)
        assert r.extra["v"][layer] @ r.extra["u"][layer] == pytest.approx(rho[layer], abs=1e-12)
    assert r.gamma == pytest.approx(max(2.0 * 0.35, 0.5 * 1.0, 1.5 * 0.2))
    np.testing.assert_allclose(r.gamma_l, np.multiply(s, rho))


def test_recurrence_is_the_sum_of_propagated_injections():
    r = theory.simulate(1.3, 0.7, 0.1, depth=5, width=12, injection="random", keep_matrices=True)
    a, b = r.extra["A"], r.extra["B"]
    total = np.zeros_like(b[0])
    for layer in range(5):
        p = np.eye(12)
        for k in range(layer + 1, 5):
            p = a[k] @ p
        total += p @ b[layer]
    assert np.linalg.norm(total, 2) == pytest.approx(r.norm_j, rel=1e-10)


def test_transfer_bound_holds_on_every_instance():
    """The corrected Regime I bound holds for every noise and injection, including the
    constructions that break the stated one."""
    rng = np.random.default_rng(11)
    for injection in theory.INJECTIONS:
        for noise in theory.NOISES:
            for _ in range(40):
                inst = _random_instance(rng)
                r = theory.simulate(**inst, injection=injection, noise=noise, seed=rng)
                assert r.norm_j <= r.regime1_transfer * (1 + TOL)


def test_regime1_stated_bound_holds_on_sampled_instances_with_rho_at_least_0_2():
    """||J_L|| <= max||B|| / (1 - gamma) on many random instances with gamma < 1, rho >= 0.2.

    The restriction is needed: see the counterexamples below (small rho, large s)."""
    rng = np.random.default_rng(5)
    n = 0
    for injection in ("coherent", "random"):
        for noise in theory.NOISES:
            for _ in range(60):
                inst = _random_instance(rng, rho_min=0.2, eps_max=0.3, depth_max=16)
                r = theory.simulate(**inst, injection=injection, noise=noise, seed=rng)
                assert r.gamma < 1
                assert r.norm_j <= r.regime1_stated * (1 + TOL), inst
                n += 1
    assert n == 240


def test_regime1_stated_bound_counterexamples():
    """Theorem 1 Regime I as stated in PAPER.md fails; these are the counterexamples."""
    # 1. L = 2, s = 5, rho = 0.05, eps = 0.1: gamma = 0.75, bound 4. B_1 = v_2 w^T enters the
    #    next layer along its input direction and is amplified by the full s = 5:
    #    J_2 = 5 u_2 w^T + u_2 w^T, ||J_2|| = 6.
    r = theory.simulate(5.0, 0.05, 0.1, depth=2, width=16, injection="worst", beta=(1, 1))
    assert r.gamma == pytest.approx(0.75)
    assert r.regime1_stated == pytest.approx(4.0)
    assert r.norm_j == pytest.approx(6.0)
    assert r.norm_j <= r.regime1_transfer * (1 + TOL)
    # 2. Coherent injections along u_l, gamma = 0.9 < 1, but the noise leaks the part of u_l
    #    orthogonal to v_{l+1} into the next input direction: J_L grows geometrically, at the
    #    transfer rate ~ s (rho + eps / rho), not at gamma.
    rho = eps = 0.05
    s = 0.9 / (rho + eps)
    norms = [
        theory.simulate(s, rho, eps, depth=n, width=32, noise="adversarial", beta=(1, 1)).norm_j
        for n in (4, 8, 12)
    ]
    assert norms[0] < norms[1] < norms[2]
    assert norms[2] > 100 * 10.0  # the stated bound is 1 / (1 - 0.9) = 10
    assert theory.transfer_rate(s, rho, eps) > 2
    # 3. Even random noise and random injections break it when s is large against rho.
    r = theory.simulate(22.5, 0.02, 0.02, depth=12, width=8, injection="random", seed=0)
    assert r.gamma == pytest.approx(0.9)
    assert r.norm_j > r.regime1_stated


def test_lemma1_stated_bound_holds_with_random_noise():
    rng = np.random.default_rng(3)
    for _ in range(200):
        depth, width = int(rng.integers(1, 10)), int(rng.integers(32, 96))
        rho = rng.uniform(0.2, 1.0, depth)
        eps = rng.uniform(0.0, 1.0, depth) * rho.min()
        s = rng.uniform(0.2, 5.0, depth)
        r = theory.simulate(s, rho, eps, depth=depth, width=width, seed=rng)
        assert r.lemma1_error <= r.lemma1_stated * (1 + TOL)


def test_lemma1_stated_bound_counterexample():
    """(1 + eps/rho)^n - 1 fails when R_2 leaks u_1's off-path part into v_3's: the interior
    R costs eps (1 - rho^2) / rho^2. n = 3, rho = 0.1, eps = 0.05: error 4.95 > 2.375."""
    r = theory.simulate(2.0, 0.1, 0.05, depth=3, width=32, noise="adversarial")
    assert r.lemma1_stated == pytest.approx(1.5**3 - 1)
    assert r.lemma1_error >= 0.05 * (1 - 0.01) / 0.01 - 1e-9
    assert r.lemma1_error > 2 * r.lemma1_stated
    assert r.lemma1_error <= r.lemma1_corrected


@settings(max_examples=60, deadline=None)
@given(
    depth=st.integers(1, 8),
    width=st.integers(6, 40),
    rho=st.floats(0.02, 1.0),
    eps=st.floats(0.0, 0.9),
    s=st.floats(0.1, 10.0),
    noise=st.sampled_from(theory.NOISES),
    seed=st.integers(0, 2**32 - 1),
)
def test_lemma1_corrected_bound_always_holds(depth, width, rho, eps, s, noise, seed):
    r = theory.simulate(s, rho, eps, depth=depth, width=width, noise=noise, seed=seed)
    assert r.lemma1_error <= r.lemma1_corrected * (1 + 1e-7) + 1e-12
    assert r.extra["j_minus_rank1_path"] <= r.rank1_bound * (1 + 1e-7) + 1e-12


def test_regime2_coherent_injections_give_sigma_u_w():
    """Cumulative gain >= 1, rho >= 0.2, coherent injections, L eps / rho <= 0.5: J_L is within
    L eps / rho (relative) of sigma u_L w^T, for both noises."""
    rng = np.random.default_rng(9)
    checked = 0
    for noise in theory.NOISES:
        for _ in range(60):
            depth, width = int(rng.integers(2, 20)), int(rng.integers(16, 80))
            rho = rng.uniform(0.2, 1.0, depth)
            eps = rng.uniform(0.0, 1.0, depth) * 0.5 * rho / depth
            s = rng.uniform(1.0, 2.0, depth) / rho
            r = theory.simulate(s, rho, eps, depth=depth, width=width, noise=noise, seed=rng)
            if r.cumulative_gain < 1:
                continue
            checked += 1
            assert r.sv_ratio < 1e-8  # coherent rank-1 injections: J_L is exactly rank 1
            assert r.path_residual <= depth * np.max(eps[1:] / rho[1:]) + TOL
    assert checked > 100


@pytest.mark.parametrize(("s", "rho", "eps"), [(3.0, 0.5, 0.02), (1.5, 0.8, 0.05)])
def test_regime2_sigma_ratio_falls_with_depth(s, rho, eps):
    """Random (incoherent) injections, gain s rho > 1: the propagator product collapses J_L
    towards rank 1, sigma_2/sigma_1 falls with L and ends below L eps / rho."""
    med = {}
    for depth in (4, 8, 16):
        ratios = [
            theory.simulate(s, rho, eps, depth, 48, injection="random", seed=i).sv_ratio
            for i in range(9)
        ]
        med[depth] = float(np.median(ratios))
    assert med[4] > med[8] > med[16]
    assert med[16] <= 16 * eps / rho


@pytest.mark.parametrize("d", [384, 1280])
def test_random_alignment_baseline(d):
    mean, se = theory.random_alignment(d, n=20000, seed=d)
    assert abs(mean - math.sqrt(2 / (math.pi * d))) <= 4 * se
    assert abs(mean - theory.expected_random_alignment(d)) <= 4 * se


def test_random_alignment_exact_small_d():
    # at d = 16 sqrt(2 / (pi d)) is 1.6 % off; the Gamma-function formula is exact
    mean, se = theory.random_alignment(16, n=40000, seed=1)
    assert abs(mean - theory.expected_random_alignment(16)) <= 4 * se
    assert theory.expected_random_alignment(1280) == pytest.approx(0.0223, abs=1e-4)


def test_unprescribed_alignment_is_at_chance():
    rhos = np.concatenate(
        [theory.simulate(1.0, None, 0.1, depth=20, width=64, seed=i).rho for i in range(50)]
    )
    se = rhos.std(ddof=1) / math.sqrt(len(rhos))
    assert abs(rhos.mean() - theory.expected_random_alignment(64)) <= 4 * se


def test_phase_diagram_regimes():
    grid = theory.phase_diagram([0.3, 2.5], [0.3, 0.9], depth=12, width=32, n_seeds=3)
    assert grid.height == 4
    assert {"gamma", "rho", "regime", "sv_ratio", "norm_j", "growth"} <= set(grid.columns)
    cell = {(r["gamma"], r["rho"]): r for r in grid.iter_rows(named=True)}
    for rho in (0.3, 0.9):
        low, high = cell[(0.3, rho)], cell[(2.5, rho)]
        assert low["regime"] == "I" and high["regime"] == "II"
        assert high["sv_ratio"] < low["sv_ratio"]
        assert high["norm_j"] > 100 * low["norm_j"]


# ------------------------------------------------------------------------ measurement


def test_top_singular_matches_svd():
    rng = np.random.default_rng(0)
    q1, _ = np.linalg.qr(rng.standard_normal((60, 60)))
    q2, _ = np.linalg.qr(rng.standard_normal((40, 40)))
    sv = np.concatenate([[10.0, 9.5, 9.0], np.linspace(8, 0.1, 37)])
    a = torch.tensor(q1[:, :40] @ np.diag(sv) @ q2.T)
    for krylov, iters in ((True, 8), (False, 200)):
        s, u, v, resid = theory.top_singular(
            lambda x: x @ a.T, lambda y: y @ a, 40, 60, k=4, iters=iters, krylov=krylov
        )
        np.testing.assert_allclose(s[:3].numpy(), sv[:3], rtol=1e-6)
        assert abs(float(u[0] @ torch.tensor(q1[:, 0]))) == pytest.approx(1, abs=1e-6)
        assert abs(float(v[0] @ torch.tensor(q2[:, 0]))) == pytest.approx(1, abs=1e-6)
        assert float(resid[0]) < 1e-6


@pytest.fixture(scope="module")
def tiny_random():
    """A runnable 2+2-layer Whisper, d = 16, with weights large enough (init_std 0.3) that the
    Jacobians are far from the identity, in float64."""
    model = random_whisper(decoder_layers=2, init_std=0.3)
    with torch.no_grad():
        enc = model.model.encoder(torch.randn(1, 8, 16, dtype=torch.float64)).last_hidden_state
    return model, enc, [3, 5, 6, 7, 8, 9]


def _hf_step(maps, index, x, c):
    """Kept rows of h_index through transformers' own WhisperDecoderLayer (the reference
    for our composition of its modules)."""
    full = torch.cat([maps.h[index][:, : maps.first], x], dim=1)
    out = maps.layers[index](
        full, attention_mask=maps.causal, encoder_hidden_states=c, cache=None, use_cache=False
    )
    return (out[0] if isinstance(out, tuple) else out)[:, maps.first :]


def _explicit(model, enc, ids, first):
    """Explicit Jacobians of the maps, differentiated through transformers' layers."""
    with _eager_attention(model):
        maps = _DecoderMaps(model, enc, [ids], first)
        jac = torch.autograd.functional.jacobian
        out = {}

        def context(c, upto):
            x = maps.kept(0)
            for index in range(upto):
                x = _hf_step(maps, index, x, c)
            return x

        for i in range(len(maps.layers)):
            x0, c0 = maps.kept(i), maps.c0
            n = x0.numel()
            out["A", i] = jac(lambda x, i=i, c0=c0: _hf_step(maps, i, x, c0), x0).reshape(n, n)
            out["B", i] = jac(lambda c, i=i, x0=x0: _hf_step(maps, i, x0, c), c0).reshape(n, -1)
            out["J", i] = jac(lambda c, i=i: context(c, i + 1), c0).reshape(n, -1)
    return maps, out


@pytest.mark.parametrize("reassociate", [False, True])
@pytest.mark.parametrize("first", [0, 2])
def test_measure_matches_explicit_jacobians(tiny_random, first, reassociate):
    """Both forms of the c-side cross-attention against explicit Jacobians of the maps in
    transformers' own form (K = c W_k^T, V = c W_v^T + b inside the module)."""
    model, enc, ids = tiny_random
    frames, vecs = theory.measure_decoder(
        model, enc, [ids], first, k=4, iters=8, context_every_layer=True, return_vectors=True,
        reassociate=reassociate,
    )  # fmt: skip
    frame, vecs = frames[0], vecs[0]
    _, explicit = _explicit(model, enc, ids, first)
    for (name, layer), mat in explicit.items():
        u, sv, vt = torch.linalg.svd(mat)
        s, uu, vv = vecs[name, layer]
        assert float(s[0]) == pytest.approx(float(sv[0]), rel=1e-3), (name, layer)
        assert float(s[1]) == pytest.approx(float(sv[1]), rel=1e-3), (name, layer)
        assert abs(float(uu[0] @ u[:, 0])) == pytest.approx(1, abs=1e-3), (name, layer)
        assert abs(float(vv[0] @ vt[0])) == pytest.approx(1, abs=1e-3), (name, layer)
    a0 = torch.linalg.svd(explicit["A", 0])
    a1 = torch.linalg.svd(explicit["A", 1])
    rho = abs(float(a1.Vh[0] @ a0.U[:, 0]))
    row = frame.filter(pl.col("layer") == 1).row(0, named=True)
    assert row["rho"] == pytest.approx(rho, abs=1e-3)
    assert row["gamma"] == pytest.approx(row["s"] * row["rho"])
    assert row["eps"] == pytest.approx(float(a1.S[1] / a1.S[0]), rel=1e-3)
    # the subspace alignment: principal angles of the explicit top-k' singular subspaces
    kk = row["subspace_k"]
    want, _ = theory.subspace_alignment(a1.Vh[:kk].numpy(), a0.U[:, :kk].T.numpy())
    assert row["align"] == pytest.approx(want, abs=1e-3)
    assert row["align_chance"] == pytest.approx(kk / explicit["A", 1].shape[0])
    assert row["a_gap"] == pytest.approx(float(1 - a1.S[kk] / a1.S[kk - 1]), rel=1e-3)
    assert frame["rho"][0] is None
    assert frame["n_positions"][0] == len(ids) - first
    # The convention keeps the recurrence exact: J_2 = A_2 J_1 + B_2.
    j2 = explicit["A", 1] @ explicit["J", 0] + explicit["B", 1]
    torch.testing.assert_close(j2, explicit["J", 1])


@pytest.mark.parametrize("reassociate", [False, True])
def test_cross_attention_forms_equal_the_module(tiny_random, reassociate):
    """Both forms of our cross-attention give transformers' WhisperAttention output."""
    model, enc, _ = tiny_random
    attn = model.model.decoder.layers[1].encoder_attn
    x = torch.randn(2, 5, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    c = torch.cat([enc, 2 * enc.flip(1)])
    with _eager_attention(model), torch.no_grad():
        want = attn(x, key_value_states=c)[0]
        got = _cross_attention(attn, x, c, reassociate=reassociate)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_decoder_maps_reproduce_the_transformers_decoder(tiny_random):
    """h_l of the maps equals the model's own layer outputs, and with first = 0 J_L is the true
    context Jacobian of the decoder (checked through its final LayerNorm)."""
    model, enc, ids = tiny_random
    maps, explicit = _explicit(model, enc, ids, 0)
    dec = model.model.decoder
    ids_t = torch.tensor([ids])
    out = dec(
        input_ids=ids_t, encoder_hidden_states=enc, use_cache=False, output_hidden_states=True
    )
    torch.testing.assert_close(out.hidden_states[1][0], maps.h[1][0])
    torch.testing.assert_close(out.last_hidden_state[0], dec.layer_norm(maps.h[2][0]))

    def final(c):  # last_hidden_state is after the final LayerNorm
        return dec(input_ids=ids_t, encoder_hidden_states=c[None], use_cache=False)

    true = torch.autograd.functional.jacobian(
        lambda c: final(c).last_hidden_state[0], enc[0]
    ).reshape(maps.h[2].numel(), -1)
    ln = torch.autograd.functional.jacobian(dec.layer_norm, maps.h[2][0])
    ln = ln.reshape(maps.h[2].numel(), -1)
    torch.testing.assert_close(ln @ explicit["J", 1], true)
    # measure_decoder switched to eager attention and back
    assert model.config._attn_implementation == "sdpa"
    assert dec.layers[0].self_attn.config._attn_implementation == "sdpa"


def test_measure_smoke_tiny_en(tiny_en, librivox):
    clip = min(librivox, key=lambda c: len(c[1]))
    before = tiny_en.model.config._attn_implementation
    # no time assertion: CPU sharing makes one flaky
    frame = theory.measure(tiny_en, [clip[1]], k=3, iters=2)[0]
    assert tiny_en.model.config._attn_implementation == before
    assert frame.height == tiny_en.n_decoder_layers
    assert frame.columns[: len(theory.MEASURE_SCHEMA)] == list(theory.MEASURE_SCHEMA)
    assert frame["n_positions"][0] == frame["n_tokens"][0] + 1  # tokens and <|endoftext|>
    rows = frame.filter(pl.col("layer") >= 1)
    assert rows["rho"].is_between(0, 1).all()
    assert (rows["s"] > 0).all() and frame["eps"].is_between(0, 1).all()
    assert frame["j_sv"].is_null().sum() == frame.height - 1
    last = frame["j_sv"][-1].to_list()
    assert len(last) == 3 and last == sorted(last, reverse=True) and last[0] > 0


def _random_batch(model, n_items, lengths, seed=1):
    torch.manual_seed(seed)
    with torch.no_grad():
        enc = model.model.encoder(torch.randn(n_items, 8, 16, dtype=torch.float64))
    rng = np.random.default_rng(seed)
    seqs = [[3, *rng.integers(4, 100, size=n - 1).tolist()] for n in lengths]
    return enc.last_hidden_state, seqs


@pytest.mark.parametrize("reassociate", [False, True])
def test_batched_equals_one_at_a_time(tiny_random, reassociate):
    """Utterances of different lengths measured together (padded, masked) give each the numbers
    it gets alone, to 1e-5, and the same singular vectors (either form of the c side)."""
    model, _, _ = tiny_random
    enc, seqs = _random_batch(model, 3, [9, 5, 7])
    opts = dict(k=4, iters=6, seed=3, subspace_k=2, context_every_layer=True)
    opts["reassociate"] = reassociate
    together, vec_t = theory.measure_decoder(model, enc, seqs, 1, return_vectors=True, **opts)
    for i, seq in enumerate(seqs):
        alone, vec_a = theory.measure_decoder(model, enc[i], [seq], 1, return_vectors=True, **opts)
        a, b = alone[0], together[i]
        assert a.columns == b.columns and a.height == b.height
        for col, dtype in a.schema.items():
            if dtype == pl.List(pl.Float64):
                a_vals = np.asarray(a[col].explode().drop_nulls().to_list(), float)
                b_vals = np.asarray(b[col].explode().drop_nulls().to_list(), float)
                np.testing.assert_allclose(b_vals, a_vals, rtol=1e-5, atol=1e-8, err_msg=col)
            elif dtype.is_numeric():
                np.testing.assert_allclose(
                    b[col].to_numpy().astype(float), a[col].to_numpy().astype(float),
                    rtol=1e-5, atol=1e-8, err_msg=col,
                )  # fmt: skip
        for key, (s_a, u_a, v_a) in vec_a[0].items():
            s_b, u_b, v_b = vec_t[i][key]
            torch.testing.assert_close(s_b, s_a, rtol=1e-5, atol=1e-8)
            torch.testing.assert_close(u_b, u_a, rtol=1e-5, atol=1e-7)
            torch.testing.assert_close(v_b, v_a, rtol=1e-5, atol=1e-7)


def test_top_singular_batch_pads_exactly():
    """Zero-padded maps of different sizes in one batch: each item equals its map alone."""
    rng = np.random.default_rng(4)
    mats = [torch.tensor(rng.standard_normal((m, n))) for m, n in ((50, 40), (30, 60), (45, 45))]
    n_in, n_out = [a.shape[1] for a in mats], [a.shape[0] for a in mats]
    big = torch.zeros(3, max(n_out), max(n_in), dtype=torch.float64)
    for i, a in enumerate(mats):
        big[i, : a.shape[0], : a.shape[1]] = a
    s, u, v, r = theory.top_singular_batch(
        lambda x: x @ big.mT, lambda y: y @ big, n_in, n_out, k=3, iters=5, seed=2
    )
    for i, a in enumerate(mats):
        s1, u1, v1, r1 = theory.top_singular(
            lambda x, a=a: x @ a.T, lambda y, a=a: y @ a, n_in[i], n_out[i], k=3, iters=5, seed=2
        )
        torch.testing.assert_close(s[i], s1)
        torch.testing.assert_close(u[i, :, : n_out[i]], u1)
        torch.testing.assert_close(v[i, :, : n_in[i]], v1)
        assert float(u[i, :, n_out[i] :].abs().sum()) == 0


def _gapped(rng, n, head, tail_scale, left=None, right=None):
    """n x n matrix with singular values ``head`` then a tail below tail_scale; optional
    prescribed leading left / right singular vectors (orthonormal columns)."""
    k = len(head)

    def basis(fixed):  # QR keeps the span of the first k columns
        g = rng.standard_normal((n, n))
        if fixed is not None:
            g[:, :k] = fixed
        return np.linalg.qr(g)[0]

    uu, vv = basis(left), basis(right)
    sv = np.concatenate([head, tail_scale * rng.uniform(0, 1, n - k)])
    return uu @ np.diag(sv) @ vv.T


def _measured_alignment(a_prev, a_next, k_sub):
    ta, tb = torch.tensor(a_prev), torch.tensor(a_next)
    n = a_prev.shape[0]
    _, u_prev, _, _ = theory.top_singular(lambda x: x @ ta.T, lambda y: y @ ta, n, n, k=4, iters=8)
    _, _, v_next, _ = theory.top_singular(lambda x: x @ tb.T, lambda y: y @ tb, n, n, k=4, iters=8)
    return theory.subspace_alignment(v_next[:k_sub].numpy(), u_prev[:k_sub].numpy())[0]


def test_subspace_alignment_planted_aligned_pair_is_near_one():
    """A_next's top-k' right singular subspace planted on A_prev's top-k' left one (up to a
    small rotation), no gap inside the subspace (sigma equal): the top-vector cosine is
    ill-defined there, the subspace alignment is not."""
    rng = np.random.default_rng(5)
    n, k_sub = 120, 3
    a_prev = _gapped(rng, n, [5.0, 5.0, 5.0], 1.0)
    u_top = np.linalg.svd(a_prev)[0][:, :k_sub]
    tilt = u_top + 0.1 * rng.standard_normal((n, k_sub)) / math.sqrt(n)  # ~ 0.1 rad
    a_next = _gapped(rng, n, [4.0, 4.0, 4.0], 1.0, right=np.linalg.qr(tilt)[0])
    align = _measured_alignment(a_prev, a_next, k_sub)
    assert align > 0.95
    assert align > 20 * theory.expected_subspace_alignment(k_sub, n)


def test_subspace_alignment_of_random_propagators_is_at_chance():
    rng = np.random.default_rng(6)
    n, k_sub = 60, 2
    values = [
        _measured_alignment(_gapped(rng, n, [3, 2.5], 1.0), _gapped(rng, n, [3, 2.5], 1.0), k_sub)
        for _ in range(60)
    ]
    se = np.std(values, ddof=1) / math.sqrt(len(values))
    assert abs(np.mean(values) - theory.expected_subspace_alignment(k_sub, n)) <= 4 * se


@pytest.mark.parametrize(("k", "n"), [(1, 30), (3, 50)])
def test_expected_subspace_alignment_matches_simulation(k, n):
    mean, se = theory.random_subspace_alignment(k, n, draws=3000, seed=k)
    assert abs(mean - theory.expected_subspace_alignment(k, n)) <= 4 * se
    if k == 1:  # one dimension: the mean square of the top-vector cosine, E rho^2 = 1 / n
        assert theory.expected_subspace_alignment(1, n) == pytest.approx(1 / n)


def test_kept_utterances_follow_the_pairs():
    from whisper_spi.theory.measure import kept_utterances

    pairs = pl.DataFrame(
        {
            "condition": ["time_stretch", "speaker_mix", "speaker_mix", "hell", "hell", "hell"],
            "utt_id": ["1-1-1", "1-1-1", "2-1-1", "1-1-1", "1-1-1", "2-1-1"],
        }
    )
    assert kept_utterances(pairs, "speaker_mix") == ["1-1-1", "2-1-1"]
    assert kept_utterances(pairs, "time_stretch") == ["1-1-1"]
    assert kept_utterances(pairs, "clean") == ["1-1-1", "2-1-1"]  # union of the stresses
    assert kept_utterances(pairs, "gaussian_noise") == []
    assert len(kept_utterances(pairs, "clean", n=1)) == 1


# ----------------------------------------------------------------- tables and figure


def _fake_measurements():
    rows = []
    rng = np.random.default_rng(0)
    for model, gain in (("tiny", 0.3), ("big", 3.0)):
        for condition in ("clean", "noise"):
            for utt in range(12):
                for layer in range(4):
                    rho = None if layer == 0 else float(rng.uniform(0.5, 0.9))
                    s = gain / 0.7
                    rows.append(
                        {
                            "model": model,
                            "condition": condition,
                            "utt_id": f"{utt % 6}-7-{utt}",  # 6 speakers, 2 utterances each
                            "layer": layer,
                            "s": s,
                            "eps": 0.01,
                            "rho": rho,
                            "gamma": None if rho is None else s * rho,
                            "gamma_sup": None if rho is None else s * (rho + 0.01),
                            "rho_chance": 0.01,
                            "rho_gap": None if rho is None else 0.99,
                            "align": None if rho is None else rho**2,
                            "align_chance": 0.001,
                            "align_gap": None if rho is None else 0.5,
                            "b_norm": 1.0,
                            "j_sv": [2.0, 1.0] if layer == 3 else None,
                            "j_ratio": 0.5 if layer == 3 else None,
                        }
                    )
    return pl.DataFrame(rows)


def test_theory_table_independent_of_row_order():
    """Bit-identical whatever the order of the measurement rows (as jobs finish), including
    path_gain, a float product over layers, and the bootstrap intervals."""
    rows = _fake_measurements()
    want = theory.theory_table(rows, n_boot=50)
    want_gain = want.filter(pl.col("layer").is_null()).sort("model", "condition")["path_gain"]
    for seed in range(4):
        shuffled = rows.sample(fraction=1.0, shuffle=True, seed=seed)
        assert theory.theory_table(shuffled, n_boot=50).equals(want)
    per_layer = want.filter(pl.col("layer") >= 1).sort("model", "condition", "layer")
    in_order = per_layer.group_by("model", "condition", maintain_order=True).agg("gamma_median")
    assert want_gain.to_list() == [math.prod(g) for g in in_order["gamma_median"].to_list()]


def test_theory_table_place_and_figure():
    table = theory.theory_table(_fake_measurements(), n_boot=100)
    pooled = table.filter(pl.col("layer").is_null())
    assert pooled.height == 4
    assert set(pooled["n_utts"]) == {12} and set(pooled["n_speakers"]) == {6}
    tiny = pooled.filter(pl.col("model") == "tiny").row(0, named=True)
    assert 0.3 / 0.7 * 0.5 <= tiny["gamma_median"] <= 0.3 / 0.7 * 0.9
    assert tiny["regime1_hypothesis"] and not tiny["regime2_hypothesis"]
    assert tiny["regime1"] == "holds" and tiny["regime2"] == "fails"
    big = pooled.filter(pl.col("model") == "big").row(0, named=True)
    assert big["regime2_hypothesis"] and big["path_gain"] > 1
    assert big["regime1"] == "fails" and big["regime2"] == "holds"
    for q in theory.summary.QUANTITIES:  # every point estimate inside its own interval
        rows = table.drop_nulls(f"{q}_median")
        assert (rows[f"{q}_lo"] <= rows[f"{q}_median"] + 1e-12).all(), q
        assert (rows[f"{q}_median"] <= rows[f"{q}_hi"] + 1e-12).all(), q
    assert table.filter(pl.col("layer") == 0)["gamma_median"].is_null().all()
    sentences = theory.summary.model_sentences(table)
    assert (
        "Regime I's hypothesis (sup_l s(rho + eps) < 1) holds in clean, noise" in sentences["tiny"]
    )
    assert "Regime I's hypothesis (sup_l s(rho + eps) < 1) does not hold in" in sentences["big"]
    regime2 = "Regime II's (path gain >= 1, L eps/rho < 1, rho above chance)"
    assert f"{regime2} hold in" in sentences["big"]
    assert "n = 12-12 utterances" in sentences["big"]
    few = theory.theory_table(_fake_measurements().filter(pl.col("utt_id").str.head(1) < "3"))
    assert set(few["regime1"]) == set(few["regime2"]) == {"undecided"}  # 3 speakers: too few

    grid = theory.phase_diagram([0.3, 1.0, 3.0], [0.3, 0.7], eps=0.01, depth=8, width=24)
    placed = theory.place_on_diagram(table, grid)
    by_model = {
        r["model"]: r["regime"]
        for r in placed.filter(pl.col("layer").is_null()).iter_rows(named=True)
    }
    assert by_model == {"tiny": "I", "big": "II"}
    assert placed.filter(pl.col("layer") == 0)["regime"].is_null().all()

    chart = theory.phase_figure(grid, table)
    spec = chart.to_dict()
    assert len(spec["layer"]) == 2
    theory.phase_figure(grid, table, value="regime").to_dict()
    theory.figure.layers_figure(table).to_dict()


def test_speaker_bootstrap_coverage():
    """Speaker-clustered synthetic data (speaker effect sd 1, utterance noise sd 0.5, 10
    speakers x 4 utterances): the 90% interval of the median covers the population median (0,
    the distribution is symmetric) in about 90% of the data sets; resampling utterances alone
    would ignore the clustering and cover far less."""
    from whisper_spi.theory.summary import speaker_bootstrap

    def median_stat(frame, group):
        return frame.group_by([*group, "layer"]).agg(pl.col("x").median())

    rng = np.random.default_rng(8)
    covered, n_sets = 0, 150
    for i in range(n_sets):
        effect = rng.standard_normal(10)
        rows = [
            {"g": "a", "layer": 0, "speaker": str(sp), "utt_id": f"{sp}-0-{u}",
             "x": effect[sp] + 0.5 * rng.standard_normal()}
            for sp in range(10)
            for u in range(4)
        ]  # fmt: skip
        frame = pl.DataFrame(rows)
        ci = speaker_bootstrap(frame, median_stat, ["g"], ["x"], n_boot=200, level=0.9, seed=i)
        covered += ci["x_lo"][0] <= 0 <= ci["x_hi"][0]
    assert 0.8 <= covered / n_sets <= 0.98


def test_summarize_writes_the_contract(tmp_path):
    from whisper_spi.schemas import contract

    empty = theory.summary.summarize(pl.DataFrame(), tmp_path / "none", tmp_path / "none/f")
    assert empty.height == 0 and (tmp_path / "none/f.png").is_file()
    rows = _fake_measurements()
    flat = theory.summary.summarize(rows, tmp_path, tmp_path / "fig", seed=1, n_boot=20)
    written = pl.read_csv(tmp_path / "theory_table.csv")
    assert written.columns == [c.name for c in contract("theory_table").cols]
    assert written.height == flat.height
    assert written["layer"][0] is None  # pooled rows first
    assert written["verdict"].drop_nulls().len() == 2  # one sentence per model
    md = (tmp_path / "theory_table.md").read_text()
    assert md.count("- tiny:") == 1 and md.count("- big:") == 1
    assert (tmp_path / "fig.png").stat().st_size > 0 and (tmp_path / "fig.html").is_file()
