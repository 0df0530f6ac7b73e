"""Init schemes: exact formulas, sampler laws, prefix property, aliases and input validation.

The grids are driven by the registry (``schemes.SCHEMES``), so a new scheme is sampled, checked
against its nominal variance, bounds, mu4 and prefix property without touching this file;
``EXACT_VARIANCE`` additionally asks it for its closed-form variance. Monte-Carlo checks use
fixed seeds and |z| < 4 with the standard error taken from the sample's own higher moments.
"""

from __future__ import annotations

import json
import math
import zlib
from functools import cache

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.special import ndtr

from propagate import schemes as S
from propagate.activations import make_activation
from propagate.errors import InputError
from propagate.rng import Stream, block_generator, draw

RELU = make_activation("relu")
LEAKY = make_activation("leaky-relu", 0.2)
TANH = make_activation("tanh")
SHAPES = {"tall": (24, 40), "wide": (40, 24)}  # (fan_in, fan_out)
NAMES = list(S.SCHEMES)
TRIALS = 200  # x 960 entries per shape
C = S.TRUNCNORMAL_STD_2

# A law per case: every scheme as registered, plus each override distribution, so every entry
# of DISTRIBUTIONS is sampled.
LAW_CASES = [(name, None) for name in NAMES] + [
    ("he-normal", "uniform"),
    ("he-normal", "truncnormal"),
    ("gauss", "uniform"),
    ("keras-truncated-normal", "normal"),
    ("torch-trunc-normal", "uniform"),
    ("torch-trunc-normal", "truncnormal"),
]
LAW_IDS = [name if dist is None else f"{name}:{dist}" for name, dist in LAW_CASES]


def _layer(name, shape, dist=None, activation=RELU, **kw):
    return S.resolve_scheme(name, activation=activation, dist=dist, **kw).layer(*shape)


def _gen(*key) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


@cache
def _sample(name, dist, shape):
    """(LayerInit, W = std * W_hat) for TRIALS trials at a fixed seed per case."""
    li = _layer(name, shape, dist)
    return li, li.std * S.sample_unit(li, _gen(name, dist, shape), TRIALS)


def test_every_distribution_is_sampled():
    seen = {_layer(name, (3, 5), dist).distribution for name, dist in LAW_CASES}
    assert seen == set(S.DISTRIBUTIONS)


# --------------------------------------------------------------------- Monte Carlo, every law
@pytest.mark.parametrize("shape", SHAPES.values(), ids=list(SHAPES))
@pytest.mark.parametrize(("name", "dist"), LAW_CASES, ids=LAW_IDS)
def test_sample_variance_matches_weight_var(name, dist, shape):
    li, w = _sample(name, dist, shape)
    w2 = (w * w).ravel()
    se = w2.std() / math.sqrt(w2.size)  # from the sample's 4th moment
    assert abs(w2.mean() - li.weight_var) < 4 * se + 1e-15 * li.weight_var
    assert abs(w.mean()) < 4 * math.sqrt(w2.mean() / w2.size)


@pytest.mark.parametrize("shape", SHAPES.values(), ids=list(SHAPES))
@pytest.mark.parametrize(("name", "dist"), LAW_CASES, ids=LAW_IDS)
def test_mu4_matches_monte_carlo(name, dist, shape):
    li, w = _sample(name, dist, shape)
    x = w.ravel()
    m2, m4 = np.mean(x**2), np.mean(x**4)
    # delta method for m4 / m2^2: influence of each entry
    influence = (x**4 - m4) / m2**2 - 2 * m4 * (x**2 - m2) / m2**3
    se = influence.std() / math.sqrt(x.size)
    assert abs(m4 / m2**2 - li.mu4) < 4 * se


@pytest.mark.parametrize("shape", SHAPES.values(), ids=list(SHAPES))
@pytest.mark.parametrize(("name", "dist"), LAW_CASES, ids=LAW_IDS)
def test_support(name, dist, shape):
    li, w = _sample(name, dist, shape)
    top = np.abs(w).max()
    if li.distribution == "normal":
        assert li.bound is None and li.lo is None and li.hi is None
        return
    assert top <= li.bound
    if li.distribution == "uniform":
        assert li.bound == pytest.approx(li.std * math.sqrt(3), rel=1e-15)
        assert top > 0.999 * li.bound  # P(all below) = 0.999^192000
    if li.distribution.startswith("truncnormal"):
        assert li.lo == -li.hi and li.bound == li.std * li.hi
        assert top > (1 - 1e-3) * li.bound


