"""Weight and input-output Jacobian singular values and the correlation map, beside theory.

All three measure the networks the engine draws (``network.layer_weights``, ``layer_biases``,
``batch_inputs``; trial i's numbers never depend on the number of trials or the chunking):

* **Weight spectra.** The singular values of every ``W_l = std * W_hat`` from the eigenvalues of
  the smaller Gram matrix (float64), against the Marchenko-Pastur law computed from the scheme's
  nominal entry variance and the layer's shape (never fitted), or, for orthogonal schemes, the
  atom at the gain (Marchenko & Pastur 1967).
* **Jacobian spectra.** The singular values of ``J = dh_L/dx = D_L W_L ... D_1 W_1`` per input
  and network. The product is carried through depth in stratified form
  ``J_l = Q_l diag(exp(s_l)) T_l``: Q_l has orthonormal columns living on the units active at
  layer l, s_l holds the log scales of the directions and T_l is a well-scaled square matrix (row
  maxima 1). Every few layers (and whenever a layer has fewer active units than the current
  rank) the pending product is re-orthonormalised by a QR factorisation with columns pre-sorted
  by log scale (Bai et al. 2011's pre-pivoting), so no number ever leaves the float range and a
  dense n_L x n_0 product is never formed. Units with zero derivative are dropped (exact rank
  bound from the active units). At a checkpoint one more graded QR of ``T^T diag(exp(s))`` leaves
  a row-graded triangular matrix whose singular values LAPACK's SVD returns to high relative
  accuracy (checked against 320-digit arithmetic in the tests), so log singular values are exact
  at depth 1000 under gauss 0.01 too.
* **Correlation map.** Cosines of input pairs with prescribed cos(x, y) = c0 through depth
  against the iterated arc-cosine map (Cho & Saul 2009).

Everything is natural logs internally; reported fields are log10 where values span decades.

References:
    Marchenko & Pastur 1967; Johnstone 2001 (Ann. Statist. 29:295); Pennington, Schoenholz &
    Ganguli 2017 (arXiv:1711.04735) and 2018 (arXiv:1802.09979); Hanin 2018 (arXiv:1801.03744);
    Cho & Saul 2009; Bai, Lee, Li & Xu 2011, "Stable solutions of linear systems involving long
    chain of matrix multiplications", Linear Algebra Appl. 435:659 (pre-pivoted stratification).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_limits

from . import theory, theory_spectra
from .errors import InputError
from .network import EngineConfig, Network, batch_inputs, layer_biases, layer_weights
from .results import RunResult
from .rng import TRIAL_BLOCK, Stream, block_generator

__all__ = [
    "DEFAULT_C0",
    "spectra",
    "weight_spectra",
    "jacobian_spectrum",
    "correlation_map",
    "log_singular_values",
    "mp_mean_singular_value",
]

LN10 = math.log(10.0)
DEFAULT_C0 = (-0.5, 0.0, 0.5, 0.9)
HIST_BINS = 60
_RESTRATIFY_EVERY = 3  # layers between QRs of the pending product (cond stays ~1e4 at most)
_PROBES = 8  # unit basis vectors e_1..e_p pushed through J for log||J e_i||^2
_COUPLING_TOL = 2.0**-60  # |U_ij| below this decouples two blocks of a graded triangular matrix
_BLOCK_SPREAD = 500.0  # natural-log range one scaled SVD handles (exp(-500) is a normal float)
_MAX_SWEEPS = 8  # graded QR sweeps before the last-resort split
_STATE_BUDGET = 512 << 20  # bytes of Jacobian states held by one chunk of trials
_ATOM_TOL = 1e-9  # relative distance from gain^2 that still counts as the orthogonal atom


# ================================================================================ weights
@functools.cache
def mp_mean_singular_value(n_out: int, n_in: int, var: float, nodes: int = 400) -> float:
    """Mean of the m = min(n_in, n_out) nonzero singular values under Marchenko-Pastur.

    With a, b = lambda_-, lambda_+, c = (a + b)/2, r = (b - a)/2 and lambda = c - r cos(phi),
    dF = r^2 sin^2(phi) / (2 pi var m lambda) dphi on [0, pi], so

        E[sigma] = r^2 / (2 pi var m) * int_0^pi sin^2(phi) / sqrt(lambda(phi)) dphi,

    a smooth integrand (also in the square case a = 0, where it is 8 sigma_w / (3 pi)), taken
    by Gauss-Legendre quadrature.
    """
    law = theory_spectra.marchenko_pastur(n_out, n_in, var)
    a, b = law.lambda_minus, law.lambda_plus
    c, r = 0.5 * (a + b), 0.5 * (b - a)
    x, w = np.polynomial.legendre.leggauss(nodes)
    phi = 0.5 * math.pi * (x + 1.0)
    lam = c - r * np.cos(phi)
    integral = 0.5 * math.pi * float(np.sum(w * np.sin(phi) ** 2 / np.sqrt(lam)))
    return r * r * integral / (2.0 * math.pi * law.var * min(n_in, n_out))


def _gram_eigenvalues(w: np.ndarray) -> np.ndarray:
    """(k, m) ascending squared singular values of each (n_out, n_in) matrix.

    Eigenvalues of the smaller Gram matrix (fast); they carry an absolute error ~eps lambda_max,
    so a matrix with lambda_min < 1e-10 lambda_max (cond > 1e5, a few per thousand square
    Gaussian matrices) is redone by an SVD of W itself, accurate to ~eps cond relative.
    """
    if w.shape[1] <= w.shape[2]:
        gram = np.matmul(w, w.transpose(0, 2, 1))
    else:
        gram = np.matmul(w.transpose(0, 2, 1), w)
    lam = np.linalg.eigvalsh(gram)
    for t in np.flatnonzero(lam[:, 0] < 1e-10 * lam[:, -1]):
        lam[t] = np.linalg.svd(w[t], compute_uv=False)[::-1] ** 2
    return lam


def _ks_distance(sorted_values: np.ndarray, cdf_values: np.ndarray) -> float:
    """Two-sided KS distance between the empirical cdf of sorted values and a cdf at them."""
    n = sorted_values.size
    upper = np.arange(1, n + 1) / n - cdf_values
    lower = cdf_values - np.arange(n) / n
    return float(max(upper.max(), lower.max()))


def _histogram(values: np.ndarray, lo: float, hi: float, bins: int = HIST_BINS) -> dict:
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    return {"edges": edges.tolist(), "counts": counts.tolist()}


def _weight_row(net: Network, layer: int, lam_hat: np.ndarray, w_ms: np.ndarray) -> dict:
    """One layer's weight-spectrum row from (trials, m) unit-scale Gram eigenvalues."""
    li = net.layer_inits[layer - 1]
    n_in, n_out = li.fan_in, li.fan_out
    m, big = min(n_in, n_out), max(n_in, n_out)
    # moments, standard errors and the law at unit scale, then scaled: with std near 1e+-100
    # the squares of lam would leave float64
    s2 = li.std**2
    unit_var = li.weight_var / s2
    lam_unit = np.maximum(lam_hat, 0.0)  # (T, m) unit-scale squared singular values, ascending
    lam = lam_unit * s2
    sv = np.sqrt(lam)
    trials = lam.shape[0]
    orthogonal = li.distribution == "orthogonal"
    # numerical rank as numpy.linalg.matrix_rank: sigma <= max(n_in, n_out) eps sigma_max
    floor = sv[:, -1:] * (big * np.finfo(float).eps)
    rank_deficient = np.any(sv <= floor, axis=1)
    with np.errstate(divide="ignore"):
        cond = np.where(rank_deficient, np.inf, sv[:, -1] / np.where(sv[:, 0] > 0, sv[:, 0], 1.0))
    per_trial_mean = lam_unit.mean(axis=1)
    pooled = np.sort(lam_unit, axis=None)
    row = {
        "layer": layer,
        "fan_in": n_in,
        "fan_out": n_out,
        "shape": "square" if n_in == n_out else ("wide" if n_in > n_out else "tall"),
        "distribution": li.distribution,
        "weight_var": li.weight_var,
        "weight_var_realised": float(np.mean(w_ms) * li.std**2),
        "sv_min": float(sv[:, 0].min()),
        "sv_max": float(sv[:, -1].max()),
        "sv_mean": float(sv.mean()),
        "cond": None,
        "cond_max": None,
        "rank_deficient_trials": int(rank_deficient.sum()),
        "mean_sq_sv": float(per_trial_mean.mean() * s2),
        "mean_sq_sv_se": float(per_trial_mean.std(ddof=1) / math.sqrt(trials) * s2)
        if trials > 1
        else None,
        "top_sq_sv_mean": float(lam_unit[:, -1].mean() * s2),
        "top_sq_sv_se": float(lam_unit[:, -1].std(ddof=1) / math.sqrt(trials) * s2)
        if trials > 1
        else None,
        "zero_mass": 1.0 - m / big,
    }
    finite_cond = cond[np.isfinite(cond)]
    if finite_cond.size > trials / 2:  # the median is a finite matrix
        row["cond"] = float(np.median(cond))
    if finite_cond.size == trials:
        row["cond_max"] = float(cond.max())
    if orthogonal:
        gain = li.std  # every singular value of gain * (Haar columns or rows) is the gain
        row.update(
            mp_lo=gain,
            mp_hi=gain,
            mean_sq_sv_pred=gain * gain,
            sv_mean_pred=gain,
            top_sq_sv_pred=None,
            law="atom at the gain",
        )
        rel = pooled - 1.0  # at unit scale the atom is at 1
        row["ks_mp"] = float(max(np.mean(rel < -_ATOM_TOL), np.mean(rel > _ATOM_TOL)))
    else:
        law = theory_spectra.marchenko_pastur(n_out, n_in, unit_var)
        edge = theory_spectra.johnstone_top_edge(n_out, n_in, unit_var) if big >= 2 else None
        row.update(
            mp_lo=math.sqrt(law.lambda_minus) * li.std,
            mp_hi=math.sqrt(law.lambda_plus) * li.std,
            mean_sq_sv_pred=law.mean * s2,
            sv_mean_pred=mp_mean_singular_value(n_out, n_in, unit_var) * li.std,
            top_sq_sv_pred=None if edge is None else edge.mean * s2,
            law="marchenko-pastur",
        )
        row["ks_mp"] = _ks_distance(pooled, theory_spectra.mp_cdf(pooled, n_out, n_in, unit_var))
    return row


