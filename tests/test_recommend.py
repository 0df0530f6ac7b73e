"""``propagate recommend``: the neutral std per layer beside He's, bottlenecks, measured check."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import typer
from scipy import stats
from typer.testing import CliRunner

from propagate import theory
from propagate.api import build_network
from propagate.cli_sweep import register
from propagate.errors import InputError
from propagate.network import EngineConfig, simulate
from propagate.recommend import (
    find_bottlenecks,
    neutral_network,
    recommend,
    recommended_std_per_unit,
)

ALPHA = 1e-3
LN10 = math.log(10.0)
BOTTLENECK = "64,64,4,64,64"


def invoke(*args: str):
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    register(app)
    return CliRunner().invoke(app, list(args))


def test_fields_against_theory_for_a_bottleneck():
    result = recommend(BOTTLENECK)
    widths = [64, 64, 4, 64, 64]
    layers = result.layers
    assert [r["fan_out"] for r in layers] == widths[1:]
    dead = theory.p_dead(widths)
    var = theory.log_ratio_moments(widths, 2.0)["var"]
    q_he = theory.log_ratio_quantiles(widths, 2.0, (0.05, 0.5, 0.95), given_alive=False)
    for i, row in enumerate(layers):
        n_in, n_out = widths[i], widths[i + 1]
        assert row["s2_star"] == pytest.approx(theory.neutral_scale(n_out, n_in), rel=1e-12)
        assert row["recommended_std"] == pytest.approx(
            math.sqrt(row["s2_star"] * n_out / n_in / n_in), rel=1e-12
        )
        assert row["recommended_std_norm"] == pytest.approx(
            theory.neutral_std(widths)[i], rel=1e-12
        )
        assert row["he_std"] == pytest.approx(math.sqrt(2.0 / n_in), rel=1e-15)
        assert row["p_dead"] == pytest.approx(dead[i], rel=1e-12)
        assert row["log10_spread"] == pytest.approx(math.sqrt(var[i]) / LN10, rel=1e-12)
        per_unit = math.log10(widths[0] / n_out)
        assert row["log10_median_he"] == pytest.approx(q_he[i, 1] / LN10 + per_unit, abs=1e-9)
        assert row["log10_mean_he"] == 0.0
    # recommendation: the typical per-unit log factor of every layer is 0, so the median given
    # alive stays near 0 while He's drifts down; the mean grows instead
    assert layers[1]["std_ratio"] == pytest.approx(1.43, abs=0.01)
    assert layers[-1]["log10_median_he"] < -0.2 < 0.0 < layers[-1]["log10_median_rec"]
    assert layers[-1]["log10_mean_rec"] > 0.3
    assert layers[1]["log10_typical_factor_he"] == pytest.approx(math.log10(0.49), abs=0.01)


def test_bottleneck_is_explained():
    result = recommend(BOTTLENECK)
    assert find_bottlenecks([64, 64, 4, 64, 64]) == [2]
    assert find_bottlenecks([8] * 10) == []
    (b,) = result.summary["bottlenecks"]
    assert b["layer"] == 2 and b["p_dead_layer"] == 1 / 16
    assert b["p_dead_other_layers"] < 1e-18 and b["variance_share"] > 0.9
    assert "2^-4 = 6.25 %" in b["message"] and "only a wider layer" in b["message"]
    assert "bottleneck" in result.summary["message"]


def test_measured_under_both_stds_matches_the_law_and_the_exact_shift():
    trials = 3000
    result = recommend(BOTTLENECK, measure=True, trials=trials, seed=17)
    layers = result.layers
    for row in layers:
        dead = round(row["p_dead_meas_he"] * trials)
        assert stats.binomtest(dead, trials, row["p_dead"]).pvalue > ALPHA
        assert row["p_dead_meas_rec"] == row["p_dead_meas_he"]  # no scale changes deaths
    # same unit weights, positive per-layer factors: log M shifts by exactly sum log(s2/2)
    widths = (64, 64, 4, 64, 64)
    cfg = EngineConfig(batch=1, trials=200, seed=4, dtype=np.float64)
    he = simulate(build_network(widths=widths, scheme="he-normal"), cfg)
    rec = simulate(neutral_network(widths), cfg)
    shift = np.cumsum(np.log(recommended_std_per_unit(widths) ** 2 * np.array(widths[:-1]) / 2))
    alive = np.isfinite(he.log_m)
    np.testing.assert_array_equal(alive, np.isfinite(rec.log_m))
    diff = rec.log_m[alive] - he.log_m[alive] - np.broadcast_to(shift, he.log_m.shape)[alive]
    assert np.max(np.abs(diff)) < 1e-9
    # the measured medians sit near the predicted ones (sd of log10 ~ 0.77 at the output)
    for key in ("he", "rec"):
        measured, predicted = (
            layers[-1][f"log10_median_meas_{key}"],
            layers[-1][f"log10_median_{key}"],
        )
        assert abs(measured - predicted) < 5 * 1.25 * 0.8 / math.sqrt(trials)


def test_constant_width_equals_neutral_std_and_he_warning_numbers():
    result = recommend(depth=30, fan_in=8)
    assert result.layers[0]["recommended_std"] == pytest.approx(theory.neutral_std([8, 8])[0])
    assert result.layers[0]["recommended_std"] == pytest.approx(math.sqrt(2.980003 / 8), rel=1e-6)
    assert -5.6 < result.summary["log10_median_he"] < -5.2
    assert result.summary["p_dead"] == pytest.approx(1 - (1 - 2**-8) ** 30, rel=1e-12)


def test_cli_json_and_text():
    res = invoke("recommend", "--widths", BOTTLENECK, "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["kind"] == "recommend" and len(data["layers"]) == 4
    for row in data["layers"]:
        assert {"s2_star", "recommended_std", "he_std", "p_dead", "log10_spread"} <= set(row)
    assert data["layers"][1]["log10_p05_he"] is None  # 6 % dead: the 5 % quantile is -inf
    text = invoke("recommend", "--depth", "30", "--fan-in", "8")
    assert text.exit_code == 0 and "He keeps the mean" in text.stdout
    measured = invoke("recommend", "--widths", "16,4,16", "--measure", "--trials", "200")
    assert measured.exit_code == 0 and "Measured" in measured.stdout


@pytest.mark.parametrize(
    "args,shown",
    [
        (["--widths", "64,0,3"], "'0'"),
        (["--widths", "64"], "at least two"),
        (["--widths", "8,8", "--depth", "3"], "not both"),
        (["--depth", "0"], "--depth"),
        (["--measure", "--trials", "1"], "--trials"),
        (["--seed", "-1"], "--seed"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, shown):
    res = invoke("recommend", *args)
    assert res.exit_code == 2, res.output
    err = res.stderr.strip()
    assert err.startswith("propagate: error: ") and "\n" not in err and shown in err
    with pytest.raises(InputError):
        recommend("3,x")