def test_mu4_exact_values():
    assert _layer("he-normal", (9, 7)).mu4 == 3.0
    assert _layer("he-uniform", (9, 7)).mu4 == 1.8
    assert _layer("he-truncnormal", (9, 7)).mu4 == pytest.approx(2.3655, abs=5e-5)
    for fan_in, fan_out in [(9, 7), (7, 9), (8, 8)]:
        n = max(fan_in, fan_out)
        assert _layer("orthogonal", (fan_in, fan_out)).mu4 == 3 * n / (n + 2)


# --------------------------------------------------------------------- exact formulas
EXACT_VARIANCE = {  # (fan_in, fan_out) -> Var(W_ij), ReLU network, no overrides
    "gauss": lambda fi, fo: 1e-4,
    "torch": lambda fi, fo: 1 / (3 * fi),
    "lecun-normal": lambda fi, fo: 1 / fi,
    "lecun-uniform": lambda fi, fo: 1 / fi,
    "lecun-truncnormal": lambda fi, fo: 1 / fi,
    "xavier-normal": lambda fi, fo: 2 / (fi + fo),
    "xavier-uniform": lambda fi, fo: 2 / (fi + fo),
    "xavier-truncnormal": lambda fi, fo: 2 / (fi + fo),
    "he-normal": lambda fi, fo: 2 / fi,
    "he-uniform": lambda fi, fo: 2 / fi,
    "he-truncnormal": lambda fi, fo: 2 / fi,
    "he-fan-out": lambda fi, fo: 2 / fo,
    "elab-kaiming": lambda fi, fo: 4 / (fi + fo),
    "keras-truncated-normal": lambda fi, fo: 0.05**2 * C**2,
    "torch-trunc-normal": lambda fi, fo: C**2,
    "orthogonal": lambda fi, fo: 2 / max(fi, fo),
    "lsuv": lambda fi, fo: 1 / max(fi, fo),
}


def test_every_scheme_has_an_exact_variance():
    assert set(EXACT_VARIANCE) == set(S.SCHEMES)


@pytest.mark.parametrize("shape", [(24, 40), (40, 24), (1, 1), (784, 10)])
@pytest.mark.parametrize("name", NAMES)
def test_nominal_weight_var_is_exact(name, shape):
    li = _layer(name, shape)
    assert li.weight_var == pytest.approx(EXACT_VARIANCE[name](*shape), rel=1e-12, abs=0)
    assert (li.fan_in, li.fan_out) == shape


def test_bounds_and_stds_are_exact():
    fi, fo = 30, 50
    assert _layer("torch", (fi, fo)).bound == pytest.approx(1 / math.sqrt(fi), rel=1e-12)
    assert _layer("he-uniform", (fi, fo)).bound == pytest.approx(math.sqrt(6 / fi), rel=1e-12)
    assert _layer("lecun-uniform", (fi, fo)).bound == pytest.approx(math.sqrt(3 / fi), rel=1e-12)
    xavier = math.sqrt(6 / (fi + fo))
    assert _layer("xavier-uniform", (fi, fo)).bound == pytest.approx(xavier, rel=1e-12)
    elab = math.sqrt(12 / (fi + fo))
    assert _layer("elab-kaiming", (fi, fo)).bound == pytest.approx(elab, rel=1e-12)
    assert _layer("he-normal", (fi, fo)).std == pytest.approx(math.sqrt(2 / fi), rel=1e-12)
    he_trunc = _layer("he-truncnormal", (fi, fo))
    assert he_trunc.std == pytest.approx(math.sqrt(2 / fi) / C, rel=1e-12)
    assert (he_trunc.lo, he_trunc.hi) == (-2.0, 2.0)


def test_truncated_normal_constant():
    phi2 = math.exp(-2.0) / math.sqrt(2 * math.pi)
    formula = math.sqrt(1 - 4 * phi2 / math.erf(math.sqrt(2.0)))  # 2 Phi(2) - 1 = erf(sqrt 2)
    assert abs(C - formula) <= 1e-15
    m2, m4 = S.truncated_normal_moments(2.0)
    assert abs(math.sqrt(m2) - C) <= 1e-15
    assert round(m2, 4) == 0.7737 and m4 / m2**2 == pytest.approx(2.3655, abs=5e-5)


