"""The engine against a naive float64 oracle, finite differences, chunking and extreme depths."""

from __future__ import annotations

import math

import numpy as np
import pytest

from propagate.activations import make_activation
from propagate.network import (
    EngineConfig,
    Network,
    estimate_memory,
    layer_biases,
    layer_weights,
    probe_vectors,
    simulate,
)
from propagate.rng import Stream, block_generator
from propagate.schemes import resolve_scheme

LN10 = math.log(10.0)


def _net(widths, scheme="he-normal", activation="relu", slope=None, bias_std=0.0, **kw):
    act = make_activation(activation, slope)
    return Network(
        widths=tuple(widths),
        activation=act,
        init=resolve_scheme(scheme, activation=act, **kw),
        bias_std=bias_std,
    )


def _phi(act, z):
    if act.name == "tanh":
        return np.tanh(z), 1.0 - np.tanh(z) ** 2
    a = act.negative_slope
    return np.where(z > 0, z, a * z), np.where(z > 0, 1.0, a)


def _oracle(net: Network, seed: int, batch: int, trial: int, x=None, perturb=None):
    """Plain float64 forward/backward of one trial; returns per-layer statistics and grads."""
    widths, act = net.widths, net.activation
    if x is None:
        x = block_generator(seed, Stream.INPUT, 0, 0).standard_normal((batch, widths[0]))
    cfg = EngineConfig(batch=batch, trials=trial + 1, seed=seed)
    g = probe_vectors(net, cfg, trial, trial + 1)[0]
    ws, bs = [], []
    for l in range(1, net.depth + 1):
        ws.append(layer_weights(net, seed, l, trial, trial + 1)[0] * net.layer_inits[l - 1].std)
        if net.has_bias:
            bs.append(layer_biases(net, seed, l, trial, trial + 1)[0, 0] * net.bias_stds[l - 1])
        else:
            bs.append(np.zeros(widths[l]))
    if perturb is not None:
        ws[perturb[0]] = ws[perturb[0]] + perturb[1]
    hs, zs, ders = [x], [], []
    for w, b in zip(ws, bs):
        z = hs[-1] @ w.T + b
        h, d = _phi(act, z)
        zs.append(z)
        hs.append(h)
        ders.append(d)
    stats = {
        "q": [np.mean(z**2) for z in zs],
        "var": [np.mean(z.var(axis=0)) for z in zs],
        "m": [np.mean(h**2) for h in hs[1:]],
    }
    dh = g.copy()
    grads_w = [None] * net.depth
    g_l, d_l, wg = [None] * (net.depth + 1), [None] * net.depth, [None] * net.depth
    for l in range(net.depth, 0, -1):
        g_l[l] = np.mean(dh**2)
        delta = dh * ders[l - 1]
        d_l[l - 1] = np.mean(delta**2)
        wg[l - 1] = np.mean(np.sum(delta**2, axis=1) * np.sum(hs[l - 1] ** 2, axis=1))
        grads_w[l - 1] = delta.T @ hs[l - 1]
        dh = delta @ ws[l - 1]
    g_l[0] = np.mean(dh**2)
    stats.update(g=g_l, d=d_l, wgrad=wg, loss=float(np.sum(g * hs[-1])), dx=dh, dw=grads_w)
    return stats


CASES = [
    ("relu he", dict(widths=(7, 9, 6, 5), scheme="he-normal")),
    ("relu gauss", dict(widths=(6, 6, 6, 6, 6), scheme="gauss")),
    (
        "leaky bias",
        dict(
            widths=(5, 8, 4, 6),
            scheme="he-uniform",
            activation="leaky-relu",
            slope=0.2,
            bias_std=0.3,
        ),
    ),
    ("linear", dict(widths=(4, 6, 5), scheme="xavier-normal", activation="linear")),
    (
        "tanh bias",
        dict(widths=(5, 7, 7, 3), scheme="lecun-normal", activation="tanh", bias_std=0.1),
    ),
    ("orthogonal", dict(widths=(8, 5, 9, 4), scheme="orthogonal")),
    ("trunc", dict(widths=(6, 6, 6), scheme="he-truncnormal")),
]


