"""The batched forward/backward engine: many independent dense networks at once, in the log domain.

Arrays carry named axes, trials first: activations are (trials, batch, units), weights
(trials, fan_out, fan_in) in torch's (out, in) layout.

Log domain. Each trial's activations are held as ``h = exp(log_scale) * h_hat`` with ``h_hat``
renormalised to unit root-mean-square at every layer. The normalising factor is folded into the
(small) weight matrix before the product, so it costs no extra pass over the activations, and
weights themselves are drawn at unit scale with the scheme's std kept as a logarithm. For
positively homogeneous activations (ReLU, leaky ReLU, linear) and any bias this is exact at every
depth in float32 or float64: gauss 0.01 at depth 1000 reports log10 q near -2500, not 0. The
backward pass is linear in the gradient, so it is exact the same way for every activation; tanh's
forward is exact wherever its true pre-activation is representable (see ``activations``).
Scales are per trial: the samples of one network share one. Per-sample squared norms are
accumulated in float64 from the working dtype.

Memory. Trials run in chunks (each chunk through all layers, forward then backward); a chunk keeps
only ReLU masks (bytes, or bit-packed when large), per-sample norms and, when they fit the budget,
its unit-scale weights; otherwise weights are regenerated in the backward pass from their
(trial, layer) streams (``rng``), which gives the same numbers. Chunks run on two threads, each
with single-threaded BLAS; the trials are split into equal shares per thread.

Passes. After each product a layer's statistics are one NumPy pass each, or, for relu and
leaky-relu with ``kernels`` choosing numba, one fused compiled pass forward and one backward.

Randomness: every draw comes from ``rng.draw`` streams keyed by (seed, kind, layer, trial block),
so trial i's numbers do not depend on the number of trials, the chunking or the thread count.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace

import numpy as np
from threadpoolctl import threadpool_limits

from .activations import TANH_LOG_CAP, Activation
from .data import Dataset
from .errors import InputError
from .kernels import TINY_SUMSQ
from .kernels import check as check_kernels
from .kernels import choose as choose_kernels
from .rng import Stream, block_generator, draw, trial_block
from .schemes import InitSpec, LayerInit, sample_unit

__all__ = [
    "Network",
    "EngineConfig",
    "TrialStats",
    "simulate",
    "estimate_memory",
    "batch_inputs",
    "probe_vectors",
    "layer_weights",
    "layer_biases",
]

_CACHE_TARGET_BYTES = 4 << 20  # activations of one chunk-layer (measured best: 4 MiB)
_WEIGHT_KEEP_BYTES = 256 << 20  # keep a chunk's weights below this, else regenerate them
_BOOL_MASK_BYTES = 64 << 20  # a chunk's ReLU masks as bytes up to this, bit-packed beyond
# a variance below this fraction of q is rounding noise: z = b + u with |u| / |b| below
# ~1e-5 (float32) or ~3e-14 (float64) keeps u to under 1 % (biases dominate, inputs aligned)
_RESOLUTION = {np.dtype(np.float32): 1e-10, np.dtype(np.float64): 1e-27}
# h_hat is brought back to unit rms when its mean square leaves [1e-20, 1e20]
_RESCALE_BELOW = 1e-20
_TIGHT = 1e-3  # variance below this fraction of q: centred explicitly, not q - mean^2
LSUV_TOLERANCE = 0.02  # |Var - 1| <= tol, as in Mishkin & Matas' Caffe code
LSUV_MAX_ITER = 20


@dataclass(frozen=True)
class Network:
    """A dense stack: widths n_0..n_L, one activation after every layer, iid init per layer.

    Attributes:
        widths: (n_0, ..., n_L); n_0 is the input width, layer l maps n_{l-1} -> n_l.
        activation: applied after every layer (including the last).
        init: the resolved init scheme (``schemes.resolve_scheme``).
        bias_std: std of iid N(0, bias_std^2) biases (0: no bias), unless ``bias`` is
            ``torch``: then each layer's bias is U(+-1/sqrt(fan_in)) as torch's nn.Linear draws
            it (std 1/sqrt(3 fan_in)) and ``bias_std`` is ignored.
        bias: ``normal`` or ``torch``.
    """

    widths: tuple[int, ...]
    activation: Activation
    init: InitSpec
    bias_std: float = 0.0
    bias: str = "normal"
    layer_inits: tuple[LayerInit, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        inits = tuple(
            self.init.layer(self.widths[i], self.widths[i + 1]) for i in range(self.depth)
        )
        object.__setattr__(self, "layer_inits", inits)

    @property
    def depth(self) -> int:
        return len(self.widths) - 1

    @property
    def bias_stds(self) -> np.ndarray:
        """(depth,) std of each layer's bias entries (0: none)."""
        if self.bias == "torch":
            return 1.0 / np.sqrt(3.0 * np.asarray(self.widths[:-1], dtype=float))
        return np.full(self.depth, float(self.bias_std))

    @property
    def has_bias(self) -> bool:
        return bool(np.any(self.bias_stds > 0))

    @property
    def weight_vars(self) -> np.ndarray:
        """(depth,) nominal per-entry weight variance of each layer."""
        return np.array([li.weight_var for li in self.layer_inits])


@dataclass(frozen=True)
class EngineConfig:
    """How many networks and inputs, and how to draw them.

    Attributes:
        batch: inputs per network (with ``data``: at most the number of samples).
        trials: independent networks.
        seed: root of every random stream.
        dtype: working dtype of activations (float32 or float64).
        data: fixed inputs shared by all trials, or None for x ~ N(0, I) drawn per trial.
        head: ``probe`` (loss <g, h_L>, g ~ N(0, I)) or ``softmax`` (cross-entropy over a
            linear classifier of ``classes`` outputs initialised by the same scheme).
        classes: number of classes for the softmax head.
        workers: threads over trial chunks (None: one per core, at most 2 chunks each).
        chunk_trials: trials per chunk (None: chosen for cache and memory).
        keep_weights: keep weights between forward and backward (None: if they fit).
        kernels: ``auto``, ``numpy`` or ``numba``: who runs the memory-bound passes of
            rectifier layers (``kernels``); results agree to rounding.
    """

    batch: int
    trials: int
    seed: int = 0
    dtype: type = np.float32
    data: Dataset | None = None
    head: str = "probe"
    classes: int = 10
    workers: int | None = None
    chunk_trials: int | None = None
    keep_weights: bool | None = None
    kernels: str = "auto"


