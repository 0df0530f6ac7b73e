"""Exact finite-width law: closed forms against independent computation, engine against the law.

Three tiers (STYLE.md): finite sums against independent exact arithmetic (1e-9), the log q band
against deterministic quadrature, and simulated networks against the law with binomial and KS
tests at alpha = 0.001 (fixed seeds). Batch 1 throughout where the law is exact per input.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import integrate, special, stats

from propagate import theory
from propagate.activations import make_activation
from propagate.api import build_network
from propagate.data import Dataset
from propagate.errors import InputError
from propagate.finite_width import (
    FIELDS,
    finite_width_predictions,
    law_support,
    log_q_quantiles,
    log_q_variance,
)
from propagate.network import EngineConfig, Network, simulate
from propagate.recommend import recommended_std_per_unit
from propagate.schemes import resolve_scheme
from propagate.theory_spectra import UNIFORM_MU4, fourth_moment_recursion

ALPHA = 1e-3
EULER_GAMMA = 0.57721566490153286061


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def digamma_half(k: int) -> float:
    """psi(k/2) from its closed forms at integers and half-integers (no scipy)."""
    if k % 2 == 0:
        m = k // 2
        return -EULER_GAMMA + math.fsum(1.0 / j for j in range(1, m))
    m = (k - 1) // 2
    return (
        -EULER_GAMMA - 2.0 * math.log(2.0) + math.fsum(2.0 / (2 * j - 1) for j in range(1, m + 1))
    )


def mean_digamma_given_alive(n: int) -> float:
    """E[psi(K/2) | K >= 1], K ~ Bin(n, 1/2), with exact integer binomial weights."""
    norm = 2**n - 1
    return math.fsum(math.comb(n, k) * digamma_half(k) for k in range(1, n + 1)) / norm


# ==================================================================== tier 1: exact numbers
def test_digamma_oracle_agrees_with_scipy():
    for k in range(1, 60):
        assert abs(digamma_half(k) - special.psi(k / 2)) < 1e-13


@pytest.mark.parametrize(
    "n_out,n_in",
    [(1, 5), (2, 2), (3, 7), (4, 64), (8, 8), (12, 3), (30, 30), (64, 4), (64, 64), (200, 17)],
)
def test_neutral_scale_against_independent_sum(n_out, n_in):
    expected = n_in / 2.0 * math.exp(-mean_digamma_given_alive(n_out))
    assert rel(theory.neutral_scale(n_out, n_in), expected) < 1e-9


def test_neutral_std_for_a_bottleneck():
    widths = [64, 64, 4, 64, 64]
    norm = [
        math.sqrt(n_in / 2.0 * math.exp(-mean_digamma_given_alive(n_out)) / n_in)
        for n_in, n_out in zip(widths[:-1], widths[1:])
    ]
    assert rel(theory.neutral_std(widths), norm) < 1e-9
    # per unit (the recommendation): s2*(n_out, n_out) / n_in, i.e. norm x sqrt(n_out / n_in)
    unit = [
        math.sqrt(n_out / 2.0 * math.exp(-mean_digamma_given_alive(n_out)) / n_in)
        for n_in, n_out in zip(widths[:-1], widths[1:])
    ]
    assert rel(recommended_std_per_unit(widths), unit) < 1e-9
    ratio = np.sqrt(np.array(widths[1:]) / np.array(widths[:-1]))
    assert rel(recommended_std_per_unit(widths), theory.neutral_std(widths) * ratio) < 1e-12
    # the bottleneck layer: 1.43x He, the others about exp(5/(4 * 64)) = 1.02x
    he = np.sqrt(2.0 / np.array(widths[:-1]))
    assert 1.42 < recommended_std_per_unit(widths)[1] / he[1] < 1.44
    assert abs(recommended_std_per_unit(widths)[0] / he[0] - math.exp(5 / 256)) < 2e-3


def test_p_dead_exact_fractions_for_a_bottleneck():
    widths = [64, 64, 4, 64, 64]
    alive, expected = Fraction(1), []
    for n in widths[1:]:
        alive *= 1 - Fraction(1, 2**n)
        expected.append(float(1 - alive))
    assert rel(theory.p_dead(widths), expected) < 1e-12
    assert rel(theory.p_dead([8] * 31)[-1], float(1 - (1 - Fraction(1, 256)) ** 30)) < 1e-12


def test_second_moment_product_against_exact_binomial_enumeration():
    # E[chi2_K (chi2_K + 2)] = E[K^2 + 2K]; per layer E[R^2]/E[R]^2 = E[K^2 + 2K] / (n/2)^2
    widths = [5, 8, 3, 12, 2, 1, 40]
    product, expected = Fraction(1), []
    for n in widths[1:]:
        moment = sum(Fraction(math.comb(n, k) * (k * k + 2 * k), 2**n) for k in range(n + 1))
        product *= moment / Fraction(n * n, 4)
        expected.append(float(product))
        assert moment / Fraction(n * n, 4) == 1 + Fraction(5, n)
    assert rel(theory.second_moment_ratio(widths), expected) < 1e-12


def test_log_moments_against_independent_digamma_sums():
    widths, s2 = [7, 3, 9, 2, 16], [2.0, 3.1, 1.7, 2.0]
    mean = 0.0
    for layer, n in enumerate(widths[1:]):
        mean += math.log(s2[layer] / widths[layer]) + math.log(2.0) + mean_digamma_given_alive(n)
    assert abs(theory.log_ratio_moments(widths, s2)["mean"][-1] - mean) < 1e-9 * abs(mean)


# ================================================= tier 2: the log q band against quadrature
def _cdf_log_q_layer2(x, n0, n1, n2, s2, m0):
    """P(log q_2 <= x | alive at layer 1) by direct quadrature over log chi2_K, K | K >= 1."""
    a = math.log(s2 * n0 * m0 / (n1 * n2)) + math.log(s2 / n0)
    total, norm = 0.0, 2**n1 - 1
    for k in range(1, n1 + 1):

        def integrand(u, k=k):
            density = math.exp(
                0.5 * k * u - 0.5 * math.exp(u) - 0.5 * k * math.log(2.0) - special.gammaln(0.5 * k)
            )
            return stats.chi2.cdf(math.exp(x - a - u), n2) * density

        value = integrate.quad(
            integrand, -80, 8, limit=400, epsabs=1e-14, epsrel=1e-13, points=[-20, -5, 0, 2, 4]
        )[0]
        total += math.comb(n1, k) / norm * value
    return total


@pytest.mark.parametrize(
    "n0,n1,n2,s2,m0", [(5, 3, 4, 2.0, 0.8), (8, 8, 8, 2.0, 1.0), (16, 2, 16, 3.0, 1.3)]
)
def test_log_q_quantiles_against_quadrature(n0, n1, n2, s2, m0):
    probs = (0.3, 0.5, 0.9)
    q = log_q_quantiles([n0, n1, n2], s2, probs, input_second_moment=m0)
    # layer 1 is a scaled chi-square exactly
    first = math.log(s2 * m0 / n1) + np.log(stats.chi2.ppf(probs, n1))
    assert np.max(np.abs(q[0] - first)) < 1e-9
    dead = 2.0**-n1
    for p, x in zip(probs, q[1], strict=True):
        assert abs(_cdf_log_q_layer2(x, n0, n1, n2, s2, m0) - (p - dead) / (1 - dead)) < 1e-5


def test_mixture_solver_converges_by_newton_without_disturbing_solved_entries(monkeypatch):
    """Each probability of the band is solved to its tolerance, and one that has converged is
    not thrown back into bisection while the others finish (that cost ~25 passes a layer)."""
    from propagate import finite_width

    x, w = np.polynomial.legendre.leggauss(128)
    q_r = theory.log_ratio_quantiles([64] * 20, 1.0, 0.5 * (x + 1.0))[-1]
    weights = 0.5 * w
    target = np.array([1e-4, 0.05, 0.5, 0.95, 1 - 1e-4])
    calls = []
    real = special.gammainc
    monkeypatch.setattr(
        finite_width.special, "gammainc", lambda a, y: calls.append(1) or real(a, y)
    )
    got = finite_width._solve_mixture(target, -3.0, q_r, weights, 64)
    monkeypatch.undo()
    cdf = special.gammainc(32.0, 0.5 * np.exp(got[:, None] + 3.0 - q_r[None, :])) @ weights
    assert np.abs(cdf - target).max() < 1e-12
    assert len(calls) <= 6


def test_log_q_band_counts_dead_networks_and_layers_subset():
    widths = [3, 2, 2, 2]
    q = log_q_quantiles(widths, 2.0, (0.2, 0.3, 0.5))
    # P(dead by layer 1) = 1/4, by layer 2 = 7/16: q_2's 0.2 is -inf, q_3's 0.3 too
    assert np.isfinite(q[0]).all()
    assert q[1, 0] == -np.inf and np.isfinite(q[1, 1:]).all()
    assert q[2, 0] == q[2, 1] == -np.inf and np.isfinite(q[2, 2])
    sub = log_q_quantiles(widths, 2.0, (0.2, 0.3, 0.5), layers=[3])
    np.testing.assert_array_equal(sub[0], q[2])
    with pytest.raises(InputError):
        log_q_quantiles([3, 0], 2.0)


def test_log_q_variance_is_log_r_variance_plus_trigamma():
    widths = [8, 8, 4, 8]
    var_r = theory.log_ratio_moments(widths[:3], 2.0)["var"][-1]
    assert abs(log_q_variance(widths, 3) - (var_r + special.polygamma(1, 4.0))) < 1e-12
    assert abs(log_q_variance(widths, 1) - special.polygamma(1, 4.0)) < 1e-12


# ============================================= tier 3: simulated networks against the law
def _draw_log_q(widths, s2, layer, size, rng):
    """Draws of log q_layer from the exact law (binomial-chi-square), -inf when dead."""
    n = np.asarray(widths)
    log_r = np.zeros(size)
    for l in range(1, layer):
        k = rng.binomial(n[l], 0.5, size)
        with np.errstate(divide="ignore"):
            step = np.where(k > 0, np.log(rng.chisquare(np.maximum(k, 1), size)), -np.inf)
        log_r += math.log(s2 / n[l - 1]) + step
    a = math.log(s2 * n[0] / (n[layer - 1] * n[layer]))
    return a + log_r + np.log(rng.chisquare(n[layer], size))


def test_engine_band_and_deaths_match_the_exact_law_at_batch_1():
    widths, trials = [8] * 13, 4000
    net = build_network(widths=widths, scheme="he-normal")
    stats_ = simulate(net, EngineConfig(batch=1, trials=trials, seed=11, dtype=np.float64))
    fields, _ = finite_width_predictions(net, stats_, batch=1)
    m0 = float(np.exp(stats_.log_m0[0]))
    rng = np.random.default_rng(7)
    for layer in (1, 6, 12):
        measured = stats_.log_q[:, layer - 1] / math.log(10)
        for key, p in (
            ("log10_q_p05_pred", 0.05),
            ("log10_q_median_pred", 0.5),
            ("log10_q_p95_pred", 0.95),
        ):
            below = int(np.sum(measured <= fields[layer - 1][key]))
            assert stats.binomtest(below, trials, p).pvalue > ALPHA, (layer, key, below)
        dead = int(round(stats_.dead_inputs[:, layer - 1].sum()))
        assert stats.binomtest(dead, trials, fields[layer - 1]["p_dead_pred"]).pvalue > ALPHA
        # two-sample KS of the alive log q against draws of the exact law
        draws = _draw_log_q(widths, 2.0, layer, 40_000, rng) + math.log(m0)
        alive = stats_.log_q[:, layer - 1]
        result = stats.ks_2samp(alive[np.isfinite(alive)], draws[np.isfinite(draws)])
        assert result.pvalue > ALPHA, (layer, result)


def test_width_8_depth_30_he_warning():
    """The issue's case: mean preserved, median near 1e-5, about one network in nine dead."""
    net = build_network(depth=30, fan_in=8, scheme="he-normal")
    stats_ = simulate(net, EngineConfig(batch=1, trials=3000, seed=3))
    fields, notes = finite_width_predictions(net, stats_, batch=1)
    last = fields[-1]
    assert abs(last["p_dead_pred"] - (1 - (1 - 2**-8) ** 30)) < 1e-12
    assert 0.105 < last["p_dead_pred"] < 0.115
    drift = last["log10_q_median_pred"] - math.log10(2.0 * math.exp(stats_.log_m0[0]))
    assert -5.6 < drift < -5.0
    assert last["log10_q_p05_pred"] == -math.inf  # more than 5 % are dead
    warning = [n for n in notes if "mean is preserved" in n]
    assert len(warning) == 1
    text = warning[0]
    assert "one in 9" in text and "vanishes" in text and "measured" in text
    assert "recommend" in text
    # the measured median agrees (SE of a median ~ 1.25 sd / sqrt(n) with sd ~ 2.6 decades)
    measured = float(np.median(stats_.log_q[:, -1])) / math.log(10)
    assert abs(measured - last["log10_q_median_pred"]) < 4 * 1.25 * 2.7 / math.sqrt(3000)
    # wide and shallow: no warning
    _, quiet = finite_width_predictions(build_network(depth=10, fan_in=64), None)
    assert not any("mean is preserved" in n for n in quiet)