@pytest.mark.parametrize("name,kw", CASES, ids=[c[0] for c in CASES])
def test_engine_matches_naive_float64(name, kw):
    net = _net(**kw)
    batch, trials, seed = 5, 11, 3
    stats = simulate(
        net,
        EngineConfig(
            batch=batch, trials=trials, seed=seed, dtype=np.float64, chunk_trials=4, workers=1
        ),
    )
    for t in (0, 4, 10):
        ref = _oracle(net, seed, batch, t)
        np.testing.assert_allclose(np.exp(stats.log_q[t]), ref["q"], rtol=1e-9)
        np.testing.assert_allclose(np.exp(stats.log_m[t]), ref["m"], rtol=1e-9)
        np.testing.assert_allclose(np.exp(stats.log_var[t]), ref["var"], rtol=1e-8)
        np.testing.assert_allclose(np.exp(stats.log_g[t]), ref["g"], rtol=1e-9)
        np.testing.assert_allclose(np.exp(stats.log_d[t]), ref["d"], rtol=1e-9)
        np.testing.assert_allclose(np.exp(stats.log_wgrad[t]), ref["wgrad"], rtol=1e-9)


def test_oracle_gradients_match_finite_differences():
    """The oracle's backward pass (and so the engine's) is the derivative of <g, h_L>."""
    net = _net((6, 7, 5, 4), scheme="he-normal", activation="leaky-relu", slope=0.1, bias_std=0.2)
    seed, batch = 1, 3
    base = _oracle(net, seed, batch, 0)
    rng = np.random.default_rng(0)
    x = block_generator(seed, Stream.INPUT, 0, 0).standard_normal((batch, 6))
    u = rng.standard_normal(x.shape)
    eps = 1e-6
    plus = _oracle(net, seed, batch, 0, x=x + eps * u)["loss"]
    minus = _oracle(net, seed, batch, 0, x=x - eps * u)["loss"]
    assert (plus - minus) / (2 * eps) == pytest.approx(np.sum(base["dx"] * u), rel=1e-6)
    for layer in range(net.depth):
        du = rng.standard_normal(base["dw"][layer].shape)
        plus = _oracle(net, seed, batch, 0, perturb=(layer, eps * du))["loss"]
        minus = _oracle(net, seed, batch, 0, perturb=(layer, -eps * du))["loss"]
        fd = (plus - minus) / (2 * eps)
        assert fd == pytest.approx(np.sum(base["dw"][layer] * du), rel=1e-6)


def _all(stats):
    return [
        stats.log_q,
        stats.log_m,
        stats.log_g,
        stats.log_d,
        stats.log_wgrad,
        stats.dead_units,
        stats.zero_fraction,
        stats.dead_inputs,
        stats.log_var,
    ]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "widths",
    [(16,) * 9, (300,) * 4, (3, 1, 1, 1, 1)],  # wide rows: float32 sums; width 1: batch means
)
def test_same_numbers_whatever_the_chunking(dtype, widths):
    net = _net(widths, scheme="he-uniform")
    runs = [
        simulate(
            net, EngineConfig(batch=12, trials=21, seed=7, dtype=dtype, chunk_trials=c, workers=w)
        )
        for c, w in ((21, 1), (1, 1), (3, 2), (8, 2), (5, 1))
    ]
    for other in runs[1:]:
        for a, b in zip(
            [*_all(runs[0]), runs[0].log_weight_var], [*_all(other), other.log_weight_var]
        ):
            np.testing.assert_array_equal(a, b)
    fewer = simulate(net, EngineConfig(batch=12, trials=6, seed=7, dtype=dtype))
    for a, b in zip(_all(runs[0]), _all(fewer)):
        np.testing.assert_array_equal(a[:6], b)
    other_seed = simulate(net, EngineConfig(batch=12, trials=6, seed=8, dtype=dtype))
    assert not np.array_equal(other_seed.log_q, fewer.log_q)


