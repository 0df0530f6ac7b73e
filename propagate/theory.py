"""Closed-form theory: mean field and the exact finite-width law of ReLU norms.

Everything here is a closed form, a finite sum or a deterministic numerical inversion; nothing is
simulated. Layers are indexed ``widths = [n_0, n_1, ..., n_L]`` (``n_0`` the input
width), layer ``l`` maps ``R^{n_{l-1}} -> R^{n_l}``. Per-layer arrays have length L and entry
``l - 1`` belongs to layer ``l``; arrays indexed ``l = 0..L`` have length L + 1 and say so.
Quantities that can over- or underflow are returned as natural logs (``log_*``); probabilities
that are always in [0, 1] are also returned plainly.

Weight-law facts (fourth moments, truncated normal), weight spectra, Jacobian moments and the
correlation map live in :mod:`propagate.theory_spectra` (re-exported lazily here, so
``from propagate.theory import marchenko_pastur`` works too).

References:
    He, Zhang, Ren & Sun 2015, arXiv:1502.01852 (mean field, He factor);
    Hanin & Rolnick 2018, arXiv:1803.01719 (length-scale fluctuations, prod(1 + 5/n));
    Lu, Shin, Su & Karniadakis 2020, arXiv:1903.06733 (dead networks);
    He et al. 2015; Hanin & Rolnick 2018 (derivations of the exact law).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache

import numpy as np
from scipy import special

from .activations import Activation
from .errors import InputError

__all__ = [
    "log_ratio_cdf",
    "log_ratio_moments",
    "log_ratio_quantiles",
    "log_second_moment_ratio",
    "log_survival",
    "mean_field",
    "neutral_scale",
    "neutral_std",
    "p_dead",
    "recommended_std",
    "second_moment_ratio",
]

# tanh's moment factors are evaluated on the true q only inside this range; below it tanh(x) = x
# to double precision, above it tanh is +-1 to double precision.
_TANH_LOG_Q_RANGE = (math.log(1e-280), math.log(1e30))


# --------------------------------------------------------------------------- validation
def _widths(widths: Sequence[int] | np.ndarray) -> np.ndarray:
    arr = np.asarray(widths)
    ok = arr.ndim == 1 and arr.size >= 2 and arr.dtype.kind in "iuf"
    if ok and arr.dtype.kind == "f":
        ok = bool(np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)))
    if not ok or np.any(arr < 1):
        raise InputError(
            f"widths {widths!r} are not allowed; give two or more integers >= 1, input width first"
        )
    return arr.astype(np.int64)


def _per_layer(
    values: float | Sequence[float] | np.ndarray, n_layers: int, name: str
) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 0:
        arr = np.full(n_layers, float(arr))
    if arr.shape != (n_layers,) or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise InputError(
            f"{name} {values!r} is not allowed; give one finite number > 0 or {n_layers} of them"
        )
    return arr


def _number(value: float, name: str, *, minimum: float = 0.0, strict: bool = False) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = math.nan
    if not math.isfinite(x) or x < minimum or (strict and x == minimum):
        relation = ">" if strict else ">="
        raise InputError(
            f"{name} {value!r} is not allowed; give a finite number {relation} {minimum}"
        )
    return x


# --------------------------------------------------------------------------- mean field
def _log_moment_factors(activation: Activation, log_q: float) -> tuple[float, float]:
    """(log c_phi(q), log c'_phi(q)) for pre-activation second moment q = exp(log_q).

    Beyond the representable range of tanh, m = c q saturates at its value at the cap and
    c' ~ q^-1/2 (the fraction of |z| inside the unsaturated band), so both are scaled from it.
    """
    if activation.is_rectifier:
        c = 0.5 * (1.0 + activation.negative_slope**2)
        return math.log(c), math.log(c)
    log_q_eval = min(max(log_q, _TANH_LOG_Q_RANGE[0]), _TANH_LOG_Q_RANGE[1])
    q = math.exp(log_q_eval)
    c, c_prime = activation.second_moment_factor(q), activation.derivative_moment(q)
    excess = max(log_q - log_q_eval, 0.0)
    log_c = math.log(c) - excess if c > 0 else -math.inf
    return log_c, (math.log(c_prime) - 0.5 * excess if c_prime > 0 else -math.inf)


def mean_field(
    widths: Sequence[int] | np.ndarray,
    weight_vars: float | Sequence[float] | np.ndarray,
    activation: Activation,
    *,
    bias_var: float | Sequence[float] | np.ndarray = 0.0,
    input_second_moment: float = 1.0,
    log_g_top: float = 0.0,
    q_given: float | Sequence[float] | np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Mean-field forward and backward second moments, all in natural-log domain.

    Forward (He et al. 2015)::

        q_l = n_{l-1} v_l m_{l-1} + s_b^2,   m_l = c_phi(q_l) q_l,   m_0 = input_second_moment
        g_L = exp(log_g_top),   d_l = c'_phi(q_l) g_l,   g_{l-1} = n_l v_l d_l
        E ||dL/dW_l||_F^2 (one sample) = (n_l d_l)(n_{l-1} m_{l-1})

    For rectifiers c_phi = c'_phi = (1 + a^2)/2 and the forward recursion is exact in expectation
    at every width; for tanh, c_phi(q) is evaluated on the true q when representable (tanh(x) ~ x
    below 1e-280, saturated above 1e30). With ReLU and zero bias a dead layer zeroes every
    derivative above it, so the exact backward means carry survival factors::

        E[g_l] = g_l * prod_{k<=l} (1 - 2^-n_k)   for 1 <= l <= L - 1,
        E[d_l] = d_l * prod_{k<=l-1} (1 - 2^-n_k),
        E[g_0] = g_0,   E[g_L] = g_L  (g_L is the probe itself, whatever the network does).

    Args:
        widths: (L + 1,) integers [n_0, ..., n_L].
        weight_vars: scalar or (L,) weight variances v_l = Var(W_l entries).
        activation: the activation of every layer (the last layer included).
        bias_var: s_b^2 >= 0, one for every layer or (L,) per layer.
        input_second_moment: m_0 = E[x_i^2] > 0.
        log_g_top: natural log of g_L (0 for the Gaussian probe; a measured value for softmax).
        q_given: scalar or (L,) values of q_l fixed by construction rather than by the weights
            (LSUV rescales every layer to unit output variance); the backward recursion still
            uses ``weight_vars``.

    Returns:
        dict of float arrays: ``log_q``, ``log_m``, ``log_d``, ``log_wgrad``, ``survival``,
        ``log_survival``, ``log_d_mean``: (L,), layer l at index l - 1; ``log_g``, ``log_g_mean``:
        (L + 1,) indexed by l = 0..L. ``survival`` is prod_{k<=l}(1 - 2^-n_k) (meaningful for
        ReLU without bias); the ``*_mean`` arrays equal the mean-field ones unless the activation
        has dead layers and bias_var == 0.

    References: He et al. 2015 (arXiv:1502.01852) eqs. for forward/backward variance.
    """
    n = _widths(widths)
    n_layers = n.size - 1
    v = _per_layer(weight_vars, n_layers, "weight_vars")
    bias_vars = np.broadcast_to(np.asarray(bias_var, dtype=float), (n_layers,))
    if not np.all(np.isfinite(bias_vars)) or np.any(bias_vars < 0):
        raise InputError(f"bias_var {bias_var!r} is not allowed; give finite numbers >= 0")
    m0 = _number(input_second_moment, "input_second_moment", strict=True)
    log_g_top = _number(log_g_top, "log_g_top", minimum=-math.inf)
    log_fan_in_gain = np.log(n[:-1] * v)  # log(n_{l-1} v_l)
    log_fan_out_gain = np.log(n[1:] * v)  # log(n_l v_l)

    log_q, log_m, log_c_prime = np.empty(n_layers), np.empty(n_layers), np.empty(n_layers)
    previous = math.log(m0)
    given = None if q_given is None else np.log(_per_layer(q_given, n_layers, "q_given"))
    for layer in range(n_layers):
        lq = float(log_fan_in_gain[layer] + previous)
        if bias_vars[layer] > 0.0:
            lq = float(np.logaddexp(lq, math.log(bias_vars[layer])))
        if given is not None:
            lq = float(given[layer])
        log_c, log_c_prime[layer] = _log_moment_factors(activation, lq)
        log_q[layer], log_m[layer] = lq, lq + log_c
        previous = log_m[layer]

    step = log_fan_out_gain + log_c_prime  # log g_{l-1} - log g_l
    log_g = np.empty(n_layers + 1)
    log_g[n_layers] = log_g_top
    log_g[:n_layers] = log_g_top + np.cumsum(step[::-1])[::-1]
    log_d = log_c_prime + log_g[1:]
    log_m_below = np.concatenate(([math.log(m0)], log_m[:-1]))
    log_wgrad = np.log(n[1:]) + log_d + np.log(n[:-1]) + log_m_below

    log_surv = log_survival(n)
    log_g_mean, log_d_mean = log_g.copy(), log_d.copy()
    if activation.has_dead_layers and not np.any(bias_vars > 0):
        log_g_mean[1:n_layers] += log_surv[:-1]
        log_d_mean[1:] += log_surv[:-1]
    return {
        "log_q": log_q,
        "log_m": log_m,
        "log_g": log_g,
        "log_d": log_d,
        "log_wgrad": log_wgrad,
        "survival": np.exp(log_surv),
        "log_survival": log_surv,
        "log_g_mean": log_g_mean,
        "log_d_mean": log_d_mean,
    }


def log_survival(widths: Sequence[int] | np.ndarray) -> np.ndarray:
    """Natural log of P(no layer dead up to depth l) = sum_{k<=l} log1p(-2^-n_k), shape (L,).

    Exact for ReLU layers with continuous symmetric weights and zero or continuous symmetric
    biases (Hanin & Rolnick 2018, exact single-input statement); log1p keeps wide layers exact.
    """
    n = _widths(widths)
    return np.cumsum(np.log1p(-np.ldexp(1.0, -n[1:])))


def p_dead(widths: Sequence[int] | np.ndarray) -> np.ndarray:
    """P(some layer k <= l is all-zero) = 1 - prod_{k<=l}(1 - 2^-n_k), shape (L,).

    Computed as -expm1(log_survival) so tiny probabilities keep full relative accuracy.
    Lu, Shin, Su & Karniadakis 2020 (arXiv:1903.06733); Hanin & Rolnick 2018.
    """
    return -np.expm1(log_survival(widths))


def recommended_std(widths: Sequence[int] | np.ndarray, activation: Activation) -> np.ndarray:
    """He-style std sqrt(gain^2 / n_{l-1}) per layer, shape (L,).

    gain^2 = 2 / (1 + a^2) for rectifiers with negative slope a (He et al. 2015, eq. 15 for PReLU),
    1 for tanh (LeCun); it keeps the mean-field second moment constant through rectifiers.
    """
    n = _widths(widths)
    if activation.is_rectifier:
        gain2 = 2.0 / (1.0 + activation.negative_slope**2)
    else:
        gain2 = 1.0
    return np.sqrt(gain2 / n[:-1])


# --------------------------------------------------------------------------- the exact law
class _LayerLaw:
    """Law of log chi2_K, K ~ Bin(n, 1/2) given K >= 1: the per-layer term of log R (section 3)."""

    _LOG_TAIL = math.log(1e-16)  # tail mass / characteristic-function level treated as zero
    _S_GRID = np.geomspace(1e-4, 1e5, 181)  # Chernoff exponents
    _T_GRID = np.geomspace(1e-3, 1e7, 301)  # frequencies for the decay bound of the cf

    def __init__(self, n: int):
        k = np.arange(1, n + 1, dtype=float)
        log_pmf = special.gammaln(n + 1.0) - special.gammaln(k + 1.0) - special.gammaln(n - k + 1.0)
        keep = log_pmf >= log_pmf.max() - 70.0  # dropped mass < n e^-70: nil in double
        self.k = k[keep]
        log_pmf = log_pmf[keep]
        self.log_p = log_pmf - special.logsumexp(log_pmf)  # conditioning on K >= 1
        p = np.exp(self.log_p)
        psi = special.psi(self.k / 2.0)
        self.mean_psi = float(np.sum(p * psi))
        self.var_psi = float(np.sum(p * (psi - self.mean_psi) ** 2))
        self.mean_trigamma = float(np.sum(p * special.polygamma(1, self.k / 2.0)))
        self.mean_log = math.log(2.0) + self.mean_psi  # E[log chi2_K | K >= 1]
        self.var_log = self.mean_trigamma + self.var_psi
        self._grids: dict[tuple[int, int], np.ndarray] = {}
        half_k = self.k[:, None] / 2.0
        lg_half_k = special.gammaln(half_k)
        # Chernoff: log E exp(+-s Y) for centred Y; +inf where the moment does not exist.
        s = self._S_GRID[None, :]
        right = special.logsumexp(self.log_p[:, None] + special.gammaln(half_k + s) - lg_half_k, 0)
        self.log_mgf_right = right + self._S_GRID * (math.log(2.0) - self.mean_log)
        left = np.full(self._S_GRID.size, np.inf)
        ok = self._S_GRID < self.k[0] / 2.0
        lg = special.gammaln(half_k - s[:, ok]) - lg_half_k
        left[ok] = special.logsumexp(self.log_p[:, None] + lg, 0) - self._S_GRID[ok] * (
            math.log(2.0) - self.mean_log
        )
        self.log_mgf_left = left
        # |cf(t)| <= sum_k p_k |Gamma(k/2 + it)| / Gamma(k/2), decreasing in t.
        log_abs = special.loggamma(half_k + 1j * self._T_GRID[None, :]).real - lg_half_k
        self.log_cf_bound = special.logsumexp(self.log_p[:, None] + log_abs, 0)

    def log_cf(self, step_exp: int, size_exp: int) -> np.ndarray:
        """Centred log characteristic function at t_j = 2 pi j / (N h), j = 0..N/2, cached."""
        key = (step_exp, size_exp)
        if key not in self._grids:
            size = 2**size_exp
            t = 2.0 * np.pi * np.arange(size // 2 + 1) / (size * 2.0**step_exp)
            out = np.empty(t.size, dtype=complex)
            half_k = self.k[:, None] / 2.0
            chunk = max(1, 2_000_000 // self.k.size)
            for start in range(0, t.size, chunk):
                tt = t[None, start : start + chunk]
                terms = self.log_p[:, None] + special.loggamma(half_k + 1j * tt)
                terms -= special.gammaln(half_k)
                peak = terms.real.max(axis=0)
                total = np.sum(np.exp(terms - peak), axis=0)
                out[start : start + chunk] = peak + np.log(total)
            out += 1j * t * (math.log(2.0) - self.mean_log)
            self._grids[key] = out
        return self._grids[key]


@cache
def _layer_law(n: int) -> _LayerLaw:
    return _LayerLaw(n)


class _GridLaw:
    """A centred law known through its cf on a periodic grid: F and f as Fourier series."""

    _FINE_GRID = 2**15  # points of the grid that brackets quantiles (Hermite start ~1e-12)
    _CDF_ROUNDING = 2.0**-50  # |F(x) - p| this small is rounding of the series sum
    _BLOCK = 32  # inner block of the direct series sums

    def __init__(self, cf: np.ndarray, step: float, size: int, lower: float, upper: float):
        self.period = step * size
        self.origin = 0.5 * (lower + upper - self.period)
        self.t = 2.0 * np.pi * np.arange(1, size // 2) / self.period
        self.coef = cf[1 : size // 2] * np.exp(-1j * self.t * self.origin)
        self.step, self.size = step, size
        # direct sums stop where the rest of the series is below 1e-18 in both F and f
        integrated = self.coef / (-1j * self.t)
        rest = np.cumsum((np.abs(integrated) + np.abs(self.coef))[::-1])[::-1] * 2.0 / self.period
        terms = int(np.count_nonzero(rest > 1e-18))
        # term k = 1 + m B + b factors as z^(1 + b) z^(m B), z = exp(-i x t_1): B + M exponentials
        # per point instead of B M, and the sums become one matrix product
        blocks = -(-terms // self._BLOCK)
        series = np.zeros((blocks * self._BLOCK, 2), dtype=complex)
        series[:terms, 0], series[:terms, 1] = integrated[:terms], self.coef[:terms]
        self._series = (
            series.reshape(blocks, self._BLOCK, 2)
            .transpose(1, 0, 2)
            .reshape(self._BLOCK, 2 * blocks)
        )  # (b, (m, F or f))
        self._t_inner = self.t[0] * np.arange(1, self._BLOCK + 1)
        self._t_outer = self.t[0] * self._BLOCK * np.arange(blocks)
        self._integrated_sum = integrated.sum()

    def on_grid(self, refine: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """F and f at origin + j step / refine, j = 0..refine N - 1, by inverse FFTs of the
        series (zero-padded: exact values at the finer points too)."""
        size = self.size * refine
        spectrum = np.zeros(size // 2 + 1, dtype=complex)
        spectrum[1 : self.size // 2] = np.conj(self.coef / (-1j * self.t))
        series = size * np.fft.irfft(spectrum, size)
        cdf = np.arange(size) / size + (series - series[0]) / self.period
        spectrum[1 : self.size // 2] = np.conj(self.coef)
        pdf = (1.0 + size * np.fft.irfft(spectrum, size)) / self.period
        return cdf, pdf

    def cdf_pdf(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """F(x) and f(x) by direct summation of the series (exact between grid points)."""
        d = np.clip(x - self.origin, 0.0, self.period)
        inner = (np.exp(-1j * np.multiply.outer(d, self._t_inner)) @ self._series).reshape(
            d.size, -1, 2
        )  # (X, M, 2)
        outer = np.exp(-1j * np.multiply.outer(d, self._t_outer))  # (X, M)
        sums = np.einsum("xm,xmc->xc", outer, inner)  # (X, 2)
        cdf = d / self.period + 2.0 / self.period * np.real(sums[:, 0] - self._integrated_sum)
        pdf = (1.0 + 2.0 * np.real(sums[:, 1])) / self.period
        return np.clip(cdf, 0.0, 1.0), pdf

    def quantile(self, probs: np.ndarray) -> np.ndarray:
        """Bracket each probability on a fine grid, start from the cubic Hermite interpolant of
        F there, then refine by Newton on the exact series to ~1e-13 relative."""
        refine = max(1, self._FINE_GRID // self.size)
        step = self.step / refine
        cdf, pdf = self.on_grid(refine)
        grid = np.maximum.accumulate(cdf)
        j = np.clip(np.searchsorted(grid, probs, side="right") - 1, 0, grid.size - 2)
        lo = self.origin + j * step
        hi = lo + step
        f0, f1 = grid[j], grid[j + 1]
        d0 = step * np.maximum(pdf[j], 0.0)  # dF/ds at s = 0 and 1, s = (x - lo) / step
        d1 = step * np.maximum(pdf[j + 1], 0.0)
        s = np.clip((probs - f0) / np.maximum(f1 - f0, 1e-300), 0.0, 1.0)
        s_lo, s_hi = np.zeros_like(s), np.ones_like(s)
        for _ in range(8):  # safeguarded Newton on the cubic: cheap, (P,) arrays
            s2, s3 = s * s, s * s * s
            value = (
                (2 * s3 - 3 * s2 + 1) * f0
                + (s3 - 2 * s2 + s) * d0
                + (-2 * s3 + 3 * s2) * f1
                + (s3 - s2) * d1
            )
            slope = (6 * s2 - 6 * s) * (f0 - f1) + (3 * s2 - 4 * s + 1) * d0 + (3 * s2 - 2 * s) * d1
            s_lo = np.where(value < probs, s, s_lo)
            s_hi = np.where(value >= probs, s, s_hi)
            newton = s - (value - probs) / np.maximum(slope, 1e-300)
            s = np.where((newton >= s_lo) & (newton <= s_hi), newton, 0.5 * (s_lo + s_hi))
        x = lo + step * s
        for _ in range(12):  # safeguarded Newton inside the bracket [lo, hi]
            cdf, pdf = self.cdf_pdf(x)
            lo = np.where(cdf < probs, x, lo)
            hi = np.where(cdf >= probs, x, hi)
            newton = x - (cdf - probs) / np.maximum(pdf, 1e-300)
            inside = (newton >= lo) & (newton <= hi)
            new_x = np.where(inside, newton, 0.5 * (lo + hi))
            # done when the step is tiny or F(x) - p is down to the series' rounding (tails)
            small = np.abs(new_x - x) <= 1e-13 * (1.0 + np.abs(x))
            if np.all(small | (np.abs(cdf - probs) <= self._CDF_ROUNDING)):
                return new_x
            x = new_x
        return x


def _exact_laws(widths: np.ndarray):
    """Yield the centred law of log R_l given alive for l = 1..L (numerical cf inversion).

    log R_l - E[log R_l | alive] is a sum of independent centred log chi2_{K_k} terms. Its cf is
    the product of per-layer cfs (log Gamma(k/2 + it) mixtures); the window comes from Chernoff
    bounds (tail mass < 1e-16 each side) and the grid step from a decay bound on |cf| (< 1e-16 at
    the Nyquist frequency), so the Fourier series is exact to ~1e-14 in the CDF.
    """
    counts: dict[int, int] = {}
    key, log_cf = None, None
    for width in widths[1:]:
        width = int(width)
        counts[width] = counts.get(width, 0) + 1
        laws = {w: _layer_law(w) for w in counts}
        log_left = sum(c * laws[w].log_mgf_left for w, c in counts.items())
        log_right = sum(c * laws[w].log_mgf_right for w, c in counts.items())
        s = _LayerLaw._S_GRID
        lower = np.max((_LayerLaw._LOG_TAIL - log_left) / s)
        upper = np.min((log_right - _LayerLaw._LOG_TAIL) / s)
        bound = sum(c * laws[w].log_cf_bound for w, c in counts.items())
        below = np.nonzero(bound <= _LayerLaw._LOG_TAIL)[0]
        if below.size == 0:
            raise InputError(f"widths {widths.tolist()} give a law too narrow to resolve")
        step_exp = math.floor(math.log2(math.pi / _LayerLaw._T_GRID[below[0]]))
        size_exp = max(6, math.ceil(math.log2((upper - lower) / 2.0**step_exp)))
        if size_exp > 22:
            raise InputError(f"widths {widths.tolist()} give a law too spread to resolve")
        if (step_exp, size_exp) != key:
            key = (step_exp, size_exp)
            log_cf = sum(c * laws[w].log_cf(*key) for w, c in counts.items())
        else:
            log_cf = log_cf + laws[width].log_cf(*key)
        with np.errstate(under="ignore"):
            cf = np.exp(log_cf)
        yield _GridLaw(cf, 2.0**step_exp, 2**size_exp, lower, upper)


def _s2_and_widths(widths, s2) -> tuple[np.ndarray, np.ndarray]:
    n = _widths(widths)
    return n, _per_layer(s2, n.size - 1, "s2")


def log_ratio_moments(
    widths: Sequence[int] | np.ndarray, s2: float | Sequence[float] | np.ndarray
) -> dict[str, np.ndarray]:
    """Moments of log R_l, R_l = ||h_l||^2 / ||x||^2, Gaussian weights N(0, s2_l / n_{l-1}), ReLU.

    Exact at every width (Hanin & Rolnick 2018)::

        E[log R_L | alive]   = sum_l log(s2_l / n_{l-1}) + log 2 + E(psi(K_l/2) | K_l >= 1)
        Var[log R_L | alive] = sum_l E(psi'(K_l/2) | K_l >= 1) + Var(psi(K_l/2) | K_l >= 1)
        log E[R_L]           = sum_l log(s2_l n_l / (2 n_{l-1}))              (dead nets count 0)
        log E[R_L^2]         = sum_l 2 log(s2_l / n_{l-1}) + log(n_l^2/4 + 5 n_l/4)

    with K_l ~ Bin(n_l, 1/2); binomial sums are evaluated in log space (gammaln), so widths up to
    ~1e6 are fine.

    Args:
        widths: (L + 1,) integers [n_0, ..., n_L].
        s2: scalar or (L,) products n_{l-1} Var(W_l entries) (2 for He).

    Returns:
        dict of (L,) arrays, cumulative over layers 1..l: ``mean`` and ``var`` (of log R_l given
        alive, natural log), ``log_mean_ratio`` (log E R_l) and ``log_mean_sq_ratio`` (log E R_l^2).
    """
    n, s2 = _s2_and_widths(widths, s2)
    laws = [_layer_law(int(w)) for w in n[1:]]
    log_scale = np.log(s2 / n[:-1])
    out = n[1:].astype(float)
    return {
        "mean": np.cumsum(log_scale + np.array([law.mean_log for law in laws])),
        "var": np.cumsum([law.var_log for law in laws]),
        "log_mean_ratio": np.cumsum(log_scale + np.log(out / 2.0)),
        "log_mean_sq_ratio": np.cumsum(2.0 * log_scale + np.log(out * out / 4.0 + 1.25 * out)),
    }


def _unconditional_probs(widths: np.ndarray, probs: np.ndarray) -> np.ndarray:
    dead = p_dead(widths)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(probs[None, :] > dead, (probs[None, :] - dead) / (1.0 - dead), np.nan)


def log_ratio_quantiles(
    widths: Sequence[int] | np.ndarray,
    s2: float | Sequence[float] | np.ndarray,
    probs: Sequence[float] | np.ndarray = (0.05, 0.5, 0.95),
    *,
    given_alive: bool = True,
) -> np.ndarray:
    """Quantiles of log R_l (natural log) under the exact Gaussian-weight ReLU law, shape (L, P).

    log R_L given alive = sum_l [log(s2_l / n_{l-1}) + log chi2_{K_l}], K_l ~ Bin(n_l, 1/2) given
    K_l >= 1, independent across layers (Hanin & Rolnick 2018). The law of the sum is obtained by
    inverting its characteristic function, prod_l E[(chi2_K)^{it}] with
    E[(chi2_k)^{it}] = 2^{it} Gamma(k/2 + it) / Gamma(k/2), on a Fourier grid sized from Chernoff
    tail bounds; the CDF is exact to ~1e-14 and quantiles are refined by Newton's method.

    Args:
        widths: (L + 1,) integers [n_0, ..., n_L].
        s2: scalar or (L,) products n_{l-1} Var(W_l entries).
        probs: (P,) probabilities strictly inside (0, 1).
        given_alive: if False, dead networks count with R = 0, i.e. log R = -inf; a quantile p is
            then -inf whenever p <= P(dead by depth l) (e.g. the median once P(dead) >= 1/2).

    Returns:
        (L, P) array; row l - 1 holds the quantiles of log R_l.
    """
    n, s2 = _s2_and_widths(widths, s2)
    p = np.asarray(probs, dtype=float)
    if p.ndim != 1 or p.size == 0 or not np.all((p > 0.0) & (p < 1.0)):
        raise InputError(f"probs {probs!r} are not allowed; give probabilities strictly in (0, 1)")
    per_layer = np.broadcast_to(p, (n.size - 1, p.size)).copy()
    if not given_alive:
        per_layer = _unconditional_probs(n, p)
    centre = log_ratio_moments(n, s2)["mean"]
    out = np.full(per_layer.shape, -np.inf)
    for layer, law in enumerate(_exact_laws(n)):
        alive = np.isfinite(per_layer[layer])
        if np.any(alive):
            out[layer, alive] = centre[layer] + law.quantile(per_layer[layer, alive])
    return out


def log_ratio_cdf(
    widths: Sequence[int] | np.ndarray,
    s2: float | Sequence[float] | np.ndarray,
    x: Sequence[float] | np.ndarray,
    *,
    given_alive: bool = True,
) -> np.ndarray:
    """P(log R_l <= x) under the exact Gaussian-weight ReLU law, shape (L, X).

    Same numerical inversion as :func:`log_ratio_quantiles` (accurate to ~1e-14 absolute).
    With ``given_alive=False`` dead networks count as log R = -inf:
    F(x) = P(dead_l) + (1 - P(dead_l)) F_alive(x).

    Args:
        widths: (L + 1,) integers [n_0, ..., n_L].
        s2: scalar or (L,) products n_{l-1} Var(W_l entries).
        x: (X,) values of the natural log of R_l = ||h_l||^2 / ||x||^2.
    """
    n, s2 = _s2_and_widths(widths, s2)
    xs = np.asarray(x, dtype=float)
    if xs.ndim != 1 or np.any(np.isnan(xs)):
        raise InputError(f"x {x!r} is not allowed; give a one-dimensional array of numbers")
    centre = log_ratio_moments(n, s2)["mean"]
    out = np.empty((n.size - 1, xs.size))
    for layer, law in enumerate(_exact_laws(n)):
        out[layer] = law.cdf_pdf(xs - centre[layer])[0]
    if not given_alive:
        dead = p_dead(n)[:, None]
        out = dead + (1.0 - dead) * out
    return out


def second_moment_ratio(widths: Sequence[int] | np.ndarray) -> np.ndarray:
    """E[R_l^2] / E[R_l]^2 = prod_{k<=l} (1 + 5/n_k) for Gaussian ReLU layers, shape (L,).

    Independent of s2 (Hanin & Rolnick 2018, arXiv:1803.01719). Returns inf
    beyond the float range; use :func:`log_second_moment_ratio` there.
    """
    with np.errstate(over="ignore"):
        return np.exp(log_second_moment_ratio(widths))


def log_second_moment_ratio(widths: Sequence[int] | np.ndarray) -> np.ndarray:
    """Natural log of prod_{k<=l} (1 + 5/n_k), shape (L,); see :func:`second_moment_ratio`."""
    n = _widths(widths)
    return np.cumsum(np.log1p(5.0 / n[1:]))


def neutral_scale(n_out: int, n_in: int) -> float:
    """s2* = (n_in / 2) exp(-E[psi(K/2) | K >= 1]), K ~ Bin(n_out, 1/2).

    The s2 = n_in Var(w) making E[log ||h_l||^2 / ||h_{l-1}||^2 | alive] = 0 for one Gaussian ReLU
    layer (Hanin & Rolnick 2018); about 2 exp(5 / (2n)) for large n, 2.980003 at (8, 8).
    """
    n = _widths([n_in, n_out])
    return float(n[0] / 2.0 * math.exp(-_layer_law(int(n[1])).mean_psi))


def neutral_std(widths: Sequence[int] | np.ndarray) -> np.ndarray:
    """Per-layer std sqrt(s2*(n_l, n_{l-1}) / n_{l-1}) of :func:`neutral_scale`, shape (L,)."""
    n = _widths(widths)
    pairs = zip(n[:-1], n[1:], strict=True)
    return np.array([math.sqrt(neutral_scale(int(o), int(i)) / i) for i, o in pairs])


# --------------------------------------------------------------------------- lazy re-export
def __getattr__(name: str):
    # theory_spectra imports this module, so its public names (its __all__) are re-exported on
    # first access (PEP 562) instead of being listed twice.
    if not name.startswith("_"):
        from . import theory_spectra

        if name in theory_spectra.__all__:
            return getattr(theory_spectra, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
