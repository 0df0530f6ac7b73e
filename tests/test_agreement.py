"""Simulation against theory: every scheme x activation, tolerances from the standard error.

For rectifiers (ReLU, leaky ReLU, linear) with symmetric weights the mean-field recursion for
E[q_l], E[g_l] and the weight-gradient product is exact at every width (THEORY.md section 1), so
the mean over independent networks is compared with |z| < 4, z from the across-network standard
error. Widths are wide enough (sum 1/n small) that the sample mean is reliable (section 10).
tanh's recursion is only the infinite-width limit: it gets a stated relative tolerance instead.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from propagate import theory
from propagate.activations import make_activation
from propagate.measure import predictions
from propagate.network import EngineConfig, Network, simulate
from propagate.schemes import SCHEMES, resolve_scheme

ACTIVATIONS = [("relu", None), ("leaky-relu", 0.2), ("linear", None)]
SCHEME_NAMES = [name for name, s in SCHEMES.items() if s.kind != "lsuv"]


def _z(per_trial_log: np.ndarray, predicted_log: float) -> float:
    """z of the mean of exp(per_trial_log) against exp(predicted_log), scaled for range."""
    shift = predicted_log
    values = np.exp(per_trial_log - shift)
    se = values.std(ddof=1) / math.sqrt(values.size)
    # a quantity with no randomness (an orthogonal layer keeps ||x|| exactly) spreads only by
    # float64 rounding, which differs between machines: it must then agree to ~1e-13 relative
    se = max(se, 1e-13)
    return (values.mean() - 1.0) / se


def _predict(net: Network, stats, cfg: EngineConfig) -> dict:
    """The predictions ``propagate run`` reports (mean field with the batch's own moments)."""
    return predictions(net, cfg, stats)


@pytest.mark.parametrize("activation,slope", ACTIVATIONS, ids=[a for a, _ in ACTIVATIONS])
@pytest.mark.parametrize("scheme", SCHEME_NAMES)
def test_mean_field_is_exact_for_every_scheme(scheme, activation, slope):
    act = make_activation(activation, slope)
    widths = (48, 96, 80, 96, 64)
    net = Network(widths=widths, activation=act, init=resolve_scheme(scheme, activation=act))
    cfg = EngineConfig(batch=16, trials=300, seed=11, dtype=np.float64)
    stats = simulate(net, cfg)
    pred = _predict(net, stats, cfg)
    for l in range(net.depth):
        assert abs(_z(stats.log_q[:, l], pred["log_q"][l])) < 4, (scheme, l)
        assert abs(_z(stats.log_m[:, l], pred["log_m"][l])) < 4, (scheme, l)
        assert abs(_z(stats.log_wgrad[:, l], pred["log_wgrad"][l])) < 4, (scheme, l)
    g_pred = pred["log_g_mean"] if act.has_dead_layers else pred["log_g"]
    for l in range(net.depth):  # g_0 (input gradient) .. g_{L-1}; g_L is the probe itself
        assert abs(_z(stats.log_g[:, l], g_pred[l])) < 4, (scheme, l)


@pytest.mark.parametrize("bias_std", [0.3, 1.0])
def test_mean_field_with_bias(bias_std):
    act = make_activation("relu")
    net = Network(
        widths=(64,) * 6,
        activation=act,
        init=resolve_scheme("torch", activation=act),
        bias_std=bias_std,
    )
    cfg = EngineConfig(batch=16, trials=400, seed=5, dtype=np.float64)
    stats = simulate(net, cfg)
    pred = _predict(net, stats, cfg)
    for l in range(net.depth):
        assert abs(_z(stats.log_q[:, l], pred["log_q"][l])) < 4
        assert abs(_z(stats.log_g[:, l], pred["log_g"][l])) < 4


def test_narrow_relu_backward_needs_the_survival_factor():
    """Width 2: dead layers zero every derivative above them (THEORY.md section 1)."""
    act = make_activation("relu")
    net = Network(
        widths=(4, 2, 2, 2, 2), activation=act, init=resolve_scheme("he-normal", activation=act)
    )
    cfg = EngineConfig(batch=1, trials=20000, seed=2, dtype=np.float64)
    stats = simulate(net, cfg)
    pred = _predict(net, stats, cfg)
    for l in range(1, net.depth):
        assert abs(_z(stats.log_g[:, l], pred["log_g_mean"][l])) < 4
    # without the survival factor the prediction is visibly off at the deepest hidden layer
    assert abs(_z(stats.log_g[:, 1], pred["log_g"][1])) > 4
    # P(dead) per input: binomial z against 1 - prod(1 - 2^-n)
    p = theory.p_dead(list(net.widths))
    dead = stats.dead_inputs[:, -1]
    se = math.sqrt(p[-1] * (1 - p[-1]) / dead.size)
    assert abs((dead.mean() - p[-1]) / se) < 4


@pytest.mark.parametrize("scheme", ["lecun-normal", "xavier-uniform", "he-normal"])
def test_tanh_follows_the_infinite_width_limit(scheme):
    """tanh: mean field is the N -> infinity limit; at width 512 it holds to 2 %."""
    act = make_activation("tanh")
    net = Network(widths=(512,) * 5, activation=act, init=resolve_scheme(scheme, activation=act))
    cfg = EngineConfig(batch=16, trials=40, seed=1, dtype=np.float64)
    stats = simulate(net, cfg)
    pred = _predict(net, stats, cfg)
    q = np.log(np.mean(np.exp(stats.log_q), axis=0))
    np.testing.assert_allclose(q, pred["log_q"], atol=0.02)
    g = np.log(np.mean(np.exp(stats.log_g[:, :-1]), axis=0))
    np.testing.assert_allclose(g, pred["log_g"][:-1], atol=0.03)


def test_lsuv_sets_every_pre_activation_variance_to_one():
    act = make_activation("relu")
    net = Network(widths=(32,) * 9, activation=act, init=resolve_scheme("lsuv", activation=act))
    stats = simulate(net, EngineConfig(batch=64, trials=20, seed=0, dtype=np.float64))
    # LSUV sets the variance over all (input, unit) entries to 1 (tolerance 0.02); the second
    # moment q adds the squared grand mean, which grows as inputs align with depth
    q = np.exp(stats.log_q)
    assert np.all(np.abs(q[:, 0] - 1) < 0.03)
    assert np.all((q > 0.98) & (q < 1.5))
    # later layers settle near gain sqrt(2) (He-equivalent orthogonal), THEORY/SCHEMES section 7
    factor = np.exp(np.median(stats.lsuv_log_factor[:, 2:]))
    assert factor == pytest.approx(math.sqrt(2), rel=0.1)


def test_lsuv_forward_prediction_is_its_unit_variance_target():
    """LSUV fixes each layer's variance at 1, so the prediction is q_l = 1; iterating the
    recursion with the realised weights instead compounds a per-network Jensen bias (each
    factor is 1 / that network's m_{l-1}): 10^0.3 too high after 30 layers at width 64."""
    act = make_activation("relu")
    net = Network(widths=(64,) * 21, activation=act, init=resolve_scheme("lsuv", activation=act))
    cfg = EngineConfig(batch=64, trials=20, seed=0, dtype=np.float64)
    stats = simulate(net, cfg)
    pred = _predict(net, stats, cfg)
    np.testing.assert_array_equal(pred["log_q"], 0.0)
    np.testing.assert_allclose(pred["log_m"], math.log(0.5), rtol=1e-12)
    q = np.log(np.mean(np.exp(stats.log_q), axis=0))
    # within LSUV's 2 % tolerance, plus the squared grand mean (O(1/n))
    assert np.all(np.abs(q) < math.log(1.05))


def test_lsuv_refuses_a_layer_with_zero_output_variance():
    """A width-1 ReLU layer dies for half the inputs; LSUV cannot rescale zero (SCHEMES.md 7)."""
    from propagate.errors import InputError

    act = make_activation("relu")
    net = Network(widths=(4, 1, 4, 4), activation=act, init=resolve_scheme("lsuv", activation=act))
    with pytest.raises(InputError, match=r"layer 2 output variance is zero"):
        simulate(net, EngineConfig(batch=2, trials=40, seed=0))


def test_torch_default_bias_floor():
    """torch nn.Linear: W and b ~ U(+-1/sqrt(n)); q -> 2/(5n) and the input is washed out."""
    from propagate.api import build_network

    net = build_network(depth=20, fan_in=64, scheme="torch", bias_std="torch")
    assert net.bias_stds[0] == pytest.approx(1 / math.sqrt(3 * 64), rel=1e-12)
    cfg = EngineConfig(batch=16, trials=300, seed=3, dtype=np.float64)
    stats = simulate(net, cfg)
    pred = _predict(net, stats, cfg)
    assert pred["log_q"][-1] == pytest.approx(math.log(2 / (5 * 64)), abs=1e-12)
    for l in range(net.depth):
        assert abs(_z(stats.log_q[:, l], pred["log_q"][l])) < 4
    import propagate

    result = propagate.run(depth=20, fan_in=64, scheme="torch", bias_std="torch", trials=20)
    assert result.summary["verdict"] == "vanishing"
    assert result.summary["log10_signal_share"] < -10
    assert "washed out" in result.summary["message"]