def test_weights_regenerated_or_kept_give_the_same_numbers():
    net = _net((10,) * 6, scheme="gauss")
    kept = simulate(net, EngineConfig(batch=8, trials=9, seed=2, keep_weights=True))
    regen = simulate(net, EngineConfig(batch=8, trials=9, seed=2, keep_weights=False))
    for a, b in zip(_all(kept), _all(regen)):
        np.testing.assert_array_equal(a, b)


def _exact_log_ratio_moments(n_in, n_out, s2, depth):
    """E and Var of log R_L given alive, Gaussian weights (THEORY.md section 3), direct sums."""
    from scipy.special import digamma, gammaln, polygamma

    k = np.arange(1, n_out + 1)
    logpmf = gammaln(n_out + 1) - gammaln(k + 1) - gammaln(n_out - k + 1) - n_out * math.log(2)
    p = np.exp(logpmf) / -math.expm1(-n_out * math.log(2))
    psi, tri = digamma(k / 2), polygamma(1, k / 2)
    mean = math.log(s2 / n_in) + math.log(2) + np.sum(p * psi)
    var = np.sum(p * tri) + np.sum(p * psi**2) - np.sum(p * psi) ** 2
    return depth * mean, depth * var


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gauss_001_depth_150_stays_exact_in_log_domain(dtype):
    """Gauss 0.01, width 64, depth 150: log10 m_150 near -374 for every trial, never 0 or -inf.

    One input per network, so log m_L = log R_L + log(|x|^2/n) follows the exact law of
    THEORY.md section 3; its mean over 400 networks is compared with a z-test.
    """
    depth, n, trials = 150, 64, 400
    net = _net((n,) * (depth + 1), scheme="gauss")
    stats = simulate(net, EngineConfig(batch=1, trials=trials, seed=0, dtype=dtype))
    assert np.all(np.isfinite(stats.log_m)) and np.all(np.isfinite(stats.log_q))
    mean, var = _exact_log_ratio_moments(n, n, n * 1e-4, depth)
    expected = mean + stats.log_m0[0]
    got = stats.log_m[:, -1]
    z = (got.mean() - expected) / math.sqrt(var / trials)
    assert abs(z) < 4, (got.mean(), expected)
    assert got.var(ddof=1) / var == pytest.approx(1.0, abs=4 * math.sqrt(2 / (trials - 1)))
    # the mean-field mean: log10 E q_150 = log10(64e-4) + 149 log10(32e-4) ~ -374
    assert (math.log(64e-4) + 149 * math.log(32e-4)) / LN10 == pytest.approx(-374.0, abs=0.6)
    assert np.median(stats.log_q[:, -1]) / LN10 < -370


def test_std_one_width_512_linear_depth_100_overflows_nothing():
    """Linear, std 1, width 512: q_l = 512^l exactly in expectation: +270.9 at l = 100."""
    net = _net((512,) * 101, scheme="gauss", activation="linear", std=1.0)
    stats = simulate(net, EngineConfig(batch=4, trials=4, seed=0, dtype=np.float32))
    pred = 100 * math.log10(512)
    assert pred == pytest.approx(270.9, abs=0.05)
    got = np.log10(np.mean(np.exp(stats.log_q[:, -1] - 600))) + 600 / LN10
    assert np.all(np.isfinite(stats.log_q))
    assert abs(got - pred) < 0.5


def test_dead_networks_are_reported_as_exact_zeros():
    """Width 2 ReLU: about a quarter of inputs die per layer; dead means exactly 0 (-inf)."""
    net = _net((2,) * 41, scheme="he-normal")
    stats = simulate(net, EngineConfig(batch=4, trials=50, seed=0))
    dead = stats.dead_inputs[:, -1] == 1
    assert dead.any()
    assert np.all(np.isneginf(stats.log_q[dead, -1]))
    assert np.all(np.isneginf(stats.log_g[dead, 1:-1]).any(axis=1))
    assert not np.isnan(stats.log_q).any()


