"""Activations: forward map, derivative and the closed-form maps theory needs, side by side.

Every activation carries what the mean-field theory asks of it (after neural-tangents' ``stax``):

* ``second_moment_factor(q)``  c_phi(q)  = E[phi(sqrt(q) Z)^2] / q,
* ``derivative_moment(q)``     c'_phi(q) = E[phi'(sqrt(q) Z)^2],
* ``correlation_map(c, q)``    the correlation of phi(u), phi(v) for unit-correlation-c Gaussians,

with Z ~ N(0, 1). The rectifier family (ReLU, leaky ReLU, linear) has them in closed form and
independent of q; tanh uses Gauss-Hermite quadrature (probabilists' nodes).

The forward pass works in the log domain: a layer's pre-activation is held as ``z_hat`` with a
per-trial log scale, ``z = exp(log_scale) * z_hat``. For positively homogeneous activations
phi(s z) = s phi(z) for s > 0, so the scale passes through untouched and the pass is exact at any
depth. tanh is not homogeneous: it is evaluated on the true value x = s * z_hat (computed with
the scale capped at 1e30, beyond which tanh is +-1 to working precision), and the result keeps
the scale min(s, 1), exact wherever x is representable (tanh(x)/x -> 1 is used as x underflows).

References: He et al. 2015 (arXiv:1502.01852) for the rectifier factor (1 + a^2)/2;
Cho & Saul 2009 for the arc-cosine kernel; Poole et al. 2016 for the correlation map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np
from numpy.polynomial.hermite_e import hermegauss

from .errors import InputError

__all__ = ["Activation", "ACTIVATIONS", "make_activation", "gauss_hermite"]

ACTIVATIONS = ("relu", "leaky-relu", "linear", "tanh")
TANH_SCALE_CAP = 1e30
TANH_LOG_CAP = math.log(TANH_SCALE_CAP)  # beyond this log scale tanh is evaluated at the cap


@cache
def gauss_hermite(order: int = 121) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights with sum(w f(x)) ~= E f(Z), Z ~ N(0, 1) (weights already normalised)."""
    nodes, weights = hermegauss(order)
    return nodes, weights / math.sqrt(2.0 * math.pi)


def _even_gaussian_mean(f, q: float) -> float:
    """E f(sqrt(q) Z) for an even f, by adaptive quadrature split at the scale 1/sqrt(q).

    Gauss-Hermite nodes miss tanh's transition once sqrt(q) >> 1 (the integrand then varies on
    a scale 1/sqrt(q) near 0), so the half-line is split where it changes and integrated with
    scipy's adaptive rule.
    """
    from scipy.integrate import quad

    s = math.sqrt(q)

    def integrand(z: float) -> float:
        return float(f(s * z)) * math.exp(-0.5 * z * z)

    edges = sorted({0.0, min(1.0 / s, 12.0), min(6.0 / s, 12.0), min(30.0 / s, 12.0), 12.0})
    total = sum(
        quad(integrand, a, b, epsabs=0, epsrel=1e-12, limit=200)[0]
        for a, b in zip(edges[:-1], edges[1:])
        if b > a
    )
    return 2.0 * total / math.sqrt(2.0 * math.pi)