@pytest.mark.parametrize("c", [1e-3, 0.3, 1.0, 1.0001, 2.0, 3.5, 8.0, 50.0])
def test_truncated_moments_against_quadrature(c):
    z = math.erf(c / math.sqrt(2)) * math.sqrt(2 * math.pi)
    m2, m4 = S.truncated_normal_moments(c)
    for k, value in ((2, m2), (4, m4)):
        exact = quad(lambda x, k=k: x**k * math.exp(-x * x / 2), -c, c, epsabs=0)[0] / z
        assert value == pytest.approx(exact, rel=1e-10)


def test_uncorrected_cuts_realise_0_7737_std_squared():
    for std in (None, 0.3):
        li = _layer("keras-truncated-normal", (8, 8), std=std)
        sigma = 0.05 if std is None else std
        assert li.std == pytest.approx(sigma, rel=1e-15)
        assert li.weight_var == pytest.approx(C**2 * sigma**2, rel=1e-15)
        assert round(li.weight_var / sigma**2, 4) == 0.7737
    torch_cut = _layer("torch-trunc-normal", (8, 8), std=0.5, trunc_bounds=(-1.0, 1.0))
    assert torch_cut.weight_var == pytest.approx(0.25 * C**2, rel=1e-14)


def test_torch_trunc_normal_absolute_bounds_pitfall():
    li = _layer("torch-trunc-normal", (16, 16), std=0.02)  # default a, b = -2, 2: +-100 sigma
    assert li.hi == pytest.approx(100.0) and li.weight_var == pytest.approx(0.02**2, rel=1e-12)
    x = S.sample_unit(li, _gen("pitfall"), 400).ravel()
    assert np.all(np.isfinite(x)) and np.abs(x).max() < 7
    assert abs(np.mean(x * x) - 1) < 4 * np.std(x * x) / math.sqrt(x.size)
    narrow = _layer("torch-trunc-normal", (16, 16), trunc_bounds=(-1e-3, 1e-3))
    y = S.sample_unit(narrow, _gen("narrow"), 50).ravel()
    assert np.abs(y).max() <= 1e-3
    assert narrow.weight_var == pytest.approx(1e-6 / 3, rel=1e-6)  # ~uniform on [-a, a]


def test_truncnormal_inverse_cdf_precision_in_both_tails():
    u = np.array([2.0**-50, 2.0**-30, 0.25, 0.5, 0.75, 1 - 2.0**-30, 1 - 2.0**-50])
    for c in (2.0, 40.0):
        x = S._truncnormal_unit(c, u.copy())
        z = math.erf(c / math.sqrt(2))
        lower = (ndtr(x) - ndtr(-c)) / z  # the CDF, precise below the median
        upper = (ndtr(-x) - ndtr(-c)) / z  # 1 - CDF, precise above it
        np.testing.assert_allclose(np.where(u > 0.5, 1 - upper, lower), u, rtol=0, atol=1e-15)
        if c == 40.0:  # no cut in float64: relative precision in both tails
            np.testing.assert_allclose(
                np.where(u > 0.5, upper, lower), np.minimum(u, 1 - u), rtol=1e-12
            )
            np.testing.assert_array_equal(x[::-1], -x)


# --------------------------------------------------------------------- orthogonal
ORTHOGONAL = [  # lsuv's pre-init takes no gain
    (name, gain)
    for name, s in S.SCHEMES.items()
    if s.distribution == "orthogonal"
    for gain in ((None,) if s.kind == "lsuv" else (None, 1.0, 0.7))
]


@pytest.mark.parametrize("shape", [(24, 40), (40, 24), (16, 16), (1, 7), (7, 1)])
@pytest.mark.parametrize(("name", "gain"), ORTHOGONAL)
def test_orthogonal_singular_values_equal_gain(name, gain, shape):
    li = _layer(name, shape, gain=gain)
    expected = {None: 1.0 if name == "lsuv" else math.sqrt(2), 1.0: 1.0, 0.7: 0.7}[gain]
    assert li.std == pytest.approx(expected, rel=1e-15)
    w_hat = S.sample_unit(li, _gen(name, gain, shape), 6)
    singular = np.linalg.svd(li.std * w_hat, compute_uv=False)
    np.testing.assert_allclose(singular, expected, rtol=0, atol=1e-12)
    small = min(shape)
    gram = w_hat.swapaxes(1, 2) @ w_hat if shape[1] >= shape[0] else w_hat @ w_hat.swapaxes(1, 2)
    np.testing.assert_allclose(gram, np.broadcast_to(np.eye(small), gram.shape), atol=1e-12)


