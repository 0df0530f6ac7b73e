"""Weight spectra, Jacobian spectra and the correlation map against exact oracles and theory.

Three tiers (STYLE.md): exact identities (MP edges and means against independent formulas,
orthogonal atoms, the stratified Jacobian against 60-700 digit arithmetic and a dense float64
product), Monte Carlo against theory with tolerances from standard errors across networks
(|z| < 4, THEORY.md section 10) plus stated finite-width allowances, and the figures/CLI
contract (Agg, atomic files, one-line errors).
"""

from __future__ import annotations

import json
import math
import os
import time

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

os.environ.setdefault("MPLBACKEND", "Agg")

from propagate import theory_spectra  # noqa: E402
from propagate.api import build_network  # noqa: E402
from propagate.cli_spectra import register  # noqa: E402
from propagate.errors import InputError  # noqa: E402
from propagate.network import EngineConfig, batch_inputs, layer_weights  # noqa: E402
from propagate.results import RunResult, load_result  # noqa: E402
from propagate.spectra import (  # noqa: E402
    _correlation_theory,
    _gram_eigenvalues,
    _JacobianState,
    correlation_map,
    jacobian_spectrum,
    log_singular_values,
    mp_mean_singular_value,
    spectra,
    weight_spectra,
)

LN10 = math.log(10.0)
MIXED = (256, 512, 256, 256, 100)  # tall, wide (q = 2), square, wide (q = 2.56)
KS_THRESHOLD = 0.015  # fixed: eigenvalues are rigid, iid KS levels do not apply (THEORY 10)


# ------------------------------------------------------------------ tier 1: closed forms
@pytest.mark.parametrize("n_in,n_out", [(64, 128), (128, 64), (96, 96), (300, 7), (7, 300)])
def test_mp_edges_and_means_against_independent_formulas(n_in, n_out):
    net = build_network(widths=(n_in, n_out), scheme="he-normal")
    row = weight_spectra(net, trials=2, seed=0)[0]
    sigma_w2, q = 2.0, n_in / n_out  # He: Var W = 2 / fan_in
    assert row["mp_lo"] == pytest.approx(math.sqrt(sigma_w2) * abs(1 - q**-0.5), abs=1e-9)
    assert row["mp_hi"] == pytest.approx(math.sqrt(sigma_w2) * (1 + q**-0.5), rel=1e-9)
    # mean nonzero lambda: sigma_w^2 (wide, q > 1) or sigma_w^2 / q (tall)
    assert row["mean_sq_sv_pred"] == pytest.approx(sigma_w2 * max(1.0, 1.0 / q), rel=1e-9)
    assert row["zero_mass"] == pytest.approx(1.0 - min(n_in, n_out) / max(n_in, n_out), abs=1e-12)
    assert row["shape"] == ("square" if q == 1 else "wide" if q > 1 else "tall")
    # mean singular value: against quad of sigma * p(sigma), p(sigma) = 2 sigma f_MP(sigma^2)
    from scipy.integrate import quad

    var = 2.0 / n_in
    lo, hi = row["mp_lo"] ** 2, row["mp_hi"] ** 2
    mean_sv, _ = quad(
        lambda lam: math.sqrt(lam) * theory_spectra.mp_pdf(lam, n_out, n_in, var),
        lo,
        hi,
        limit=400,
        epsabs=0,
        epsrel=1e-12,
        points=[lo + 1e-12],
    )
    assert row["sv_mean_pred"] == pytest.approx(mean_sv, rel=1e-8)
    if n_in == n_out:
        assert row["sv_mean_pred"] == pytest.approx(
            theory_spectra.quarter_circle_mean(math.sqrt(sigma_w2)), rel=1e-9
        )
        assert row["mp_lo"] == 0.0


