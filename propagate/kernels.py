"""Who runs a rectifier layer's memory-bound passes: NumPy, or fused numba kernels.

After each product the engine needs, per layer, the pre-activation norms, the ReLU mask, the
ReLU itself, post-activation norms, batch sums and counts, and backward the gradient norms, the
mask multiply and the per-sample norms. NumPy spends one pass over the activations on each (nine
per layer); in float32 those passes cost as much as the two products. With the optional ``fast``
extra (``pip install 'propagate-init[fast]'``, which brings numba) one compiled pass does the
forward work and one the backward (short sums in the working dtype, the rest in float64), and
numpy's standard normals come from a compiled copy of its sampler: the same numbers, 3x faster.

numba costs about 0.5 s once per process (import and loading its cached machine code; a few
seconds the very first time, while compiling), so ``auto`` uses it only for networks of at
least ``AUTO_MIN_ELEMENTS`` activation entries each (batch x (n_1 + ... + n_L)): at the default
100 trials that is where the start-up is repaid. The choice depends on one network's shape
alone: never on the number of trials (trial i's numbers are the same at any --trials, to the
bit), nor on what ran before in the process. Both paths give the same statistics to rounding: in
float64 to 1e-9 (natural-log units, tested); in float32 to float32's own accuracy, i.e. as
closely as a float32 run matches a float64 one: 1e-5 in shallow stacks (tested); with depth the
rounding accumulates, and a unit whose pre-activation rounds across 0 flips, so single networks
drift apart (~0.02 in ln at depth 30-100; up to ~1.5 in ln for some networks at depth 2000,
width 16, where float32 and float64 differ as much). Fused kernels cover relu and
leaky-relu; linear and tanh layers always use NumPy.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import threading
from contextlib import contextmanager

import numpy as np

from .errors import InputError

__all__ = [
    "KERNELS",
    "AUTO_MIN_ELEMENTS",
    "numba_installed",
    "FusedPasses",
    "KernelsUnavailable",
    "check",
    "choose",
]

KERNELS = ("auto", "numpy", "numba")
# batch x (n_1 + ... + n_L) of one network from which ``auto`` takes numba: numba's ~0.5 s
# start-up is repaid from about 4e8 entries in a run (it saves ~1.1 ns of wall time per entry
# in float32, ~1.5 ns in float64; benchmarks/RESULTS.md), i.e. 100 trials (the default) of this
# size; the threshold is per network so that trial i's rounding never depends on --trials
AUTO_MIN_ELEMENTS = 4e6

# a sample's float32 sum of squares below this is redone in float64, by both paths: squares of
# entries under ~1e-19 underflow, and a live input far smaller than the others would read as dead
TINY_SUMSQ = 1e-25

_LOADED: dict[str, object] = {}


def numba_installed() -> bool:
    return importlib.util.find_spec("numba") is not None


class FusedPasses:
    """The fused forward and backward passes of a rectifier layer, and a compiled copy of
    numpy's standard-normal sampler (numba)."""

    def __init__(self, forward, backward, normal_fill) -> None:
        self._forward, self._backward, self._normal_fill = forward, backward, normal_fill
        from . import _normal_tables as tables

        self._tables = (
            np.array(tables.K, dtype=np.uint64),
            np.array(tables.W),
            np.array(tables.F),
            tables.R,
            tables.INV_R,
        )
        self.exact_normals = True  # set by check_normals

    def normals(self, bit_generator, out: np.ndarray) -> None:
        """Fill the C-contiguous ``out`` with exactly the numbers
        ``np.random.Generator(bit_generator).standard_normal(out=out)`` writes (SFC64 only;
        ``bit_generator`` itself is not advanced); a float32 ``out`` gets them rounded, as
        ``astype`` rounds."""
        if not isinstance(bit_generator, np.random.SFC64):
            raise TypeError(f"the compiled sampler replays SFC64, not {type(bit_generator)}")
        state = np.array(bit_generator.state["state"]["state"], dtype=np.uint64)
        self._normal_fill(state, *self._tables, out.reshape(-1))

    def check_normals(self) -> bool:
        """Whether the compiled sampler reproduces this numpy's numbers (2^16 draws); sets
        ``exact_normals``. A numpy that changed its algorithm would fail, and NumPy's own
        sampler is then used."""
        seq = np.random.SeedSequence(20261203, spawn_key=(99,))
        expected = np.random.Generator(np.random.SFC64(seq)).standard_normal(1 << 16)
        got = np.empty_like(expected)
        self.normals(np.random.SFC64(seq), got)
        self.exact_normals = bool(np.array_equal(got, expected))
        return self.exact_normals

    def forward(self, z, slope, centre, mask):
        """Fused statistics and rectifier; see ``_fused.rectifier_forward``.

        Args:
            z: (k, batch, n) pre-activations, overwritten with h. slope: negative-side slope.
            centre: (k, n) float64 predicted batch means. mask: (k, batch, n) bool out.

        Returns:
            dict of float64 arrays: ``q`` (k,) sum z^2; ``var_sum`` (k,) sum of squared
            deviations from the exact batch means; ``sq`` (k, batch) per-sample sum h^2;
            ``hsum`` (k, n) batch sums of h; ``positive`` (k, n) int64 counts of z > 0.
        """
        k, b, n = z.shape
        q, cq = np.empty(k), np.empty(k)
        zsum, hsum = np.empty((k, n)), np.empty((k, n))
        sq = np.empty((k, b))
        positive = np.empty((k, n), dtype=np.int64)
        centre = np.ascontiguousarray(centre, dtype=np.float64)
        self._forward(z, z.dtype.type(slope), centre, mask, q, cq, zsum, sq, hsum, positive)
        # sum (z - c)^2 about the predicted means c, corrected to the exact means m = zsum / b:
        # sum (z - m)^2 = sum (z - c)^2 - b sum_i (m_i - c_i)^2, with no cancellation since
        # c is within rounding of m
        offset = zsum / b - centre
        var_sum = np.maximum(cq - b * np.einsum("tn,tn->t", offset, offset), 0.0)
        return {"q": q, "var_sum": var_sum, "sq": sq, "hsum": hsum, "positive": positive}

    def backward(self, dh, mask, slope):
        """Fused gradient norms and mask multiply: ((k,) sum dh^2, (k, batch) per-sample sum of
        (dloss/dz)^2); ``dh`` becomes dloss/dz in place."""
        k, b, _ = dh.shape
        g, dsq = np.empty(k), np.empty((k, b))
        self._backward(dh, mask, dh.dtype.type(slope), g, dsq)
        return g, dsq

    def warm_up(self, dtype) -> None:
        """Compile, or load from the cache, the machine code for ``dtype`` (in this thread)."""
        z = np.zeros((1, 2, 3), dtype=dtype)
        mask = np.zeros(z.shape, dtype=bool)
        self.forward(z, 0.0, np.zeros((1, 3)), mask)
        self.backward(z, mask, 0.0)
        self.check_normals()  # compiles the sampler too
        self.normals(np.random.SFC64(0), np.empty(2, dtype=dtype))  # and its dtype's output