@dataclass
class TrialStats:
    """Per-trial, per-layer statistics (natural logs; -inf where a quantity is exactly 0).

    Shapes: T = trials, L = depth. Layer index l = 1..L is stored at position l - 1, except
    ``log_g`` which covers h_0..h_L at positions 0..L.
    """

    log_q: np.ndarray  # (T, L) per-unit second moment of z_l
    log_var: np.ndarray  # (T, L) per-unit variance of z_l over the batch
    log_m: np.ndarray  # (T, L) per-unit second moment of h_l
    dead_units: np.ndarray  # (T, L) fraction of units inactive for every input
    zero_fraction: np.ndarray  # (T, L) fraction of entries of h_l (rectifiers: z_l) <= 0
    dead_inputs: np.ndarray  # (T, L) fraction of inputs whose h_l is identically 0
    log_g: np.ndarray  # (T, L+1) per-unit second moment of dloss/dh_l, l = 0..L
    log_d: np.ndarray  # (T, L) per-unit second moment of dloss/dz_l
    log_wgrad: np.ndarray  # (T, L) mean over inputs of ||dloss_b/dW_l||_F^2
    log_m0: np.ndarray  # (T,) per-unit second moment of the input
    log_weight_var: np.ndarray  # (T, L) realised mean of W_ij^2 (LSUV factor included)
    lsuv_log_factor: np.ndarray  # (T, L) log of LSUV's multiplier (0 without LSUV)
    lsuv_iterations: np.ndarray  # (T, L)
    head: dict[str, np.ndarray]  # softmax head: (T,) max_prob, entropy, loss, log_g_top
    scale_range_warning: bool = False  # a trial's samples spanned > 1e30 in squared norm
    resolution_warning: bool = False  # a variance fell below the dtype's resolution of q
    subnormal_warning: bool = False  # float32 entries of some h_l passed through subnormals
    # tanh: derivatives within a network spanned more than the dtype holds ("range"), or
    # pre-activations passed the 1e30 cap where tanh is evaluated ("cap"); empty otherwise
    tanh_warnings: frozenset = frozenset()
    kernels: str = "numpy"  # who ran the rectifier passes: numpy or numba


# ----------------------------------------------------------------------------------- helpers
def _log(x: np.ndarray) -> np.ndarray:
    """Natural log, -inf where x is 0 (no warning, no floating-point state switching)."""
    x = np.asarray(x, dtype=np.float64)
    return np.log(x, out=np.full(x.shape, -np.inf), where=x > 0)


def _log_mean_exp(logs: np.ndarray) -> np.ndarray:
    """log(mean(exp(logs), axis=-1)) with all -inf rows giving -inf (no warnings)."""
    top = np.max(logs, axis=-1)
    safe = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(under="ignore"):
        total = np.exp(logs - safe[..., None]).sum(axis=-1)
    return np.where(np.isfinite(top), safe + _log(total) - math.log(logs.shape[-1]), -np.inf)


def _sumsq(a: np.ndarray, redo_tiny: bool = False) -> np.ndarray:
    """(trials, batch) squared norms over the last axis, summed in the working dtype per row
    (short rows) and returned as float64.

    With ``redo_tiny``, rows too small for float32 squares (an input 1e-20 of its network's
    others: its squares underflow) are summed again in float64, so a tiny row never reads as an
    exact zero. The engine asks for it when the inputs' norms are that spread.
    """
    if a.shape[-1] < 32:  # einsum handles many short rows faster than vecdot
        out = np.einsum("tbn,tbn->tb", a, a).astype(np.float64)
    else:
        out = np.vecdot(a, a).astype(np.float64)
    if redo_tiny and a.dtype == np.float32:
        small = out < TINY_SUMSQ
        if np.any(small):
            t, b = np.nonzero(small)
            rows = a[t, b].astype(np.float64)
            out[t, b] = np.einsum("mn,mn->m", rows, rows)
    return out


def _back_to_unit_rms(a: np.ndarray, ms: np.ndarray, live: np.ndarray):
    """Divide, in place, the trials of ``a`` (k, batch, n) whose mean square ``ms`` (k,) left
    [1e-20, 1e20] by its root (among ``live`` trials), in float64: that factor may exceed the
    working dtype's range.

    Returns:
        (divisor, subnormal): the (k,) mean squares divided out (1 for untouched trials), or
        None when no trial moved; whether float32 entries had reached subnormal values.
    """
    rows = live & ((ms < _RESCALE_BELOW) | (ms > 1 / _RESCALE_BELOW))
    if not np.any(rows):
        return None, False
    divisor = np.where(rows, ms, 1.0)
    idx = np.nonzero(rows)[0]
    factor = 1.0 / np.sqrt(divisor[idx])  # not 1 / divisor: a subnormal ms would overflow
    a[idx] = (a[idx].astype(np.float64) * factor[:, None, None]).astype(a.dtype)
    return divisor, bool(a.dtype == np.float32 and np.any(ms[rows] < 1e-60))


def _count_true(mask: np.ndarray) -> np.ndarray:
    """(trials,) number of True entries of a (trials, ...) bool array."""
    flat = mask.reshape(mask.shape[0], -1)
    if flat.shape[1] % 8 == 0 and flat.flags.c_contiguous:
        # bools are bytes 0/1: a popcount of 8 of them at a time counts the Trues
        return np.bitwise_count(flat.view(np.uint64)).sum(axis=1, dtype=np.int64)
    return np.count_nonzero(flat, axis=1)


def _available_memory() -> int:
    """Bytes this process may still allocate: MemAvailable, capped by a cgroup limit."""
    avail = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as fh:
                text = fh.read().strip()
            if text.isdigit() and int(text) < (1 << 60):
                avail = min(avail or int(text), int(text))
        except OSError:
            continue
    return avail if avail is not None else 8 << 30


def _unit_variance(li: LayerInit) -> float:
    """Variance of an entry of the unit draw W_hat (W = std * W_hat)."""
    return li.weight_var / (li.std * li.std)


