"""whisper_spi.analysis.spectra against independent references (scipy, numpy.polyfit, networkx)."""

from __future__ import annotations

import warnings

import networkx as nx
import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from whisper_spi.analysis import spectra
from whisper_spi.analysis.spectra import (
    covariance_eigenvalues,
    effective_rank,
    kirchhoff_index,
    pack_spectra,
    spectral_alpha,
    tail_energy,
)

FUNCS = {
    "effective_rank": lambda s: effective_rank(s),
    "effective_rank_k3_p2": lambda s: effective_rank(s, 3, power=2),
    "alpha_lsq": lambda s: spectral_alpha(s),
    "alpha_lsq_window": lambda s: spectral_alpha(s, 6, start=1, stop=5),
    "alpha_mle": lambda s: spectral_alpha(s, method="mle", min_tail=3),
    "kirchhoff": lambda s: kirchhoff_index(s),
    "kirchhoff_k4": lambda s: kirchhoff_index(s, 4, floor=1e-3),
    "tail_energy_2": lambda s: tail_energy(s, 2),
}


def ragged(seed: int, count: int = 60, max_len: int = 40) -> list[np.ndarray]:
    """Random ragged spectra including the awkward cases (empty, length 1, zeros, NaN)."""
    rng = np.random.default_rng(seed)
    out = [rng.exponential(size=rng.integers(0, max_len)) ** 2 for _ in range(count)]
    out[:7] = [
        np.array([]),
        np.array([2.5]),
        np.zeros(5),
        np.array([3.0, 0.0, 1.0, 0.0]),
        np.array([1.0, np.nan, 2.0]),
        np.array([np.inf, 1.0]),
        np.array([1.0, 1.0, 1.0]),
    ]
    return out


# --------------------------------------------------------------------------- effective rank


@pytest.mark.parametrize("n", [1, 2, 7, 100, 513])
@pytest.mark.parametrize("power", [0.5, 1, 2])
def test_effective_rank_flat_is_n(n, power):
    assert effective_rank(np.full(n, 3.7), power=power) == pytest.approx(n, rel=1e-12)
    # trailing zeros add nothing
    assert effective_rank(np.r_[np.full(n, 0.2), np.zeros(5)], power=power) == pytest.approx(n)


@pytest.mark.parametrize("n", [1, 5, 50])
def test_effective_rank_one_hot_is_one(n):
    s = np.zeros(n)
    s[n // 2] = 4.0
    assert effective_rank(s) == pytest.approx(1.0, abs=1e-15)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("power", [0.5, 1, 2, 3])
@pytest.mark.parametrize("k", [None, 1, 3, 10, 1000])
def test_effective_rank_matches_scipy_entropy(seed, power, k):
    rng = np.random.default_rng(seed)
    s = rng.exponential(size=60) ** 3 * 1e3
    top = np.sort(s)[::-1][:k]
    expected = np.exp(scipy.stats.entropy(top**power))  # scipy normalises, uses nats
    assert effective_rank(s, k=k, power=power) == pytest.approx(expected, rel=1e-12)


def test_effective_rank_scale_invariant_and_no_overflow():
    s = np.array([3.0, 2.0, 1.0])
    ref = effective_rank(s)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert effective_rank(s * 1e300, power=3) == pytest.approx(effective_rank(s, power=3))
        assert effective_rank(s * 1e-300) == pytest.approx(ref)


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(np.float64, st.integers(1, 60), elements=st.floats(0, 1e6)),
    st.sampled_from([0.5, 1.0, 2.0]),
)
def test_effective_rank_bounds(s, power):
    r = effective_rank(s, power=power)
    if not np.any(s > 0):
        assert np.isnan(r)
    else:
        n_pos = np.count_nonzero(s)
        assert 1 - 1e-9 <= r <= n_pos * (1 + 1e-9)


# --------------------------------------------------------------------------- spectral alpha