def test_orthogonal_sign_fix_makes_entries_symmetric():
    # Householder QR without the sign(diag R) fix gives Q_11 < 0 always; Haar has mean 0.
    li = _layer("orthogonal", (6, 6), gain=1.0)
    corner = S.sample_unit(li, _gen("haar"), 4000)[:, 0, 0]
    assert abs(corner.mean()) < 4 * corner.std() / math.sqrt(corner.size)


# --------------------------------------------------------------------- prefix property
@pytest.mark.parametrize("shape", [(5, 3), (3, 5)])
@pytest.mark.parametrize(("name", "dist"), LAW_CASES, ids=LAW_IDS)
def test_prefix_property(name, dist, shape):
    li = _layer(name, shape, dist)
    few = S.sample_unit(li, block_generator(11, Stream.WEIGHTS, 2, 0), 3)
    many = S.sample_unit(li, block_generator(11, Stream.WEIGHTS, 2, 0), 7)
    assert few.dtype == np.float64 and few.shape == (3, shape[1], shape[0])
    np.testing.assert_array_equal(few, many[:3])
    per_trial = shape[0] * shape[1]
    whole = draw(5, Stream.WEIGHTS, 1, 0, 300, lambda g, k: S.sample_unit(li, g, k), per_trial)
    parts = [
        draw(5, Stream.WEIGHTS, 1, a, b, lambda g, k: S.sample_unit(li, g, k), per_trial)
        for a, b in ((0, 9), (9, 33), (33, 40), (40, 257), (257, 300))
    ]
    np.testing.assert_array_equal(whole, np.concatenate(parts))
    assert S.sample_unit(li, _gen("empty"), 0).shape == (0, shape[1], shape[0])


# --------------------------------------------------------------------- names and aliases
ALIASES = [(alias, s.name) for s in S.SCHEMES.values() for alias in s.aliases]


@pytest.mark.parametrize(("alias", "canonical"), ALIASES, ids=[a for a, _ in ALIASES])
def test_alias_resolves_to_canonical_formula(alias, canonical):
    assert S.lookup(alias) is S.SCHEMES[canonical]
    assert S.lookup(f" {alias.upper().replace('-', '_')}_") is S.SCHEMES[canonical]
    for shape in SHAPES.values():
        assert _layer(alias, shape) == _layer(canonical, shape)


@pytest.mark.parametrize(
    ("label", "canonical"),
    [
        ("kaiming-uniform-a-sqrt5", "torch"),
        ("torch-default", "torch"),
        ("lua-torch", "torch"),
        ("caffe-xavier", "lecun-uniform"),
        ("msra", "he-normal"),
        ("kaiming_normal", "he-normal"),
        ("kaiming_uniform_", "he-uniform"),
        ("glorot_uniform", "xavier-uniform"),
        ("glorot-normal", "xavier-normal"),
        ("keras-default", "xavier-uniform"),
        ("e-lab-kaiming", "elab-kaiming"),
        ("alexnet", "gauss"),
        ("flax-default", "lecun-truncnormal"),
        ("keras-he-normal", "he-truncnormal"),
        ("He_Normal", "he-normal"),
        ("trunc_normal_", "torch-trunc-normal"),
        ("truncated_normal", "keras-truncated-normal"),
    ],
)
def test_framework_names(label, canonical):
    assert S.lookup(label).name == canonical


def test_framework_formulas_agree_across_names():
    shape = (30, 50)
    assert _layer("kaiming-uniform-a-sqrt5", shape).weight_var == pytest.approx(1 / 90, rel=1e-15)
    assert _layer("caffe-xavier", shape) == _layer("lecun-uniform", shape)
    assert _layer("xavier-uniform", shape, mode="fan_in") == _layer("lecun-uniform", shape)
    assert _layer("he-normal", shape, mode="fan-out") == _layer("he-fan-out", shape)
    assert _layer("he-normal", shape, dist="truncnormal") == _layer("he-truncnormal", shape)
    # torch's kaiming_uniform_ with gain sqrt(2) instead of sqrt(1/3) is He uniform
    torch_he = _layer("torch", shape, gain=math.sqrt(2))
    assert torch_he.weight_var == pytest.approx(_layer("he-uniform", shape).weight_var, rel=1e-15)


@pytest.mark.parametrize("label", ["xavier", "kaiming", "He", "glorot", "normal", "default"])
def test_ambiguous_labels_are_refused_with_candidates(label):
    with pytest.raises(InputError, match="different formulas") as info:
        S.lookup(label)
    assert label in str(info.value) and "-" in str(info.value)