def _plan_chunks(net: Network, cfg: EngineConfig, batch: int) -> int:
    itemsize = np.dtype(cfg.dtype).itemsize
    per_trial = batch * max(net.widths) * itemsize
    if cfg.chunk_trials is not None:
        return max(1, int(cfg.chunk_trials))
    k = max(1, _CACHE_TARGET_BYTES // max(per_trial, 1))
    workers = cfg.workers or min(2, os.cpu_count() or 1)
    k = min(k, max(1, -(-cfg.trials // workers)))
    # align chunks with the weights' random streams, so no chunk starts inside a stream
    block = max(trial_block(a * b) for a, b in zip(net.widths[:-1], net.widths[1:]))
    if k >= block:
        return k - k % block
    return max(d for d in (1, 2, 4, 8, 16, 32, 64, 128) if d <= k and block % d == 0)


def _chunk_bounds(net: Network, trials: int, k: int, workers: int, fixed: bool) -> list:
    """Trial ranges of about k trials (at most 1.25 k), in the order the workers should take them.

    The trials are split into ``workers`` equal shares (200 trials on two threads: 100 each,
    where stream-aligned chunks would give 104 and 96), and each share is cut on the grid of
    multiples of k, so only a share's first chunk can start inside a random stream. Shares are
    interleaved (first chunk of each share, then the second, ...) so every worker finishes its
    share at about the same time.
    """
    if fixed or workers <= 1:
        return [(t, min(trials, t + k)) for t in range(0, trials, k)]
    edges = [trials * i // workers for i in range(workers + 1)]
    shares = []
    for a, b in zip(edges[:-1], edges[1:]):
        cuts = [a, *range((a // k + 1) * k, b, k), b]
        # a sliver at either end of a share joins its neighbour (each chunk costs a pass of
        # per-layer bookkeeping: narrow stacks are bound by it)
        if len(cuts) > 2 and cuts[1] - cuts[0] <= k // 4 and cuts[2] - cuts[0] <= k + k // 4:
            del cuts[1]
        if len(cuts) > 2 and cuts[-1] - cuts[-2] <= k // 4 and cuts[-1] - cuts[-3] <= k + k // 4:
            del cuts[-2]
        shares.append([(s, e) for s, e in zip(cuts[:-1], cuts[1:]) if e > s])
    bounds = []
    for i in range(max(len(share) for share in shares)):
        bounds.extend(share[i] for share in shares if i < len(share))
    return bounds


def estimate_memory(net: Network, cfg: EngineConfig) -> dict[str, int]:
    """Peak bytes a run will need, estimated before anything large is allocated."""
    batch = _effective_batch(cfg)
    k = min(_plan_chunks(net, cfg, batch), cfg.trials)
    k += k // 4  # a chunk may take in a sliver of its neighbour (_chunk_bounds)
    workers = min(cfg.workers or min(2, os.cpu_count() or 1), -(-cfg.trials // k))
    itemsize = np.dtype(cfg.dtype).itemsize
    widest = max(net.widths)
    act = 8 * k * batch * widest * itemsize  # two buffers, mask, temporaries (measured peak)
    units = sum(net.widths[1:])
    masks = k * batch * units * (itemsize if net.activation.name == "tanh" else 1)
    # a layer's draw in float64 (a stream's trials up to the chunk's last: at worst a whole
    # block of them), with a Haar-orthogonal draw's QR copies (orthogonal, lsuv); then the
    # cast, the scaled copy and the float64 copy for batch sums of the chunk's own trials
    matrices = [a * b for a, b in zip(net.widths[:-1], net.widths[1:])]
    draw_rows = min(max(k, max(trial_block(m) for m in matrices)), cfg.trials)
    qr = net.init.scheme.kind in ("orthogonal", "lsuv")
    weights_f64 = ((5 if qr else 2) * draw_rows + 3 * k) * max(matrices) * 8
    kept = k * sum(matrices) * itemsize
    keep = cfg.keep_weights if cfg.keep_weights is not None else kept <= _WEIGHT_KEEP_BYTES
    per_layer = 4 * k * batch * 8 + 8192  # per-sample norms kept, and the per-layer objects
    per_worker = act + masks + weights_f64 + (kept if keep else 0) + per_layer * net.depth
    stats = cfg.trials * (12 * net.depth + 8) * 8
    inputs = (cfg.data.x.nbytes if cfg.data is not None else 0) + 2 * k * batch * net.widths[0] * 8
    if cfg.head == "softmax":  # classifier weights, logits, probabilities, one-hot, gradient
        per_worker += 8 * k * (net.widths[-1] * cfg.classes + 5 * batch * cfg.classes)
    total = int(workers * per_worker + stats + inputs)
    return {"total": total, "per_chunk": int(per_worker), "chunk_trials": k, "workers": workers}


def _effective_batch(cfg: EngineConfig) -> int:
    if cfg.data is not None:
        return min(cfg.batch, cfg.data.n_samples)
    return cfg.batch


# ----------------------------------------------------------------------- the random network
def batch_inputs(net: Network, cfg: EngineConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """The (batch, n0) float64 inputs every trial sees, and their (batch,) labels or None.

    Gaussian inputs are drawn once from the seed and shared by all networks (like a data set):
    predictions use their realised second moment, and every exact statement of the theory holds
    conditionally on the inputs. With data, a seeded subset of ``batch`` samples (or all).
    """
    batch = _effective_batch(cfg)
    if cfg.data is None:
        gen = block_generator(cfg.seed, Stream.INPUT, 0, 0)
        return gen.standard_normal((batch, net.widths[0])), None
    n = cfg.data.n_samples
    if batch < n:
        gen = block_generator(cfg.seed, Stream.DATA, 0, 0)
        idx = np.sort(gen.permutation(n)[:batch])
    else:
        idx = np.arange(n)
    labels = None
    if cfg.data.labels is not None:
        labels = cfg.data.labels[idx]  # below cfg.classes (checked by api.run)
    return cfg.data.x[idx], labels


def probe_vectors(net: Network, cfg: EngineConfig, t0: int, t1: int) -> np.ndarray:
    """The (t1 - t0, batch, n_L) Gaussian probes g of the loss <g, h_L>, one per network.

    Unlike the inputs, the probe must be drawn afresh for every network: the backward mean
    field is exact only on average over g (a fixed g leaves cross terms g_i g_j E[D_i w_i] .
    E[D_j w_j] that do not vanish in narrow layers).
    """
    batch, width = _effective_batch(cfg), net.widths[-1]
    return draw(
        cfg.seed,
        Stream.PROBE,
        0,
        t0,
        t1,
        lambda g, k: g.standard_normal((k, batch, width)),
        batch * width,
    )


def layer_weights(net: Network, seed: int, layer: int, t0: int, t1: int) -> np.ndarray:
    """Unit-scale weights W_hat of ``layer`` (1-based) for trials t0..t1-1, float64.

    Shape (t1 - t0, n_l, n_{l-1}); the weights are ``net.layer_inits[layer-1].std * W_hat``
    (times the per-trial LSUV factor for the lsuv scheme).
    """
    li = net.layer_inits[layer - 1]
    return draw(
        seed,
        Stream.WEIGHTS,
        layer,
        t0,
        t1,
        lambda g, k: sample_unit(li, g, k),
        li.fan_in * li.fan_out,
    )


def layer_biases(net: Network, seed: int, layer: int, t0: int, t1: int) -> np.ndarray:
    """Unit-variance biases b_hat (t1 - t0, 1, n_l): the biases are ``net.bias_stds[l-1] * b_hat``.

    N(0, 1), or U(-sqrt 3, sqrt 3) for torch's uniform bias.
    """
    width = net.widths[layer]
    if net.bias == "torch":
        return draw(
            seed,
            Stream.BIAS,
            layer,
            t0,
            t1,
            lambda g, k: (2.0 * g.random((k, 1, width)) - 1.0) * math.sqrt(3.0),
            width,
        )
    return draw(
        seed, Stream.BIAS, layer, t0, t1, lambda g, k: g.standard_normal((k, 1, width)), width
    )


# ----------------------------------------------------------------------------------- engine
class _Chunk:
    """Forward and backward pass of trials [t0, t1) through the whole stack."""

    def __init__(self, net, cfg, batch, inputs, labels, t0, t1, cancel=None, fused=None):
        self.net, self.cfg, self.batch = net, cfg, batch
        self.fused = fused  # kernels.FusedPasses, or None for NumPy passes
        self.cancel = cancel
        self.t0, self.t1, self.k = t0, t1, t1 - t0
        self.dtype = np.dtype(cfg.dtype)
        self.inputs = inputs  # (batch, n0) inputs shared by all trials
        self.labels = labels  # (batch,) class labels of the data, or None
        self.keep = cfg.keep_weights
        self._units = sum(net.widths[1:])
        self._offsets = np.concatenate([[0], np.cumsum(net.widths[1:])]).tolist()
        self.pack_masks = self.k * batch * self._units > _BOOL_MASK_BYTES
        if self.keep is None:
            kept = self.k * sum(a * b for a, b in zip(net.widths[:-1], net.widths[1:]))
            self.keep = kept * self.dtype.itemsize <= _WEIGHT_KEEP_BYTES

    # -- random draws ------------------------------------------------------------------------
    def _weights(self, layer: int, li: LayerInit) -> np.ndarray:
        # kept weights need a buffer per layer until the backward pass; regenerated ones share one
        slot = f"weights{layer}" if self.keep else "weights"
        if li.distribution == "normal":  # sample_unit draws exactly these standard normals
            shape = (li.fan_out, li.fan_in)
            return self._normal_draw(Stream.WEIGHTS, layer, shape, self.dtype, slot)
        w = layer_weights(self.net, self.cfg.seed, layer, self.t0, self.t1)
        out = self._scratch(slot, w.size, self.dtype).reshape(w.shape)
        np.copyto(out, w, casting="same_kind")  # the float64 buffer is reused: a copy
        return out

    def _bias(self, layer: int, width: int) -> np.ndarray:
        b = layer_biases(self.net, self.cfg.seed, layer, self.t0, self.t1)
        return b.astype(self.dtype, copy=False)

    def _normal_draw(
        self,
        kind: int,
        layer: int,
        shape: tuple[int, ...],
        dtype=np.float64,
        slot: str | None = None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Standard normals of this chunk's trials for one stream, (k, *shape).

        Exactly what ``rng.draw`` with ``standard_normal`` returns (rounded to ``dtype`` as
        ``astype`` would), written into this thread's reusable buffer ``slot`` (default: one
        per stream kind), or into ``out`` (k, *shape) when given: no per-block arrays, no
        concatenation, no fresh pages. The compiled sampler rounds each number as it writes it;
        NumPy's draws in float64 first. A chunk that starts inside a stream draws that stream's
        earlier trials too and skips them.
        """
        per_trial = math.prod(shape)
        size = trial_block(per_trial)
        base = self.t0 - self.t0 % size  # first trial of the first stream
        rows = self.t1 - base
        compiled = self.fused is not None and self.fused.exact_normals
        slot = slot or f"normal{kind}"
        if not compiled and np.dtype(dtype) != np.float64:
            drawn = self._normal_draw(kind, layer, shape)
            if out is None:
                out = self._scratch(slot, drawn.size, dtype).reshape(drawn.shape)
            np.copyto(out, drawn, casting="same_kind")
            return out
        direct = out is not None and base == self.t0 and out.flags.c_contiguous
        if direct:
            flat = out.reshape(rows, *shape)
        else:
            flat = self._scratch(slot, rows * per_trial, dtype).reshape(rows, *shape)
        for start in range(base, self.t1, size):
            stop = min(self.t1, start + size)
            gen = block_generator(self.cfg.seed, kind, layer, start // size)
            if compiled:  # the same numbers, about 2-3x faster (kernels.FusedPasses.normals)
                self.fused.normals(gen.bit_generator, flat[start - base : stop - base])
            else:
                gen.standard_normal(out=flat[start - base : stop - base])
        if out is not None and not direct:
            np.copyto(out, flat[self.t0 - base :].reshape(out.shape), casting="same_kind")
            return out
        return flat[self.t0 - base :]

    def _fill_probe(self, dh: np.ndarray) -> None:
        """Write this chunk's probes (exactly ``probe_vectors``) into ``dh``."""
        self._normal_draw(Stream.PROBE, 0, (self.batch, self.net.widths[-1]), dh.dtype, out=dh)

    def _mask_buffer(self, layer: int, width: int) -> np.ndarray:
        """(k, batch, width) bool view of this thread's reusable mask arena for ``layer``.

        Masks are kept until the backward pass, layer after layer in one flat arena
        (k * batch * (n_1 + ... + n_L) bytes, as ``estimate_memory`` counts them); with
        bit-packing only one layer's bytes are needed. Reusing the arena across chunks avoids
        touching fresh pages for every chunk.
        """
        per_trial = self.batch * (max(self.net.widths[1:]) if self.pack_masks else self._units)
        size = self.k * per_trial
        arena = getattr(_ARENA, "masks", None)
        if arena is None or arena.size < size:
            arena = np.empty(size, dtype=bool)  # chunks of other sizes reuse it
            _ARENA.masks = arena
        start = 0 if self.pack_masks else self.k * self.batch * self._offsets[layer - 1]
        count = self.k * self.batch * width
        return arena[start : start + count].reshape(self.k, self.batch, width)

    def _scratch(self, name: str, size: int, dtype) -> np.ndarray:
        """A flat (size,) view of this thread's reusable buffer ``name`` (grown when too small):
        per-layer arrays of a few hundred KiB would otherwise map fresh pages every time."""
        buf = getattr(_ARENA, name, None)
        if buf is None or buf.size < size or buf.dtype != dtype:
            buf = np.empty(size, dtype=dtype)
            setattr(_ARENA, name, buf)
        return buf[:size]

    def _scaled(self, w: np.ndarray, mult: np.ndarray) -> np.ndarray:
        """w times a per-trial multiplier, into a reused buffer (valid until the next call)."""
        out = self._scratch("scaled", w.size, w.dtype).reshape(w.shape)
        return np.multiply(w, mult.astype(w.dtype)[:, None, None], out=out)

    def _buffer(self, which: int, width: int) -> np.ndarray:
        """(k, batch, width) view of one of two reused activation buffers (no page faults)."""
        return self._buffers[which][: self.k * self.batch * width].reshape(
            self.k, self.batch, width
        )

    def _pre_scale(self, log_a, log_s, log_sig, log_bias, alive):
        """Per-trial scales of layer l's pre-activation: (log_sz, weight multiplier, bias
        multiplier or None), with z = exp(log_sz) z_hat and z_hat of unit rms (estimated)."""
        if np.isfinite(log_bias):
            log_sz = 0.5 * np.logaddexp(2 * log_a, 2 * log_bias)
            b_scale = np.exp(log_bias - log_sz)
        else:
            log_sz = np.where(alive, log_a, 0.0)
            b_scale = None
        with np.errstate(over="ignore"):  # only dead trials (alive False) can overflow here
            mult = np.where(alive, np.exp(log_s + log_sig - log_sz), 0.0)
        return log_sz, mult, b_scale

    def _col_mean(self, prev_hsum, wm, bias, b_scale) -> np.ndarray:
        """(k, n_out) batch means of z_hat, from the batch sums of the layer's input (a tiny
        product instead of a pass over z)."""
        # (k, n_out, n_in) @ (k, n_in, 1) in float64 (W as stored: no transposed copy)
        w64 = wm
        if wm.dtype != np.float64:
            w64 = self._scratch("scaled64", wm.size, np.float64).reshape(wm.shape)
            np.copyto(w64, wm)
        col_sum = np.matmul(w64, prev_hsum[:, :, None])[:, :, 0]
        if bias is not None:
            col_sum = col_sum + self.batch * b_scale[:, None] * bias[:, 0, :]
        return col_sum / self.batch

    def _lsuv(self, l, h, w, bias, log_s, log_a, log_bias, alive, prev_hsum, log_sigma, out):
        """LSUV (Mishkin & Matas 2015): rescale layer l's weights per trial until the variance
        over all (batch, unit) entries of its output is 1. Updates ``log_sigma[:, l-1]`` and the
        LSUV records in ``out``; returns the updated ``log_a``."""
        batch, n_out = self.batch, self.net.widths[l]
        scratch = self._buffer(self.cur, n_out)  # the layer's own pass overwrites it afterwards
        for _ in range(LSUV_MAX_ITER):
            log_sz, mult, b_scale = self._pre_scale(
                log_a, log_s, log_sigma[:, l - 1], log_bias, alive
            )
            wm = w * mult.astype(self.dtype)[:, None, None]
            z = np.matmul(h, wm.transpose(0, 2, 1), out=scratch)
            if bias is not None:
                z += b_scale.astype(self.dtype)[:, None, None] * bias
            q_hat = _sumsq(z).sum(axis=1) / (batch * n_out)
            grand = self._col_mean(prev_hsum, wm, bias, b_scale).mean(axis=1)
            log_var_true = 2 * log_sz + _log(np.maximum(q_hat - grand**2, 0.0))
            bad = ~np.isfinite(log_var_true)
            if np.any(bad):
                trial = self.t0 + int(np.argmax(bad))
                raise InputError(
                    f"lsuv: layer {l} output variance is zero in trial {trial} (its input is "
                    "all zero, e.g. a dead ReLU layer below, or the batch is constant); "
                    "no rescaling can revive it: use a wider layer or another scheme"
                )
            done = np.abs(np.exp(log_var_true) - 1.0) <= LSUV_TOLERANCE
            out["lsuv_iterations"][:, l - 1] += ~done
            if np.all(done):
                break
            step = np.where(done, 0.0, -0.5 * log_var_true)
            log_sigma[:, l - 1] += step
            out["lsuv_log_factor"][:, l - 1] += step
            log_a = log_a + step
        return log_a

    def _backward_norms(self, dh: np.ndarray, layer: int) -> tuple[np.ndarray, np.ndarray]:
        """Given dloss/dh_layer (k, batch, n), normalised: its (k,) squared norm, then, after
        multiplying it by phi'(z_layer) in place (it becomes dloss/dz_layer), the (k, batch)
        squared norms per sample (None at layer 0, the input)."""
        if layer == 0:
            return _sumsq(dh).sum(axis=1), None
        act = self.net.activation
        mask = self._stored_mask(layer, dh.shape[-1])
        if self.fused is not None:
            return self.fused.backward(dh, mask, act.negative_slope)
        g_tot = _sumsq(dh).sum(axis=1)
        if act.name == "tanh":
            dh *= self._derivs[layer - 1][0]
        elif mask is not None:
            if act.negative_slope == 0.0:
                np.multiply(dh, mask, out=dh)
            else:
                dh *= np.where(mask, 1.0, act.negative_slope).astype(dh.dtype)
        return g_tot, _sumsq(dh, self._redo_tiny)

    def _keep_mask(self, mask: np.ndarray | None) -> None:
        """Store a layer's ReLU mask (None: no mask) for the backward pass, bit-packed if large."""
        if mask is not None and self.pack_masks:
            mask = np.packbits(mask, axis=-1)
        self._masks.append(mask)

    def _stored_mask(self, layer: int, width: int) -> np.ndarray | None:
        """The (k, batch, width) bool mask ``_keep_mask`` stored for ``layer``, or None."""
        stored = self._masks[layer - 1]
        if stored is None or not self.pack_masks:
            return stored
        return np.unpackbits(stored, axis=-1, count=width).view(bool)

    def _forward_fused(self, z: np.ndarray, col_mean: np.ndarray, layer: int) -> dict:
        """A rectifier layer's statistics and activation in one compiled pass (``kernels``)."""
        mask = self._mask_buffer(layer, z.shape[-1])
        st = self.fused.forward(z, self.net.activation.negative_slope, col_mean, mask)
        self._keep_mask(mask)
        st.update(
            h=z,
            log_s=None,
            nonzero=st["positive"].sum(axis=1),
            unit_alive=st["positive"] > 0,
        )
        return st

    def _forward_numpy(
        self, z: np.ndarray, col_mean: np.ndarray, layer: int, log_sz: np.ndarray
    ) -> dict:
        """A layer's statistics and activation, one NumPy pass per statistic.

        Returns sums over (batch, units) per trial (``q``: z^2; ``var_sum``: squared deviations
        from the batch means), per-sample ``sq`` = sum h^2, per-unit batch sums ``hsum``,
        ``nonzero`` counts, ``unit_alive`` (k, n), and ``h`` with its log scale ``log_s``
        (None: unchanged). Masks (and tanh derivatives) are stored for the backward pass.
        """
        act, batch, n_out = self.net.activation, self.batch, z.shape[-1]
        q = _sumsq(z).sum(axis=1)
        var_sum = np.maximum(q - batch * np.sum(col_mean**2, axis=1), 0.0)
        tight = var_sum < _TIGHT * q  # q - mean^2 cancels: centre explicitly
        if np.any(tight):
            rows = np.nonzero(tight)[0]
            centred = z[rows].astype(np.float64) - col_mean[rows][:, None, :]
            var_sum[rows] = np.einsum("tbn,tbn->t", centred, centred)
        # activation (in place for rectifiers); masks kept for the backward pass
        unit_alive = None
        if act.has_kink:
            mask = np.greater(z, 0, out=self._mask_buffer(layer, n_out))
            self._keep_mask(mask)
            nonzero = _count_true(mask)
            if act.negative_slope != 0.0:
                unit_alive = np.logical_or.reduce(mask, axis=1)
        else:
            self._keep_mask(None)
        if act.name == "tanh":
            d_hat, log_d = act.tanh_derivative(z, log_sz)
            self._derivs.append((d_hat, log_d))
            if np.any(d_hat < np.finfo(d_hat.dtype).tiny):  # true sech^2 > 0: range lost
                self.tanh_warnings.add("range")
            if np.any(log_sz > TANH_LOG_CAP):
                self.tanh_warnings.add("cap")
        if act.has_kink and act.negative_slope == 0.0:
            # ReLU by the mask: half the time of np.maximum(z, 0) here (AVX2, float32); the
            # -0.0 it leaves for z < 0 changes no statistic and no later product
            h, log_s = np.multiply(z, mask, out=z), log_sz
        else:
            h, log_s = act.forward(z, log_sz)
        if self._masks[-1] is None:
            nz = h != 0
            nonzero = _count_true(nz)
            unit_alive = np.any(nz, axis=1)
        ones_row = np.ones((1, batch), dtype=h.dtype)
        hsum = np.matmul(ones_row, h)[:, 0, :].astype(np.float64)
        if unit_alive is None:
            unit_alive = hsum > 0  # h >= 0: a unit is alive iff its batch sum is > 0
        return {
            "q": q,
            "var_sum": var_sum,
            "sq": _sumsq(h, self._redo_tiny),
            "hsum": hsum,
            "nonzero": nonzero,
            "unit_alive": unit_alive,
            "h": h,
            "log_s": log_s,
        }

    def run(self) -> dict[str, np.ndarray]:
        net, k, batch, dt = self.net, self.k, self.batch, self.dtype
        depth, widths, act = net.depth, net.widths, net.activation
        out = {
            name: np.zeros((k, depth))
            for name in (
                "log_q",
                "log_var",
                "log_m",
                "dead_units",
                "zero_fraction",
                "dead_inputs",
                "log_d",
                "log_wgrad",
                "lsuv_log_factor",
                "lsuv_iterations",
                "log_weight_var",
            )
        }
        out["log_g"] = np.zeros((k, depth + 1))
        range_warning = False
        resolution_warning = False
        subnormal_warning = False

        # -- input: one batch shared by every trial (data, or Gaussian drawn from the seed) --
        x = self.inputs  # (batch, n0) float64
        sq0 = np.einsum("bn,bn->b", x, x)
        # spread of the inputs' squared norms, from each row's largest entry (a row whose
        # squares underflow still counts), as a log10
        peak = np.max(np.abs(x), axis=1)
        live = peak[peak > 0]
        log10_spread = 2 * float(np.log10(live.max() / live.min())) if live.size else 0.0
        range_warning = log10_spread > 30  # the smallest inputs may not survive the dtype
        # inputs 1e-6 of each other in norm can reach float32's underflow after many layers;
        # so can a leaky ReLU's tiny negative side
        slope = net.activation.negative_slope
        self._redo_tiny = log10_spread > 12 or 0 < abs(slope) < 1e-6
        ms0 = float(sq0.sum()) / (batch * widths[0])
        out["log_m0"] = np.full(k, math.log(ms0) if ms0 > 0 else -math.inf)
        rms0 = math.sqrt(ms0) if ms0 > 0 else 1.0
        h = (x / rms0).astype(dt)[None]  # (1, batch, n0): broadcasts over trials
        log_s = np.full(k, math.log(rms0))
        prev_sq = np.broadcast_to(sq0 / (rms0 * rms0), (k, batch))
        prev_ms = np.full(k, 1.0 if ms0 > 0 else 0.0)
        # batch sums of h_hat_{l-1} per unit: the batch sums of z_l then follow from a tiny
        # product (sum_b z_b = W sum_b h_b), saving a pass over the activations
        prev_hsum = np.broadcast_to(x.sum(axis=0) / rms0, (k, widths[0]))

        size = k * batch * max(widths)
        buffers = getattr(_ARENA, "activations", None)  # reused: no fresh pages per chunk
        if buffers is None or buffers[0].size < size or buffers[0].dtype != dt:
            buffers = (np.empty(size, dtype=dt), np.empty(size, dtype=dt))
            _ARENA.activations = buffers
        self._buffers = buffers
        self.cur = 0
        self._masks: list[np.ndarray | None] = []
        self._derivs: list[tuple[np.ndarray, np.ndarray]] = []
        self.tanh_warnings: set[str] = set()
        weights: list[np.ndarray | None] = []
        log_sigma = np.zeros((k, depth))
        prev_norms = []  # per layer: (log scale (k,), ||h_hat_{l-1,b}||^2 (k, batch)) of its input
        with np.errstate(divide="ignore"):
            log_biases = np.log(net.bias_stds)
        is_lsuv = net.init.scheme.kind == "lsuv"

        for l in range(1, depth + 1):
            if self.cancel is not None and self.cancel.is_set():
                raise _Cancelled
            li = net.layer_inits[l - 1]
            n_in, n_out = widths[l - 1], widths[l]
            w = self._weights(l, li)
            weights.append(w if self.keep else None)
            log_sigma[:, l - 1] = math.log(li.std)
            prev_norms.append((log_s, prev_sq))
            alive = prev_ms > 0
            # estimated log rms of the weight term, then the pre-activation scale
            log_a = np.where(
                alive,
                log_s
                + log_sigma[:, l - 1]
                + 0.5 * _log(np.where(alive, prev_ms, 1.0))
                + 0.5 * math.log(n_in * _unit_variance(li)),
                -np.inf,
            )
            log_bias = float(log_biases[l - 1])
            bias = self._bias(l, n_out) if np.isfinite(log_bias) else None
            if is_lsuv:
                log_a = self._lsuv(
                    l, h, w, bias, log_s, log_a, log_bias, alive, prev_hsum, log_sigma, out
                )
            log_sz, mult, b_scale = self._pre_scale(
                log_a, log_s, log_sigma[:, l - 1], log_bias, alive
            )
            wm = self._scaled(w, mult)
            b_term = None if bias is None else b_scale.astype(dt)[:, None, None] * bias
            col_mean = self._col_mean(prev_hsum, wm, bias, b_scale)
            z = np.matmul(h, wm.transpose(0, 2, 1), out=self._buffer(self.cur, n_out))
            if b_term is not None:
                z += b_term
            if self.fused is not None:
                st = self._forward_fused(z, col_mean, l)
            else:
                st = self._forward_numpy(z, col_mean, l, log_sz)
            h, log_s = st["h"], (log_sz if st["log_s"] is None else st["log_s"])
            self.cur ^= 1  # the next layer writes into the other buffer
            q_hat = st["q"] / (batch * n_out)
            var_hat = st["var_sum"] / (batch * n_out)
            if np.any(var_hat < _RESOLUTION[dt] * q_hat):
                resolution_warning = True
            sq, hsum, nonzero, unit_alive = st["sq"], st["hsum"], st["nonzero"], st["unit_alive"]

            w_ms = _sumsq(w).sum(axis=1) / (n_in * n_out)  # per row, then float64: per trial
            out["log_weight_var"][:, l - 1] = 2 * log_sigma[:, l - 1] + _log(w_ms)
            out["log_q"][:, l - 1] = 2 * log_sz + _log(q_hat)
            out["log_var"][:, l - 1] = 2 * log_sz + _log(var_hat)
            out["zero_fraction"][:, l - 1] = 1.0 - nonzero / (batch * n_out)
            out["dead_units"][:, l - 1] = 1.0 - unit_alive.mean(axis=1)
            # an input is dead at layer l when h_l is exactly zero (only ReLU, a = 0, can do it)
            out["dead_inputs"][:, l - 1] = np.mean(sq == 0, axis=1)
            ms = sq.sum(axis=1) / (batch * n_out)
            out["log_m"][:, l - 1] = 2 * log_s + _log(ms)
            positive = np.where(sq > 0, sq, np.inf).min(axis=1)
            if np.any(sq.max(axis=1) > 1e30 * positive):
                range_warning = True
            if l < depth:
                # h_hat drifted far from unit rms (a tiny --negative-slope with every unit of a
                # network negative): rescaled, or the next layer's weight multiplier would
                # overflow the working dtype; the divisor moves into the log scale
                divisor, subnormal = _back_to_unit_rms(h, ms, ms > 0)
                if divisor is not None:
                    subnormal_warning |= subnormal
                    log_s = log_s + 0.5 * np.log(divisor)
                    sq, ms = sq / divisor[:, None], ms / divisor
                    hsum = hsum / np.sqrt(divisor)[:, None]
            prev_sq, prev_ms, prev_hsum = sq, ms, hsum

        # -- head: where the backward pass starts ---------------------------------------------
        head: dict[str, np.ndarray] = {}
        if self.cfg.head == "softmax":
            dh, log_gs, head = self._softmax_head(h, log_s, prev_ms)
        else:
            dh = self._buffer(self.cur, widths[-1])
            self._fill_probe(dh)
            log_gs = np.zeros(k)

        # -- backward ---------------------------------------------------------------------
        # dh holds dloss/dh_l (normalised); g_tot and d_sq are its squared norms per trial and
        # those of dloss/dz_l per sample
        g_tot, d_sq = self._backward_norms(dh, depth)
        for l in range(depth, 0, -1):
            if self.cancel is not None and self.cancel.is_set():
                raise _Cancelled
            li = net.layer_inits[l - 1]
            n_in, n_out = widths[l - 1], widths[l]
            out["log_g"][:, l] = 2 * log_gs + _log(g_tot / (batch * n_out))
            if act.name == "tanh":
                log_gs = log_gs + self._derivs[l - 1][1]  # phi''s own scale, as a logarithm
            dms = d_sq.sum(axis=1) / (batch * n_out)
            out["log_d"][:, l - 1] = 2 * log_gs + _log(dms)
            # ||dloss_b/dW_l||_F^2 = ||dloss_b/dz_l||^2 ||h_{l-1,b}||^2: its batch mean from the
            # normalised norms (both of order n, so the products cannot overflow) and the scales
            log_s_in, sq_in = prev_norms[l - 1]
            mean_hat = np.einsum("tb,tb->t", d_sq, sq_in) / batch
            log_mean = _log(mean_hat)
            zero = mean_hat == 0
            if np.any(zero):
                lost = zero & np.any((d_sq > 0) & (sq_in > 0), axis=1)
                if np.any(lost):  # every product underflowed (norms > 1e300 apart): use logs
                    log_mean[lost] = _log_mean_exp(_log(d_sq[lost]) + _log(sq_in[lost]))
            out["log_wgrad"][:, l - 1] = 2 * log_gs + 2 * log_s_in + log_mean
            w = weights[l - 1] if weights[l - 1] is not None else self._weights(l, li)
            alive = dms > 0
            log_est = 0.5 * _log(np.where(alive, dms, 1.0)) + 0.5 * math.log(
                n_out * _unit_variance(li)
            )
            mult = np.where(alive, np.exp(-log_est), 0.0)
            # normalise dh itself first where its multiplier alone would overflow the dtype
            divisor, subnormal = _back_to_unit_rms(dh, dms, alive)
            if divisor is not None:
                subnormal_warning |= subnormal
                mult *= np.sqrt(divisor)
            wl = self._scaled(w, mult)
            self.cur ^= 1
            dh = np.matmul(dh, wl, out=self._buffer(self.cur, n_in))
            g_tot, d_sq = self._backward_norms(dh, l - 1)
            log_gs = np.where(alive, log_gs + log_sigma[:, l - 1] + log_est, 0.0)
        out["log_g"][:, 0] = 2 * log_gs + _log(g_tot / (batch * widths[0]))
        out["head"] = head
        out["range_warning"] = range_warning
        out["resolution_warning"] = resolution_warning
        out["subnormal_warning"] = subnormal_warning
        out["tanh_warnings"] = self.tanh_warnings
        return out

    def _softmax_head(self, h, log_s, prev_ms):
        """Cross-entropy over a linear classifier; returns dloss/dh_L (normalised) and stats."""
        net, cfg, k, batch, dt = self.net, self.cfg, self.k, self.batch, self.dtype
        n_last, classes = net.widths[-1], cfg.classes
        li = net.init.layer(n_last, classes)
        w = draw(
            cfg.seed,
            Stream.HEAD,
            0,
            self.t0,
            self.t1,
            lambda g, kk: sample_unit(li, g, kk),
            n_last * classes,
        )
        u = np.matmul(h.astype(np.float64), w.transpose(0, 2, 1))  # (k, batch, classes)
        # p (and dloss/dlogits = p - onehot) is one-hot to float64 long before the logits'
        # scale reaches e^600; the loss is kept as a logarithm at the true scale below
        true_log_scale = log_s + math.log(li.std)
        log_scale = np.minimum(true_log_scale, 600.0)
        logits = u * np.exp(log_scale)[:, None, None]
        logits -= logits.max(axis=2, keepdims=True)
        p = np.exp(logits)
        total = p.sum(axis=2)  # >= 1: the largest logit is 0
        p /= total[..., None]
        if self.labels is not None:
            labels = np.broadcast_to(self.labels, (k, batch))
        else:
            labels = draw(
                cfg.seed,
                Stream.LABELS,
                0,
                self.t0,
                self.t1,
                lambda g, kk: g.integers(0, classes, size=(kk, batch)),
                batch,
            )
        onehot = np.zeros_like(p)
        np.put_along_axis(onehot, labels[..., None], 1.0, axis=2)
        with np.errstate(divide="ignore"):
            logp = np.log(p)
        # loss_b = S (max u - u_y) + log sum_j exp(S (u_j - max u)), S = exp(true_log_scale),
        # summed as logarithms: S (max u - u_y) may be far beyond float64 (logits of 10^1500)
        gap = u.max(axis=2) - np.take_along_axis(u, labels[..., None], axis=2)[..., 0]
        with np.errstate(divide="ignore"):
            log_loss = np.logaddexp(true_log_scale[:, None] + np.log(gap), np.log(np.log(total)))
        log_mean_loss = _log_mean_exp(log_loss)
        entropy = -np.sum(np.where(p > 0, p * np.where(p > 0, logp, 0.0), 0.0), axis=2)
        err = p - onehot  # dloss/dlogits, (k, batch, classes)
        dh = np.matmul(err, w)  # times std * exp... handled in log scale
        gsq = _sumsq(dh).sum(axis=1) / (batch * n_last)
        alive = gsq > 0
        rms = np.sqrt(np.where(alive, gsq, 1.0))
        dh = (dh / rms[:, None, None]).astype(dt)
        log_gs = math.log(li.std) + np.log(rms)
        stats = {
            "max_prob": p.max(axis=2).mean(axis=1),
            "entropy": entropy.mean(axis=1),
            "log_loss": log_mean_loss,  # (k,) natural log of the batch-mean loss
            "log_g_top": 2 * log_gs + _log(np.where(alive, 1.0, 0.0)),
        }
        return dh, log_gs, stats


_ARENA = threading.local()  # per-thread reusable mask storage


class _Cancelled(Exception):
    """Raised inside worker threads once Ctrl-C has been pressed."""


def _run_threads(one, bounds, workers: int) -> list:
    """Chunks on a thread pool; Ctrl-C stops every chunk at its next layer, not at the end."""
    cancel = threading.Event()

    def guarded(b):
        return one(b, cancel)

    pool = ThreadPoolExecutor(workers)
    interrupted = False
    try:
        futures = [pool.submit(guarded, b) for b in bounds]
        while not all(f.done() for f in futures):
            wait(futures, timeout=0.2, return_when=FIRST_EXCEPTION)
            if any(f.done() and f.exception() is not None for f in futures):
                break
        return [f.result() for f in futures]
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        cancel.set()
        # on Ctrl-C return at once: the workers finish their current layer in the background
        pool.shutdown(wait=not interrupted, cancel_futures=True)


def _most_trials_that_fit(net: Network, cfg: EngineConfig, budget: int) -> int:
    """The largest trial count (< cfg.trials) whose memory estimate fits ``budget``; 0 if none.

    Memory grows with trials only up to one chunk per worker, then by the per-trial statistics.
    """
    lo, hi = 0, cfg.trials - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if estimate_memory(net, replace(cfg, trials=mid))["total"] <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def simulate(net: Network, cfg: EngineConfig) -> TrialStats:
    """Run ``cfg.trials`` independent networks forward and backward; per-trial statistics.

    Raises:
        InputError: the run would need more memory than the machine has (checked before any
            large allocation), or LSUV meets a layer with zero output variance.
    """
    check_kernels(cfg.kernels)  # before the memory check: a typo is reported first
    batch = _effective_batch(cfg)
    need = estimate_memory(net, cfg)
    have = _available_memory()
    if need["total"] > 0.8 * have:
        fit = _most_trials_that_fit(net, cfg, int(0.8 * have))
        if fit >= 1:
            advice = f"use at most {fit} trial{'s' if fit > 1 else ''}, a smaller --batch, "
            advice += "fewer --classes "
        else:
            one = estimate_memory(net, replace(cfg, trials=1))["total"]
            advice = f"even one network needs about {one / 2**30:.1f} GiB: use a smaller --batch, "
            advice += "fewer --classes "
        raise InputError(
            f"this run needs about {need['total'] / 2**30:.1f} GiB but {have / 2**30:.1f} GiB "
            f"is available; {advice}or narrower layers"
        )
    inputs, labels = batch_inputs(net, cfg)
    k = _plan_chunks(net, cfg, batch)
    workers = cfg.workers or min(2, os.cpu_count() or 1)
    bounds = _chunk_bounds(net, cfg.trials, k, workers, cfg.chunk_trials is not None)

    act = net.activation
    fused = choose_kernels(
        cfg.kernels,
        batch * sum(net.widths[1:]),  # per network: never on the number of trials
        cfg.dtype,
        act.has_kink,
    )

    def one(b, cancel=None):
        return _Chunk(net, cfg, batch, inputs, labels, *b, cancel=cancel, fused=fused).run()

    workers = max(1, min(workers, len(bounds)))
    # BLAS runs single-threaded inside the engine: parallelism comes from trial chunks, and every
    # per-trial product then takes the same code path whatever the chunking (bitwise equal).
    with threadpool_limits(limits=1, user_api="blas"):
        if workers == 1:
            try:
                parts = [one(b) for b in bounds]
            finally:  # this thread's buffers (up to a chunk's weights) go with the run
                _ARENA.__dict__.clear()
        else:
            parts = _run_threads(one, bounds, workers)
    parts = [part for _, part in sorted(zip(bounds, parts), key=lambda pair: pair[0])]

    def cat(name):
        return np.concatenate([p[name] for p in parts], axis=0)

    head = {}
    if parts[0]["head"]:
        head = {key: np.concatenate([p["head"][key] for p in parts]) for key in parts[0]["head"]}
    return TrialStats(
        log_q=cat("log_q"),
        log_var=cat("log_var"),
        log_m=cat("log_m"),
        dead_units=cat("dead_units"),
        zero_fraction=cat("zero_fraction"),
        dead_inputs=cat("dead_inputs"),
        log_g=cat("log_g"),
        log_d=cat("log_d"),
        log_wgrad=cat("log_wgrad"),
        log_m0=cat("log_m0"),
        log_weight_var=cat("log_weight_var"),
        lsuv_log_factor=cat("lsuv_log_factor"),
        lsuv_iterations=cat("lsuv_iterations"),
        head=head,
        scale_range_warning=any(p["range_warning"] for p in parts),
        resolution_warning=any(p["resolution_warning"] for p in parts),
        subnormal_warning=any(p["subnormal_warning"] for p in parts),
        tanh_warnings=frozenset().union(*(p["tanh_warnings"] for p in parts)),
        kernels="numpy" if fused is None else "numba",
    )