@dataclass(frozen=True)
class Activation:
    """One activation function.

    Attributes:
        name: ``relu``, ``leaky-relu``, ``linear`` or ``tanh``.
        negative_slope: slope a of the negative part for the rectifier family
            (0 for ReLU, 1 for linear); unused for tanh.
    """

    name: str
    negative_slope: float = 0.0

    @property
    def is_rectifier(self) -> bool:
        """True for phi(z) = max(z, 0) + a min(z, 0): positively homogeneous, closed forms."""
        return self.name != "tanh"

    @property
    def torch_gain(self) -> float:
        """torch.nn.init.calculate_gain for this activation (torch's table of gains)."""
        if self.name == "tanh":
            return 5.0 / 3.0
        return math.sqrt(2.0 / (1.0 + self.negative_slope**2))

    @property
    def has_kink(self) -> bool:
        """A rectifier with a != 1: phi' is 1 or a, so the backward pass needs the z > 0 mask."""
        return self.is_rectifier and self.negative_slope != 1.0

    @property
    def has_dead_layers(self) -> bool:
        """Whether a layer can output exactly zero for every unit (ReLU, a = 0)."""
        return self.is_rectifier and self.negative_slope == 0.0

    # ----------------------------------------------------------------- theory maps
    def second_moment_factor(self, q: float) -> float:
        """c_phi(q) = E[phi(sqrt(q) Z)^2] / q; (1 + a^2)/2 for rectifiers, quadrature for tanh."""
        if self.is_rectifier:
            return 0.5 * (1.0 + self.negative_slope**2)
        if q <= 1e-12:
            return 1.0 - 2.0 * q  # tanh(x)^2 = x^2 - 2x^4/3 + ..., E Z^4 = 3
        return _even_gaussian_mean(lambda u: np.tanh(u) ** 2, q) / q

    def derivative_moment(self, q: float) -> float:
        """c'_phi(q) = E[phi'(sqrt(q) Z)^2]; (1 + a^2)/2 for rectifiers, quadrature for tanh."""
        if self.is_rectifier:
            return 0.5 * (1.0 + self.negative_slope**2)
        if q <= 1e-12:
            return 1.0 - 2.0 * q  # (1 - tanh^2)^2 = 1 - 2x^2 + ..., E Z^2 = 1
        return _even_gaussian_mean(lambda u: (1.0 - np.tanh(u) ** 2) ** 2, q)

    def correlation_map(self, c: float, q: float = 1.0) -> float:
        """Correlation of phi(u), phi(v) (not mean-subtracted) for N(0, q) pairs with correlation c.

        Rectifiers in closed form from the degree-1 arc-cosine kernel
        K(c) = (sqrt(1 - c^2) + (pi - arccos c) c) / (2 pi) (per unit q):
        E[phi(u) phi(v)] = (1 + a^2) K(c) - 2 a K(-c), divided by (1 + a^2)/2.
        tanh by two-dimensional Gauss-Hermite quadrature.
        """
        c = float(np.clip(c, -1.0, 1.0))
        if self.is_rectifier:
            a = self.negative_slope

            def kernel(cc: float) -> float:
                return (math.sqrt(max(0.0, 1.0 - cc * cc)) + (math.pi - math.acos(cc)) * cc) / (
                    2.0 * math.pi
                )

            return ((1.0 + a * a) * kernel(c) - 2.0 * a * kernel(-c)) / (0.5 * (1.0 + a * a))
        x, w = gauss_hermite(61)
        s = math.sqrt(q)
        u = s * x[:, None]
        v = s * (c * x[:, None] + math.sqrt(max(0.0, 1.0 - c * c)) * x[None, :])
        ww = w[:, None] * w[None, :]
        cross = np.sum(ww * np.tanh(u) * np.tanh(v))
        second = np.sum(w * np.tanh(s * x) ** 2)
        return float(cross / second) if second > 0 else c

    # ----------------------------------------------------------------- forward/backward
    def forward(self, z_hat: np.ndarray, log_scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Apply phi to z = exp(log_scale) z_hat, in place where possible.

        Args:
            z_hat: (trials, batch, units) normalised pre-activations; overwritten.
            log_scale: (trials,) natural-log scale of z.

        Returns:
            (h_hat, log_scale_h): h = exp(log_scale_h) h_hat, h_hat shape (trials, batch, units).
        """
        if self.is_rectifier:
            a = self.negative_slope
            if a == 1.0:
                return z_hat, log_scale
            if a == 0.0:
                np.maximum(z_hat, 0, out=z_hat)
            else:
                np.multiply(z_hat, np.where(z_hat > 0, 1.0, a).astype(z_hat.dtype), out=z_hat)
            return z_hat, log_scale
        scale = np.exp(np.minimum(log_scale, TANH_LOG_CAP))
        x = z_hat * scale.astype(z_hat.dtype)[:, None, None]
        h = np.tanh(x)
        new_log = np.minimum(log_scale, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(x != 0, h / np.where(x != 0, x, 1), 1.0).astype(z_hat.dtype)
        # h = tanh(x) kept at scale min(s, 1): for s <= 1 that is h_hat = z_hat tanh(x)/x (exact
        # as x underflows); for s > 1 the scale is 1 and h_hat = tanh(x) itself
        small = (log_scale <= 0.0)[:, None, None]
        h_hat = np.where(small, z_hat * ratio, h)
        return h_hat.astype(z_hat.dtype, copy=False), new_log

    def tanh_derivative(
        self, z_hat: np.ndarray, log_scale: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """phi'(z) = 1 - tanh(z)^2 = sech(z)^2 for the true z = exp(log_scale) z_hat (tanh only).

        Returned in the log domain, so saturated units (sech^2 ~ 4 e^{-2|z|}, far below the
        working dtype's range) keep their exact relative size: ``(d_hat, log_d)`` with
        phi'(z) = exp(log_d) d_hat per trial, d_hat in (0, 1] in the working dtype.
        """
        scale = np.exp(np.minimum(log_scale, TANH_LOG_CAP))
        x = np.abs(z_hat.astype(np.float64) * scale[:, None, None])
        # log sech^2 x = log 4 - 2x - 2 log(1 + e^{-2x}), exact for every x >= 0
        log_d = math.log(4.0) - 2.0 * x - 2.0 * np.log1p(np.exp(-2.0 * x))
        top = log_d.max(axis=(1, 2))
        d_hat = np.exp(log_d - top[:, None, None]).astype(z_hat.dtype)
        return d_hat, top


def make_activation(name: str, negative_slope: float | None = None) -> Activation:
    """Validate and build an activation; ``negative_slope`` only for leaky-relu (default 0.01)."""
    key = name.strip().lower().replace("_", "-")
    aliases = {"leaky": "leaky-relu", "leakyrelu": "leaky-relu", "identity": "linear"}
    key = aliases.get(key, key)
    if key not in ACTIVATIONS:
        raise InputError(f"unknown activation {name!r}; choose one of: {', '.join(ACTIVATIONS)}")
    if negative_slope is not None:
        if not math.isfinite(negative_slope) or not 0 <= negative_slope <= 100:
            raise InputError(
                f"--negative-slope {negative_slope} is not allowed; give a number from 0 to 100"
            )
        if key != "leaky-relu":
            raise InputError(f"--negative-slope only applies to leaky-relu, not {key!r}")
    if key == "relu":
        return Activation("relu", 0.0)
    if key == "linear":
        return Activation("linear", 1.0)
    if key == "leaky-relu":
        return Activation("leaky-relu", 0.01 if negative_slope is None else float(negative_slope))
    return Activation("tanh", 0.0)