def test_other_laws_and_activations_say_what_is_not_predicted():
    fields, notes = finite_width_predictions(
        build_network(depth=5, fan_in=8, scheme="he-uniform"), None
    )
    assert fields[-1]["p_dead_pred"] == pytest.approx(1 - (1 - 2**-8) ** 5, rel=1e-12)
    assert fields[-1]["log10_q_median_pred"] is None and "Gaussian weights only" in notes[0]
    ortho = build_network(depth=5, fan_in=8, scheme="orthogonal")
    assert law_support(ortho)[:2] == ("cumulative", False)
    for kwargs in ({"activation": "tanh"}, {"activation": "leaky-relu"}, {"bias_std": 0.1}):
        net = build_network(widths=[5, 8, 3, 8], **kwargs)
        fields, notes = finite_width_predictions(net, None)
        assert set(fields[0]) == set(FIELDS) and "without bias" in notes[0]
        assert all(f[k] is None for f in fields for k in FIELDS if k != "p_dead_pred")
        # no h_l = 0 without a rectifier; with biases a dead layer no longer kills the next
        expected = [2.0**-8, 2.0**-3, 2.0**-8] if "bias_std" in kwargs else [0.0] * 3
        assert [f["p_dead_pred"] for f in fields] == expected
    _, notes = finite_width_predictions(build_network(depth=30, fan_in=8), None, batch=16)
    assert any("treats the batch as one input" in n for n in notes)