def test_mp_mean_singular_value_normalisation():
    # quadrature rule of the mean: with sqrt(lambda) replaced by 1 it must integrate to 1
    assert mp_mean_singular_value(50, 50, 1 / 50) == pytest.approx(8 / (3 * math.pi), rel=1e-9)
    for n_out, n_in in ((20, 80), (80, 20)):
        law = theory_spectra.marchenko_pastur(n_out, n_in, 1.0 / n_in)
        assert (
            math.sqrt(law.lambda_minus)
            < mp_mean_singular_value(n_out, n_in, 1.0 / n_in)
            < math.sqrt(law.lambda_plus)
        )


def test_orthogonal_weights_are_an_exact_atom_at_the_gain():
    net = build_network(widths=(64, 128, 64, 64, 40), scheme="orthogonal")
    gain = net.layer_inits[0].std
    assert gain == pytest.approx(math.sqrt(2.0))
    for row in weight_spectra(net, trials=5, seed=3):
        assert row["sv_min"] == pytest.approx(gain, rel=1e-12)
        assert row["sv_max"] == pytest.approx(gain, rel=1e-12)
        assert row["mp_lo"] == row["mp_hi"] == gain
        assert row["ks_mp"] == 0.0 and row["cond"] == pytest.approx(1.0, abs=1e-12)
        assert row["mean_sq_sv"] == pytest.approx(gain * gain, rel=1e-12)


def test_ill_conditioned_and_singular_weights():
    """Gram eigenvalues lose sigma_min beyond cond ~1e5: such matrices are redone by an SVD."""
    from propagate.spectra import _weight_row

    rng = np.random.default_rng(0)
    u = np.linalg.qr(rng.standard_normal((64, 64)))[0]
    v = np.linalg.qr(rng.standard_normal((64, 64)))[0]
    s = np.logspace(0, -9, 64)  # cond 1e9
    ill = (u * s) @ v.T
    lam = _gram_eigenvalues(ill[None])[0]
    assert np.allclose(np.sqrt(lam), np.sort(s), rtol=1e-7, atol=0)
    singular = (u * np.concatenate([s[:-1], [0.0]])) @ v.T
    net = build_network(widths=(64, 64))
    unit = _gram_eigenvalues(np.stack([ill, ill, singular])) / net.layer_inits[0].std ** 2
    row = _weight_row(net, 1, unit, np.ones(3))
    assert row["rank_deficient_trials"] == 1 and row["cond_max"] is None
    assert row["cond"] == pytest.approx(1e9, rel=1e-6)  # median over the three matrices
    assert json.loads(json.dumps(row))["cond_max"] is None


def test_graded_singular_values_against_320_digits():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 320
    rng = np.random.default_rng(1)
    n = 30
    t = rng.standard_normal((n, n))
    for spread in (3.0, 120.0, 250.0, 900.0):  # decades; 900 exceeds the float range of one SVD
        log_scales = -np.sort(rng.uniform(0.0, spread, n)) * LN10
        mine = log_singular_values(log_scales, t)
        big = mpmath.matrix(n, n)
        for i in range(n):
            for j in range(n):
                big[i, j] = mpmath.exp(mpmath.mpf(log_scales[i])) * mpmath.mpf(t[i, j])
        ref = sorted(
            (float(mpmath.log(s)) for s in mpmath.svd_r(big, compute_uv=False)), reverse=True
        )
        if spread <= 250:
            assert np.max(np.abs(mine - ref)) < 1e-11, spread
        else:  # beyond 320 digits the reference itself loses the smallest values
            assert np.max(np.abs(mine[:10] - ref[:10])) < 1e-11


def _naive_masks(net, seed, x):
    """Float64 forward pass of one input per trial-0 weights: D_l as 0/1 (or slope) vectors."""
    h, out = x.copy(), []
    for layer in range(1, net.depth + 1):
        w = layer_weights(net, seed, layer, 0, 1)[0]
        z = w @ h
        d = np.where(z > 0, 1.0, net.activation.negative_slope)
        out.append((w, d))
        h = z * d
        h /= max(np.linalg.norm(h), 1e-300)
    return out


