"""Numba kernels: one pass per layer and direction for rectifier layers, and numpy's normal
sampler (imported lazily).

Only ``kernels`` imports this module, when numba is wanted; ``compile_kernels`` compiles the
plain-Python kernels below (or loads them from numba's cache). The rectifier kernels work on one
chunk, arrays (trials, batch, units) C-contiguous, in the working dtype; short sums gather in
that dtype and everything longer in float64. ``reassoc`` lets LLVM vectorise those sums (the
order is fixed by the compiled code, so results are still deterministic); no-NaN/no-inf
assumptions are not made, and adding 0 turns the -0.0 of a negative input times slope 0 into
+0.0, as ``np.maximum(z, 0)`` gives.
"""

from __future__ import annotations

import numba
import numpy as np

from .kernels import TINY_SUMSQ

_FASTMATH = {"reassoc", "contract"}


# samples per block whose per-unit sums (of z, h and z > 0) gather in the working dtype
_ROWS = 32
_TINY = TINY_SUMSQ  # a sample's sum of squares below this is redone in float64


def rectifier_forward(z, slope, centre, mask, q, cq, zsum, sq, hsum, positive):  # pragma: no cover
    """Statistics of z, then h = rectifier(z) in place, in one pass.

    Sums over one sample's units, and per unit over blocks of ``_ROWS`` samples, gather in z's
    dtype (in float32 that doubles the SIMD width, as NumPy's own float32 products do); they
    are then added up in float64. A sample's sum of h^2 under ``_TINY`` is redone in float64.

    Args:
        z: (k, batch, n) pre-activations; overwritten with h (z if z > 0 else slope * z).
        slope: negative-side slope in z's dtype (0 for ReLU).
        centre: (k, n) float64 shift for the centred second moment (the predicted batch means).
        mask: (k, batch, n) bool out: z > 0.
        q, cq: (k,) out: sum of z^2 and of (z - centre)^2 over batch and units.
        zsum, hsum: (k, n) out: batch sums of z and of h per unit.
        sq: (k, batch) out: per-sample sum of h^2.
        positive: (k, n) int64 out: per unit, how many samples have z > 0.
    """
    k, b, n = z.shape
    zero = slope - slope  # 0 in z's dtype
    zs = np.empty(n)
    hs = np.empty(n)
    pc = np.empty(n, np.int64)
    z_block = np.empty(n, z.dtype)
    h_block = np.empty(n, z.dtype)
    p_block = np.empty(n, np.int32)
    c = np.empty(n, z.dtype)
    for t in range(k):
        zs[:] = 0.0
        hs[:] = 0.0
        pc[:] = 0
        for i in range(n):
            c[i] = centre[t, i]
        q_t = 0.0
        cq_t = 0.0
        for s0 in range(0, b, _ROWS):
            z_block[:] = zero
            h_block[:] = zero
            p_block[:] = 0
            for s in range(s0, min(b, s0 + _ROWS)):
                row = z[t, s]
                up_row = mask[t, s]
                q_s = zero
                cq_s = zero
                sq_s = zero
                for i in range(n):
                    v = row[i]
                    q_s += v * v
                    d = v - c[i]
                    cq_s += d * d
                    z_block[i] += v
                    up = v > 0
                    up_row[i] = up
                    h = (v if up else v * slope) + zero
                    row[i] = h
                    sq_s += h * h
                    h_block[i] += h
                    p_block[i] += up
                q_t += q_s
                cq_t += cq_s
                sq[t, s] = sq_s if sq_s >= _TINY else _sum_squares64(row)
            for i in range(n):
                zs[i] += z_block[i]
                hs[i] += h_block[i]
                pc[i] += p_block[i]
        q[t] = q_t
        cq[t] = cq_t
        zsum[t, :] = zs
        hsum[t, :] = hs
        positive[t, :] = pc