@pytest.mark.parametrize("a", [0.1, 0.5, 1.0, 2.3, 9.5])
@pytest.mark.parametrize("C", [1e-3, 1.0, 7e4])
@pytest.mark.parametrize(("k", "start", "stop"), [(None, 0, None), (10, 0, None), (50, 1, 40)])
def test_alpha_lsq_exact_power_law(a, C, k, start, stop):
    i = np.arange(1, 201, dtype=float)
    s = C * i**-a
    rng = np.random.default_rng(0)
    shuffled = rng.permutation(s)  # order must not matter
    got = spectral_alpha(shuffled, k, start=start, stop=stop)
    assert got == pytest.approx(a, abs=1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_alpha_lsq_matches_polyfit(seed):
    rng = np.random.default_rng(seed)
    s = np.sort(rng.lognormal(size=80))[::-1]
    start, stop, k = 2, 30, 50
    idx = np.arange(start, stop)
    slope = np.polyfit(np.log(idx + 1.0), np.log(s[idx]), 1)[0]
    assert spectral_alpha(s, k, start=start, stop=stop) == pytest.approx(-slope, rel=1e-10)


def test_alpha_uses_only_positive_values_in_window():
    s = np.r_[2.0 * np.arange(1, 6, dtype=float) ** -1.5, np.zeros(10)]
    assert spectral_alpha(s) == pytest.approx(1.5, abs=1e-12)
    assert np.isnan(spectral_alpha(np.array([5.0, 0.0, 0.0])))
    assert np.isnan(spectral_alpha(np.arange(10.0), start=8, stop=9))
    assert spectral_alpha(np.ones(10)) == 0.0


@settings(max_examples=40, deadline=None)
@given(
    hnp.arrays(np.float64, st.integers(2, 50), elements=st.floats(1e-3, 1e3)),
    st.floats(1e-5, 1e5),
)
def test_alpha_scale_invariant(s, c):
    assert spectral_alpha(s * c) == pytest.approx(spectral_alpha(s), rel=1e-7, abs=1e-9)


def pareto_spectrum(rng, n, b, xmin=1.0):
    """n samples with density ∝ x**-b on [xmin, inf), sorted descending."""
    return np.sort(xmin * (1.0 - rng.random(n)) ** (-1.0 / (b - 1.0)))[::-1]


@pytest.mark.parametrize("b", [1.5, 2.0, 3.5])
def test_alpha_mle_on_pareto_samples(b):
    """MLE of continuous-Pareto samples recovers the rank-slope-equivalent a = 1/(b-1).

    One estimate from n = 5000 has a relative sd of about 2 % (KS-selected xmin trims the
    tail, occasionally to a few hundred points), so each estimate is only sanity-checked at
    12 % and the mean of ten at 2 % (over 40 master seeds the worst mean error was 1.6 %).
    """
    a_true = 1.0 / (b - 1.0)
    rng = np.random.default_rng(12345)
    est = np.array([spectral_alpha(pareto_spectrum(rng, 5000, b), method="mle") for _ in range(10)])
    assert np.all(np.abs(est / a_true - 1) < 0.12)
    assert est.mean() == pytest.approx(a_true, rel=0.02)


def test_alpha_mle_ks_finds_xmin():
    """A non-power-law body below xmin must be cut off by the KS selection."""
    rng = np.random.default_rng(7)
    b, a_true = 2.5, 1.0 / 1.5
    ests = []
    for _ in range(5):
        body = rng.uniform(0.0, 1.0, 3000)  # not a power law
        tail = pareto_spectrum(rng, 3000, b, xmin=1.0)
        ests.append(spectral_alpha(np.r_[body, tail], method="mle"))
    assert np.mean(ests) == pytest.approx(a_true, rel=0.05)  # worst of 30 seeds: 2.9 %
    # with the body included the naive lsq slope is far off, showing the body matters
    assert abs(spectral_alpha(np.r_[body, tail]) - a_true) > 0.1


def test_alpha_mle_exact_power_law_spectrum():
    i = np.arange(1, 5001, dtype=float)
    assert spectral_alpha(3.0 * i**-1.7, method="mle") == pytest.approx(1.7, rel=0.01)
    assert spectral_alpha(np.ones(20), method="mle") == 0.0


# --------------------------------------------------------------------------- Kirchhoff index


def random_connected_graph(seed: int) -> nx.Graph:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 30))
    while True:
        g = nx.gnp_random_graph(n, 0.3, seed=int(rng.integers(2**31)))
        if nx.is_connected(g):
            break
    for u, v in g.edges:
        g.edges[u, v]["weight"] = float(rng.uniform(0.1, 5.0))
    return g


