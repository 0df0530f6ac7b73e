"""Fused numba passes against the NumPy passes, and the choice between them."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

import propagate.network as network
from propagate import kernels
from propagate.activations import make_activation
from propagate.cli import app
from propagate.errors import InputError
from propagate.network import EngineConfig, Network, _chunk_bounds, simulate
from propagate.schemes import resolve_scheme

pytest.importorskip("numba")

FIELDS = (
    "log_q",
    "log_var",
    "log_m",
    "log_g",
    "log_d",
    "log_wgrad",
    "dead_units",
    "zero_fraction",
    "dead_inputs",
)


def _net(widths, activation="relu", slope=None, bias_std=0.0, scheme="he-normal"):
    act = make_activation(activation, slope)
    return Network(
        widths=tuple(widths),
        activation=act,
        init=resolve_scheme(scheme, activation=act),
        bias_std=bias_std,
    )


def _both(net, dtype, **kw):
    cfg = {"batch": 12, "trials": 21, "seed": 7, "dtype": dtype, **kw}
    a = simulate(net, EngineConfig(kernels="numpy", **cfg))
    b = simulate(net, EngineConfig(kernels="numba", **cfg))
    assert (a.kernels, b.kernels) == ("numpy", "numba")
    return a, b


def _assert_close(a, b, atol):
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        np.testing.assert_array_equal(np.isfinite(x), np.isfinite(y), err_msg=name)
        finite = np.isfinite(x)
        np.testing.assert_allclose(x[finite], y[finite], rtol=0, atol=atol, err_msg=name)


@pytest.mark.parametrize(
    ("activation", "slope", "bias_std", "widths"),
    [
        ("relu", None, 0.0, (16,) * 9),
        ("leaky-relu", 0.2, 0.0, (16,) * 9),
        ("relu", None, 0.5, (12, 20, 5, 30, 9)),
        ("relu", None, 0.0, (3, 2, 2, 2, 2, 2, 2)),  # narrow: dead units and dead inputs
    ],
)
@pytest.mark.parametrize(("dtype", "atol"), [(np.float64, 1e-9), (np.float32, 1e-5)])
def test_fused_passes_give_the_numpy_statistics(activation, slope, bias_std, widths, dtype, atol):
    a, b = _both(_net(widths, activation, slope, bias_std), dtype)
    _assert_close(a, b, atol)
    if widths[1] <= 3:  # the narrow case really has dead inputs to compare
        assert np.any(a.dead_inputs > 0)


def test_fused_passes_with_bit_packed_masks(monkeypatch):
    monkeypatch.setattr(network, "_BOOL_MASK_BYTES", 0)  # every chunk packs its masks
    a, b = _both(_net((16,) * 7), np.float64)
    _assert_close(a, b, 1e-9)


def test_fused_variance_needs_no_cancellation():
    # a large bias makes the batch means dominate q: the variance is ~1e-4 of q
    a, b = _both(_net((16,) * 5, bias_std=100.0), np.float64)
    assert np.all(a.log_var - a.log_q < np.log(1e-3))
    _assert_close(a, b, 1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_numbers_do_not_depend_on_the_chunking(dtype):
    net = _net((16,) * 9)
    runs = [
        simulate(
            net,
            EngineConfig(
                batch=12, trials=21, seed=7, dtype=dtype, chunk_trials=c, workers=w, kernels="numba"
            ),
        )
        for c, w in ((21, 1), (1, 1), (3, 2), (8, 2))
    ]
    for other in runs[1:]:
        for name in FIELDS:
            np.testing.assert_array_equal(getattr(runs[0], name), getattr(other, name))


def test_forward_kernel_against_direct_sums():
    rng = np.random.default_rng(3)
    z = rng.standard_normal((3, 7, 5)) + 0.3
    centre = z.mean(axis=1) + 1e-3 * rng.standard_normal((3, 5))
    mask = np.empty(z.shape, dtype=bool)
    out = kernels.choose("numba", 1, np.float64, True).forward(z.copy(), 0.1, centre, mask)
    h = np.where(z > 0, z, 0.1 * z)
    np.testing.assert_array_equal(mask, z > 0)
    np.testing.assert_allclose(out["q"], np.sum(z**2, axis=(1, 2)), rtol=1e-13)
    dev = z - z.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(out["var_sum"], np.sum(dev**2, axis=(1, 2)), rtol=1e-12)
    np.testing.assert_allclose(out["sq"], np.sum(h**2, axis=2), rtol=1e-13)
    np.testing.assert_allclose(out["hsum"], h.sum(axis=1), rtol=1e-13)
    np.testing.assert_array_equal(out["positive"], (z > 0).sum(axis=1))


def test_float32_kernels_against_float64_sums():
    # 100 samples cross the 32-sample blocks; a sample's 70 units gather in float32, so each
    # such sum carries at most ~70 * 2^-24 = 4e-6 relative error; everything else is float64
    rng = np.random.default_rng(4)
    z = (rng.standard_normal((3, 100, 70)) + 0.3).astype(np.float32)
    z[1, 5] *= np.float32(1e-25)  # squares underflow in float32: redone in float64
    z64 = z.astype(np.float64)
    centre = z64.mean(axis=1)
    mask = np.empty(z.shape, dtype=bool)
    passes = kernels.choose("numba", 1, np.float32, True)
    out = passes.forward(z.copy(), 0.1, centre, mask)
    h = np.where(z64 > 0, z64, z64 * np.float64(np.float32(0.1)))
    np.testing.assert_array_equal(mask, z > 0)
    np.testing.assert_allclose(out["q"], np.sum(z64**2, axis=(1, 2)), rtol=1e-5)
    dev = z64 - centre[:, None, :]
    np.testing.assert_allclose(out["var_sum"], np.sum(dev**2, axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(out["sq"], np.sum(h**2, axis=2), rtol=1e-5)
    assert 0 < out["sq"][1, 5] < 1e-48
    np.testing.assert_allclose(out["hsum"], h.sum(axis=1), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out["positive"], (z > 0).sum(axis=1))
    g, dsq = passes.backward(z.copy(), mask, 0.1)
    d = np.where(mask, z64, z64 * np.float64(np.float32(0.1)))
    np.testing.assert_allclose(g, np.sum(z64**2, axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(dsq, np.sum(d**2, axis=2), rtol=1e-5)
    assert 0 < dsq[1, 5] < 1e-48


def test_compiled_normals_are_numpys_numbers():
    # 16 streams of 2^20: ~45 draws from the tail beyond R and ~1e5 from the wedges
    passes = kernels.choose("numba", 1, np.float64, True)
    tails = 0
    for block in range(16):
        seq = np.random.SeedSequence(11, spawn_key=(0, 3, block))
        expected = np.random.Generator(np.random.SFC64(seq)).standard_normal(1 << 20)
        got = np.full(1 << 20, np.nan)
        passes.normals(np.random.SFC64(seq), got)
        np.testing.assert_array_equal(got, expected)
        tails += int(np.sum(np.abs(expected) > 3.6541528853610088))
    assert tails > 10
    # a chunk's buffer is 3-d: filled in place through a flat view
    seq = np.random.SeedSequence(5)
    out = np.empty((4, 3, 2))
    passes.normals(np.random.SFC64(seq), out)
    expected = np.random.Generator(np.random.SFC64(seq)).standard_normal((4, 3, 2))
    np.testing.assert_array_equal(out, expected)


def test_a_sampler_that_disagrees_with_numpy_is_not_used(monkeypatch):
    loaded = kernels._load(np.float64)
    passes = kernels.FusedPasses(loaded._forward, loaded._backward, loaded._normal_fill)
    assert passes.check_normals() and passes.exact_normals
    k_tab, w_tab, f_tab, r, inv_r = passes._tables
    w_tab = w_tab.copy()
    w_tab[7] = np.nextafter(w_tab[7], 1.0)  # one layer of the ziggurat one ulp off
    passes._tables = (k_tab, w_tab, f_tab, r, inv_r)
    assert not passes.check_normals() and not passes.exact_normals

    # the engine then draws with NumPy's own sampler
    def refuse(*args):
        raise AssertionError("the disagreeing sampler was used")

    used = []
    monkeypatch.setattr(passes, "normals", refuse)
    monkeypatch.setattr(network, "choose_kernels", lambda *a, **k: used.append(1) or passes)
    simulate(_net((8, 8, 8)), EngineConfig(batch=4, trials=3, seed=2, workers=1))
    assert used
    passes.exact_normals = True
    with pytest.raises(AssertionError, match="disagreeing sampler"):
        simulate(_net((8, 8, 8)), EngineConfig(batch=4, trials=3, seed=2, workers=1))


def test_relu_output_has_no_negative_zeros():
    z = -np.arange(1.0, 7.0).reshape(1, 2, 3)
    mask = np.empty(z.shape, dtype=bool)
    kernels.choose("numba", 1, np.float64, True).forward(z, 0.0, np.zeros((1, 3)), mask)
    assert not np.any(np.signbit(z))


def test_choice_of_kernels(monkeypatch):
    assert kernels.choose("numpy", 1e12, np.float32, True) is None
    assert kernels.choose("auto", 1e6, np.float32, True) is None  # too small to repay numba
    assert kernels.choose("auto", 1e8, np.float32, True) is not None
    assert kernels.choose("numba", 1, np.float32, False) is None  # tanh, linear: NumPy
    with pytest.raises(InputError, match="choose one of: auto, numpy, numba"):
        kernels.choose("fast", 1, np.float32, True)
    monkeypatch.setattr(kernels, "numba_installed", lambda: False)
    assert kernels.choose("auto", 1e8, np.float32, True) is None
    with pytest.raises(InputError, match=r"pip install 'propagate-init\[fast\]'"):
        kernels.choose("numba", 1, np.float32, True)


def test_cli_reports_the_kernels_and_refuses_unknown_ones():
    runner = CliRunner()
    res = runner.invoke(
        app, ["run", "--depth", "3", "--fan-in", "8", "--kernels", "numba", "--json"]
    )
    assert res.exit_code == 0
    assert '"kernels": "numba"' in res.stdout
    bad = runner.invoke(app, ["run", "--depth", "3", "--fan-in", "8", "--kernels", "gpu"])
    assert bad.exit_code == 2
    assert "unknown --kernels 'gpu'; choose one of: auto, numpy, numba" in bad.output


@pytest.mark.parametrize(
    ("trials", "k", "workers"), [(200, 16, 2), (21, 8, 2), (7, 8, 2), (9, 4, 3)]
)
def test_chunks_split_the_trials_evenly_between_workers(trials, k, workers):
    net = _net((8, 8))
    bounds = sorted(_chunk_bounds(net, trials, k, workers, fixed=False))
    assert bounds[0][0] == 0 and bounds[-1][1] == trials
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    assert all(0 < e - s <= k + k // 4 for s, e in bounds)
    edges = [trials * i // workers for i in range(workers + 1)]
    starts = {s for s, _ in bounds}
    assert set(edges[:-1]) <= starts  # every share starts a chunk: shares are exactly equal


def test_unusable_numba_cache_falls_back_to_compiling_in_memory(monkeypatch):
    from propagate import _fused

    real = _fused.compile_kernels
    calls = []

    def flaky(cache):
        calls.append(cache)
        if cache:
            raise RuntimeError("cannot cache function 'rectifier_forward': no locator available")
        return real(cache)

    monkeypatch.setattr(kernels, "_LOADED", {})
    monkeypatch.setattr(_fused, "compile_kernels", flaky)
    passes = kernels.choose("numba", 1, np.float64, True)
    assert passes is not None and calls == [True, False]
    z = np.array([[[-1.0, 2.0]]])
    mask = np.empty(z.shape, dtype=bool)
    assert passes.forward(z, 0.0, np.zeros((1, 2)), mask)["q"][0] == 5.0


def test_broken_numba_is_an_input_error_or_a_quiet_fallback(monkeypatch):
    from propagate import _fused

    def broken(cache):
        raise ImportError("Numba needs NumPy 2.3 or less\nsecond line")

    monkeypatch.setattr(kernels, "_LOADED", {})
    monkeypatch.setattr(_fused, "compile_kernels", broken)
    assert kernels.choose("auto", 1e8, np.float32, True) is None
    with pytest.raises(InputError) as err:
        kernels.choose("numba", 1, np.float32, True)
    message = str(err.value)
    assert "ImportError: Numba needs NumPy 2.3 or less" in message and "\n" not in message
    assert "--kernels numpy" in message


def test_ctrl_c_during_compilation_is_held_and_delivered_after(monkeypatch):
    # LLVM calls back into Python while numba compiles; a KeyboardInterrupt raised inside a C
    # callback is printed as "Exception ignored" and dropped. Reproduced here with a ctypes
    # callback: the interrupt must still arrive, once the kernels are ready.
    import ctypes
    import os
    import signal
    import time

    from propagate import _fused

    real = _fused.compile_kernels
    steps = []

    def interrupted_inside_a_callback():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the Python handler runs here, inside the callback
        steps.append("callback")

    callback = ctypes.CFUNCTYPE(None)(interrupted_inside_a_callback)

    def compile_kernels(cache):
        callback()
        steps.append("compiled")
        return real(cache)

    monkeypatch.setattr(_fused, "compile_kernels", compile_kernels)
    monkeypatch.setattr(kernels, "_LOADED", {})
    with pytest.raises(KeyboardInterrupt):
        kernels._load(np.float64)
    assert steps == ["callback", "compiled"]
    assert "float64" in kernels._LOADED  # the interrupt came after the kernels were ready
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_auto_chooses_by_one_networks_size_so_trial_i_never_depends_on_trials():
    """A network of 4e6 entries: auto takes numba for 1 trial and for 3, and trial 0 is the
    same to the bit (a run-size rule switched kernels, hence rounding, as --trials grew)."""
    act = make_activation("relu")
    net = Network(
        widths=(64,) * 64, activation=act, init=resolve_scheme("he-normal", activation=act)
    )
    assert 1024 * 63 * 64 >= kernels.AUTO_MIN_ELEMENTS
    one, three = (
        simulate(net, EngineConfig(batch=1024, trials=t, seed=3, kernels="auto")) for t in (1, 3)
    )
    assert one.kernels == three.kernels == "numba"
    np.testing.assert_array_equal(one.log_q[0], three.log_q[0])
    np.testing.assert_array_equal(one.log_g[0], three.log_g[0])
    small = Network(widths=(64,) * 31, activation=act, init=net.init)
    runs = [simulate(small, EngineConfig(batch=1024, trials=t, seed=3)) for t in (1, 210)]
    assert [r.kernels for r in runs] == ["numpy", "numpy"]  # 2e6 per network: NumPy at any T