def _weight_histogram(row: dict, lam_hat: np.ndarray, std: float) -> dict:
    sv = np.sqrt(np.maximum(lam_hat * std * std, 0.0)).ravel()
    hi = max(row["sv_max"], row["mp_hi"]) * 1.05
    if row["distribution"] == "orthogonal":  # the atom: resolve deviations of 1e-14 relative
        lo, hi = row["mp_lo"] * (1.0 - 1e-12), row["mp_hi"] * (1.0 + 1e-12)
        return _histogram(sv, lo, hi, bins=HIST_BINS + 1)  # odd: the gain is a bin's centre
    return _histogram(sv, 0.0, hi)


# ================================================================================ Jacobian
def _row_normalised(
    r: np.ndarray, log_cols: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Write r * diag(exp(log_cols)) as diag(exp(d)) @ u with every row's largest |u_ij| = 1.

    Returns (d, u, keep): only the rows of r that are not identically zero (``keep``);
    nothing is exponentiated above 0.
    """
    top = float(np.max(log_cols)) if log_cols.size else 0.0
    if log_cols.size and top - float(np.min(log_cols)) < _BLOCK_SPREAD:
        # scales within the float range: one scaling pass instead of logs of every entry
        scaled = r * np.exp(log_cols - top)[None, :]
        peak = np.max(np.abs(scaled), axis=1)
        keep = peak > 0
        with np.errstate(divide="ignore"):
            return np.log(peak[keep]) + top, scaled[keep] / peak[keep, None], keep
    with np.errstate(divide="ignore"):
        log_abs = np.log(np.abs(r)) + log_cols[None, :]
    d = np.max(log_abs, axis=1)
    keep = np.isfinite(d)
    d, log_abs, sign = d[keep], log_abs[keep], np.sign(r[keep])
    with np.errstate(under="ignore"):
        u = sign * np.exp(log_abs - d[:, None])
    return d, u, keep


def _graded_step(s: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(d, u) with sv(diag(e^s) t) = sv(diag(e^d) u), u upper triangular, rows graded.

    sv(D t) = sv(t^T D); pre-pivot the columns of t^T D by decreasing log norm, take the QR of
    the *unscaled* t^T (scaling commutes with Gram-Schmidt) and apply the scales analytically.
    """
    with np.errstate(divide="ignore"):
        key = s + np.log(np.linalg.norm(t, axis=1))
    order = np.argsort(-key, kind="stable")
    order = order[np.isfinite(key[order])]
    r = np.linalg.qr(t[order].T, mode="r")
    d, u, _ = _row_normalised(r, s[order])
    return d, u


def _blocks(u: np.ndarray) -> list[tuple[int, int]]:
    """Split points of an upper-triangular u where every coupling u_ij (i < k <= j) is tiny.

    Dropping the coupling E of [[A, E], [0, B]] changes every singular value by a relative
    factor of at most ||A^{-1} E|| = ||U11^{-1} U12|| (row scales cancel), so blocks separated
    by couplings below 2^-60 are independent to working precision.
    """
    n = u.shape[0]
    if n <= 1:
        return [(0, n)]
    a = np.abs(np.triu(u, 1))
    suffix = np.maximum.accumulate(a[:, ::-1], axis=1)[:, ::-1]  # max_{j' >= j} a[i, j']
    prefix = np.maximum.accumulate(suffix, axis=0)  # max over rows i' <= i
    coupling = prefix[np.arange(n - 1), np.arange(1, n)]  # split between k-1 and k
    cuts = [0, *(np.flatnonzero(coupling < _COUPLING_TOL) + 1).tolist(), n]
    return list(zip(cuts[:-1], cuts[1:]))


def _split_wide(d: np.ndarray, blocks: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Last resort after _MAX_SWEEPS: cut a block wider than _BLOCK_SPREAD at its largest gap.

    Not reached in practice (couplings of singular values 300 decades apart vanish after one or
    two sweeps); it only keeps the scaled SVD finite.
    """
    out = []
    stack = list(blocks)
    while stack:
        a, b = stack.pop()
        if b - a <= 1 or np.ptp(d[a:b]) <= _BLOCK_SPREAD:
            out.append((a, b))
            continue
        cut = a + 1 + int(np.argmax(np.abs(np.diff(d[a:b]))))
        stack += [(a, cut), (cut, b)]
    return sorted(out)


def log_singular_values(log_scales: np.ndarray, t: np.ndarray | None) -> np.ndarray:
    """Natural logs of the singular values of diag(exp(log_scales)) @ t, descending.

    Works for scales far outside the float range (each number stays finite). One graded QR
    step gives a row-graded upper-triangular matrix; independent blocks (couplings < 2^-60) are
    scaled by their largest row and handed to LAPACK's SVD, which is accurate to ~1e-13
    relative on such matrices (the tests check spreads of 250 decades against 320 digits).

    Args:
        log_scales: (r,) natural-log row scales.
        t: (r, c) matrix, or None for the identity.
    """
    s = np.asarray(log_scales, dtype=float)
    if t is None:
        return np.sort(s)[::-1]
    if s.size == 0:
        return s
    d, u = _graded_step(s, t)
    blocks = _blocks(u)
    for _ in range(_MAX_SWEEPS):
        # every further graded step multiplies a coupling u_ij by about sigma_j / sigma_i: repeat
        # until no coupled block spans more than the float range can scale in one go
        if all(np.ptp(d[a:b]) <= _BLOCK_SPREAD for a, b in blocks):
            break
        d, u = _graded_step(d, u)
        blocks = _blocks(u)
    out = []
    for a, b in _split_wide(d, blocks):
        top = d[a:b].max()
        with np.errstate(under="ignore"):
            block = np.exp(d[a:b] - top)[:, None] * u[a:b, a:b]
        sv = np.linalg.svd(block, compute_uv=False)
        with np.errstate(divide="ignore"):
            out.append(np.log(sv) + top)
    return np.sort(np.concatenate(out))[::-1]


class _JacobianState:
    """J_l = X diag(exp(s)) T exp(log_c) for one network and one input (see the module doc).

    X has one row per active unit of the current layer (``rows``); after a re-stratification it
    has orthonormal columns. T is square (r x r) or None (the identity of the input space).
    Probe columns y (active units x p) carry J e_1..e_p with their own log scales.
    """

    def __init__(self, n0: int):
        self.n0 = n0
        self.rows: np.ndarray | None = None  # None: the input layer (all n0 coordinates)
        self.x: np.ndarray | None = None  # None: the identity
        self.s = np.zeros(n0)
        self.t: np.ndarray | None = None
        self.log_c = 0.0
        self.pending = 0
        self.dead = False
        p = min(n0, _PROBES)
        self.y: np.ndarray | None = None  # None: e_1..e_p
        self.log_y = np.zeros(p)

    def step(self, w_hat: np.ndarray, deriv: np.ndarray, log_std: float) -> None:
        """Multiply by D W = diag(deriv) std W_hat (w_hat: (n_out, n_in), deriv: (n_out,))."""
        if self.dead:
            return
        active = np.flatnonzero(deriv)
        if active.size == 0:
            self.dead, self.x, self.t, self.y = True, None, None, None
            return
        w = w_hat[active] if self.rows is None else w_hat[np.ix_(active, self.rows)]
        gains = deriv[active]
        if not np.all(gains == 1.0):
            w = w * gains[:, None]
        x = w if self.x is None else w @ self.x
        y = w[:, : self.log_y.size] if self.y is None else w @ self.y
        norm = float(np.sqrt(np.vdot(x, x)))
        self.x = x / norm
        self.log_c += log_std + math.log(norm)
        y_norms = np.linalg.norm(y, axis=0)
        with np.errstate(divide="ignore"):
            self.log_y = self.log_y + log_std + np.log(y_norms)
        self.y = y / np.where(y_norms > 0, y_norms, 1.0)
        self.rows = active
        self.pending += 1
        if self.x.shape[0] < self.x.shape[1] or self.pending >= _RESTRATIFY_EVERY:
            self.restratify()

    def restratify(self) -> None:
        """QR of the pending product with columns pre-sorted by log scale; compress T."""
        if self.dead or self.pending == 0:
            return
        x, s = self.x, self.s + self.log_c
        with np.errstate(divide="ignore"):
            key = s + np.log(np.linalg.norm(x, axis=0))
        order = np.argsort(-key, kind="stable")
        order = order[np.isfinite(key[order])]
        q, r = np.linalg.qr(x[:, order])
        d, u, keep = _row_normalised(r, s[order])
        if not np.all(keep):  # an exactly zero row of R: that direction is gone
            q = q[:, keep]
        if self.t is None:
            t = np.zeros((d.size, self.n0))
            t[:, order] = u
        else:
            t = u @ self.t[order]
        if t.shape[1] > t.shape[0]:  # keep T square: sv(D T) = sv(D T V) for orthonormal V
            t = np.linalg.qr(t.T, mode="r").T
        self.x, self.s, self.t, self.log_c, self.pending = q, d, t, 0.0, 0

    def record(self) -> dict:
        """Log singular values (nonzero, descending) and probe norms at the current layer."""
        if self.dead:
            return {"log_sv": np.empty(0), "log_probe_sq": np.full(self.log_y.size, -np.inf)}
        self.restratify()
        return {"log_sv": log_singular_values(self.s, self.t), "log_probe_sq": 2.0 * self.log_y}


# ================================================================================ forward
def _pair_inputs(n0: int, c0: Sequence[float], pairs: int, seed: int) -> np.ndarray:
    """(len(c0) * pairs * 2, n0) inputs: pairs (x, y) with ||x||^2 = ||y||^2 = n0, cos = c0."""
    gen = block_generator(seed, Stream.PAIRS, 0, 0)
    raw = gen.standard_normal((len(c0) * pairs, 2, n0))
    u = raw[:, 0] / np.linalg.norm(raw[:, 0], axis=1, keepdims=True)
    v = raw[:, 1] - np.sum(raw[:, 1] * u, axis=1, keepdims=True) * u
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    c = np.repeat(np.asarray(c0, dtype=float), pairs)[:, None]
    x = math.sqrt(n0) * u
    y = math.sqrt(n0) * (c * u + np.sqrt(np.maximum(1.0 - c * c, 0.0)) * v)
    return np.stack([x, y], axis=1).reshape(-1, n0)


def _forward(
    net: Network,
    layer: int,
    w: np.ndarray,
    h: np.ndarray,
    log_s: np.ndarray,
    seed: int,
    t0: int,
    t1: int,
):
    """One layer of the float64 forward pass with per-sample log scales.

    h: (k, B, n_in) unit-rms activations, log_s: (k, B). Returns (h, log_s, deriv) with deriv
    (k, B, n_out) = phi'(z) at the true pre-activation (the diagonal of D_l).
    """
    li = net.layer_inits[layer - 1]
    act = net.activation
    z = np.matmul(h, w.transpose(0, 2, 1))
    rms = np.sqrt(np.mean(z * z, axis=-1))
    alive = rms > 0
    z /= np.where(alive, rms, 1.0)[..., None]
    with np.errstate(divide="ignore"):
        log_a = log_s + math.log(li.std) + np.log(rms)
    if net.bias_std > 0:
        log_b = math.log(net.bias_std)
        log_sz = 0.5 * np.logaddexp(2.0 * log_a, 2.0 * log_b)
        bias = layer_biases(net, seed, layer, t0, t1)  # (k, 1, n_out)
        z = z * np.exp(log_a - log_sz)[..., None] + bias * np.exp(log_b - log_sz)[..., None]
    else:
        log_sz = np.where(alive, log_a, 0.0)
    k, batch, n_out = z.shape
    if act.is_rectifier:
        positive = z > 0
        deriv = np.where(positive, 1.0, act.negative_slope)
        h_new = z * deriv
        return h_new, log_sz, deriv
    flat_z, flat_log = z.reshape(k * batch, 1, n_out), log_sz.reshape(k * batch)
    d_hat, log_d = act.tanh_derivative(flat_z, flat_log)
    deriv = (d_hat * np.exp(log_d)[:, None, None]).reshape(k, batch, n_out)
    h_new, log_h = act.forward(flat_z.copy(), flat_log)
    return h_new.reshape(k, batch, n_out), log_h.reshape(k, batch), deriv


def _cosines(h: np.ndarray, first: int, n_pairs: int) -> np.ndarray:
    """(k, n_pairs) cosines between rows first+2i and first+2i+1 of h; NaN if either is 0."""
    a, b = h[:, first : first + 2 * n_pairs : 2], h[:, first + 1 : first + 2 * n_pairs : 2]
    na, nb = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
    ok = (na > 0) & (nb > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.sum(a * b, axis=-1) / (na * nb)
    return np.where(ok, np.clip(cos, -1.0, 1.0), np.nan)


class _Plan:
    """What one sweep over the layers measures (shared read-only by the worker threads)."""

    def __init__(
        self, net, *, seed, weights, jac_inputs, checkpoints, pair_inputs, n_pairs, hist_layers
    ):
        self.net, self.seed = net, seed
        self.weights = weights
        self.jac_inputs = jac_inputs  # (I, n0) or None
        self.checkpoints = set(checkpoints)
        self.n_jac = 0 if jac_inputs is None else jac_inputs.shape[0]
        self.pair_inputs = pair_inputs  # (2P, n0) or None
        self.n_pairs = n_pairs
        self.hist_layers = set(hist_layers)
        parts = [a for a in (jac_inputs, pair_inputs) if a is not None]
        self.inputs = np.concatenate(parts, axis=0) if parts else None


def _run_chunk(plan: _Plan, t0: int, t1: int) -> dict:
    net, k = plan.net, t1 - t0
    depth, n0 = net.depth, net.widths[0]
    out: dict = {"lam": {}, "w_ms": np.zeros((k, depth)), "records": {}, "cos": None}
    h = log_s = None
    if plan.inputs is not None:
        x = plan.inputs
        rms = np.sqrt(np.mean(x * x, axis=1))
        ok = rms > 0
        h = np.broadcast_to(x / np.where(ok, rms, 1.0)[:, None], (k, *x.shape))
        with np.errstate(divide="ignore"):
            log_s = np.broadcast_to(np.log(rms), (k, x.shape[0]))
    states = [[_JacobianState(n0) for _ in range(plan.n_jac)] for _ in range(k)]
    if plan.n_pairs:
        out["cos"] = np.empty((k, plan.n_pairs, depth + 1))
        out["cos"][:, :, 0] = _cosines(h, plan.n_jac, plan.n_pairs)
    for layer in range(1, depth + 1):
        li = net.layer_inits[layer - 1]
        w = layer_weights(net, plan.seed, layer, t0, t1)
        if plan.weights:
            out["lam"][layer] = _gram_eigenvalues(w)
            out["w_ms"][:, layer - 1] = np.mean(w * w, axis=(1, 2))
        if h is None:
            continue
        h, log_s, deriv = _forward(net, layer, w, h, log_s, plan.seed, t0, t1)
        log_std = math.log(li.std)
        for t in range(k):
            for i in range(plan.n_jac):
                states[t][i].step(w[t], deriv[t, i], log_std)
        if layer in plan.checkpoints and plan.n_jac:
            out["records"][layer] = [
                [states[t][i].record() for i in range(plan.n_jac)] for t in range(k)
            ]
        if plan.n_pairs:
            out["cos"][:, :, layer] = _cosines(h, plan.n_jac, plan.n_pairs)
    return out


def _check_memory(net: Network, trials: int, inputs: int, pairs: int, n_c0: int) -> None:
    """Refuse, before allocating, a spectra run that cannot fit in memory.

    Per chunk: weights of the widest layer, a Jacobian state per input (at most n x n0) and the
    pair activations; across trials: the squared singular values of every layer, kept for the
    KS distances and histograms.
    """
    from .network import _available_memory

    widest = max(net.widths)
    biggest = max(a * b for a, b in zip(net.widths[:-1], net.widths[1:]))
    per_trial = 8 * (
        4 * biggest + inputs * widest * min(widest, net.widths[0]) * 3 + 2 * pairs * n_c0 * widest
    )
    kept = 8 * trials * sum(min(a, b) for a, b in zip(net.widths[:-1], net.widths[1:]))
    kept += 8 * trials * inputs * min(net.widths) * 2 * max(1, net.depth // 10)
    need = 2 * per_trial * min(trials, 8) + kept
    have = _available_memory()
    if need > 0.8 * have:
        raise InputError(
            f"this spectra run needs about {need / 2**30:.1f} GiB but {have / 2**30:.1f} GiB is "
            "available; use fewer --trials, --inputs or --pairs, or narrower layers"
        )


def _chunk_trials(net: Network, trials: int, n_jac: int) -> int:
    """Trials per chunk: a divisor of TRIAL_BLOCK (one random stream per chunk), the chunk's
    weights and Jacobian states (over-estimated as dense width^2 matrices) within budget."""
    widest = max(net.widths)
    per_trial = 8 * (2 * widest * widest + widest * max(net.widths[0], 1)) * max(n_jac, 1)
    per_trial += 8 * max(a * b for a, b in zip(net.widths[:-1], net.widths[1:])) * 2
    fit = max(1, _STATE_BUDGET // max(per_trial, 1))
    k = min(fit, TRIAL_BLOCK, max(1, -(-trials // 2)))
    return max(d for d in (1, 2, 4, 8) if d <= k)


def _sweep(plan: _Plan, trials: int, workers: int | None) -> list[dict]:
    k = _chunk_trials(plan.net, trials, plan.n_jac)
    bounds = [(t, min(trials, t + k)) for t in range(0, trials, k)]
    workers = max(1, min(workers or min(2, os.cpu_count() or 1), len(bounds)))
    # one BLAS thread per worker: LAPACK on small matrices is much slower multi-threaded here
    with threadpool_limits(limits=1, user_api="blas"):
        if workers == 1:
            return [_run_chunk(plan, *b) for b in bounds]
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(lambda b: _run_chunk(plan, *b), bounds))


# ================================================================================ theory
def _check_supported(net: Network) -> None:
    if net.init.scheme.kind == "lsuv":
        raise InputError(
            "spectra does not support the lsuv scheme (its weights are rescaled from data per "
            "network); use orthogonal, which is lsuv's pre-initialisation, or another scheme"
        )


def _expected_rank(net: Network) -> np.ndarray:
    """(L,) E[min(n_0, min_{k<=l} K_k)]: the rank of J_l when K_k units of layer k are active.

    ReLU: K_k ~ Bin(n_k, 1/2) independently given the past (every unit's pre-activation is
    continuous and symmetric given the layer below, for any symmetric law and symmetric bias),
    so P(min >= m) = prod_k P(K_k >= m) and E[min] = sum_{m=1}^{n_0} P(min >= m).
    Other activations: K_k = n_k.
    """
    from scipy import stats

    widths = np.array(net.widths[1:])
    n0 = net.widths[0]
    if not net.activation.has_dead_layers:
        return np.minimum(n0, np.minimum.accumulate(widths)).astype(float)
    m = np.arange(1, n0 + 1)
    tails = {}
    for n in set(widths.tolist()):
        with np.errstate(divide="ignore"):
            tails[n] = stats.binom.logsf(m - 1, n, 0.5)  # log P(K >= m)
    log_tail = np.cumsum(np.stack([tails[n] for n in widths.tolist()]), axis=0)  # (L, n0)
    with np.errstate(under="ignore"):
        return np.sum(np.exp(log_tail), axis=1)


def _mu2_over_mu1_sq(net: Network, log_q: float) -> float:
    """E[phi'^4] / E[phi'^2]^2 for the layer's pre-activation variance q (Pennington's mu)."""
    act = net.activation
    if act.is_rectifier:
        a2 = act.negative_slope**2
        mu1, mu2 = 0.5 * (1.0 + a2), 0.5 * (1.0 + a2 * a2)
        return mu2 / (mu1 * mu1)
    from scipy.integrate import quad

    q = math.exp(min(max(log_q, -600.0), 60.0))
    s = math.sqrt(q)

    def moment(power: int) -> float:
        def f(z: float) -> float:
            return (1.0 - math.tanh(s * z) ** 2) ** power * math.exp(-0.5 * z * z)

        edges = sorted({0.0, min(1.0 / s, 12.0), min(6.0 / s, 12.0), 12.0})
        total = sum(
            quad(f, a, b, epsabs=0, epsrel=1e-12, limit=200)[0]
            for a, b in zip(edges[:-1], edges[1:])
            if b > a
        )
        return 2.0 * total / math.sqrt(2.0 * math.pi)

    mu1 = moment(2)
    return moment(4) / (mu1 * mu1) if mu1 > 0 else math.inf


def _jacobian_theory(net: Network, m0: float) -> dict:
    """Per-layer predictions (arrays of length L, index l - 1) for the Jacobian fields."""
    widths, depth = list(net.widths), net.depth
    log_m1 = theory_spectra.jacobian_mean_sq_sv(
        widths,
        list(net.weight_vars),
        net.activation,
        bias_var=net.bias_std**2,
        input_second_moment=m0,
    )
    field = theory.mean_field(
        widths,
        list(net.weight_vars),
        net.activation,
        bias_var=net.bias_std**2,
        input_second_moment=m0,
    )
    orthogonal = net.init.distribution == "orthogonal"
    s1 = 0.0 if orthogonal else -1.0
    var_ratio = [None] * depth
    if len(set(widths)) == 1:
        if net.activation.name == "relu":
            var_ratio = [
                theory_spectra.pennington_var_over_mean2(l, 0.5, s1) for l in range(1, depth + 1)
            ]
        else:
            terms = [_mu2_over_mu1_sq(net, lq) - 1.0 - s1 for lq in field["log_q"]]
            var_ratio = np.cumsum(terms).tolist()
    n_sv = [min(widths[0], widths[l]) for l in range(1, depth + 1)]
    zero = (1.0 - _expected_rank(net) / np.array(n_sv)).tolist()
    relu_gauss = (
        net.activation.name == "relu" and net.bias_std == 0 and net.init.distribution == "normal"
    )
    log_norm = None
    if relu_gauss:
        log_norm = theory.log_ratio_moments(widths, net.weight_vars * np.array(widths[:-1]))
    dead = (
        theory.p_dead(widths)
        if net.activation.has_dead_layers and net.bias_std == 0
        else np.zeros(depth)
    )
    return {
        "log10_mean_sq_sv": log_m1 / LN10,
        "var_over_mean2": var_ratio,
        "zero_fraction": zero,
        "mean_log10_sq_norm": None if log_norm is None else log_norm["mean"] / LN10,
        "dead_fraction": dead,
    }


def _correlation_theory(net: Network, c0: float) -> np.ndarray:
    """Mean-field cosine between h_l(x), h_l(y), l = 0..L, for inputs with m_0 = 1 and cos c0.

    Zero bias and one sigma_w^2 = n_{l-1} v_l for all layers: theory_spectra.correlation_iterates.
    Otherwise the same map with biases and per-layer q: with rho the activation's correlation
    map and sw2 = sigma_{w,l+1}^2, the next pre-activations have covariance
    kappa_{l+1} = sw2 rho(c_l, q_l) m_l + s_b^2 and second moment q_{l+1} = sw2 m_l + s_b^2.
    """
    widths, depth, act = list(net.widths), net.depth, net.activation
    sigma_w2 = net.weight_vars * np.array(widths[:-1])
    if net.bias_std == 0 and np.allclose(sigma_w2, sigma_w2[0], rtol=1e-12, atol=0):
        return theory_spectra.correlation_iterates(
            c0, depth, act, q=float(sigma_w2[0]), weight_var_times_fan_in=float(sigma_w2[0])
        )
    field = theory.mean_field(
        widths, list(net.weight_vars), act, bias_var=net.bias_std**2, input_second_moment=1.0
    )
    out = np.empty(depth + 1)
    out[0] = c0
    b2 = net.bias_std**2

    def mix(c: float, log_weight_term: float) -> float:
        """(W c + b2) / (W + b2) with W = exp(log_weight_term), safe at any scale."""
        if b2 == 0.0:
            return c
        log_r = log_weight_term - math.log(b2)  # weight term over bias variance
        if log_r > 0:
            inv = math.exp(-log_r)
            return (c + inv) / (1.0 + inv)
        r = math.exp(log_r)
        return (r * c + 1.0) / (r + 1.0)

    pre = mix(c0, math.log(sigma_w2[0]))  # m_0 = 1
    for layer in range(1, depth + 1):
        q = math.exp(min(field["log_q"][layer - 1], 700.0))
        out[layer] = act.correlation_map(pre, q)
        if layer < depth:
            pre = mix(out[layer], math.log(sigma_w2[layer]) + field["log_m"][layer - 1])
    return out


# ================================================================================ summaries
def _log10_mean(logs: np.ndarray) -> float:
    """log10 of the mean of exp(logs) (natural logs, -inf allowed) over all entries."""
    logs = np.ravel(logs)
    top = np.max(logs) if logs.size else -np.inf
    if not np.isfinite(top):
        return -math.inf
    with np.errstate(under="ignore"):
        return float((top + math.log(np.mean(np.exp(logs - top)))) / LN10)


def _rel_se_of_mean(logs_per_trial: np.ndarray) -> float | None:
    """SE of mean(exp(logs)) over trials relative to that mean (scaled, no overflow)."""
    n = logs_per_trial.size
    top = np.max(logs_per_trial)
    if n < 2 or not np.isfinite(top):
        return None
    with np.errstate(under="ignore"):
        x = np.exp(logs_per_trial - top)
    return float(x.std(ddof=1) / math.sqrt(n) / x.mean())


def _logsumexp(v: np.ndarray) -> float:
    if v.size == 0:
        return -math.inf
    top = float(np.max(v))
    with np.errstate(under="ignore"):
        return top + math.log(float(np.sum(np.exp(v - top))))


def _finite_mean(values: np.ndarray, axis: int) -> np.ndarray:
    """Mean of the finite entries along ``axis`` (NaN where there are none), no warnings."""
    ok = np.isfinite(values)
    count = ok.sum(axis=axis)
    total = np.where(ok, values, 0.0).sum(axis=axis)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _mean_se(values: np.ndarray) -> tuple[float | None, float | None]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None, None
    se = float(values.std(ddof=1) / math.sqrt(values.size)) if values.size > 1 else None
    return float(values.mean()), se


def _checkpoint_row(net: Network, layer: int, records: list[list[dict]], pred: dict) -> dict:
    """Summary of one depth over (trials, inputs); per-network statistics averaged per trial."""
    n0, n_l = net.widths[0], net.widths[layer]
    n_sv = min(n0, n_l)
    trials, inputs = len(records), len(records[0])
    log_tr = np.full((trials, inputs), -np.inf)
    ratio = np.full((trials, inputs), np.nan)
    top = np.full((trials, inputs), np.nan)
    bottom = np.full((trials, inputs), np.nan)
    probe = np.full((trials, inputs), np.nan)
    zeros = np.zeros((trials, inputs))
    for t, row in enumerate(records):
        for i, rec in enumerate(row):
            lsv = rec["log_sv"]
            zeros[t, i] = (n_sv - lsv.size) / n_sv
            if lsv.size == 0:
                continue
            log_tr[t, i] = _logsumexp(2.0 * lsv)
            ratio[t, i] = n0 * math.exp(_logsumexp(4.0 * lsv) - 2.0 * log_tr[t, i]) - 1.0
            top[t, i], bottom[t, i] = lsv[0] / LN10, lsv[-1] / LN10
            probe[t, i] = float(np.mean(rec["log_probe_sq"])) / LN10
    log_mean_sq = log_tr - math.log(n0)  # log of tr(J^T J) / n0 per Jacobian
    per_trial = np.array([_log10_mean(r) for r in log_mean_sq]) * LN10
    rel_se = _rel_se_of_mean(per_trial)
    ratio_mean, ratio_se = _mean_se(_finite_mean(ratio, axis=1))
    probe_mean, probe_se = _mean_se(_finite_mean(probe, axis=1))
    alive = np.isfinite(top)
    idx = layer - 1
    return {
        "layer": layer,
        "log10_mean_sq_sv": _log10_mean(log_mean_sq),
        "log10_mean_sq_sv_se": None if rel_se is None else rel_se / LN10,
        "log10_mean_sq_sv_pred": float(pred["log10_mean_sq_sv"][idx]),
        "var_over_mean2": ratio_mean,
        "var_over_mean2_se": ratio_se,
        "var_over_mean2_pred": pred["var_over_mean2"][idx],
        "zero_fraction": float(zeros.mean()),
        "zero_fraction_pred": float(pred["zero_fraction"][idx]),
        "dead_fraction": float(np.mean(~np.isfinite(log_tr))),
        "dead_fraction_pred": float(pred["dead_fraction"][idx]),
        "log10_sv_max": float(np.mean(top[alive])) if np.any(alive) else -math.inf,
        "log10_sv_min": float(np.mean(bottom[alive])) if np.any(alive) else -math.inf,
        "mean_log10_sq_norm": probe_mean,
        "mean_log10_sq_norm_se": probe_se,
        "mean_log10_sq_norm_pred": None
        if pred["mean_log10_sq_norm"] is None
        else float(pred["mean_log10_sq_norm"][idx]),
    }


def _jacobian_histogram(layer: int, records: list[list[dict]], n_sv: int) -> dict:
    logs = [rec["log_sv"] for row in records for rec in row]
    values = np.concatenate(logs) / LN10 if logs else np.empty(0)
    total = n_sv * len(logs)
    if values.size == 0:
        return {"layer": layer, "edges": [], "counts": [], "n_zero": total, "n_total": total}
    hist = _histogram(values, math.floor(values.min() * 10) / 10, math.ceil(values.max() * 10) / 10)
    return {"layer": layer, **hist, "n_zero": int(total - values.size), "n_total": int(total)}


# ================================================================================ public API
def _checkpoints(depth: int, every: int) -> list[int]:
    return sorted(set(range(every, depth + 1, every)) | {depth})


def _default_every(depth: int) -> int:
    return max(1, math.ceil(depth / 10))


def _jacobian_inputs(net: Network, seed: int, inputs_per_trial: int, data=None) -> np.ndarray:
    cfg = EngineConfig(batch=inputs_per_trial, trials=1, seed=seed, data=data)
    x, _ = batch_inputs(net, cfg)
    return np.asarray(x, dtype=np.float64)[:inputs_per_trial]


def weight_spectra(
    net: Network,
    *,
    trials: int,
    seed: int,
    workers: int | None = None,
    histogram_layers: Sequence[int] = (),
) -> list[dict]:
    """Singular values of every layer's weights over ``trials`` networks, against theory.

    Per layer (dict): ``sv_min``, ``sv_max`` (over all trials), ``sv_mean`` (all singular
    values), ``cond`` (median over trials of sv_max/sv_min; None when most matrices are
    numerically rank-deficient, ``rank_deficient_trials`` counts them), predicted singular-value
    edges ``mp_lo``, ``mp_hi`` = sqrt(lambda_-+), ``mean_sq_sv`` (mean of the m nonzero lambda =
    sv^2, with its across-trial SE) against ``mean_sq_sv_pred`` = var max(n_in, n_out) (exact in
    expectation for any iid law), ``top_sq_sv_mean`` against Johnstone's Gaussian centring
    ``top_sq_sv_pred``, ``ks_mp`` (KS distance of the pooled lambda to the MP cdf; for
    orthogonal schemes the fraction of lambda further than 1e-9 relative from gain^2), and
    ``zero_mass`` (the atom at zero of the larger Gram matrix, 1 - m/M). Rows for the layers in
    ``histogram_layers`` carry ``hist`` (singular-value histogram, edges and counts).
    """
    _check_supported(net)
    plan = _Plan(
        net,
        seed=seed,
        weights=True,
        jac_inputs=None,
        checkpoints=(),
        pair_inputs=None,
        n_pairs=0,
        hist_layers=histogram_layers,
    )
    return _weight_rows(net, plan, _sweep(plan, trials, workers))


def _weight_rows(net: Network, plan: _Plan, parts: list[dict]) -> list[dict]:
    w_ms = np.concatenate([p["w_ms"] for p in parts], axis=0)
    rows = []
    for layer in range(1, net.depth + 1):
        lam = np.concatenate([p["lam"][layer] for p in parts], axis=0)
        row = _weight_row(net, layer, lam, w_ms[:, layer - 1])
        if layer in plan.hist_layers:
            row["hist"] = _weight_histogram(row, lam, net.layer_inits[layer - 1].std)
        rows.append(row)
    return rows


def _jacobian_summary(net: Network, plan: _Plan, parts: list[dict], every: int) -> dict:
    m0 = float(np.mean(plan.jac_inputs**2))
    pred = _jacobian_theory(net, m0 if m0 > 0 else 1.0)
    checkpoints, histograms = [], []
    for layer in sorted(plan.checkpoints):
        records = [row for p in parts for row in p["records"][layer]]
        checkpoints.append(_checkpoint_row(net, layer, records, pred))
        n_sv = min(net.widths[0], net.widths[layer])
        histograms.append(_jacobian_histogram(layer, records, n_sv))
    final = dict(checkpoints[-1])
    return {
        **final,
        "inputs_per_trial": plan.n_jac,
        "every": every,
        "input_second_moment": m0,
        "checkpoints": checkpoints,
        "histograms": histograms,
        "definitions": (
            "J = dh_L/dx including the last activation; moments over the n_0 eigenvalues of "
            "J^T J (zeros included): log10_mean_sq_sv = log10 of the mean over inputs and "
            "networks of tr(J^T J)/n_0; var_over_mean2 = per-Jacobian (n_0 tr((J^T J)^2) / "
            "tr(J^T J)^2 - 1), averaged per network then over networks; zero_fraction = "
            "exactly-zero singular values among min(n_0, n_L) (rank = min(n_0, active units of "
            "every layer)); log10_sv_max / log10_sv_min = mean over non-zero Jacobians of log10 "
            "of the largest / smallest NONZERO singular value; mean_log10_sq_norm = mean of "
            "log10 ||J e_i||^2 over e_1..e_p and non-zero Jacobians (prediction: E[log R_L | "
            "alive], Hanin 2018; Hanin & Rolnick 2018, Gaussian ReLU without bias); *_se: standard "
            "errors across networks"
        ),
    }


def jacobian_spectrum(
    net: Network,
    *,
    trials: int,
    seed: int,
    inputs_per_trial: int = 2,
    every: int | None = None,
    data=None,
    workers: int | None = None,
) -> dict:
    """Singular values of J = dh_L/dx per input and network, summarised every ``every`` layers.

    Inputs are the first ``inputs_per_trial`` of ``batch_inputs`` (shared by all networks);
    the masks D_l come from a float64 forward pass of them with the engine's weights and biases.
    Returns the final depth's fields at the top level (``log10_mean_sq_sv``, ``_pred``, ``_se``,
    ``var_over_mean2``, ``_pred``, ``_se``, ``zero_fraction``, ``_pred``, ``log10_sv_max``,
    ``log10_sv_min`` (smallest NONZERO singular value), ``dead_fraction``,
    ``mean_log10_sq_norm``), the same per checkpoint in ``checkpoints`` and a histogram of
    log10 singular values per checkpoint in ``histograms`` (edges, counts, n_zero, n_total).
    Predictions: E[tr(J^T J)/n_0] = prod_l n_l v_l c'_phi (exact for rectifiers at every
    width); Pennington et al.'s L (mu_2/mu_1^2 - 1 - s_1) for constant width (2L Gaussian, L
    orthogonal for ReLU; finite width shifts it by O(L^2/N), and it can never exceed n_0 - 1,
    so it sits below where the prediction nears that cap); the expected rank deficit
    from K_l ~ Bin(n_l, 1/2) active units (ReLU).
    """
    _check_supported(net)
    every = _default_every(net.depth) if every is None else every
    plan = _Plan(
        net,
        seed=seed,
        weights=False,
        jac_inputs=_jacobian_inputs(net, seed, inputs_per_trial, data),
        checkpoints=_checkpoints(net.depth, every),
        pair_inputs=None,
        n_pairs=0,
        hist_layers=(),
    )
    return _jacobian_summary(net, plan, _sweep(plan, trials, workers), every)


def _correlation_summary(net: Network, c0: Sequence[float], pairs: int, parts: list[dict]) -> dict:
    cos = np.concatenate([p["cos"] for p in parts], axis=0)  # (T, n_c0 * pairs, L + 1)
    trials, depth = cos.shape[0], net.depth
    cos = cos.reshape(trials, len(c0), pairs, depth + 1)
    layers = np.arange(depth + 1)
    asymptote = None
    if net.activation.name == "relu":
        asymptote = [None] + theory_spectra.relu_correlation_asymptote(
            layers[1:].astype(float)
        ).tolist()
    series = []
    for j, c in enumerate(c0):
        values = cos[:, j].reshape(trials * pairs, depth + 1)
        finite = np.isfinite(values)
        count = finite.sum(axis=0)
        mean = _finite_mean(values, axis=0)
        per_trial = _finite_mean(cos[:, j], axis=1)  # (T, L + 1): networks are the unit
        ok = np.isfinite(per_trial)
        n_ok = ok.sum(axis=0)
        sd = np.array(
            [
                np.std(per_trial[ok[:, l], l], ddof=1) if n_ok[l] > 1 else np.nan
                for l in range(depth + 1)
            ]
        )
        se = sd / np.sqrt(np.maximum(n_ok, 1))
        lo = np.array(
            [
                np.percentile(values[finite[:, l], l], 5) if count[l] else np.nan
                for l in range(depth + 1)
            ]
        )
        hi = np.array(
            [
                np.percentile(values[finite[:, l], l], 95) if count[l] else np.nan
                for l in range(depth + 1)
            ]
        )
        pred = _correlation_theory(net, float(c))
        series.append(
            {
                "c0": float(c),
                "mean": mean.tolist(),
                "se": se.tolist(),
                "p05": lo.tolist(),
                "p95": hi.tolist(),
                "pred": pred.tolist(),
                "dead_pairs": int(np.sum(~finite[:, -1])),
                "max_abs_error": float(np.max(np.abs(mean - pred)[count > 0]))
                if np.any(count)
                else None,
            }
        )
    return {
        "pairs": pairs,
        "layers": layers.tolist(),
        "series": series,
        "asymptote": asymptote,
        "definitions": (
            "cosine between h_l(x) and h_l(y) (not mean-subtracted) for input pairs with "
            "||x||^2 = ||y||^2 = n_0 and cos(x, y) = c0, shared by all networks; mean, SE "
            "(across networks) and 5-95 % band over networks and pairs; pred = iterated "
            "correlation map (arc-cosine for rectifiers, quadrature for tanh; with bias: the "
            "biased map); asymptote = 1 - 9 pi^2 / (2 l^2) (ReLU only, approached slowly)"
        ),
    }


def correlation_map(
    net: Network,
    *,
    trials: int,
    seed: int,
    pairs: int = 4,
    c0: Sequence[float] = DEFAULT_C0,
    workers: int | None = None,
) -> dict:
    """Cosine similarity of input pairs through depth against the iterated correlation map.

    For each c0, ``pairs`` input pairs (x, y) with cos(x, y) = c0 exactly and per-unit second
    moment 1 (drawn from the seed, shared by all networks). Returns ``layers`` (0..L) and per c0
    a ``series`` entry with the measured ``mean``, ``se``, ``p05``, ``p95`` and the prediction
    ``pred`` (theory_spectra.correlation_iterates), plus the ReLU ``asymptote`` 1 - 9 pi^2/(2l^2).
    """
    _check_supported(net)
    if net.widths[0] < 2:
        raise InputError(
            "the correlation map needs an input width >= 2 (pairs of distinct directions)"
        )
    plan = _Plan(
        net,
        seed=seed,
        weights=False,
        jac_inputs=None,
        checkpoints=(),
        pair_inputs=_pair_inputs(net.widths[0], c0, pairs, seed),
        n_pairs=len(c0) * pairs,
        hist_layers=(),
    )
    return _correlation_summary(net, c0, pairs, _sweep(plan, trials, workers))


def _check_c0(values) -> tuple[float, ...]:
    if isinstance(values, str):
        items = [v.strip() for v in values.split(",") if v.strip()]
    else:
        items = list(values)
    if not items:
        raise InputError("--c0 is empty; give correlations in [-1, 1], e.g. 0,0.5,0.9")
    out = []
    for item in items:
        try:
            c = float(item)
        except (TypeError, ValueError):
            raise InputError(f"--c0 entry {item!r} is not a number") from None
        if not (math.isfinite(c) and -1.0 <= c <= 1.0):
            raise InputError(f"--c0 entry {item!r} is not allowed; give a correlation in [-1, 1]")
        out.append(c)
    return tuple(out)


def spectra(
    *,
    depth: int | None = None,
    fan_in: int | None = None,
    widths=None,
    scheme: str = "he-normal",
    activation: str = "relu",
    negative_slope: float | None = None,
    bias_std: float = 0.0,
    dist: str | None = None,
    gain: float | None = None,
    mode: str | None = None,
    std: float | None = None,
    trunc_bounds=None,
    trials: int = 16,
    seed: int = 0,
    inputs: int = 2,
    every: int | None = None,
    pairs: int = 4,
    c0: Sequence[float] | str = DEFAULT_C0,
    data=None,
    standardize: bool = True,
    workers: int | None = None,
) -> RunResult:
    """Weight spectra, Jacobian spectra and the correlation map of one set-up in one sweep.

    Architecture and scheme arguments are those of :func:`propagate.run`. ``trials``
    independent networks; ``inputs`` Jacobian inputs per network (the first of
    ``batch_inputs``); checkpoints every ``every`` layers and at the last (default: about ten);
    ``pairs`` input pairs per value in ``c0`` for the correlation map (0: skip it). Each layer's
    weights are drawn once and serve all three measurements.

    Returns:
        RunResult(kind="spectra"): ``layers`` as :func:`weight_spectra` (``hist`` at the
        checkpoint layers), ``extra["jacobian"]`` as :func:`jacobian_spectrum`,
        ``extra["correlation"]`` as :func:`correlation_map` (None when pairs = 0).
    """
    from . import __version__
    from .api import _init_config, build_network, check_positive_int, network_args
    from .data import load_data

    net = build_network(**network_args(locals()))
    _check_supported(net)
    trials = check_positive_int("--trials", trials)
    seed = check_positive_int("--seed", seed, minimum=0)
    inputs = check_positive_int("--inputs", inputs)
    every = _default_every(net.depth) if every is None else check_positive_int("--every", every)
    pairs = check_positive_int("--pairs", pairs, minimum=0)
    c0 = _check_c0(c0)
    if workers is not None:
        workers = check_positive_int("--workers", workers)
    dataset = load_data(data, standardize_features=standardize) if isinstance(data, str) else data
    if dataset is not None:
        if dataset.n_features != net.widths[0]:
            raise InputError(
                f"--data {dataset.name!r} has {dataset.n_features} features but the network's "
                f"input width is {net.widths[0]}; use --fan-in {dataset.n_features}"
            )
        inputs = min(inputs, dataset.n_samples)
    if pairs and net.widths[0] < 2:
        pairs = 0  # no pair of distinct directions in one dimension
    _check_memory(net, trials, inputs, pairs, len(c0))
    checkpoints = _checkpoints(net.depth, every)
    plan = _Plan(
        net,
        seed=seed,
        weights=True,
        jac_inputs=_jacobian_inputs(net, seed, inputs, dataset),
        checkpoints=checkpoints,
        pair_inputs=_pair_inputs(net.widths[0], c0, pairs, seed) if pairs else None,
        n_pairs=len(c0) * pairs,
        hist_layers=sorted({1, *checkpoints}),
    )
    try:
        parts = _sweep(plan, trials, workers)
    except MemoryError:
        raise InputError(
            f"spectra ran out of memory for widths up to {max(net.widths)} with {trials} "
            "networks; use fewer --trials or --inputs, or narrower layers"
        ) from None
    layers = _weight_rows(net, plan, parts)
    jacobian = _jacobian_summary(net, plan, parts, every)
    correlation = _correlation_summary(net, c0, pairs, parts) if pairs else None
    summary = _summary(net, layers, jacobian, correlation)
    config = {
        "package": "propagate-init",
        "version": __version__,
        "widths": list(net.widths),
        "depth": net.depth,
        "activation": net.activation.name,
        "negative_slope": net.activation.negative_slope,
        "bias_std": net.bias_std,
        **_init_config(net),
        "weight_var": [li.weight_var for li in net.layer_inits],
        "weight_std": [li.std for li in net.layer_inits],
        "trials": trials,
        "seed": seed,
        "inputs_per_trial": inputs,
        "every": every,
        "pairs": pairs,
        "c0": list(c0),
        "dtype": "float64",
        "data": None if dataset is None else dataset.name,
        "standardized": None if dataset is None else dataset.standardized,
        "rng": "SFC64 per (seed, stream, layer, block of trials); see propagate.rng",
    }
    return RunResult(
        config=config,
        layers=layers,
        summary=summary,
        kind="spectra",
        extra={"jacobian": jacobian, "correlation": correlation},
    )


def _summary(net: Network, layers: list[dict], jac: dict, corr: dict | None) -> dict:
    ks = np.array([row["ks_mp"] for row in layers])
    ratio = np.array([row["mean_sq_sv"] / row["mean_sq_sv_pred"] for row in layers])
    law = layers[0]["law"]
    law_text = "the Marchenko-Pastur law" if law == "marchenko-pastur" else f"the {law}"
    words = [
        f"Weights: singular values against {law_text} (predicted from the nominal variance, "
        f"not fitted): KS distance median {np.median(ks):.3g}, max {ks.max():.3g}; mean "
        f"squared singular value / predicted {ratio.mean():.4f} (mean over layers).",
        f"Jacobian at depth {jac['layer']}: log10 mean squared singular value "
        f"{jac['log10_mean_sq_sv']:.2f} (predicted {jac['log10_mean_sq_sv_pred']:.2f}).",
    ]
    if jac["var_over_mean2"] is not None and jac["var_over_mean2_pred"] is not None:
        n0, depth = net.widths[0], jac["layer"]
        regime = (
            "finite width adds O(L^2/N)"
            if depth * depth < n0
            else f"L^2/N = {depth * depth / n0:.3g}: far from that limit, and the ratio cannot "
            f"exceed n_0 - 1 = {n0 - 1}"
        )
        words.append(
            f"Variance/mean^2 of the squared singular values {jac['var_over_mean2']:.3g} "
            f"(Pennington's infinite-width limit {jac['var_over_mean2_pred']:.3g}; {regime})."
        )
    warnings = []
    if jac["dead_fraction"] > 0:
        warnings.append(
            f"{100 * jac['dead_fraction']:.1f}% of the Jacobians are identically "
            "zero (a ReLU layer with no active unit)"
        )
    deficient = sum(row["rank_deficient_trials"] for row in layers)
    if deficient:
        warnings.append(
            f"{deficient} weight matrices are numerically rank-deficient: their "
            "condition number is infinite (reported as null)"
        )
    out = {
        "weights": {
            "law": law,
            "ks_mp_median": float(np.median(ks)),
            "ks_mp_max": float(ks.max()),
            "mean_sq_sv_over_pred": float(ratio.mean()),
        },
        "jacobian": {
            key: jac[key]
            for key in (
                "layer",
                "log10_mean_sq_sv",
                "log10_mean_sq_sv_pred",
                "var_over_mean2",
                "var_over_mean2_pred",
                "zero_fraction",
                "log10_sv_max",
                "log10_sv_min",
            )
        },
        "message": " ".join(words),
        "warnings": warnings,
    }
    if corr is not None:
        out["correlation"] = {
            "max_abs_error": max((s["max_abs_error"] or 0.0) for s in corr["series"]),
        }
    return out