def rectifier_backward(dh, mask, slope, g, dsq):  # pragma: no cover
    """Norms of dloss/dh, then dloss/dz = dloss/dh * phi'(z) in place, in one pass.

    A sample's sums over units gather in dh's dtype (redone in float64 under ``_TINY``), the
    rest in float64.

    Args:
        dh: (k, batch, n) gradient w.r.t. h; overwritten with the gradient w.r.t. z.
        mask: (k, batch, n) bool, z > 0.
        slope: negative-side slope in dh's dtype.
        g: (k,) out: sum of dh^2. dsq: (k, batch) out: per-sample sum of (dloss/dz)^2.
    """
    k, b, n = dh.shape
    zero = slope - slope
    for t in range(k):
        g_t = 0.0
        for s in range(b):
            row = dh[t, s]
            up_row = mask[t, s]
            g_s = zero
            d_s = zero
            for i in range(n):
                v = row[i]
                g_s += v * v
                d = (v if up_row[i] else v * slope) + zero
                row[i] = d
                d_s += d * d
            g_t += g_s
            dsq[t, s] = d_s if d_s >= _TINY else _sum_squares64(row)
        g[t] = g_t


@numba.njit(inline="always")
def _sum_squares64(row):  # pragma: no cover
    """Sum of squares of a 1-d array, accumulated in float64."""
    total = 0.0
    for v in row:
        x = np.float64(v)
        total += x * x
    return total


@numba.njit(inline="always")
def _sfc64(a, b, c, w):  # pragma: no cover
    """One step of SFC64 (numpy's ``SFC64`` bit generator): (output, a, b, c, w)."""
    out = a + b + w
    w += np.uint64(1)
    a = b ^ (b >> np.uint64(11))
    b = c + (c << np.uint64(3))
    c = ((c << np.uint64(24)) | (c >> np.uint64(40))) + out
    return out, a, b, c, w


@numba.njit(inline="always")
def _unit(word):  # pragma: no cover
    """numpy's double in [0, 1) from a 64-bit word: its top 53 bits / 2^53."""
    return np.float64(word >> np.uint64(11)) * (1.0 / 9007199254740992.0)


def normal_fill(state, k_tab, w_tab, f_tab, r, inv_r, out):  # pragma: no cover
    """Fill ``out`` with exactly what ``Generator(SFC64).standard_normal(out=out)`` writes.

    numpy's ziggurat (tables in ``_normal_tables``), compiled: about 3 ns per number here against
    numpy's own 9 ns.

    Args:
        state: (4,) uint64, the SFC64 state (a, b, c, counter) before the first draw.
        k_tab, w_tab, f_tab: (256,) ziggurat tables (uint64, float64, float64).
        r, inv_r: the tail start R and 1/R.
        out: (n,) float64 out.
    """
    a, b, c, w = state[0], state[1], state[2], state[3]
    mantissa = np.uint64(0x000FFFFFFFFFFFFF)
    for j in range(out.size):
        while True:
            word, a, b, c, w = _sfc64(a, b, c, w)
            layer = np.intp(word & np.uint64(0xFF))
            word >>= np.uint64(8)
            negative = (word & np.uint64(1)) != 0
            rabs = (word >> np.uint64(1)) & mantissa
            x = np.float64(rabs) * w_tab[layer]
            if negative:
                x = -x
            if rabs < k_tab[layer]:
                break
            if layer == 0:  # the tail beyond R, from two exponentials
                while True:
                    u1, a, b, c, w = _sfc64(a, b, c, w)
                    u2, a, b, c, w = _sfc64(a, b, c, w)
                    xx = -inv_r * np.log1p(-_unit(u1))
                    yy = -np.log1p(-_unit(u2))
                    if yy + yy > xx * xx:
                        break
                x = -(r + xx) if (rabs >> np.uint64(8)) & np.uint64(1) else r + xx
                break
            u, a, b, c, w = _sfc64(a, b, c, w)
            if (f_tab[layer - 1] - f_tab[layer]) * _unit(u) + f_tab[layer] < np.exp(-0.5 * x * x):
                break
        out[j] = x


def compile_kernels(cache: bool):
    """(forward, backward, normal_fill) numba dispatchers; ``cache`` keeps the machine code on
    disk (numba raises at once if no cache folder is usable)."""
    options = {"nogil": True, "cache": cache}
    fast = {**options, "fastmath": _FASTMATH}
    return (
        numba.njit(**fast)(rectifier_forward),
        numba.njit(**fast)(rectifier_backward),
        # exact IEEE arithmetic: no fastmath, so no fused multiply-add either
        numba.njit(**options)(normal_fill),
    )