def test_xavier_ambiguity_names_caffe():
    with pytest.raises(InputError, match="lecun-uniform"):
        S.lookup("xavier")


# --------------------------------------------------------------------- gain and overrides
def test_gain_follows_the_activation():
    fi, fo = 24, 40
    assert _layer("he-normal", (fi, fo), activation=LEAKY).weight_var == pytest.approx(
        2 / (1.04 * fi), rel=1e-12
    )
    assert _layer("he-fan-out", (fi, fo), activation=LEAKY).weight_var == pytest.approx(
        2 / (1.04 * fo), rel=1e-12
    )
    assert _layer("elab-kaiming", (fi, fo), activation=TANH).weight_var == pytest.approx(
        (25 / 9) * 2 / (fi + fo), rel=1e-12
    )
    ortho = _layer("orthogonal", (fi, fo), activation=LEAKY)
    assert ortho.gain**2 == pytest.approx(2 / 1.04, rel=1e-12)
    # formulas that do not depend on the activation keep their scale
    assert _layer("lecun-normal", (fi, fo), activation=LEAKY).weight_var == pytest.approx(1 / fi)
    assert _layer("torch", (fi, fo), activation=TANH).weight_var == pytest.approx(1 / (3 * fi))
    assert _layer("lsuv", (fi, fo), activation=LEAKY).gain == 1.0
    spec = S.resolve_scheme("he-normal", activation=LEAKY)
    assert spec.gain_source == "activation"
    assert S.resolve_scheme("he-normal", activation=LEAKY, gain=1.0).gain_source == "override"


def test_gain_override_sets_scale():
    fi, fo = 24, 40
    assert _layer("xavier-uniform", (fi, fo), gain=2.0).weight_var == pytest.approx(
        8 / (fi + fo), rel=1e-12
    )
    assert _layer("he-normal", (fi, fo), gain=1.0).weight_var == pytest.approx(1 / fi, rel=1e-12)
    assert _layer("orthogonal", (fi, fo), gain=1.0).weight_var == pytest.approx(1 / fo)


def test_dist_and_std_overrides():
    fi, fo = 24, 40
    he_uniform = _layer("he-normal", (fi, fo), dist="uniform")
    assert he_uniform.distribution == "uniform"
    assert he_uniform.bound == pytest.approx(math.sqrt(6 / fi), rel=1e-12)
    assert _layer("gauss", (fi, fo), dist="uniform").bound == pytest.approx(0.01 * math.sqrt(3))
    assert _layer("keras-truncated-normal", (fi, fo), dist="normal").weight_var == pytest.approx(
        C**2 * 0.0025, rel=1e-14
    )
    for name, dist in [
        ("he-normal", None),
        ("he-uniform", None),
        ("he-truncnormal", None),
        ("torch", "normal"),
        ("gauss", None),
    ]:
        li = _layer(name, (fi, fo), dist, std=0.1)
        assert li.weight_var == pytest.approx(0.01, rel=1e-14) and li.fan == 1.0
        assert _layer(name, (3, 900), dist, std=0.1).weight_var == li.weight_var
    assert _layer("he-truncnormal", (fi, fo), std=0.1).std == pytest.approx(0.1 / C)
    assert _layer("torch-trunc-normal", (fi, fo), std=0.02).std == 0.02  # pre-cut


BAD = [
    ("he-normal", {"gain": float("nan")}, "nan"),
    ("he-normal", {"gain": float("inf")}, "inf"),
    ("he-normal", {"gain": 0.0}, "0"),
    ("he-normal", {"gain": -1.5}, "-1.5"),
    ("he-normal", {"gain": "abc"}, "abc"),
    ("gauss", {"std": float("nan")}, "nan"),
    ("gauss", {"std": float("-inf")}, "-inf"),
    ("gauss", {"std": 0}, "0"),
    ("he-normal", {"std": -0.01}, "-0.01"),
    ("he-normal", {"mode": "fan_sum"}, "fan_sum"),
    ("he-normal", {"dist": "laplace"}, "laplace"),
    ("he-normal", {"dist": "orthogonal"}, "orthogonal"),
    ("he-normal", {"dist": "truncnormal-abs"}, "truncnormal-abs"),
    ("orthogonal", {"dist": "normal"}, "normal"),
    ("lsuv", {"dist": "uniform"}, "uniform"),
    ("lsuv", {"gain": 2.0}, "2"),
    ("orthogonal", {"std": 0.1}, "0.1"),
    ("gauss", {"gain": 3.0}, "3"),
    ("gauss", {"mode": "fan_in"}, "fan_in"),
    ("he-normal", {"std": 0.1, "mode": "fan_out"}, "fan_out"),
    ("he-normal", {"std": 0.1, "gain": 2.0}, "0.1"),
    ("torch-trunc-normal", {"trunc_bounds": (-1.0, 2.0)}, "-1 2"),
    ("torch-trunc-normal", {"trunc_bounds": (2.0, -2.0)}, "2 -2"),
    ("torch-trunc-normal", {"trunc_bounds": (-math.inf, math.inf)}, "inf"),
    ("torch-trunc-normal", {"trunc_bounds": (1.0,)}, "(1.0,)"),
    ("he-normal", {"trunc_bounds": (-2.0, 2.0)}, "(-2.0, 2.0)"),
    ("he-norml", {}, "he-norml"),
    ("kaimin", {}, "kaimin"),
]