@pytest.mark.parametrize("seed", range(8))
def test_kirchhoff_equals_networkx_effective_graph_resistance(seed):
    g = random_connected_graph(seed)
    lap = nx.laplacian_matrix(g, weight="weight").toarray()
    mu = np.linalg.eigvalsh(lap)  # one (round-off) zero eigenvalue
    # invert_weight=False: the 'weight' attribute is a conductance, as in the Laplacian
    ref = nx.effective_graph_resistance(g, weight="weight", invert_weight=False)
    assert kirchhoff_index(mu) == pytest.approx(ref, rel=1e-9)
    # unweighted graph
    mu1 = np.linalg.eigvalsh(nx.laplacian_matrix(g, weight=None).toarray())
    ref1 = nx.effective_graph_resistance(g, weight=None)
    assert kirchhoff_index(mu1) == pytest.approx(ref1, rel=1e-9)


def test_kirchhoff_vectorised_over_graphs():
    graphs = [random_connected_graph(s) for s in range(10, 20)]
    mus = [np.linalg.eigvalsh(nx.laplacian_matrix(g).toarray()) for g in graphs]
    refs = [nx.effective_graph_resistance(g, weight="weight", invert_weight=False) for g in graphs]
    np.testing.assert_allclose(kirchhoff_index(mus), refs, rtol=1e-9)
    np.testing.assert_allclose(kirchhoff_index(pack_spectra(mus)), refs, rtol=1e-9)


def test_kirchhoff_closed_forms():
    assert kirchhoff_index([2.0, 1.0, 0.0]) == pytest.approx(3 * 1.5)
    # top-k: n = k, zeros included
    assert kirchhoff_index([0.0, 1.0, 4.0, 2.0], k=3) == pytest.approx(3 * (0.25 + 0.5 + 1.0))
    assert kirchhoff_index([0.0, 0.0, 1.0], k=3) == pytest.approx(3.0)
    # relative floor
    assert kirchhoff_index([1.0, 1e-12]) == pytest.approx(2.0)
    assert kirchhoff_index([1.0, 1e-12], floor=0) == pytest.approx(2 * (1 + 1e12))
    assert kirchhoff_index([100.0, 1e-9]) == pytest.approx(2 * 0.01)  # 1e-9 < 1e-10 * 100
    assert kirchhoff_index([100.0, 1e-7]) == pytest.approx(2 * (0.01 + 1e7))
    # negative round-off is clipped to zero but counted in n
    assert kirchhoff_index([1.0, -1e-17]) == pytest.approx(2.0)
    # scaling: Kf(c * lambda) = Kf(lambda) / c
    lam = np.array([5.0, 3.0, 0.5])
    assert kirchhoff_index(lam * 7.0) == pytest.approx(kirchhoff_index(lam) / 7.0)


