"""Tests of propagate.theory and propagate.theory_spectra.

Three tiers: closed forms against independent finite sums and exact enumeration (~1e-9
relative or better); closed forms against deterministic quadrature; Monte Carlo against theory
with |z| < 4 from the sample standard error (fixed seeds). Simulated networks here are a few
lines of numpy, independent of propagate.network.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import integrate, optimize, special, stats

from propagate import theory, theory_spectra
from propagate.activations import make_activation
from propagate.errors import InputError
from propagate.theory import (
    log_ratio_cdf,
    log_ratio_moments,
    log_ratio_quantiles,
    log_second_moment_ratio,
    log_survival,
    mean_field,
    neutral_scale,
    neutral_std,
    p_dead,
    recommended_std,
    second_moment_ratio,
)
from propagate.theory_spectra import (
    TRUNCNORM_STD_2SIGMA,
    TW1_MEAN,
    UNIFORM_MU4,
    correlation_iterates,
    fourth_moment_recursion,
    hanin_entry_moments,
    jacobian_mean_sq_sv,
    johnstone_top_edge,
    marchenko_pastur,
    mp_cdf,
    mp_pdf,
    pennington_var_over_mean2,
    quarter_circle_cdf,
    quarter_circle_mean,
    quarter_circle_pdf,
    relu_correlation_asymptote,
    truncnorm_mu4,
    truncnorm_std,
)

RELU = make_activation("relu")
LEAKY = make_activation("leaky-relu", 0.2)
LINEAR = make_activation("linear")
TANH = make_activation("tanh")
SEED = 12345
LN10 = math.log(10.0)


def rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def zscore(samples: np.ndarray, prediction: float) -> float:
    se = samples.std(ddof=1) / math.sqrt(samples.size)
    return float((samples.mean() - prediction) / se)


# ============================================================================ mean field
def test_he_relu_mean_field_closed_forms():
    widths, m0 = [10, 20, 5, 8, 8], 1.5
    n = np.array(widths, float)
    out = mean_field(widths, 2.0 / n[:-1], RELU, input_second_moment=m0)
    assert rel(np.exp(out["log_q"]), 2 * m0) < 1e-13
    assert rel(np.exp(out["log_m"]), m0) < 1e-13
    assert rel(np.exp(out["log_g"]), n[-1] / n) < 1e-13
    assert rel(np.exp(out["log_d"]), n[-1] / (2 * n[1:])) < 1e-13
    assert rel(np.exp(out["log_wgrad"]), n[-1] / 2 * n[:-1] * m0) < 1e-13


@pytest.mark.parametrize("activation", [RELU, LEAKY, LINEAR])
def test_mean_field_against_linear_domain_loop(activation):
    widths, v, sb2, m0 = [7, 3, 12, 5], [0.3, 0.05, 0.4], 0.2, 0.8
    c = 0.5 * (1 + activation.negative_slope**2)
    m, q, mm = m0, [], [m0]
    for layer in range(3):
        q.append(widths[layer] * v[layer] * m + sb2)
        m = c * q[-1]
        mm.append(m)
    g = [0.0] * 4
    g[3] = 2.5
    d = [0.0] * 3
    for layer in range(3, 0, -1):
        d[layer - 1] = c * g[layer]
        g[layer - 1] = widths[layer] * v[layer - 1] * d[layer - 1]
    wgrad = [widths[i + 1] * d[i] * widths[i] * mm[i] for i in range(3)]
    out = mean_field(
        widths, v, activation, bias_var=sb2, input_second_moment=m0, log_g_top=math.log(2.5)
    )
    assert rel(np.exp(out["log_q"]), q) < 1e-13
    assert rel(np.exp(out["log_m"]), mm[1:]) < 1e-13
    assert rel(np.exp(out["log_g"]), g) < 1e-13
    assert rel(np.exp(out["log_d"]), d) < 1e-13
    assert rel(np.exp(out["log_wgrad"]), wgrad) < 1e-13
    # with a bias (or no dead layers) the exact means are the mean-field ones
    np.testing.assert_array_equal(out["log_g_mean"], out["log_g"])
    np.testing.assert_array_equal(out["log_d_mean"], out["log_d"])


def test_fixed_std_collapse_he_factor():
    # std 0.01 at fan-in 64: factor 0.5 * 64 * 1e-4 = 0.0032 per layer, 0.0032^30 = 1.43e-75
    out = mean_field([64] * 31, 1e-4, RELU)
    log10_m30 = out["log_m"][29] / LN10
    assert abs(log10_m30 - 30 * math.log10(0.0032)) < 1e-12
    assert abs(log10_m30 - math.log10(1.43e-75)) < 2e-3
    log10_q = out["log_q"] / LN10
    assert rel(log10_q, math.log10(0.0064) + np.arange(30) * math.log10(0.0032)) < 1e-13


def test_extreme_depth_stays_finite():
    out = mean_field([64] * 5001, 1e-4, RELU)
    expected = math.log10(0.0064) + 4999 * math.log10(0.0032)  # ~ -12474
    for key in ("log_q", "log_m", "log_g", "log_d", "log_wgrad", "log_g_mean", "log_d_mean"):
        assert np.all(np.isfinite(out[key])), key
    assert rel(out["log_q"][-1] / LN10, expected) < 1e-9
    assert out["log_g"][0] / LN10 < -12000  # the backward signal collapses the same way
    assert np.all(out["survival"] > 0)


def test_tanh_tiny_and_huge_q_stay_finite():
    tiny = mean_field([64] * 3001, 1e-4, TANH)  # tanh(x) ~ x: factor 64e-4 per layer
    assert np.all(np.isfinite(tiny["log_q"]))
    q, m = [], 1.0  # linear-domain reference while representable
    for _ in range(50):
        q.append(64e-4 * m)
        m = TANH.second_moment_factor(q[-1]) * q[-1]
    assert rel(np.exp(tiny["log_q"][:50]), q) < 1e-12
    # once q is tiny each layer multiplies q (and g, backwards) by exactly 64e-4
    assert np.max(np.abs(np.diff(tiny["log_q"][-1000:]) - math.log(64e-4))) < 1e-9
    assert np.max(np.abs(np.diff(tiny["log_g"][-1000:]) + math.log(64e-4))) < 1e-9
    assert tiny["log_q"][-1] / LN10 < -6000
    huge = mean_field([64] * 51, 1e3, TANH, input_second_moment=1e300)
    for key in ("log_q", "log_m", "log_g", "log_d", "log_wgrad"):
        assert np.all(np.isfinite(huge[key])), key
    assert np.all(huge["log_m"][1:] <= 1e-12)  # tanh^2 <= 1


def test_log_g_top_shifts_only_the_backward_pass():
    base = mean_field([5, 6, 7], 0.3, RELU)
    shifted = mean_field([5, 6, 7], 0.3, RELU, log_g_top=-2.0)
    np.testing.assert_allclose(shifted["log_g"], base["log_g"] - 2.0, rtol=0, atol=1e-14)
    np.testing.assert_allclose(shifted["log_wgrad"], base["log_wgrad"] - 2.0, rtol=0, atol=1e-14)
    np.testing.assert_array_equal(shifted["log_q"], base["log_q"])


def test_survival_and_p_dead_exact_fractions():
    widths = [4, 1, 2, 3, 8, 60, 70]
    surv, dead = Fraction(1), []
    for n in widths[1:]:
        surv *= 1 - Fraction(1, 2**n)
        dead.append(1 - surv)
    assert rel(p_dead(widths), [float(x) for x in dead]) < 1e-12
    assert rel(np.exp(log_survival(widths)), [float(1 - x) for x in dead]) < 1e-15
    # tiny probabilities keep full relative accuracy
    assert rel(p_dead([5, 60, 70]), [2.0**-60, 2.0**-60 + 2.0**-70 - 2.0**-130]) < 1e-12
    assert p_dead([5, 4000])[0] == 0.0 and np.isfinite(log_survival([5, 4000])).all()
    # THEORY.md: one layer of width 2 kills 1/4; 30 layers of width 8 kill about 11 %
    assert abs(p_dead([3, 2])[0] - 0.25) < 1e-16
    assert abs(p_dead([8] * 31)[-1] - 0.11) < 0.005


def test_survival_corrected_backward_means_against_simulated_networks():
    """Narrow zero-bias ReLU nets: E[g_l], E[d_l], E[q_l] and the weight-gradient product."""
    rng = np.random.default_rng(SEED)
    widths, trials = [3, 2, 2, 2], 200_000
    x = np.array([1.0, -0.5, 2.0])
    pred = mean_field(widths, [2.0 / n for n in widths[:-1]], RELU, input_second_moment=x @ x / 3)
    h, zs, hs, ws = np.broadcast_to(x, (trials, 3)), [], [], []
    for n_in, n_out in itertools.pairwise(widths):
        w = rng.standard_normal((trials, n_out, n_in)) * math.sqrt(2.0 / n_in)
        hs.append(h)
        z = np.einsum("toi,ti->to", w, h)
        h = np.maximum(z, 0.0)
        zs.append(z)
        ws.append(w)
    grad = rng.standard_normal((trials, widths[-1]))
    g_samples, d_samples, wgrad_samples = [None] * 4, [None] * 3, [None] * 3
    g_samples[3] = (grad**2).mean(axis=1)
    for layer in range(3, 0, -1):
        delta = grad * (zs[layer - 1] > 0)
        d_samples[layer - 1] = (delta**2).mean(axis=1)
        wgrad_samples[layer - 1] = (delta**2).sum(axis=1) * (hs[layer - 1] ** 2).sum(axis=1)
        grad = np.einsum("toi,to->ti", ws[layer - 1], delta)
        g_samples[layer - 1] = (grad**2).mean(axis=1)
    for layer in range(4):
        assert abs(zscore(g_samples[layer], math.exp(pred["log_g_mean"][layer]))) < 4, layer
    for layer in range(3):
        assert abs(zscore(d_samples[layer], math.exp(pred["log_d_mean"][layer]))) < 4, layer
        assert abs(zscore(wgrad_samples[layer], math.exp(pred["log_wgrad"][layer]))) < 4, layer
        q = (zs[layer] ** 2).mean(axis=1)
        assert abs(zscore(q, math.exp(pred["log_q"][layer]))) < 4, layer
    # the correction matters here: uncorrected g_1 is off by many standard errors
    assert abs(zscore(g_samples[1], math.exp(pred["log_g"][1]))) > 10
    # g_0 (input gradient) and g_L (the probe) carry no survival factor
    assert pred["log_g_mean"][0] == pred["log_g"][0] and pred["log_g_mean"][3] == 0.0


def test_recommended_and_neutral_std():
    widths = [16, 8, 32]
    assert rel(recommended_std(widths, RELU), np.sqrt(2.0 / np.array([16, 8]))) < 1e-15
    assert rel(recommended_std(widths, LEAKY), np.sqrt(2 / 1.04 / np.array([16, 8]))) < 1e-15
    assert rel(recommended_std(widths, TANH), np.sqrt(1.0 / np.array([16, 8]))) < 1e-15
    assert rel(recommended_std(widths, LINEAR), np.sqrt(1.0 / np.array([16, 8]))) < 1e-15
    expected = [math.sqrt(neutral_scale(8, 16) / 16), math.sqrt(neutral_scale(32, 8) / 8)]
    assert rel(neutral_std(widths), expected) < 1e-15


@pytest.mark.parametrize(
    "call",
    [
        lambda: mean_field([8], 1.0, RELU),
        lambda: mean_field([8, 0], 1.0, RELU),
        lambda: mean_field([8, 2.5], 1.0, RELU),
        lambda: mean_field([8, 8], -1.0, RELU),
        lambda: mean_field([8, 8, 8], [1.0], RELU),
        lambda: mean_field([8, 8], 1.0, RELU, bias_var=-0.1),
        lambda: mean_field([8, 8], 1.0, RELU, input_second_moment=0.0),
        lambda: log_ratio_quantiles([8, 8], 2.0, probs=(0.0, 0.5)),
        lambda: fourth_moment_recursion([2, 2], 2.0, 0.5, np.ones(2)),
        lambda: fourth_moment_recursion([2, 2], 2.0, 3.0, input_norm4=1.0, input_sum4=2.0),
        lambda: fourth_moment_recursion([2, 2], 2.0, 3.0, np.ones(3)),
        lambda: marchenko_pastur(0, 4, 1.0),
        lambda: pennington_var_over_mean2(3, p_active=0.0),
        lambda: correlation_iterates(1.5, 3, RELU),
        lambda: relu_correlation_asymptote(0),
        lambda: truncnorm_mu4(-1.0),
    ],
)
def test_bad_arguments_raise_input_error(call):
    with pytest.raises(InputError):
        call()


# ============================================================================ exact law
def _brute_layer(n: int):
    """E[psi(K/2)], Var[psi(K/2)], E[psi'(K/2)] given K >= 1, K ~ Bin(n, 1/2), with math.comb."""
    norm = 2**n - 1
    w = [math.comb(n, k) / norm for k in range(1, n + 1)]
    psi = [float(special.psi(k / 2)) for k in range(1, n + 1)]
    tri = [float(special.polygamma(1, k / 2)) for k in range(1, n + 1)]
    mean = math.fsum(a * b for a, b in zip(w, psi, strict=True))
    var = math.fsum(a * (b - mean) ** 2 for a, b in zip(w, psi, strict=True))
    return mean, var, math.fsum(a * b for a, b in zip(w, tri, strict=True))


def test_log_ratio_moments_against_binomial_sums():
    widths, s2 = [6, 1, 2, 9, 40, 300], [2.0, 1.5, 3.0, 2.2, 2.0]
    mean = var = log_er = log_er2 = 0.0
    means, variances, ers, er2s = [], [], [], []
    for layer in range(5):
        n_in, n = widths[layer], widths[layer + 1]
        e_psi, v_psi, e_tri = _brute_layer(n)
        mean += math.log(s2[layer] / n_in) + math.log(2) + e_psi
        var += e_tri + v_psi
        log_er += math.log(s2[layer] * n / (2 * n_in))
        log_er2 += 2 * math.log(s2[layer] / n_in) + math.log(n * n / 4 + 5 * n / 4)
        means.append(mean), variances.append(var), ers.append(log_er), er2s.append(log_er2)
    out = log_ratio_moments(widths, s2)
    assert rel(out["mean"], means) < 1e-12
    assert rel(out["var"], variances) < 1e-12
    assert rel(out["log_mean_ratio"], ers) < 1e-13
    assert rel(out["log_mean_sq_ratio"], er2s) < 1e-13


def test_he_mean_and_second_moment_ratio():
    widths = [5, 8, 8, 3, 12]
    out = log_ratio_moments(widths, 2.0)
    assert rel(np.exp(out["log_mean_ratio"]), np.array(widths[1:]) / 5) < 1e-14
    ratio = np.exp(out["log_mean_sq_ratio"] - 2 * out["log_mean_ratio"])
    assert rel(ratio, second_moment_ratio(widths)) < 1e-13
    assert rel(second_moment_ratio([8, 8, 8]), [1.625, 1.625**2]) < 1e-15
    assert rel(log_second_moment_ratio([8] * 4), np.arange(1, 4) * math.log(1.625)) < 1e-15
    assert np.isinf(second_moment_ratio([1] * 500)[-1])  # 6^499 overflows; the log does not
    assert np.isfinite(log_second_moment_ratio([1] * 500)).all()


def test_large_width_asymptotics():
    # E log ~ -5/(2n), Var log ~ 5/n per layer under He (THEORY.md section 3)
    out = log_ratio_moments([2000, 2000], 2.0)
    assert abs(out["mean"][0] / (-5 / 4000) - 1) < 0.01
    assert abs(out["var"][0] / (5 / 2000) - 1) < 0.01
    assert np.isfinite(log_ratio_moments([100_000, 100_000], 2.0)["mean"]).all()


def test_neutral_scale():
    assert round(neutral_scale(8, 8), 6) == 2.980003
    e_psi = _brute_layer(8)[0]
    assert rel(neutral_scale(8, 8), 4.0 * math.exp(-e_psi)) < 1e-13
    assert rel(neutral_scale(5, 17), 17 / 2 * math.exp(-_brute_layer(5)[0])) < 1e-13
    assert neutral_scale(4, 4) > 4.0 and neutral_scale(2, 2) > 4.0
    for n in (500, 5000):
        assert abs(neutral_scale(n, n) / (2 * math.exp(5 / (2 * n))) - 1) < 5.0 / n**2
    # s2* makes the per-layer E[log R | alive] vanish
    assert abs(log_ratio_moments([8, 8], neutral_scale(8, 8))["mean"][0]) < 1e-14


def _single_layer_cdf(x: float, n_in: int, n: int, s2: float) -> float:
    k = np.arange(1, n + 1)
    pmf = stats.binom.pmf(k, n, 0.5) / -math.expm1(-n * math.log(2))
    return float(np.sum(pmf * stats.chi2.cdf(math.exp(x) * n_in / s2, k)))


@pytest.mark.parametrize("n_in,n", [(8, 8), (3, 1), (5, 2), (10, 40), (20000, 20000)])
def test_quantiles_single_layer_exact(n_in, n):
    probs = [0.01, 0.05, 0.5, 0.95, 0.99]
    got = log_ratio_quantiles([n_in, n], 2.0, probs)[0]
    for p, value in zip(probs, got, strict=True):
        root = optimize.brentq(
            lambda x, p=p: _single_layer_cdf(x, n_in, n, 2.0) - p,
            value - 1.0,
            value + 1.0,
            xtol=1e-14,
        )
        assert abs(value - root) < 1e-9 * max(1.0, abs(root))


def test_cdf_two_layers_against_quadrature():
    widths, s2 = [4, 3, 2], [2.0, 1.5]

    def pdf1(y):
        k = np.arange(1, 4)
        pmf = stats.binom.pmf(k, 3, 0.5) / (7 / 8)
        u = math.exp(y) * 4 / 2.0
        return float(np.sum(pmf * stats.chi2.pdf(u, k)) * u)

    def cdf2(x):
        inner = lambda y: pdf1(y) * _single_layer_cdf(x - y, 3, 2, 1.5)  # noqa: E731
        return integrate.quad(inner, -80, 8, points=[0.0], limit=400, epsabs=1e-13)[0]

    xs = np.array([-6.0, -2.0, -0.5, 1.0, 2.5])
    got = log_ratio_cdf(widths, s2, xs)[1]
    assert np.max(np.abs(got - [cdf2(x) for x in xs])) < 1e-9


def _exact_law_draws(widths, s2, draws, rng):
    """Cumulative log R_l given alive at every layer: K ~ Bin | K >= 1, chi2_K, sum of logs."""
    total = np.zeros(draws)
    out = []
    for layer, n in enumerate(widths[1:]):
        k = np.arange(1, n + 1)
        pmf = stats.binom.pmf(k, n, 0.5)
        kk = rng.choice(k, size=draws, p=pmf / pmf.sum())
        total = total + math.log(s2[layer] / widths[layer]) + np.log(rng.chisquare(kk))
        out.append(total)
    return np.array(out)


@pytest.mark.parametrize("widths", [[8] * 11, [5, 2, 16, 3, 64, 1, 4]])
def test_quantiles_against_monte_carlo_of_exact_law(widths):
    rng = np.random.default_rng(SEED)
    s2 = [2.0 + 0.1 * i for i in range(len(widths) - 1)]
    draws = 1_000_000
    sample = _exact_law_draws(widths, s2, draws, rng)
    probs = np.array([0.05, 0.5, 0.95])
    got = log_ratio_quantiles(widths, s2, probs)
    delta = 1e-4
    for layer in range(len(widths) - 1):
        mc = np.quantile(sample[layer], probs)
        cdf = log_ratio_cdf(
            widths[: layer + 2], s2[: layer + 1], np.r_[got[layer] - delta, got[layer] + delta]
        )
        density = (cdf[-1, 3:] - cdf[-1, :3]) / (2 * delta)
        se = np.sqrt(probs * (1 - probs) / draws) / density
        assert np.all(np.abs(mc - got[layer]) < 4 * se), (layer, mc, got[layer], se)
        assert np.all(se < 2e-2)  # the test has power at the 1e-2 level
        # the exact CDF at the quantile: binomial proportion test
        frac = np.mean(sample[layer][:, None] <= got[layer][None, :], axis=0)
        assert np.all(np.abs(frac - probs) < 4 * np.sqrt(probs * (1 - probs) / draws))
    # mean and variance of the law agree with the digamma closed forms
    moments = log_ratio_moments(widths, s2)
    last = sample[-1]
    assert abs(zscore(last, moments["mean"][-1])) < 4
    var_se = math.sqrt((np.mean((last - last.mean()) ** 4) - last.var() ** 2) / draws)
    assert abs(last.var(ddof=1) - moments["var"][-1]) < 4 * var_se


def test_unconditional_quantiles_count_dead_networks():
    widths = [3, 1, 1, 2]  # P(dead) = 1/2, 3/4, 1 - (1/4)(3/4)
    dead = p_dead(widths)
    probs = np.array([0.3, 0.5, 0.8, 0.95])
    alive = log_ratio_quantiles(widths, 2.0, [0.6, 0.9])
    out = log_ratio_quantiles(widths, 2.0, probs, given_alive=False)
    assert np.all(out[0, :2] == -np.inf) and np.all(out[1, :2] == -np.inf)
    assert abs(out[1, 2] - log_ratio_quantiles(widths, 2.0, [0.2])[1, 0]) < 1e-10
    assert abs(out[0, 2] - alive[0, 0]) < 1e-10 and abs(out[0, 3] - alive[0, 1]) < 1e-10
    assert abs(out[1, 3] - log_ratio_quantiles(widths, 2.0, [0.8])[1, 0]) < 1e-10
    assert np.all(out[2] == -np.inf) == bool(dead[2] >= 0.95)
    x = np.array([-3.0, 0.0])
    both = log_ratio_cdf(widths, 2.0, x, given_alive=False)
    cond = log_ratio_cdf(widths, 2.0, x)
    assert np.allclose(both, dead[:, None] + (1 - dead[:, None]) * cond, rtol=0, atol=1e-15)


def test_quantiles_deep_and_mixed_widths_are_fast_and_ordered():
    q = log_ratio_quantiles([64] * 301, 1e-4 * 64)
    assert np.all(np.isfinite(q)) and np.all(np.diff(q, axis=1) > 0)
    centre = log_ratio_moments([64] * 301, 1e-4 * 64)["mean"]
    assert abs(q[-1, 1] - centre[-1]) < 1.0  # the median sits near the mean of log R
    mixed = log_ratio_quantiles([100_000, 100_000, 2, 2, 1000], 2.0)
    assert np.all(np.isfinite(mixed)) and np.all(np.diff(mixed, axis=1) > 0)


@pytest.mark.parametrize("widths", [[64] * 31, [3, 100, 3, 50], [2] * 12])
def test_grid_law_fast_paths_match_the_plain_series(widths):
    """The fine FFT grid and the blocked direct sums equal the Fourier series summed term by
    term; quantiles meet their probability to rounding, tails included."""
    probs = np.array([1e-10, 1e-6, 0.05, 0.5, 0.95, 1 - 1e-6, 1 - 1e-10])
    for law in theory._exact_laws(np.array(widths)):
        d = np.linspace(0.0, law.period, 257)[:-1] + 0.37 * law.step
        phase = np.exp(-1j * d[:, None] * law.t[None, :])
        integrated = law.coef / (-1j * law.t)
        plain_cdf = d / law.period + 2 / law.period * np.real((phase - 1) @ integrated)
        plain_pdf = (1 + 2 * np.real(phase @ law.coef)) / law.period
        cdf, pdf = law.cdf_pdf(law.origin + d)
        assert np.abs(cdf - np.clip(plain_cdf, 0, 1)).max() < 1e-14
        assert np.abs(pdf - plain_pdf).max() < 1e-13 * plain_pdf.max()
        fine_cdf, fine_pdf = law.on_grid(refine=4)
        at = law.origin + np.arange(0, 4 * law.size, 37) * law.step / 4
        cdf, pdf = law.cdf_pdf(at)
        assert np.abs(fine_cdf[::37] - cdf).max() < 1e-14
        assert np.abs(fine_pdf[::37] - pdf).max() < 1e-13 * pdf.max()
        q = law.quantile(probs)
        assert np.all(np.diff(q) > 0)
        assert np.abs(law.cdf_pdf(q)[0] - probs).max() < 5e-14  # x to ~1e-13 relative


# ============================================================================ fourth moments
def _enumerate_fourth_moments(widths, x, support, probs, s2):
    """Exact E||h_l||^4 and E sum h^4 by enumerating every weight configuration."""
    shapes = [(b, a) for a, b in itertools.pairwise(widths)]
    count = sum(a * b for b, a in shapes)
    a_out = np.zeros(len(shapes))
    b_out = np.zeros(len(shapes))
    for combo in itertools.product(range(len(support)), repeat=count):
        weight = math.prod(probs[i] for i in combo)
        values = np.array([support[i] for i in combo])
        h, start = np.asarray(x, float), 0
        for layer, (rows, cols) in enumerate(shapes):
            w = values[start : start + rows * cols].reshape(rows, cols)
            w = w * math.sqrt(s2 / widths[layer])
            start += rows * cols
            h = np.maximum(w @ h, 0.0)
            a_out[layer] += weight * (h @ h) ** 2
            b_out[layer] += weight * np.sum(h**4)
    return a_out, b_out


@pytest.mark.parametrize("widths,x", [([2, 2, 2], [1.0, -2.0]), ([3, 2, 2], [1.0, 0.0, 0.0])])
def test_fourth_moment_recursion_exact_enumeration(widths, x):
    # symmetric 3-point law: +-c with prob p/2 each, 0 otherwise; unit variance, mu4 = 1/p
    p = 0.4
    c = 1 / math.sqrt(p)
    support, probs = [-c, 0.0, c], [p / 2, 1 - p, p / 2]
    a_exact, b_exact = _enumerate_fourth_moments(widths, x, support, probs, 2.0)
    out = fourth_moment_recursion(widths, 2.0, 1 / p, np.array(x))
    assert rel(np.exp(out["log_norm4"]), a_exact) < 1e-12
    assert rel(np.exp(out["log_sum4"]), b_exact) < 1e-12


def test_fourth_moment_gaussian_reduces_to_product():
    widths, s2 = [6, 8, 3, 8, 20, 1], [2.0, 1.0, 3.0, 0.5, 2.0]
    x = np.array([0.3, -1.0, 2.0, 0.0, 5.0, 1e-3])
    out = fourth_moment_recursion(widths, s2, 3.0, x)
    assert rel(out["normalized"], np.cumprod(1 + 5 / np.array(widths[1:]))) < 1e-12
    e_norm2 = (x @ x) * np.cumprod(
        np.array(s2) * np.array(widths[1:]) / (2 * np.array(widths[:-1]))
    )
    assert rel(np.exp(out["log_norm2"]), e_norm2) < 1e-13
    same = fourth_moment_recursion(
        widths, s2, 3.0, input_norm4=float((x @ x) ** 2), input_sum4=float(np.sum(x**4))
    )
    assert rel(same["log_norm4"], out["log_norm4"]) < 1e-14


def test_fourth_moment_one_hot_first_layer_and_uniform_gain():
    # one-hot input: ||h_1||^2 = sum relu(w_i)^2 * x^2, closed form with E w^4 = mu4 v^2
    n, v = 7, 2.0 / 4
    out = fourth_moment_recursion([4, n], 2.0, UNIFORM_MU4, np.array([0.0, 3.0, 0.0, 0.0]))
    expected = 3.0**4 * (n * UNIFORM_MU4 * v * v / 2 + n * (n - 1) * v * v / 4)
    assert rel(math.exp(out["log_norm4"][0]), expected) < 1e-13
    # THEORY.md section 9: width 8, depth 30, all-ones input -> about 10x smaller for uniform
    gauss = fourth_moment_recursion([8] * 31, 2.0, 3.0, np.ones(8))["normalized"][-1]
    unif = fourth_moment_recursion([8] * 31, 2.0, UNIFORM_MU4, np.ones(8))["normalized"][-1]
    assert 8 < gauss / unif < 13
    deep = fourth_moment_recursion([1] * 2001, 2.0, 3.0, np.ones(1))
    assert np.isfinite(deep["log_normalized"]).all() and np.isinf(deep["normalized"][-1])


def test_fourth_moment_against_uniform_monte_carlo():
    rng = np.random.default_rng(SEED)
    widths, trials, x = [4, 6, 5], 200_000, np.array([1.0, 0.0, 0.0, 2.0])
    out = fourth_moment_recursion(widths, 2.0, UNIFORM_MU4, x)
    h = np.broadcast_to(x, (trials, 4))
    for layer, (n_in, n_out) in enumerate(itertools.pairwise(widths)):
        bound = math.sqrt(3 * 2.0 / n_in)
        w = rng.uniform(-bound, bound, size=(trials, n_out, n_in))
        h = np.maximum(np.einsum("toi,ti->to", w, h), 0.0)
        norm4 = (h**2).sum(axis=1) ** 2
        assert abs(zscore(norm4, math.exp(out["log_norm4"][layer]))) < 4
        assert abs(zscore((h**4).sum(axis=1), math.exp(out["log_sum4"][layer]))) < 4


# ============================================================================ framework facts
def test_truncated_normal_facts():
    a = 2.0
    phi = math.exp(-a * a / 2) / math.sqrt(2 * math.pi)
    formula = math.sqrt(1 - 2 * a * phi / math.erf(a / math.sqrt(2)))
    assert abs(formula - TRUNCNORM_STD_2SIGMA) < 1e-15
    assert abs(truncnorm_std(2.0) - TRUNCNORM_STD_2SIGMA) < 1e-15
    assert round(truncnorm_mu4(2.0), 4) == 2.3655
    for cut in (0.3, 1.0, 2.0, 3.5, 6.0):
        dist = stats.truncnorm(-cut, cut)
        m2, m4 = dist.moment(2), dist.moment(4)
        assert rel(truncnorm_mu4(cut), m4 / m2**2) < 1e-9
        assert rel(truncnorm_std(cut), math.sqrt(m2)) < 1e-9
    assert abs(truncnorm_mu4(1e-6) - 9 / 5) < 1e-12
    assert abs(truncnorm_mu4(1e-4 * (1 - 1e-9)) - truncnorm_mu4(1e-4)) < 1e-12
    assert abs(truncnorm_mu4(40.0) - 3.0) < 1e-12
    assert rel(truncnorm_std(1e-4 * (1 - 1e-9)), truncnorm_std(1e-4)) < 1e-8
    u = stats.uniform(-1, 2)
    assert rel(UNIFORM_MU4, u.moment(4) / u.moment(2) ** 2) < 1e-14


# ============================================================================ weight spectra
@pytest.mark.parametrize("n_out,n_in", [(50, 200), (200, 50), (100, 100), (30, 31)])
def test_marchenko_pastur_against_quadrature(n_out, n_in):
    var = 1.7 / n_in
    law = marchenko_pastur(n_out, n_in, var)
    a, b = law.lambda_minus, law.lambda_plus
    q = n_in / n_out
    assert rel([a, b], [1.7 * (1 - q**-0.5) ** 2, 1.7 * (1 + q**-0.5) ** 2]) < 1e-13
    assert law == marchenko_pastur(n_out, n_in, var)
    swapped = marchenko_pastur(n_in, n_out, var)
    assert (swapped.lambda_minus, swapped.lambda_plus) == pytest.approx((a, b), rel=1e-15)
    assert law.zero_mass_wtw == max(0, 1 - n_out / n_in)
    assert law.zero_mass_wwt == max(0, 1 - n_in / n_out)

    def pdf(lam):
        return float(mp_pdf(lam, n_out, n_in, var))

    opts = {"limit": 200, "epsabs": 1e-13, "epsrel": 1e-13}
    total = integrate.quad(pdf, a, b, **opts)[0]
    mean = integrate.quad(lambda lam: lam * pdf(lam), a, b, **opts)[0]
    assert abs(total - 1) < 1e-9
    assert rel(mean, law.mean) < 1e-9 and rel(law.mean, var * max(n_in, n_out)) < 1e-15
    for lam in np.linspace(a, b, 9)[1:-1]:
        assert abs(integrate.quad(pdf, a, lam, **opts)[0] - law.cdf(lam)) < 1e-9
    assert law.cdf(a) == 0.0 and law.cdf(b) == 1.0 and law.cdf(2 * b) == 1.0
    assert mp_pdf(b * 1.01, n_out, n_in, var) == 0.0


def test_quarter_circle_square_case():
    sigma_w, n = 1.3, 64
    var = sigma_w**2 / n
    assert mp_pdf(0.0, n, n, var) == np.inf  # lambda^-1/2 divergence, no warning
    s = np.linspace(0, 2 * sigma_w, 11)
    assert np.max(np.abs(mp_cdf(s**2, n, n, var) - quarter_circle_cdf(s, sigma_w))) < 1e-14
    lam = np.array([1e-12, 1e-6, 0.5, 3.0])
    assert (
        rel(mp_pdf(lam, n, n, var), quarter_circle_pdf(np.sqrt(lam), sigma_w) / (2 * np.sqrt(lam)))
        < 1e-12
    )
    mean = integrate.quad(lambda x: x * quarter_circle_pdf(x, sigma_w), 0, 2 * sigma_w)[0]
    assert rel(mean, quarter_circle_mean(sigma_w)) < 1e-10
    assert rel(quarter_circle_mean(sigma_w), 8 * sigma_w / (3 * math.pi)) < 1e-15
    for x in (0.1, 1.0, 2.2):
        assert (
            abs(
                integrate.quad(quarter_circle_pdf, 0, x, args=(sigma_w,))[0]
                - quarter_circle_cdf(x, sigma_w)
            )
            < 1e-10
        )
    small = mp_cdf(1e-10, n, n, var)  # ~ (2/pi) sqrt(lambda) / sigma_w near 0
    assert rel(small, 2 / math.pi * math.sqrt(1e-10) / sigma_w) < 1e-6


def test_johnstone_top_edge():
    n_out, n_in, var = 300, 100, 0.02
    edge = johnstone_top_edge(n_out, n_in, var)
    mu = (math.sqrt(299) + 10) ** 2
    sigma = (math.sqrt(299) + 10) * (1 / math.sqrt(299) + 0.1) ** (1 / 3)
    assert rel([edge.centre, edge.scale], [var * mu, var * sigma]) < 1e-14
    assert rel(edge.mean, var * (mu + sigma * TW1_MEAN)) < 1e-14
    assert round(TW1_MEAN, 4) == -1.2065
    assert edge == johnstone_top_edge(n_in, n_out, var)
    assert edge.mean < marchenko_pastur(n_out, n_in, var).lambda_plus


# ============================================================================ Jacobians
def test_jacobian_mean_sq_sv():
    assert np.max(np.abs(jacobian_mean_sq_sv([32] * 41, 2.0 / 32, RELU))) < 1e-12
    widths = [10, 20, 5, 8]
    got = jacobian_mean_sq_sv(widths, [2 / n for n in widths[:-1]], RELU)
    assert rel(got, np.log(np.array(widths[1:]) / 10)) < 1e-13
    v = [0.1, 0.3, 0.2]
    got = jacobian_mean_sq_sv(widths, v, LEAKY)
    assert rel(got, np.cumsum(np.log(np.array(widths[1:]) * v * 0.52))) < 1e-13
    field = mean_field(widths, v, TANH)
    c_prime = [TANH.derivative_moment(q) for q in np.exp(field["log_q"])]
    got = jacobian_mean_sq_sv(widths, v, TANH)
    assert rel(got, np.cumsum(np.log(np.array(widths[1:]) * v * c_prime))) < 1e-12


def test_jacobian_mean_and_hanin_entries_against_simulated_networks():
    rng = np.random.default_rng(SEED)
    widths, trials = [3, 6, 6, 4], 200_000
    x = np.array([0.5, -1.0, 2.0])
    jac = np.broadcast_to(np.eye(3), (trials, 3, 3))
    h = np.broadcast_to(x, (trials, 3))
    for n_in, n_out in itertools.pairwise(widths):
        w = rng.standard_normal((trials, n_out, n_in)) * math.sqrt(2.0 / n_in)
        z = np.einsum("toi,ti->to", w, h)
        h = np.maximum(z, 0.0)
        jac = (z > 0)[:, :, None] * np.einsum("toi,tij->toj", w, jac)
    moments = hanin_entry_moments(widths)
    z2 = (jac**2).mean(axis=(1, 2))
    z4 = (jac**4).mean(axis=(1, 2))
    assert abs(zscore(z2, math.exp(moments["log_mean_z2"]))) < 4
    assert abs(zscore(z4, math.exp(moments["log_mean_z4"]))) < 4
    mean_sq_sv = (jac**2).sum(axis=(1, 2)) / 3
    pred = math.exp(jacobian_mean_sq_sv(widths, [2 / n for n in widths[:-1]], RELU)[-1])
    assert abs(zscore(mean_sq_sv, pred)) < 4


def test_hanin_entry_closed_forms():
    out = hanin_entry_moments([5, 8, 8, 3])
    product = (1 + 5 / 8) ** 2
    assert rel(math.exp(out["log_mean_z2"]), 1 / 5) < 1e-15
    assert rel(math.exp(out["log_mean_z4"]), 6 / 25 * product) < 1e-14
    assert rel(math.exp(out["log_var_z2"]), (6 * product - 1) / 25) < 1e-14
    assert rel(math.exp(out["log_kurtosis"]), 6 * product) < 1e-14
    lin = hanin_entry_moments([5, 8, 8, 3], linear_output_s2=1.5)
    assert rel(math.exp(lin["log_mean_z2"]), 1.5 / 5) < 1e-15
    assert rel(math.exp(lin["log_mean_z4"]), 3 * 1.5**2 / 25 * product) < 1e-14
    assert rel(math.exp(hanin_entry_moments([7, 4])["log_mean_z4"]), 6 / 49) < 1e-15


def test_pennington_variance():
    assert pennington_var_over_mean2(10) == 20  # Gaussian ReLU critical: 2L
    assert pennington_var_over_mean2(10, 0.5, 0.0) == 10  # orthogonal ReLU: L
    assert pennington_var_over_mean2(10, 1.0, -1.0) == 10  # Gaussian linear: L
    assert pennington_var_over_mean2(10, 1.0, 0.0) == 0  # orthogonal linear: isometry
    assert rel(pennington_var_over_mean2(7, 0.25, -1.0), 7 * 3 + 7) < 1e-15


# ============================================================================ correlation map
def test_relu_correlation_map_values():
    assert abs(correlation_iterates(0.0, 1, RELU)[1] - 1 / math.pi) < 1e-15
    assert abs(correlation_iterates(1.0, 1, RELU)[1] - 1.0) < 1e-15
    assert abs(correlation_iterates(-1.0, 1, RELU)[1]) < 1e-15
    step = 1e-7  # f'(1) = 1: one-sided slope 1 - O(sqrt(step))
    slope = (1.0 - correlation_iterates(1.0 - step, 1, RELU)[1]) / step
    assert abs(slope - 1.0) < 2 * math.sqrt(step)
    c = correlation_iterates(0.3, 50, RELU)
    reference = [0.3]
    for _ in range(50):
        r = reference[-1]
        reference.append((math.sqrt(1 - r * r) + (math.pi - math.acos(r)) * r) / math.pi)
    assert np.max(np.abs(c - reference)) < 1e-13
    assert np.all(np.diff(c) > 0)


def test_relu_correlation_asymptote():
    assert (
        rel(
            relu_correlation_asymptote(np.array([10.0, 1000.0])),
            1 - 9 * math.pi**2 / (2 * np.array([100.0, 1e6])),
        )
        < 1e-15
    )
    c = correlation_iterates(0.0, 1000, RELU)
    ratio = (1 - c[1000]) / (1 - relu_correlation_asymptote(1000))
    assert abs(ratio - 0.97) < 0.005  # THEORY.md section 7: only ~0.97 at l = 1000


def test_correlation_linear_and_tanh():
    assert np.allclose(correlation_iterates(0.4, 5, LINEAR), 0.4, rtol=0, atol=1e-14)
    fixed = correlation_iterates(0.2, 20, TANH, q=0.5)
    # sigma_w^2 cancels from the zero-bias correlation: tanh alone contracts c towards 0
    assert np.all(np.abs(fixed) <= 1) and np.all(np.diff(fixed) < 0)
    assert abs(correlation_iterates(1.0, 3, TANH, q=2.0)[-1] - 1.0) < 1e-12
    # with sigma_w^2 the q of each layer follows the mean field
    sigma_w2, q1 = 1.5, 0.7
    c = correlation_iterates(0.2, 6, TANH, q=q1, weight_var_times_fan_in=sigma_w2)
    field = mean_field([10] * 7, sigma_w2 / 10, TANH, input_second_moment=q1 / sigma_w2)
    expected = [0.2]
    for q in np.exp(field["log_q"][:6]):
        expected.append(TANH.correlation_map(expected[-1], q))
    assert np.max(np.abs(c - expected)) < 1e-14
    assert not np.allclose(c, correlation_iterates(0.2, 6, TANH, q=q1))


def test_lazy_reexport_from_theory():
    assert theory.marchenko_pastur is theory_spectra.marchenko_pastur
    assert theory.fourth_moment_recursion is theory_spectra.fourth_moment_recursion
    with pytest.raises(AttributeError):
        _ = theory.not_a_function
    for module in (theory, theory_spectra):
        for name in module.__all__:
            assert getattr(module, name) is not None