@pytest.mark.parametrize(
    "scheme,kw,activation,slope,width,depth",
    [
        ("he-normal", {}, "relu", None, 6, 12),
        ("gauss", {"std": 0.01}, "leaky-relu", 0.2, 5, 120),  # 10^-326 at the end
        ("orthogonal", {}, "leaky-relu", 0.2, 5, 40),
    ],
)
def test_stratified_jacobian_against_exact_arithmetic(scheme, kw, activation, slope, width, depth):
    """log singular values of J = D_L W_L ... D_1 W_1 against an mpmath product and SVD."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 700
    net = build_network(
        depth=depth, fan_in=width, scheme=scheme, activation=activation, negative_slope=slope, **kw
    )
    x = batch_inputs(net, EngineConfig(batch=1, trials=1, seed=3))[0][0]
    state, product = _JacobianState(width), mpmath.eye(width)
    for layer, (w, d) in enumerate(_naive_masks(net, 3, x), start=1):
        std = net.layer_inits[layer - 1].std
        state.step(w, d, math.log(std))
        dw = mpmath.matrix((w * d[:, None]).tolist()) * mpmath.mpf(std)
        product = dw * product
    mine = state.record()["log_sv"]
    ref = sorted(
        (float(mpmath.log(s)) for s in mpmath.svd_r(product, compute_uv=False)), reverse=True
    )
    rank = len(mine)
    assert np.max(np.abs(mine - ref[:rank])) < 1e-9  # relative accuracy of every sigma
    # the structural zeros are zeros of the exact product (up to its 700-digit rounding)
    assert all(r - ref[0] < -600 * LN10 for r in ref[rank:])
    if activation == "relu":
        actives = [int(np.count_nonzero(d)) for _, d in _naive_masks(net, 3, x)]
        assert rank == min(width, *actives)


def test_jacobian_matches_dense_product_and_probe_norms():
    net = build_network(widths=(24, 40, 16, 32, 32), scheme="he-uniform")
    x = batch_inputs(net, EngineConfig(batch=1, trials=1, seed=5))[0][0]
    state, dense = _JacobianState(24), np.eye(24)
    for layer, (w, d) in enumerate(_naive_masks(net, 5, x), start=1):
        std = net.layer_inits[layer - 1].std
        state.step(w, d, math.log(std))
        dense = (d[:, None] * w * std) @ dense
    rec = state.record()
    sv = np.linalg.svd(dense, compute_uv=False)
    rank = len(rec["log_sv"])
    assert np.allclose(np.exp(rec["log_sv"]), sv[:rank], rtol=1e-10)
    assert np.all(sv[rank:] < 1e-12 * sv[0])
    probes = np.log(np.sum(dense[:, : len(rec["log_probe_sq"])] ** 2, axis=0))
    assert np.allclose(rec["log_probe_sq"], probes, atol=1e-10)


def test_trial_numbers_do_not_depend_on_the_number_of_trials():
    """Trial i's weights, Jacobian spectra and cosines are the same in a run of 3 or 11 trials,
    with one worker or two (chunks of different sizes)."""
    from propagate.spectra import _jacobian_inputs, _pair_inputs, _Plan, _sweep

    net = build_network(depth=6, fan_in=32, scheme="he-normal")
    plan = _Plan(
        net,
        seed=2,
        weights=True,
        jac_inputs=_jacobian_inputs(net, 2, 2),
        checkpoints=[3, 6],
        pair_inputs=_pair_inputs(32, (0.0, 0.5), 1, 2),
        n_pairs=2,
        hist_layers=(),
    )

    def per_trial(trials, workers):
        parts = _sweep(plan, trials, workers)
        lam = np.concatenate([p["lam"][6] for p in parts])[:3]
        cos = np.concatenate([p["cos"] for p in parts])[:3]
        sv = [rec["log_sv"] for p in parts for row in p["records"][6] for rec in row][:6]
        return lam, cos, sv

    few, many = per_trial(3, 1), per_trial(11, 2)
    assert np.array_equal(few[0], many[0]) and np.array_equal(few[1], many[1])
    assert all(np.array_equal(a, b) for a, b in zip(few[2], many[2]))


# ------------------------------------------------------------------ tier 3: Monte Carlo
@pytest.fixture(scope="module")
def mixed_normal():
    net = build_network(widths=MIXED, scheme="he-normal")
    return weight_spectra(net, trials=16, seed=0)


def test_weight_spectra_against_marchenko_pastur(mixed_normal):
    for row in mixed_normal:
        assert row["ks_mp"] < KS_THRESHOLD, row
        z = (row["mean_sq_sv"] - row["mean_sq_sv_pred"]) / row["mean_sq_sv_se"]
        assert abs(z) < 4, (row["layer"], z)
        # Johnstone: the mean top eigenvalue of Gaussian matrices
        z_top = (row["top_sq_sv_mean"] - row["top_sq_sv_pred"]) / row["top_sq_sv_se"]
        assert abs(z_top) < 4, (row["layer"], z_top)
        # the bulk fills the predicted support (the smallest may sit slightly inside lambda_-)
        assert 0.9 * row["mp_lo"] <= row["sv_min"] < row["mp_lo"] + 0.1
        assert row["mp_hi"] - 0.1 < row["sv_max"] < 1.05 * row["mp_hi"]
        assert row["sv_mean"] == pytest.approx(row["sv_mean_pred"], rel=0.01)


def test_ks_threshold_has_power():
    """The same spectra against MP with a 10 % wrong variance fail the fixed threshold."""
    net = build_network(widths=(256, 256), scheme="he-normal")
    lam = _gram_eigenvalues(layer_weights(net, 0, 1, 0, 16)) * net.layer_inits[0].std ** 2
    pooled = np.sort(lam, axis=None)
    cdf = theory_spectra.mp_cdf(pooled, 256, 256, 1.1 * 2 / 256)
    n = pooled.size
    ks = max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - np.arange(n) / n))
    assert ks > 2 * KS_THRESHOLD


def test_uniform_and_gaussian_entries_share_the_bulk(mixed_normal):
    net = build_network(widths=MIXED, scheme="he-uniform")
    uniform = weight_spectra(net, trials=16, seed=0)
    for u_row, g_row in zip(uniform, mixed_normal):
        assert u_row["distribution"] == "uniform" and g_row["distribution"] == "normal"
        assert u_row["ks_mp"] < KS_THRESHOLD and g_row["ks_mp"] < KS_THRESHOLD
        assert (u_row["mp_lo"], u_row["mp_hi"]) == (g_row["mp_lo"], g_row["mp_hi"])
    # two-sample distance between the pooled squared singular values of the two laws
    gauss_net = build_network(widths=MIXED, scheme="he-normal")
    for layer in range(1, len(MIXED)):
        a = np.sort(_gram_eigenvalues(layer_weights(net, 0, layer, 0, 16)), axis=None)
        b = np.sort(_gram_eigenvalues(layer_weights(gauss_net, 1, layer, 0, 16)), axis=None)
        grid = np.concatenate([a, b])
        dist = np.max(
            np.abs(
                np.searchsorted(a, grid, "right") / a.size
                - np.searchsorted(b, grid, "right") / b.size
            )
        )
        assert dist < KS_THRESHOLD, (layer, dist)


@pytest.mark.parametrize("scheme", ["he-normal", "orthogonal"])
def test_mean_squared_jacobian_singular_value_is_one_at_criticality(scheme):
    net = build_network(depth=12, fan_in=128, scheme=scheme)
    jac = jacobian_spectrum(net, trials=32, seed=11, inputs_per_trial=2, every=4)
    for row in jac["checkpoints"]:
        assert row["log10_mean_sq_sv_pred"] == pytest.approx(0.0, abs=1e-12)
        z = row["log10_mean_sq_sv"] / row["log10_mean_sq_sv_se"]
        assert abs(z) < 4, (row["layer"], z)
        assert row["zero_fraction"] == pytest.approx(row["zero_fraction_pred"], abs=0.02)


@pytest.mark.parametrize("scheme,limit", [("he-normal", 2), ("orthogonal", 1)])
def test_pennington_variance_ratio_at_width_256(scheme, limit):
    """var/mean^2 of the squared singular values against L (1 - s_1) = 2L Gaussian, L Haar.

    Tolerance: the per-network ratio averaged over 24 networks x 2 inputs may sit 4 SE below the
    N -> inf limit and 4 SE + 2 L^2/N above it (the O(L^2/N) finite-width excess of THEORY.md
    section 10; measured ~0.8 and ~0.4 at L = 10, N = 256).
    """
    depth, width = 8, 256
    net = build_network(depth=depth, fan_in=width, scheme=scheme)
    jac = jacobian_spectrum(net, trials=24, seed=4, inputs_per_trial=2, every=4)
    for row in jac["checkpoints"]:
        pred = limit * row["layer"]
        assert row["var_over_mean2_pred"] == pytest.approx(pred)
        excess, se = row["var_over_mean2"] - pred, row["var_over_mean2_se"]
        assert -4 * se < excess < 4 * se + 2 * row["layer"] ** 2 / width, (row, excess)


def test_linear_orthogonal_network_is_an_exact_isometry():
    net = build_network(depth=20, fan_in=64, scheme="orthogonal", activation="linear")
    jac = jacobian_spectrum(net, trials=2, seed=0, inputs_per_trial=1, every=20)
    assert jac["log10_sv_max"] == pytest.approx(0.0, abs=1e-12)
    assert jac["log10_sv_min"] == pytest.approx(0.0, abs=1e-12)
    assert jac["var_over_mean2"] == pytest.approx(0.0, abs=1e-12) and jac["zero_fraction"] == 0


def test_jacobian_at_depth_1000_under_gauss_001_is_finite_and_on_the_exact_law():
    """log10 ||J e_i||^2 ~ -2202: its mean over networks against E[log R_L | alive] (exact)."""
    net = build_network(depth=1000, fan_in=128, scheme="gauss")
    jac = jacobian_spectrum(net, trials=8, seed=0, inputs_per_trial=1, every=500)
    for key in ("log10_mean_sq_sv", "log10_sv_max", "log10_sv_min", "mean_log10_sq_norm"):
        assert math.isfinite(jac[key]), key
    assert jac["log10_mean_sq_sv_pred"] == pytest.approx(1000 * math.log10(128 * 1e-4 / 2))
    assert jac["log10_sv_max"] < -1000 and jac["log10_sv_min"] < jac["log10_sv_max"] - 100
    z = (jac["mean_log10_sq_norm"] - jac["mean_log10_sq_norm_pred"]) / jac["mean_log10_sq_norm_se"]
    assert abs(z) < 4, z
    # the raw mean is heavy-tailed here (sum 1/n = 7.8): only a loose check on it
    assert abs(jac["log10_mean_sq_sv"] - jac["log10_mean_sq_sv_pred"]) < 10
    assert jac["zero_fraction"] == pytest.approx(jac["zero_fraction_pred"], abs=0.02)
    assert jac["dead_fraction"] == 0.0


def test_correlation_map_against_arc_cosine_iterates_at_width_512():
    """Tolerance: 4 SE across networks plus 5/n for the O(1/n) finite-width bias (~3/n seen)."""
    width = 512
    net = build_network(depth=20, fan_in=width, scheme="he-normal")
    corr = correlation_map(net, trials=16, seed=7, pairs=4)
    for series in corr["series"]:
        iterates = theory_spectra.correlation_iterates(series["c0"], 20, net.activation)
        assert np.allclose(series["pred"], iterates, atol=1e-15)
        mean, se = np.array(series["mean"]), np.array(series["se"])
        assert mean[0] == pytest.approx(series["c0"], abs=1e-12)
        assert np.all(np.abs(mean[1:] - iterates[1:]) < 4 * se[1:] + 5.0 / width), series["c0"]
    layers = np.arange(1, 21)
    assert np.allclose(corr["asymptote"][1:], 1 - 9 * math.pi**2 / (2 * layers**2))


def test_tanh_correlation_by_quadrature_and_the_biased_map():
    width = 512
    net = build_network(depth=8, fan_in=width, scheme="xavier-normal", activation="tanh")
    corr = correlation_map(net, trials=12, seed=1, pairs=4, c0=(0.0, 0.6))
    for series in corr["series"]:
        mean, se, pred = (np.array(series[k]) for k in ("mean", "se", "pred"))
        assert np.all(np.abs(mean[1:] - pred[1:]) < 4 * se[1:] + 5.0 / width)
    # the biased recursion reduces to correlation_iterates as the bias vanishes
    tiny = build_network(depth=6, fan_in=16, scheme="he-normal", activation="tanh", bias_std=1e-9)
    plain = build_network(depth=6, fan_in=16, scheme="he-normal", activation="tanh")
    assert np.allclose(_correlation_theory(tiny, 0.3), _correlation_theory(plain, 0.3), atol=1e-9)


# ------------------------------------------------------------------ results, figures, CLI
@pytest.fixture(scope="module")
def small_result() -> RunResult:
    return spectra(depth=6, fan_in=32, trials=4, inputs=2, every=2, pairs=2)


def test_json_field_names_and_round_trip(small_result, tmp_path):
    data = json.loads(small_result.to_json())
    assert data["kind"] == "spectra"
    for row in data["layers"]:
        for key in (
            "layer",
            "fan_in",
            "fan_out",
            "weight_var",
            "sv_min",
            "sv_max",
            "sv_mean",
            "cond",
            "mp_lo",
            "mp_hi",
            "ks_mp",
        ):
            assert key in row, key
    jac = data["jacobian"]
    fields = (
        "log10_mean_sq_sv",
        "log10_mean_sq_sv_pred",
        "var_over_mean2",
        "var_over_mean2_pred",
        "zero_fraction",
        "log10_sv_max",
        "log10_sv_min",
    )
    for key in fields:
        assert key in jac, key
        assert all(key in row for row in jac["checkpoints"])
    assert [row["layer"] for row in jac["checkpoints"]] == [2, 4, 6]
    assert len(data["correlation"]["series"]) == 4
    path = tmp_path / "results.json"
    path.write_text(small_result.to_json())
    again = load_result(str(path))
    assert again.kind == "spectra" and again.to_json() == small_result.to_json()


def test_every_figure_written_and_plotting_never_changes_results(small_result, tmp_path):
    from propagate.plotting.spectra_plots import plot_spectra_result

    data = small_result.to_dict()
    before = json.dumps(data, sort_keys=True)
    for fmt in ("png", "svg", "pdf"):
        start = time.perf_counter()
        paths = plot_spectra_result(data, str(tmp_path / fmt), fmt)
        assert time.perf_counter() - start < 6.0  # three figures, each well under 2 s
        assert sorted(os.path.basename(p) for p in paths) == [
            f"spectra_{name}.{fmt}" for name in ("correlation", "jacobian", "weights")
        ]
        assert all(os.path.getsize(p) > 1000 for p in paths)
        assert not [n for n in os.listdir(tmp_path / fmt) if n.startswith(".tmp")]
    assert json.dumps(data, sort_keys=True) == before
    assert small_result.to_json() == json.dumps(json.loads(small_result.to_json()), indent=2)
    # redraw from a saved file (null logs, no correlation map)
    loaded = json.loads(small_result.to_json())
    loaded["correlation"] = None
    assert len(plot_spectra_result(loaded, str(tmp_path / "again"))) == 2


def test_plotting_bad_folder_and_bad_input(small_result, tmp_path):
    from propagate.plotting.spectra_plots import plot_spectra_result

    blocker = tmp_path / "file"
    blocker.write_text("keep")
    with pytest.raises(InputError) as info:
        plot_spectra_result(small_result.to_dict(), str(blocker / "figs"))
    assert "\n" not in str(info.value)
    assert blocker.read_text() == "keep" and sorted(os.listdir(tmp_path)) == ["file"]
    with pytest.raises(InputError):
        plot_spectra_result({"kind": "run"}, str(tmp_path / "x"))
    with pytest.raises(InputError):
        plot_spectra_result(small_result.to_dict(), str(tmp_path / "x"), "bmp")


def test_library_bad_input():
    with pytest.raises(InputError, match="lsuv"):
        spectra(depth=3, fan_in=8, scheme="lsuv", trials=2)
    with pytest.raises(InputError, match="--every"):
        spectra(depth=3, fan_in=8, trials=2, every=0)
    with pytest.raises(InputError, match="--c0"):
        spectra(depth=3, fan_in=8, trials=2, c0="0.5,2")


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)

    @app.callback()
    def _root() -> None:
        """Test app holding the spectra command."""

    register(app)
    return app


def _invoke(app, args):
    return CliRunner().invoke(app, ["spectra", *args])


def _one_line_error(result, *needles):
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert err.startswith("propagate: error: ") and "\n" not in err, err
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in err, err


ARGS = ["--depth", "4", "--fan-in", "16", "--trials", "3", "--every", "2", "--pairs", "1"]


def test_cli_json_out_and_plot(app, tmp_path):
    out, figs = tmp_path / "out", tmp_path / "figs"
    result = _invoke(app, [*ARGS, "--json", "--out", str(out), "--plot", str(figs)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["kind"] == "spectra" and data["jacobian"]["layer"] == 4
    assert sorted(os.listdir(out)) == ["results.csv", "results.json"]
    assert json.loads((out / "results.json").read_text()) == data
    assert len(os.listdir(figs)) == 3
    table = _invoke(app, ARGS)
    assert table.exit_code == 0 and "Jacobian" in table.stdout and "KS" in table.stdout


@pytest.mark.parametrize(
    "args,needles",
    [
        (["--every", "0"], ["--every", "0"]),
        (["--every", "x"], ["--every"]),
        (["--inputs", "0"], ["--inputs"]),
        (["--format", "bmp"], ["--format"]),
        (["--scheme", "lsuv"], ["lsuv"]),
        (["--c0", "0.2,7"], ["--c0"]),
    ],
)
def test_cli_bad_input_is_one_line(app, tmp_path, args, needles):
    out = tmp_path / "out"
    _one_line_error(_invoke(app, [*ARGS, *args, "--out", str(out)]), *needles)
    assert not out.exists()


def test_cli_unwritable_folders_fail_first_and_write_nothing(app, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    _one_line_error(_invoke(app, [*ARGS, "--out", str(blocker)]), "--out", "not a folder")
    _one_line_error(
        _invoke(app, [*ARGS, "--out", str(tmp_path / "out"), "--plot", str(blocker / "figs")]),
        "--plot",
    )
    assert sorted(os.listdir(tmp_path)) == ["a-file"] and blocker.read_text() == "x"


def test_cli_help(app):
    result = CliRunner().invoke(app, ["spectra", "--help"])
    assert result.exit_code == 0 and "--every" in result.stdout and "Marchenko" in result.stdout


def test_weight_spectra_scale_exactly_at_extreme_stds():
    """std 1e+-100 (the allowed range): the same matrices at unit scale, so KS is unchanged and
    every moment scales by std or std^2, with no overflow in their squares."""
    rows = {
        std: spectra(depth=2, fan_in=8, scheme="gauss", std=std, trials=3).layers[0]
        for std in (0.1, 1e100, 1e-100)
    }
    for std in (1e100, 1e-100):
        row, ref, f = rows[std], rows[0.1], std / 0.1
        assert row["ks_mp"] == ref["ks_mp"]
        for key, power in (("sv_mean", 1), ("sv_mean_pred", 1), ("mean_sq_sv", 2)):
            assert row[key] == pytest.approx(ref[key] * f**power, rel=1e-12)
        for key in ("mean_sq_sv_pred", "mean_sq_sv_se"):
            assert row[key] == pytest.approx(ref[key] * f * f, rel=1e-12)