def test_p_dead_per_layer_with_biases_matches_the_engine():
    """With N(0, 0.1^2) biases P(h_l = 0) = 2^-n_l at each layer, not cumulative."""
    net = build_network(widths=[6, 3, 3, 3, 3], bias_std=0.1)
    trials = 4000
    stats_ = simulate(net, EngineConfig(batch=1, trials=trials, seed=2, dtype=np.float64))
    fields, _ = finite_width_predictions(net, stats_)
    for layer in range(4):
        dead = int(round(stats_.dead_inputs[:, layer].sum()))
        assert stats.binomtest(dead, trials, fields[layer]["p_dead_pred"]).pvalue > ALPHA
    cumulative = theory.p_dead([6, 3, 3, 3, 3])[-1]
    assert abs(np.mean(stats_.dead_inputs[:, -1]) - cumulative) > 0.1


def test_gauss_001_vanishing_gets_no_typical_warning_but_exact_band():
    net = build_network(depth=30, fan_in=64, scheme="gauss")
    fields, notes = finite_width_predictions(net, None, input_second_moment=1.0)
    assert not any("mean is preserved" in n for n in notes)
    # the band shifts by exactly log(s2) per layer against He's
    he, _ = finite_width_predictions(build_network(depth=30, fan_in=64), None)
    shift = 30 * math.log10(64 * 1e-4 / 2.0)
    assert abs(fields[-1]["log10_q_median_pred"] - he[-1]["log10_q_median_pred"] - shift) < 1e-6