def test_tanh_stays_exact_far_below_and_above_the_linear_regime():
    """tanh with gauss 0.01 is linear for hundreds of layers: q_500 ~ 10^-1097, not 0; std 10
    saturates every unit and must give no warnings, NaN or infinities."""
    small = simulate(
        _net((64,) * 501, scheme="gauss", activation="tanh"),
        EngineConfig(batch=8, trials=8, seed=0),
    )
    assert np.all(np.isfinite(small.log_q)) and np.all(np.isfinite(small.log_g))
    assert -1110 < np.median(small.log_q[:, -1]) / LN10 < -1090
    big = simulate(
        _net((64,) * 51, scheme="gauss", activation="tanh", std=10.0),
        EngineConfig(batch=8, trials=8, seed=0),
    )
    assert np.all(np.isfinite(big.log_q)) and np.all(np.isfinite(big.log_g))
    # saturated: |h| = 1 almost everywhere, so m_l ~ 1
    assert np.all(np.abs(big.log_m[:, 5:]) < 0.05)


@pytest.mark.parametrize("kernels", ["numpy", "numba"])
def test_tiny_inputs_are_not_read_as_dead_in_float32(kernels):
    from propagate import run
    from propagate.data import Dataset
    from propagate.kernels import numba_installed

    if kernels == "numba" and not numba_installed():
        pytest.skip("needs numba (the fast extra)")
    x = np.random.default_rng(1).standard_normal((50, 16))
    x[0] *= 1e25  # the other 49 inputs are 1e-25 of it: their float32 squares underflow
    data = Dataset(x=x, labels=None, name="outlier", standardized=False)
    for dtype in ("float32", "float64"):
        res = run(widths=(16, 16, 16, 16), data=data, dtype=dtype, kernels=kernels)
        assert [layer["p_dead"] for layer in res.layers] == [0.0, 0.0, 0.0]
        assert any("spanned more than 1e30" in w for w in res.summary["warnings"])


def test_vanished_leaky_inputs_are_flagged():
    from propagate import run

    res = run(depth=20, fan_in=4, activation="leaky-relu", negative_slope=1e-300, trials=20)
    assert max(layer["p_dead"] for layer in res.layers) > 0
    assert any("cannot switch a unit off" in w for w in res.summary["warnings"])
    clean = run(depth=20, fan_in=4, activation="leaky-relu", negative_slope=0.2, trials=20)
    assert not any("cannot switch a unit off" in w for w in clean.summary["warnings"])


def test_masks_take_the_sum_of_the_widths_not_depth_times_the_widest(monkeypatch):
    import propagate.network as network

    net = _net((64, 2048) + (8,) * 40)
    cfg = EngineConfig(batch=16, trials=4, seed=0, workers=1, chunk_trials=4)
    sizes = []
    real = network._Chunk._mask_buffer

    def spy(self, layer, width):
        view = real(self, layer, width)
        sizes.append(network._ARENA.masks.size)
        return view

    monkeypatch.setattr(network._Chunk, "_mask_buffer", spy)
    simulate(net, cfg)
    assert set(sizes) == {4 * 16 * sum(net.widths[1:])}
    assert estimate_memory(net, cfg)["per_chunk"] >= sizes[0]
    assert not hasattr(network._ARENA, "masks")  # the run's buffers are not kept after it


