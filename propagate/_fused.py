"""Numba kernels: one pass per layer and direction for rectifier layers (imported lazily).

Only ``kernels`` imports this module, when numba is wanted; ``compile_kernels`` compiles the two
plain-Python kernels below (or loads them from numba's cache). Every kernel
works on one chunk, arrays (trials, batch, units) C-contiguous, in the working dtype, and
accumulates its sums in float64. ``reassoc`` lets LLVM vectorise those sums (the order is fixed
by the compiled code, so results are still deterministic); no-NaN/no-inf assumptions are not
made, and ``h + 0.0`` turns the -0.0 of a negative input times slope 0 into +0.0, as
``np.maximum(z, 0)`` gives.
"""

from __future__ import annotations

import numba
import numpy as np

_FASTMATH = {"reassoc", "contract"}


def rectifier_forward(z, slope, centre, mask, q, cq, zsum, sq, hsum, positive):  # pragma: no cover
    """Statistics of z, then h = rectifier(z) in place, in one pass.

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
    zs = np.empty(n)
    hs = np.empty(n)
    pc = np.empty(n, np.int64)
    for t in range(k):
        zs[:] = 0.0
        hs[:] = 0.0
        pc[:] = 0
        q_t = 0.0
        cq_t = 0.0
        for s in range(b):
            s_t = 0.0
            for i in range(n):
                v = z[t, s, i]
                x = np.float64(v)
                q_t += x * x
                d = x - centre[t, i]
                cq_t += d * d
                zs[i] += x
                up = v > 0
                mask[t, s, i] = up
                h = (v if up else v * slope) + 0.0
                z[t, s, i] = h
                y = np.float64(h)
                s_t += y * y
                hs[i] += y
                pc[i] += up
            sq[t, s] = s_t
        q[t] = q_t
        cq[t] = cq_t
        zsum[t, :] = zs
        hsum[t, :] = hs
        positive[t, :] = pc


def rectifier_backward(dh, mask, slope, g, dsq):  # pragma: no cover
    """Norms of dloss/dh, then dloss/dz = dloss/dh * phi'(z) in place, in one pass.

    Args:
        dh: (k, batch, n) gradient w.r.t. h; overwritten with the gradient w.r.t. z.
        mask: (k, batch, n) bool, z > 0.
        slope: negative-side slope in dh's dtype.
        g: (k,) out: sum of dh^2. dsq: (k, batch) out: per-sample sum of (dloss/dz)^2.
    """
    k, b, n = dh.shape
    for t in range(k):
        g_t = 0.0
        for s in range(b):
            s_t = 0.0
            for i in range(n):
                v = dh[t, s, i]
                x = np.float64(v)
                g_t += x * x
                d = (v if mask[t, s, i] else v * slope) + 0.0
                dh[t, s, i] = d
                y = np.float64(d)
                s_t += y * y
            dsq[t, s] = s_t
        g[t] = g_t


def compile_kernels(cache: bool):
    """(forward, backward) numba dispatchers; ``cache`` keeps the machine code on disk (numba
    raises at once if no cache folder is usable)."""
    options = {"nogil": True, "cache": cache, "fastmath": _FASTMATH}
    return (
        numba.njit(**options)(rectifier_forward),
        numba.njit(**options)(rectifier_backward),
    )
