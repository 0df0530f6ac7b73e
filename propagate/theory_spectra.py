"""Closed-form theory of weight laws and spectra: fourth moments, MP, Jacobians, correlation map.

Companion of :mod:`propagate.theory` (same rules: closed forms only, never imports the network,
measurement or simulation modules). Holds what depends on the weight law beyond its variance
(fourth-moment recursion, truncated-normal facts), weight and Jacobian spectra, and the
correlation map. Conventions as there: ``widths = [n_0, ..., n_L]``, per-layer
arrays have length L with layer l at index l - 1, large or small values are natural logs.

References:
    Marchenko & Pastur 1967 (bulk); Johnstone 2001, Ann. Statist. 29:295, Thm 1.1 (top edge);
    Hanin 2018, arXiv:1801.03744 (Jacobian entries); Pennington, Schoenholz & Ganguli 2017,
    arXiv:1711.04735 and 2018, arXiv:1802.09979 (JJ^T spectrum); Cho & Saul 2009 and
    Poole et al. 2016 / Schoenholz et al. 2017 (correlation map); Hanin & Rolnick 2018,
    arXiv:1803.01719 (fourth moments); Pennington, Schoenholz & Ganguli 2017/2018.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special

from .activations import Activation
from .errors import InputError
from .theory import (
    _number,
    _s2_and_widths,
    _widths,
    log_second_moment_ratio,
    mean_field,
)

__all__ = [
    "GAUSSIAN_MU4",
    "TRUNCNORM_STD_2SIGMA",
    "UNIFORM_MU4",
    "fourth_moment_recursion",
    "truncnorm_mu4",
    "truncnorm_std",
    "TW1_MEAN",
    "TW1_VAR",
    "MarchenkoPastur",
    "TopEdge",
    "correlation_iterates",
    "hanin_entry_moments",
    "jacobian_mean_sq_sv",
    "johnstone_top_edge",
    "marchenko_pastur",
    "mp_cdf",
    "mp_pdf",
    "pennington_var_over_mean2",
    "quarter_circle_cdf",
    "quarter_circle_mean",
    "quarter_circle_pdf",
    "relu_correlation_asymptote",
]

TRUNCNORM_STD_2SIGMA = 0.87962566103423978
"""Standard deviation of N(0, 1) restricted to [-2, 2] (Keras/JAX truncated-normal correction)."""
UNIFORM_MU4 = 9.0 / 5.0
"""E[w^4] / E[w^2]^2 for a uniform weight law."""
GAUSSIAN_MU4 = 3.0
"""E[w^4] / E[w^2]^2 for a Gaussian weight law."""
TW1_MEAN = -1.2065335745820
"""Mean of the Tracy-Widom GOE (beta = 1) law."""
TW1_VAR = 1.6077810345810
"""Variance of the Tracy-Widom GOE (beta = 1) law."""


def _dims(n_out: int, n_in: int, var: float) -> tuple[int, int, float]:
    n = _widths([n_in, n_out])
    return int(n[1]), int(n[0]), _number(var, "var", strict=True)


# --------------------------------------------------------------------------- fourth moments
def fourth_moment_recursion(
    widths: Sequence[int] | np.ndarray,
    s2: float | Sequence[float] | np.ndarray,
    mu4: float,
    x: Sequence[float] | np.ndarray | None = None,
    *,
    input_norm4: float | None = None,
    input_sum4: float | None = None,
) -> dict[str, np.ndarray]:
    """Exact E||h_l||^4 and E sum_j h_{l,j}^4 for ReLU layers with any symmetric iid weight law.

    With v_l = s2_l / n_{l-1}, kappa = mu4 - 3, A_l = E||h_l||^4, B_l = E sum_j h_{l,j}^4
    (weights of any symmetric law at equal variance)::

        A_l = v_l^2 [ (n_l^2/4 + 5 n_l/4) A_{l-1} + (n_l kappa / 2) B_{l-1} ]
        B_l = v_l^2 [ (3 n_l / 2)          A_{l-1} + (n_l kappa / 2) B_{l-1} ]
        A_0 = ||x||^4,  B_0 = sum_j x_j^4

    For mu4 = 3 (Gaussian) the normalised second moment A_l / (E||h_l||^2)^2 is prod(1 + 5/n_k).
    Carried in log domain with a running scale; B_l <= A_l keeps every step free of cancellation.

    Args:
        widths: (L + 1,) integers [n_0, ..., n_L].
        s2: scalar or (L,) products n_{l-1} Var(W_l entries).
        mu4: E[w^4] / E[w^2]^2 >= 1 of the weight law (3 Gaussian, 9/5 uniform).
        x: (n_0,) input vector; or give ``input_norm4`` = ||x||^4 and ``input_sum4`` = sum x_j^4.

    Returns:
        dict of (L,) arrays: ``log_norm4`` (log A_l), ``log_sum4`` (log B_l), ``log_norm2``
        (log E||h_l||^2), ``log_normalized`` and ``normalized`` (A_l / (E||h_l||^2)^2; inf
        beyond the float range).

    References: Hanin & Rolnick 2018 (arXiv:1803.01719), Theorem 5 (bounds this quantity).
    """
    n, s2 = _s2_and_widths(widths, s2)
    mu4 = _number(mu4, "mu4", minimum=1.0)
    if x is not None:
        if input_norm4 is not None or input_sum4 is not None:
            raise InputError("give either x or input_norm4 and input_sum4, not both")
        xs = np.asarray(x, dtype=float)
        if xs.shape != (n[0],) or not np.all(np.isfinite(xs)) or not np.any(xs):
            raise InputError(f"x is not allowed; give a finite nonzero vector of length {n[0]}")
        top = float(np.max(np.abs(xs)))
        scaled = xs / top
        log_a = 4.0 * math.log(top) + 2.0 * math.log(float(scaled @ scaled))
        log_b = 4.0 * math.log(top) + math.log(float(np.sum(scaled**4)))
    else:
        if input_norm4 is None or input_sum4 is None:
            raise InputError("give the input x, or both input_norm4 and input_sum4")
        norm4 = _number(input_norm4, "input_norm4", strict=True)
        sum4 = _number(input_sum4, "input_sum4", strict=True)
        if not norm4 / n[0] * (1.0 - 1e-12) <= sum4 <= norm4 * (1.0 + 1e-12):
            raise InputError(
                f"input_sum4 {sum4!r} is not allowed; need ||x||^4 / n_0 <= sum x_j^4 <= ||x||^4"
            )
        log_a, log_b = math.log(norm4), math.log(sum4)

    kappa = mu4 - 3.0
    n_layers = n.size - 1
    log_input_norm4 = log_a
    log_norm4, log_sum4 = np.empty(n_layers), np.empty(n_layers)
    ratio = math.exp(log_b - log_a)  # B / A in (0, 1]
    for layer in range(n_layers):
        width, log_v = float(n[layer + 1]), math.log(s2[layer] / n[layer])
        a_next = width * width / 4.0 + 1.25 * width + 0.5 * width * kappa * ratio
        b_next = 1.5 * width + 0.5 * width * kappa * ratio
        log_a += 2.0 * log_v + math.log(a_next)
        ratio = b_next / a_next
        log_norm4[layer], log_sum4[layer] = log_a, log_a + math.log(ratio)
    log_norm2 = 0.5 * log_input_norm4 + np.cumsum(np.log(s2 * n[1:] / (2.0 * n[:-1])))
    log_normalized = log_norm4 - 2.0 * log_norm2
    with np.errstate(over="ignore"):
        normalized = np.exp(log_normalized)
    return {
        "log_norm4": log_norm4,
        "log_sum4": log_sum4,
        "log_norm2": log_norm2,
        "log_normalized": log_normalized,
        "normalized": normalized,
    }


# --------------------------------------------------------------------------- framework facts
def _truncnorm_moment_ratios(a: float) -> tuple[float, float]:
    """(E X^2, E X^4) for X ~ N(0, 1) restricted to [-a, a], via regularised incomplete gammas.

    E X^{2k} = 2^k Gamma(k + 1/2) / Gamma(1/2) * P(k + 1/2, a^2/2) / P(1/2, a^2/2), accurate for
    small a where 1 - 2 a phi(a) / (2 Phi(a) - 1) cancels.
    """
    y = 0.5 * a * a
    base = special.gammainc(0.5, y)
    return float(special.gammainc(1.5, y) / base), float(3.0 * special.gammainc(2.5, y) / base)


def truncnorm_std(a: float) -> float:
    """Std of N(0, 1) truncated to [-a, a]: sqrt(1 - 2 a phi(a) / (2 Phi(a) - 1)).

    0.87962566103423978 at a = 2 (:data:`TRUNCNORM_STD_2SIGMA`).
    """
    a = _number(a, "a", strict=True)
    if a < 1e-4:
        return a / math.sqrt(3.0) * math.sqrt(1.0 - 2.0 * a * a / 15.0)
    return math.sqrt(_truncnorm_moment_ratios(a)[0])


def truncnorm_mu4(a: float) -> float:
    """Normalised 4th moment E X^4 / (E X^2)^2 of N(0, 1) truncated to [-a, a].

    E X^2 = 1 - 2 a phi / Z, E X^4 = 3 - (2 a^3 + 6 a) phi / Z, Z = 2 Phi(a) - 1; 2.3655 at a = 2,
    9/5 (uniform) as a -> 0 and 3 as a -> inf. Evaluated through incomplete gamma ratios.
    """
    a = _number(a, "a", strict=True)
    if a < 1e-4:
        return UNIFORM_MU4 * (1.0 + 8.0 * a * a / 105.0)
    second, fourth = _truncnorm_moment_ratios(a)
    return fourth / (second * second)


# --------------------------------------------------------------------------- weight spectra
@dataclass(frozen=True)
class MarchenkoPastur:
    """Marchenko-Pastur limit for the squared singular values of an n_out x n_in iid matrix.

    Attributes:
        n_out, n_in: matrix shape; var: entry variance s^2.
        lambda_minus, lambda_plus: bulk edges s^2 (sqrt(n_in) -+ sqrt(n_out))^2.
        mean: mean of the m = min(n_in, n_out) nonzero squared singular values, s^2 max(n_in,
            n_out).
        zero_mass_wtw: mass at zero in the spectrum of W^T W (n_in x n_in), 1 - n_out/n_in or 0.
        zero_mass_wwt: mass at zero in the spectrum of W W^T (n_out x n_out), 1 - n_in/n_out or 0.
    """

    n_out: int
    n_in: int
    var: float
    lambda_minus: float
    lambda_plus: float
    mean: float
    zero_mass_wtw: float
    zero_mass_wwt: float

    def pdf(self, lam: np.ndarray | float) -> np.ndarray:
        """Density of the nonzero squared singular values; see :func:`mp_pdf`."""
        return mp_pdf(lam, self.n_out, self.n_in, self.var)

    def cdf(self, lam: np.ndarray | float) -> np.ndarray:
        """CDF of the nonzero squared singular values; see :func:`mp_cdf`."""
        return mp_cdf(lam, self.n_out, self.n_in, self.var)


def marchenko_pastur(n_out: int, n_in: int, var: float) -> MarchenkoPastur:
    """Edges, mean and zero atoms of the MP law for W (n_out x n_in) with Var(W_ij) = var.

    lambda_+- = var (sqrt(n_in) +- sqrt(n_out))^2, mean nonzero lambda = var max(n_in, n_out)
    (Marchenko & Pastur 1967). With fan-in scaling var = sigma_w^2 / n_in and q = n_in / n_out the
    edges are sigma_w^2 (1 +- q^-1/2)^2.
    """
    n_out, n_in, var = _dims(n_out, n_in, var)
    return MarchenkoPastur(
        n_out=n_out,
        n_in=n_in,
        var=var,
        lambda_minus=var * (math.sqrt(n_in) - math.sqrt(n_out)) ** 2,
        lambda_plus=var * (math.sqrt(n_in) + math.sqrt(n_out)) ** 2,
        mean=var * max(n_in, n_out),
        zero_mass_wtw=max(0.0, 1.0 - n_out / n_in),
        zero_mass_wwt=max(0.0, 1.0 - n_in / n_out),
    )


def mp_pdf(lam: np.ndarray | float, n_out: int, n_in: int, var: float) -> np.ndarray:
    """Density of the m = min(n_in, n_out) nonzero squared singular values.

    f(lambda) = sqrt((lambda_+ - lambda)(lambda - lambda_-)) / (2 pi var m lambda) on
    [lambda_-, lambda_+], 0 outside. For n_in = n_out (lambda_- = 0) it diverges like lambda^-1/2
    at 0 and is returned as inf there.
    """
    law = marchenko_pastur(n_out, n_in, var)
    x = np.asarray(lam, dtype=float)
    inside = (x >= law.lambda_minus) & (x <= law.lambda_plus)
    root = np.sqrt(np.clip((law.lambda_plus - x) * (x - law.lambda_minus), 0.0, None))
    denom = 2.0 * math.pi * law.var * min(law.n_in, law.n_out) * x
    with np.errstate(divide="ignore", invalid="ignore"):
        density = np.where(denom > 0, root / np.where(denom > 0, denom, 1.0), np.inf)
    return np.where(inside, density, 0.0)


def mp_cdf(lam: np.ndarray | float, n_out: int, n_in: int, var: float) -> np.ndarray:
    """CDF of the nonzero squared singular values, in closed form.

    With a, b = lambda_-, lambda_+, c = (a + b)/2, r = (b - a)/2 and phi = arccos((c - lambda)/r)
    (phi = 0 at a, pi at b), integrating f in the angle gives

        F(lambda) = [c phi + r sin phi - 2 sqrt(ab) arctan(sqrt(b/a) tan(phi/2))] / (2 pi var m),

    which is (phi + sin phi) / pi in the square (quarter-circle) case a = 0. Angles are taken with
    arctan2, so F is accurate to ~1e-15 absolute near both edges.
    """
    law = marchenko_pastur(n_out, n_in, var)
    a, b = law.lambda_minus, law.lambda_plus
    c, r = 0.5 * (a + b), 0.5 * (b - a)
    x = np.clip(np.asarray(lam, dtype=float), a, b)
    phi = np.arctan2(np.sqrt(np.clip((b - x) * (x - a), 0.0, None)), c - x)
    half = 0.5 * phi
    atan = np.arctan2(math.sqrt(b) * np.sin(half), math.sqrt(a) * np.cos(half))
    value = c * phi + r * np.sin(phi) - 2.0 * math.sqrt(a * b) * atan
    cdf = np.clip(value / (2.0 * math.pi * law.var * min(law.n_in, law.n_out)), 0.0, 1.0)
    return np.where(np.asarray(lam) >= b, 1.0, cdf)


def _sigma_w(sigma_w: float) -> float:
    return _number(sigma_w, "sigma_w", strict=True)


def quarter_circle_pdf(sv: np.ndarray | float, sigma_w: float) -> np.ndarray:
    """Density sqrt(4 sigma_w^2 - s^2) / (pi sigma_w^2) of the singular values s of a square matrix.

    Square n x n, Var(W_ij) = sigma_w^2 / n, limit n -> inf; support [0, 2 sigma_w] (the MP law
    with q = 1 seen through s = sqrt(lambda), where the lambda density diverges at 0).
    """
    sigma_w = _sigma_w(sigma_w)
    s = np.asarray(sv, dtype=float)
    inside = (s >= 0.0) & (s <= 2.0 * sigma_w)
    root = np.sqrt(np.clip(4.0 * sigma_w**2 - s * s, 0.0, None))
    return np.where(inside, root / (math.pi * sigma_w**2), 0.0)


def quarter_circle_cdf(sv: np.ndarray | float, sigma_w: float) -> np.ndarray:
    """Quarter-circle CDF [s sqrt(4 w^2 - s^2)/2 + 2 w^2 arcsin(s/(2w))] / (pi w^2), w = sigma_w."""
    sigma_w = _sigma_w(sigma_w)
    s = np.clip(np.asarray(sv, dtype=float), 0.0, 2.0 * sigma_w)
    root = np.sqrt(np.clip(4.0 * sigma_w**2 - s * s, 0.0, None))
    area = 0.5 * s * root + 2.0 * sigma_w**2 * np.arcsin(s / (2.0 * sigma_w))
    return np.clip(area / (math.pi * sigma_w**2), 0.0, 1.0)


def quarter_circle_mean(sigma_w: float) -> float:
    """Mean singular value 8 sigma_w / (3 pi) of the quarter-circle law."""
    return 8.0 * _sigma_w(sigma_w) / (3.0 * math.pi)


@dataclass(frozen=True)
class TopEdge:
    """Johnstone's finite-size law of lambda_max ~ centre + scale TW1 (Gaussian entries).

    Attributes: centre = var mu, scale = var sigma, mean = centre + scale E[TW1],
    std = scale sqrt(Var TW1).
    """

    centre: float
    scale: float
    mean: float
    std: float


def johnstone_top_edge(n_out: int, n_in: int, var: float) -> TopEdge:
    """Finite-size centring and scale of the largest squared singular value, Gaussian entries.

    lambda_max ~ var (mu + sigma TW1) with m = min, M = max of (n_in, n_out),
    mu = (sqrt(M - 1) + sqrt(m))^2,
    sigma = (sqrt(M - 1) + sqrt(m)) (1/sqrt(M - 1) + 1/sqrt(m))^(1/3),
    E[TW1] = -1.2065 (Johnstone 2001, Ann. Statist. 29:295, Thm 1.1, with n = M samples of a
    p = m dimensional Wishart; needs M >= 2).
    """
    n_out, n_in, var = _dims(n_out, n_in, var)
    small, big = min(n_in, n_out), max(n_in, n_out)
    if big < 2:
        raise InputError(f"shape ({n_out}, {n_in}) is not allowed; the larger side must be >= 2")
    root = math.sqrt(big - 1) + math.sqrt(small)
    centre = var * root**2
    scale = var * root * (1.0 / math.sqrt(big - 1) + 1.0 / math.sqrt(small)) ** (1.0 / 3.0)
    return TopEdge(centre, scale, centre + scale * TW1_MEAN, scale * math.sqrt(TW1_VAR))


# --------------------------------------------------------------------------- Jacobian
def jacobian_mean_sq_sv(
    widths: Sequence[int] | np.ndarray,
    weight_vars: float | Sequence[float] | np.ndarray,
    activation: Activation,
    *,
    bias_var: float = 0.0,
    input_second_moment: float = 1.0,
) -> np.ndarray:
    """Natural log of the mean squared singular value of J_l = dh_l/dx, per layer, shape (L,).

    Normalisation: the mean over the n_0 eigenvalues of J^T J (zeros included when n_l < n_0),
    i.e. E[tr(J J^T)] / n_0 = E||J u||^2 for a unit u, which is

        prod_{k<=l} n_k v_k c'_phi(q_k)

    (Hanin 2018; Pennington, Schoenholz & Ganguli 2018). Exact at every width for rectifiers
    without bias, any symmetric iid weight law (sign-flip symmetry; dead layers are already
    included); for He ReLU it is n_l / n_0, exactly 1 for constant width. For tanh it is the
    mean-field value (q_k from :func:`propagate.theory.mean_field`).
    """
    field = mean_field(
        widths,
        weight_vars,
        activation,
        bias_var=bias_var,
        input_second_moment=input_second_moment,
    )
    # g_{l-1} = n_l v_l c'_l g_l, so each step of log g is log(n_l v_l c'_l).
    return np.cumsum(field["log_g"][:-1] - field["log_g"][1:])


def pennington_var_over_mean2(depth: int, p_active: float = 0.5, s1: float = -1.0) -> float:
    """Limiting variance of the eigenvalues of J J^T over their squared mean, (m2 - m1^2)/m1^2.

    Pennington, Schoenholz & Ganguli (arXiv:1711.04735, 1802.09979), square width N -> inf:
    (m2 - m1^2)/m1^2 = L (mu_2/mu_1^2 - 1 - s_1) with phi'^2 ~ Bernoulli(p) giving
    L (1 - p)/p - L s_1. s_1 = -1 Gaussian, 0 Haar orthogonal weights; ReLU (p = 1/2): 2L
    Gaussian, L orthogonal; linear (p = 1): L and 0.

    Args:
        depth: number of layers L >= 0.
        p_active: fraction of units with phi' = 1, in (0, 1].
        s1: leading S-transform coefficient of W^T W (<= 0).
    """
    depth = _number(depth, "depth")
    if not 0.0 < p_active <= 1.0:
        raise InputError(f"p_active {p_active!r} is not allowed; give a number in (0, 1]")
    s1 = _number(s1, "s1", minimum=-math.inf)
    return depth * (1.0 - p_active) / p_active - depth * s1


def hanin_entry_moments(
    widths: Sequence[int] | np.ndarray, *, linear_output_s2: float | None = None
) -> dict[str, float]:
    """Exact moments of a Jacobian entry Z = d h_{L,q} / d x_p, Gaussian He weights, zero bias.

    All layers ReLU (Hanin 2018, arXiv:1801.03744)::

        E[Z^2] = 1/n_0,   E[Z^4] = (6/n_0^2) prod_{l=1}^{L-1} (1 + 5/n_l)

    With a linear last layer of weight variance s_out^2 / n_{L-1} (``linear_output_s2`` = s_out^2):
    E[Z^2] = s_out^2/n_0 and E[Z^4] = (3 s_out^4/n_0^2) prod_{l=1}^{L-1} (1 + 5/n_l).

    Returns:
        dict of natural logs: ``log_mean_z2``, ``log_mean_z4``, ``log_var_z2`` (of
        E[Z^4] - E[Z^2]^2) and ``log_kurtosis`` (of E[Z^4] / E[Z^2]^2).
    """
    n = _widths(widths)
    log_hidden = float(log_second_moment_ratio(n[:-1])[-1]) if n.size > 2 else 0.0
    if linear_output_s2 is None:
        log_s_out2, factor = 0.0, 6.0
    else:
        log_s_out2, factor = (
            math.log(_number(linear_output_s2, "linear_output_s2", strict=True)),
            3.0,
        )
    log_kurtosis = math.log(factor) + log_hidden
    log_mean_z2 = log_s_out2 - math.log(n[0])
    return {
        "log_mean_z2": log_mean_z2,
        "log_mean_z4": 2.0 * log_mean_z2 + log_kurtosis,
        "log_var_z2": 2.0 * log_mean_z2 + log_kurtosis + math.log1p(-math.exp(-log_kurtosis)),
        "log_kurtosis": log_kurtosis,
    }


# --------------------------------------------------------------------------- correlation map
def correlation_iterates(
    c0: float,
    depth: int,
    activation: Activation,
    q: float = 1.0,
    *,
    weight_var_times_fan_in: float | None = None,
) -> np.ndarray:
    """Infinite-width cosine c_l between h_l(x) and h_l(x'), l = 0..depth, zero bias; shape (L+1,).

    c_0 = cos(x, x'); the pre-activations of layer l + 1 have correlation c_l and second moment
    q_{l+1}, so c_{l+1} = rho(c_l, q_{l+1}) = activation.correlation_map(c_l, q_{l+1}). For
    ReLU rho is the degree-1 arc-cosine map (sqrt(1 - c^2) + (pi - arccos c) c) / pi, free of q
    (Cho & Saul 2009; Poole et al. 2016). For tanh q matters: ``q`` is q_1; without
    ``weight_var_times_fan_in`` every layer uses q, with it (sigma_w^2 = n_{l-1} v_l) q follows
    the mean field q_{l+1} = sigma_w^2 c_phi(q_l) q_l.
    """
    c = _number(c0, "c0", minimum=-1.0)
    if c > 1.0:
        raise InputError(f"c0 {c0!r} is not allowed; give a correlation in [-1, 1]")
    if isinstance(depth, bool) or not isinstance(depth, int | np.integer) or depth < 0:
        raise InputError(f"depth {depth!r} is not allowed; give an integer >= 0")
    log_q = math.log(_number(q, "q", strict=True))
    log_sigma_w2 = None
    if weight_var_times_fan_in is not None:
        log_sigma_w2 = math.log(
            _number(weight_var_times_fan_in, "weight_var_times_fan_in", strict=True)
        )
    out = np.empty(depth + 1)
    out[0] = c
    for layer in range(depth):
        q_now = math.exp(min(max(log_q, math.log(1e-280)), math.log(1e30)))
        out[layer + 1] = activation.correlation_map(out[layer], q_now)
        if log_sigma_w2 is not None and not activation.is_rectifier:
            log_q += log_sigma_w2 + math.log(activation.second_moment_factor(q_now))
    return out


def relu_correlation_asymptote(depth: np.ndarray | float) -> np.ndarray:
    """Large-depth ReLU correlation 1 - 9 pi^2 / (2 l^2).

    From eps' = eps - (2 sqrt(2) / (3 pi)) eps^(3/2) + O(eps^2) with eps = 1 - c.
    Only the leading term: convergence to it is slow (Cho & Saul 2009); compare measurements
    with :func:`correlation_iterates`, not with this. ``depth`` must be > 0.
    """
    lv = np.asarray(depth, dtype=float)
    if not np.all(np.isfinite(lv) & (lv > 0)):
        raise InputError(f"depth {depth!r} is not allowed; give numbers > 0")
    return 1.0 - 9.0 * math.pi**2 / (2.0 * lv * lv)