@pytest.mark.parametrize("kernels", ["numpy", "numba"])
def test_outputs_far_below_unit_scale_are_rescaled_not_overflowed(kernels):
    # slope 1e-42: a network whose single unit is negative scales h by 1e-42, into float32's
    # subnormals; its next weight multiplier (~1e42) overflowed float32 and gave NaN, read as
    # q = 0. h and dloss/dz are now brought back to unit rms first (any RuntimeWarning fails).
    from propagate import run
    from propagate.kernels import numba_installed

    if kernels == "numba" and not numba_installed():
        pytest.skip("needs numba (the fast extra)")
    args = dict(widths=(2, 1, 1, 1, 1, 1), batch=2, trials=40, activation="leaky-relu")
    res = run(**args, negative_slope=1e-42, kernels=kernels)
    exact = run(**args, negative_slope=1e-42, kernels=kernels, dtype="float64")
    for row, ref in zip(res.layers, exact.layers):
        assert row["log10_q"] is not None and row["log10_grad"] is not None
        assert abs(row["log10_q"] - ref["log10_q"]) < 1e-3  # forward: no digits lost
    warned = " ".join(res.summary["warnings"])
    assert "float32's normal range" in warned or "exactly 0 under leaky-relu" in warned


@pytest.mark.parametrize("kernels", ["numpy", "numba"])
def test_unresolvable_float64_variance_is_flagged(kernels):
    from propagate import run
    from propagate.kernels import numba_installed

    if kernels == "numba" and not numba_installed():
        pytest.skip("needs numba (the fast extra)")
    args = dict(depth=3, fan_in=64, dtype="float64", trials=10, kernels=kernels)
    # biases 1e20 above the weight term: z = b + u keeps nothing of u in float64
    lost = run(**args, bias_std=1e20)
    assert any("float64 cannot resolve it" in w for w in lost.summary["warnings"])
    # at 1e10, u keeps ~6 digits: no warning, and layer 1's variance (over the batch, where
    # each unit's bias is a constant) is that of the same weights and inputs without biases
    kept = run(**args, bias_std=1e10)
    assert not any("cannot resolve" in w for w in kept.summary["warnings"])
    plain = run(**args)
    assert abs(kept.layers[0]["log10_var"] - plain.layers[0]["log10_var"]) < 1e-4


def test_dead_networks_at_huge_std_raise_no_overflow_warning():
    from propagate import run

    res = run(depth=20, fan_in=4, batch=3, trials=16, scheme="gauss", std=1e30)
    assert all(row["log10_q"] is not None for row in res.layers[:3])


def test_subnormal_scales_in_float64_and_tiny_float32_slopes_agree_across_kernels():
    from propagate import run
    from propagate.kernels import numba_installed

    kernels = ["numpy", "numba"] if numba_installed() else ["numpy"]
    # slope 1e-156: mean squares reach float64's subnormals; rescaling them overflowed
    # (factor**2) into NaN means read as q = 0, with RuntimeWarnings (errors here)
    args = dict(activation="leaky-relu", fan_in=1, batch=2, depth=10, trials=4)
    rows = [run(**args, negative_slope=1e-156, dtype="float64", kernels=k).layers for k in kernels]
    for layers in rows:
        assert all(row["log10_q"] is not None for row in layers)
    for a, b in zip(rows[0], rows[-1]):
        assert abs(a["log10_q"] - b["log10_q"]) < 1e-9
    # float32, slope 1e-30: NumPy's float32 squares underflowed (networks read as dead)
    args = dict(activation="leaky-relu", negative_slope=1e-30, fan_in=2, batch=2, depth=40)
    grads = [[row["log10_grad"] for row in run(**args, trials=16, kernels=k).layers]
             for k in kernels]  # fmt: skip
    exact = [row["log10_grad"] for row in run(**args, trials=16, dtype="float64").layers]
    for g in grads:
        assert all(x is not None for x in g)
        assert abs(g[0] - exact[0]) < 1.0  # hundreds of decades apart before


def test_inputs_whose_squares_underflow_raise_the_range_warning():
    from propagate import run
    from propagate.data import Dataset

    x = np.random.default_rng(2).standard_normal((4, 8))
    x[1] *= 1e-170  # its squared norm is 0 in float64
    data = Dataset(x=x, labels=None, name="tiny-row", standardized=False)
    res = run(widths=(8, 8, 8), data=data, dtype="float64")
    assert any("spanned more than 1e30" in w for w in res.summary["warnings"])