def test_fourth_moment_recursion_against_uniform_weights_in_the_engine():
    """He uniform, width 8, all-ones input: E||h||^4 / (E||h||^2)^2 against the recursion.

    Depth 4: deeper, the 8th moment that sets the estimate's error grows so fast that the sample
    SE is unreliable (THEORY.md section 10); here the estimate is reliable and the Gaussian
    value prod(1 + 5/n) is excluded by > 10 standard errors.
    """
    n, depth, trials = 8, 4, 200_000
    act = make_activation("relu")
    net = Network(
        widths=(n,) * (depth + 1), activation=act, init=resolve_scheme("he-uniform", activation=act)
    )
    data = Dataset(x=np.ones((1, n)), labels=None, name="ones", standardized=False)
    stats_ = simulate(
        net,
        EngineConfig(
            batch=1, trials=trials, seed=21, data=data, dtype=np.float64, chunk_trials=4096
        ),
    )
    norm2 = n * np.exp(stats_.log_m[:, -1])  # ||h_L||^2 (all-ones input: m_0 = 1)
    a, b = np.mean(norm2**2), np.mean(norm2)
    ratio = a / b**2
    grad = np.array([1.0 / b**2, -2.0 * a / b**3])
    se = math.sqrt(grad @ np.cov(np.vstack([norm2**2, norm2])) @ grad / trials)
    exact = fourth_moment_recursion([n] * (depth + 1), 2.0, UNIFORM_MU4, np.ones(n))
    gaussian = fourth_moment_recursion([n] * (depth + 1), 2.0, 3.0, np.ones(n))
    assert abs(ratio - exact["normalized"][-1]) < 4 * se
    assert abs(ratio - gaussian["normalized"][-1]) > 10 * se
    assert abs(gaussian["normalized"][-1] - (1 + 5 / n) ** depth) < 1e-9