def test_covariance_eigenvalues():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 6))
    x -= x.mean(axis=0)
    s = np.linalg.svd(x, compute_uv=False)
    lam = np.sort(np.linalg.eigvalsh(np.cov(x, rowvar=False)))[::-1]
    np.testing.assert_allclose(covariance_eigenvalues(s, 40), lam, rtol=1e-10)
    np.testing.assert_allclose(covariance_eigenvalues(list(s), 40), lam, rtol=1e-10)
    assert kirchhoff_index(covariance_eigenvalues(s, 40)) == pytest.approx(
        39 * kirchhoff_index(s**2)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.all(np.isnan(covariance_eigenvalues(s, 1)))
        assert np.all(np.isnan(covariance_eigenvalues(s, 0)))
        # per-row T on a 2-D padded array, ragged list with per-spectrum T
        packed = np.array([[2.0, 1.0], [3.0, np.nan]])
        out = covariance_eigenvalues(packed, np.array([3, 1]))
        np.testing.assert_allclose(out[0], [2.0, 0.5])
        assert np.all(np.isnan(out[1]))
        lst = covariance_eigenvalues([np.array([2.0]), np.array([3.0, 1.0])], [5, 2])
        np.testing.assert_allclose(lst[0], [1.0])
        np.testing.assert_allclose(lst[1], [9.0, 1.0])


# --------------------------------------------------------------------------- tail energy


def test_tail_energy_closed_forms():
    assert tail_energy([3.0, 4.0], 1) == pytest.approx(9 / 25)
    assert tail_energy([3.0, 4.0], 0) == 1.0
    assert tail_energy([3.0, 4.0], 2) == 0.0
    assert tail_energy([3.0, 4.0], 10) == 0.0
    for n, k in [(10, 3), (50, 10), (7, 6)]:
        assert tail_energy(np.ones(n), k) == pytest.approx((n - k) / n)
    r, n, k = 0.8, 30, 7
    s = r ** np.arange(n)
    expected = (r ** (2 * k) - r ** (2 * n)) / (1 - r ** (2 * n))
    assert tail_energy(np.random.default_rng(0).permutation(s), k) == pytest.approx(expected)


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.float64, st.integers(1, 40), elements=st.floats(1e-3, 1e3)))
def test_tail_energy_monotone_in_unit_interval(s):
    vals = tail_energy([s] * (len(s) + 2), 0)  # vectorised path
    assert np.all(vals == pytest.approx(1.0))
    te = np.array([tail_energy(s, k) for k in range(len(s) + 2)])
    assert np.all((te >= 0) & (te <= 1 + 1e-12))
    assert np.all(np.diff(te) <= 1e-12)
    assert te[-1] == 0.0


# --------------------------------------------------------------------------- vectorisation


