"""Counter-style random streams: trial i's numbers depend only on (seed, stream, layer, i).

Every random quantity of a run (weights, biases, inputs, the backward probe, ...) is drawn from a
stream identified by ``(seed, kind, layer, block)`` where ``block = trial // B`` and the block
size B = ``trial_block(per_trial)`` depends only on how many numbers one trial takes from that
stream (8 trials for large draws, up to 256 for tiny ones, so narrow networks do not spend their
time seeding generators). One ``np.random.Generator`` (SFC64 seeded by
``SeedSequence(seed, spawn_key=(kind, layer, block))``) serves the trials of one block, drawn
trial-major. numpy's samplers fill sequentially, so the
first k trials' values are the same whether k or all TRIAL_BLOCK trials are drawn: trial i's
numbers never depend on how many trials a run has, nor on how trials are chunked or spread over
threads, processes or machines. A layer's weights can be regenerated in the backward pass
instead of being stored.

Samplers passed to :func:`draw` must keep that prefix property: consume the generator in trial
order and take a fixed amount per trial (``standard_normal``, ``random``, inverse-CDF transforms
of them; no rejection sampling across trials).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["TRIAL_BLOCK", "MAX_TRIAL_BLOCK", "Stream", "block_generator", "draw", "trial_block"]

TRIAL_BLOCK = 8  # the smallest block
MAX_TRIAL_BLOCK = 256
_NUMBERS_PER_BLOCK = 16384  # a block aims at this many numbers


def trial_block(per_trial: int) -> int:
    """Trials per random stream for draws of ``per_trial`` numbers each: a power of two in
    [TRIAL_BLOCK, MAX_TRIAL_BLOCK], about 16384 numbers per stream."""
    target = _NUMBERS_PER_BLOCK // max(int(per_trial), 1)
    block = TRIAL_BLOCK
    while block * 2 <= min(target, MAX_TRIAL_BLOCK):
        block *= 2
    return block


class Stream:
    """Stream kinds (the first spawn-key entry); new kinds append, never renumber."""

    WEIGHTS = 0
    BIAS = 1
    INPUT = 2
    PROBE = 3
    DATA = 4
    LABELS = 5
    PAIRS = 6
    HEAD = 7


def block_generator(seed: int, kind: int, layer: int, block: int) -> np.random.Generator:
    """The generator of one (seed, kind, layer, trial-block) stream."""
    seq = np.random.SeedSequence(seed, spawn_key=(kind, layer, block))
    return np.random.Generator(np.random.SFC64(seq))


Sampler = Callable[[np.random.Generator, int], np.ndarray]


def draw(
    seed: int, kind: int, layer: int, start: int, stop: int, sampler: Sampler, per_trial: int
) -> np.ndarray:
    """Values for trials ``start..stop-1`` of one stream, stacked on a leading trials axis.

    Args:
        seed, kind, layer: identify the stream (``layer`` is 0 for layer-free streams).
        start, stop: trial range, 0 <= start < stop.
        sampler: ``sampler(gen, k)`` returns an array whose leading axis has k trials, drawn
            trial-major from ``gen`` (the prefix property above).
        per_trial: how many numbers one trial draws (sets the block size).

    Returns:
        Array (stop - start, ...) from the sampler.
    """
    size = trial_block(per_trial)
    parts = []
    first_block, last_block = start // size, (stop - 1) // size
    for block in range(first_block, last_block + 1):
        b0 = block * size
        lo, hi = max(start, b0), min(stop, b0 + size)
        values = sampler(block_generator(seed, kind, layer, block), hi - b0)
        parts.append(values[lo - b0 :])
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
