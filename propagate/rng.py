"""Counter-style random streams: trial i's numbers depend only on (seed, stream, layer, i).

Every random quantity of a run (weights, biases, inputs, the backward probe, ...) is drawn from a
stream identified by ``(seed, kind, layer, block)`` where ``block = trial // TRIAL_BLOCK``. One
``np.random.Generator`` (SFC64 seeded by ``SeedSequence(seed, spawn_key=(kind, layer, block))``)
serves the trials of one block, drawn trial-major. numpy's samplers fill sequentially, so the
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

__all__ = ["TRIAL_BLOCK", "Stream", "block_generator", "draw"]

TRIAL_BLOCK = 8


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


def draw(seed: int, kind: int, layer: int, start: int, stop: int, sampler: Sampler) -> np.ndarray:
    """Values for trials ``start..stop-1`` of one stream, stacked on a leading trials axis.

    Args:
        seed, kind, layer: identify the stream (``layer`` is 0 for layer-free streams).
        start, stop: trial range, 0 <= start < stop.
        sampler: ``sampler(gen, k)`` returns an array whose leading axis has k trials, drawn
            trial-major from ``gen`` (the prefix property above).

    Returns:
        Array (stop - start, ...) from the sampler.
    """
    parts = []
    first_block, last_block = start // TRIAL_BLOCK, (stop - 1) // TRIAL_BLOCK
    for block in range(first_block, last_block + 1):
        b0 = block * TRIAL_BLOCK
        lo, hi = max(start, b0), min(stop, b0 + TRIAL_BLOCK)
        values = sampler(block_generator(seed, kind, layer, block), hi - b0)
        parts.append(values[lo - b0 :])
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