def _load(dtype) -> FusedPasses:
    """The fused passes, compiled or loaded for ``dtype``.

    numba's disk cache is tried first; a cache that cannot be written or read (read-only
    folders, a truncated file) falls back to compiling in memory.

    Raises:
        KernelsUnavailable: numba cannot be imported or cannot compile the kernels.
    """
    key = np.dtype(dtype).name
    if key in _LOADED:
        return _LOADED[key]  # type: ignore[return-value]
    with _ctrl_c_held():
        try:
            from . import _fused
        except Exception as exc:  # a broken numba install fails in many ways
            raise KernelsUnavailable(
                f"numba cannot be imported ({type(exc).__name__}: {exc})"
            ) from None
        errors = []
        for cache in (True, False):
            try:
                passes = FusedPasses(*_fused.compile_kernels(cache))
                passes.warm_up(dtype)
            except Exception as exc:
                errors.append(_one_line(exc))
                continue
            _LOADED[key] = passes
            return passes
    raise KernelsUnavailable(f"numba cannot compile the kernels ({errors[-1]})")


@contextmanager
def _ctrl_c_held():
    """Hold Ctrl-C while numba imports and compiles, and deliver it afterwards.

    LLVM calls back into Python while it compiles; a KeyboardInterrupt raised inside such a
    callback is printed as "Exception ignored" and dropped, so the run would go on to the end
    (one such run here also ended in a segmentation fault).
    Held here, the interrupt reaches the previous handler once the kernels are ready: a few
    seconds at most, on the first run that compiles them. Only the main thread can do this;
    elsewhere the body runs as is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)
        if caught:
            if callable(previous):
                previous(signal.SIGINT, None)  # Python's default raises KeyboardInterrupt
            elif previous == signal.SIG_DFL:
                os.kill(os.getpid(), signal.SIGINT)


def _one_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


class KernelsUnavailable(Exception):
    """numba is installed but cannot be imported or cannot compile the kernels."""


def check(kernels: str) -> None:
    """Raise InputError unless ``kernels`` is one of ``KERNELS``."""
    if kernels not in KERNELS:
        raise InputError(f"unknown --kernels {kernels!r}; choose one of: {', '.join(KERNELS)}")


def choose(kernels: str, elements: float, dtype, rectifier: bool) -> FusedPasses | None:
    """The fused passes to use, or None for NumPy.

    Args:
        kernels: ``auto``, ``numpy`` or ``numba``.
        elements: activation entries of one network, batch x (n_1 + ... + n_L).
        dtype: working dtype.
        rectifier: the activation is relu or leaky-relu (the only ones with fused kernels).

    Raises:
        InputError: unknown choice, or ``numba`` asked for but not installed.
    """
    check(kernels)
    if kernels == "numpy" or not rectifier:
        return None
    if kernels == "numba":
        if not numba_installed():
            raise InputError(
                "--kernels numba needs numba: pip install 'propagate-init[fast]' (from a "
                "checkout: pip install '.[fast]'), or use --kernels numpy"
            )
        try:
            return _load(dtype)
        except KernelsUnavailable as exc:
            raise InputError(
                f"--kernels numba: {exc}; reinstall numba or use --kernels numpy"
            ) from None
    if elements >= AUTO_MIN_ELEMENTS and numba_installed():
        try:
            return _load(dtype)
        except KernelsUnavailable:
            return None  # auto: NumPy gives the same statistics
    return None