@pytest.mark.parametrize(("name", "kwargs", "shown"), BAD, ids=[f"{b[0]}-{b[1]}" for b in BAD])
def test_bad_input_raises_one_line_error_naming_the_value(name, kwargs, shown):
    with pytest.raises(InputError) as info:
        S.resolve_scheme(name, activation=RELU, **kwargs)
    message = str(info.value)
    assert shown in message and "\n" not in message


def test_unknown_names_list_the_choices():
    with pytest.raises(InputError, match="he-normal") as info:
        S.lookup("he-norml")
    assert "lsuv" in str(info.value)
    with pytest.raises(InputError, match="fan_avg"):
        S.resolve_scheme("he-normal", activation=RELU, mode="avg")
    with pytest.raises(InputError, match="truncnormal"):
        S.resolve_scheme("he-normal", activation=RELU, dist="cauchy")


@pytest.mark.parametrize(
    ("fans", "shown"), [((0, 5), "0"), ((5, -3), "-3"), ((2.5, 4), "2.5"), ((True, 3), "True")]
)
def test_bad_layer_shape(fans, shown):
    with pytest.raises(InputError) as info:
        S.resolve_scheme("he-normal", activation=RELU).layer(*fans)
    assert shown in str(info.value)


# --------------------------------------------------------------------- listing and JSON
def test_scheme_table_rows():
    rows = S.scheme_table()
    assert [row["name"] for row in rows] == NAMES
    for row in rows:
        for key in (
            "summary",
            "law",
            "variance",
            "bound_or_std",
            "relu_factor",
            "frameworks",
            "traps",
        ):
            assert isinstance(row[key], str) and row[key], (row["name"], key)
        assert row["kind"] in S.KINDS and row["distribution"] in S.DISTRIBUTIONS
    json.dumps(rows)
    by_name = {row["name"]: row for row in rows}
    assert "gain 1" in by_name["orthogonal"]["traps"]
    assert "data" in by_name["lsuv"]["summary"] and "rescale" in by_name["lsuv"]["summary"]
    assert "fan_avg" in by_name["elab-kaiming"]["traps"]
    assert "0.02" in by_name["torch-trunc-normal"]["traps"]
    assert "caffe-xavier" in by_name["lecun-uniform"]["aliases"]
    assert by_name["torch"]["variance"] == "1/(3 fan_in)"
    assert by_name["he-normal"]["relu_factor"].startswith("g²/2")


@pytest.mark.parametrize("name", NAMES)
def test_to_dict_is_json_ready(name):
    spec = S.resolve_scheme(name, activation=LEAKY)
    described = json.loads(json.dumps(spec.to_dict()))
    assert described["scheme"] == name and described["distribution"] == spec.distribution
    assert described["activation"] == "leaky-relu"


@pytest.mark.parametrize("cut", [1e-20, 1e-10, 5e-5])
def test_very_narrow_truncation_windows_keep_their_variance(cut):
    # Phi(-c) + u * mass lost every digit of u near c ~ 1e-17: weights came out all 0
    layer = _layer("torch-trunc-normal", (64, 64), trunc_bounds=(-cut, cut))
    y = S.sample_unit(layer, _gen("very narrow"), 100).ravel() * layer.std
    assert np.abs(y).max() <= cut and np.all(y != 0)
    n = y.size  # uniform on [-c, c] to O(c^2): Var of the sample variance is (4/5) v^2 / n
    v = cut**2 / 3
    assert abs(np.mean(y**2) / v - 1) < 4 * math.sqrt(0.8 / n)
    assert layer.weight_var == pytest.approx(v, rel=1e-8)