@pytest.mark.parametrize("name", sorted(FUNCS))
def test_vectorised_equals_per_spectrum(name, monkeypatch):
    f = FUNCS[name]
    specs = ragged(1)
    singles = [f(s) for s in specs]
    assert all(type(r) is np.float64 for r in singles)
    one_by_one = np.array(singles)
    many = f(specs)
    assert isinstance(many, np.ndarray)
    assert many.shape == (len(specs),)
    np.testing.assert_allclose(many, one_by_one, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(f(tuple(specs)), one_by_one, rtol=1e-12, equal_nan=True)
    obj = np.empty(len(specs), dtype=object)
    obj[:] = specs
    np.testing.assert_allclose(f(obj), one_by_one, rtol=1e-12, equal_nan=True)
    # the 2-D padded form: only the spectrum with a trailing NaN *value* differs (it is padding)
    clean = [s for s in specs if np.all(np.isfinite(s)) or not np.isnan(s[-1])]
    expected = np.array([f(s) for s in clean])
    np.testing.assert_allclose(f(pack_spectra(clean)), expected, rtol=1e-12, equal_nan=True)
    # many small blocks give the same answer
    monkeypatch.setattr(spectra, "_BLOCK_ELEMENTS", 50)
    np.testing.assert_allclose(f(specs), one_by_one, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(f(pack_spectra(clean)), expected, rtol=1e-12, equal_nan=True)


def test_list_of_numbers_is_one_spectrum_and_empty_list_is_none():
    assert isinstance(effective_rank([1.0, 1.0]), np.float64)
    assert effective_rank([1.0, 1.0]) == pytest.approx(2.0)
    out = effective_rank([])
    assert isinstance(out, np.ndarray)
    assert out.shape == (0,)
    assert np.isnan(effective_rank(np.array([])))
    assert effective_rank(np.zeros((0, 5))).shape == (0,)
    np.testing.assert_equal(effective_rank(np.zeros((3, 0))), [np.nan] * 3)
    # float32 and integer input
    assert effective_rank(np.ones(4, dtype=np.float32)) == pytest.approx(4.0)
    assert effective_rank(np.ones(4, dtype=int)) == pytest.approx(4.0)


# --------------------------------------------------------------------------- edge cases

EDGE = [
    # (spectrum, effective_rank, alpha lsq, kirchhoff, tail_energy k=1)
    (np.array([]), np.nan, np.nan, np.nan, np.nan),
    (np.array([0.0]), np.nan, np.nan, np.nan, np.nan),
    (np.zeros(4), np.nan, np.nan, np.nan, np.nan),
    (np.array([2.0]), 1.0, np.nan, 0.5, 0.0),
    (np.array([0.0, 2.0, 0.0]), 1.0, np.nan, 1.5, 0.0),
    (np.array([1.0, np.nan]), np.nan, np.nan, np.nan, np.nan),
    (np.array([np.nan]), np.nan, np.nan, np.nan, np.nan),
    (np.array([np.inf, 1.0]), np.nan, np.nan, np.nan, np.nan),
    (np.array([-np.inf, 1.0]), np.nan, np.nan, np.nan, np.nan),
    (np.array([1.0, -1e-17, 1.0]), 2.0, 0.0, 6.0, 0.5),
    (np.array([1e-300, 1e-300]), 2.0, 0.0, 4e300, 0.5),
]


@pytest.mark.parametrize(("s", "er", "alpha", "kf", "te"), EDGE)
def test_edge_cases_documented_and_silent(s, er, alpha, kf, te):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = [
            effective_rank(s),
            spectral_alpha(s),
            kirchhoff_index(s),
            tail_energy(s, 1),
            effective_rank(s, 2, power=2),
            spectral_alpha(s, method="mle"),
        ]
        np.testing.assert_allclose(got[:4], [er, alpha, kf, te], rtol=1e-12, equal_nan=True)
        assert np.isnan(got[5]) == np.isnan(alpha)
        # the same spectra as a batch
        batch = [s, s, np.array([1.0, 0.5])]
        for f in FUNCS.values():
            np.testing.assert_allclose(f(batch), [f(x) for x in batch], rtol=1e-12, equal_nan=True)


def test_nan_padding_vs_nan_values():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        packed = np.array([[3.0, 2.0, np.nan], [3.0, np.nan, 2.0], [np.nan] * 3])
        out = effective_rank(packed)
        assert out[0] == pytest.approx(effective_rank(np.array([3.0, 2.0])))
        assert np.isnan(out[1])  # interior NaN is data
        assert np.isnan(out[2])  # all padding: empty spectrum
        assert np.isnan(effective_rank([np.array([3.0, 2.0, np.nan])]))[0]


@pytest.mark.parametrize(
    "call",
    [
        lambda: effective_rank([1.0], k=0),
        lambda: effective_rank([1.0], k=2.5),
        lambda: effective_rank([1.0], power=0),
        lambda: spectral_alpha([1.0], start=3, stop=3),
        lambda: spectral_alpha([1.0], start=-1),
        lambda: spectral_alpha([1.0], method="ols"),
        lambda: kirchhoff_index([1.0], floor=-1),
        lambda: kirchhoff_index([1.0], floor=1.0),
        lambda: tail_energy([1.0], -1),
        lambda: tail_energy([1.0], None),
        lambda: effective_rank(3.0),
        lambda: effective_rank(np.ones((2, 2, 2))),
        lambda: effective_rank([np.ones((2, 2)), np.ones((2, 2))]),
    ],
)
def test_invalid_arguments_raise(call):
    with pytest.raises(ValueError):
        call()
