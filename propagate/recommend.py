"""The std per layer that keeps the typical signal stable, beside He's, for any ReLU architecture.

He's std sqrt(2/fan_in) keeps the *mean* per-unit second moment of a ReLU stack constant, exactly
at every width (He et al. 2015). At small width the mean is carried by rare large networks:
the typical (geometric-mean) network shrinks layer by layer, its log-norm spreads, and some
networks are dead (section 3). For Gaussian weights and zero bias the exact law gives, per layer
(K ~ Bin(n_out, 1/2) active units, psi the digamma function)::

    s2*(n_out, n_in) = (n_in / 2) exp(-E[psi(K/2) | K >= 1])          (Hanin & Rolnick 2018)

the scale s2 = n_in Var(w) with E[log ||h_l||^2 / ||h_{l-1}||^2 | alive] = 0. Measured per unit,
as He measures (M_l = ||h_l||^2 / n_l), the neutral scale is s2*(n_out, n_in) n_out / n_in =
s2*(n_out, n_out), and the recommended std is

    recommended_std = sqrt(s2*(n_out, n_in) * n_out / n_in / n_in)    (sqrt(s2*/n) if equal)

For equal widths this is ``theory.neutral_std``; across a width change the two differ by
sqrt(n_out/n_in), a factor that telescopes over the stack (``recommended_std_norm`` gives the
norm version). It depends on the layer's fan-out only through s2*, is about He's std times
exp(5/(4 n_out)) for wide layers, and exceeds it by 1.2x at n_out = 8 and 1.43x at n_out = 4.

What no scale changes: P(dead) = 1 - prod(1 - 2^-n_l) and Var[log R | alive] depend on the widths
alone. A narrow layer inside a wide stack (a bottleneck) kills 2^-n of all inputs by itself and
adds most of the log-norm variance; the recommended std re-centres the typical signal after it,
only a wider layer removes the deaths and the spread.

References: Hanin & Rolnick 2018 (arXiv:1803.01719); He et al. 2015
(arXiv:1502.01852).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from scipy import special

from . import theory
from .errors import InputError
from .results import RunResult
from .schemes import InitSpec

__all__ = ["recommend", "recommended_std_per_unit", "neutral_network", "find_bottlenecks"]

LN10 = math.log(10.0)
_PROBS = (0.05, 0.5, 0.95)
_BOTTLENECK_RATIO = 4  # a layer at most 1/4 as wide as the stack's median width


def recommended_std_per_unit(widths: Sequence[int]) -> np.ndarray:
    """(L,) std sqrt(s2*(n_l, n_l) / n_{l-1}): typical per-unit second moment kept constant."""
    n = [int(v) for v in widths]
    return np.array([math.sqrt(theory.neutral_scale(o, o) / i) for i, o in zip(n[:-1], n[1:])])


@dataclasses.dataclass(frozen=True)
class _NeutralNormal(InitSpec):
    """Gaussian weights with variance s2*(fan_out, fan_out) / fan_in in every layer."""

    def layer(self, fan_in: int, fan_out: int):
        base = super().layer(fan_in, fan_out)
        var = theory.neutral_scale(fan_out, fan_out) / fan_in
        return dataclasses.replace(base, std=math.sqrt(var), weight_var=var)


def neutral_network(widths: Sequence[int]):
    """A ReLU ``Network`` with Gaussian weights at the recommended (per-unit neutral) std."""
    from .activations import make_activation
    from .network import Network
    from .schemes import resolve_scheme

    act = make_activation("relu")
    he = resolve_scheme("he-normal", activation=act)
    spec = _NeutralNormal(**{f.name: getattr(he, f.name) for f in dataclasses.fields(he)})
    return Network(widths=tuple(int(v) for v in widths), activation=act, init=spec)


def _layer_moments(n: int) -> tuple[float, float]:
    """(E[log chi2_K | K >= 1], Var[log chi2_K | K >= 1]) for K ~ Bin(n, 1/2), by finite sums."""
    k = np.arange(1, n + 1, dtype=float)
    log_pmf = special.gammaln(n + 1.0) - special.gammaln(k + 1.0) - special.gammaln(n - k + 1.0)
    p = np.exp(log_pmf - special.logsumexp(log_pmf))
    psi = special.psi(k / 2.0)
    mean_psi = float(np.sum(p * psi))
    var = float(np.sum(p * special.polygamma(1, k / 2.0)) + np.sum(p * (psi - mean_psi) ** 2))
    return math.log(2.0) + mean_psi, var


def find_bottlenecks(widths: Sequence[int]) -> list[int]:
    """1-based layers whose width is at most a quarter of the stack's median width."""
    reference = float(np.median(widths))
    return [l for l in range(1, len(widths)) if widths[l] * _BOTTLENECK_RATIO <= reference]


def _measure(net, trials: int, seed: int) -> dict[str, np.ndarray]:
    """Per layer: dead fraction, median log10 M_l/M_0 (dead = -inf), log10 spread given alive."""
    from .network import EngineConfig, simulate

    stats = simulate(net, EngineConfig(batch=1, trials=trials, seed=seed, dtype=np.float64))
    log10_m = (stats.log_m - stats.log_m0[:, None]) / LN10
    alive = np.isfinite(log10_m)
    spread = np.array(
        [
            np.std(log10_m[alive[:, i], i], ddof=1) if alive[:, i].sum() >= 2 else np.nan
            for i in range(log10_m.shape[1])
        ]
    )
    return {
        "p_dead": stats.dead_inputs.mean(axis=0),
        "median": np.median(log10_m, axis=0),
        "spread": spread,
    }


def recommend(
    widths: str | Sequence[int] | None = None,
    *,
    depth=None,
    fan_in=None,
    measure: bool = False,
    trials: int = 2000,
    seed: int = 0,
) -> RunResult:
    """Per-layer recommended std beside He's, with P(dead) and the log-norm band under both.

    Args:
        widths: '64,64,4,64,64' or a sequence (input width first), or
        depth, fan_in: a constant-width stack (defaults 30 and 64, as ``propagate run``).
        measure: also simulate ``trials`` networks (one input each, float64) under both stds.
        seed: root of the simulation's randomness.

    Returns:
        RunResult of kind ``recommend``: ``layers`` (one dict per layer, fields below),
        ``summary`` (``message``, ``bottlenecks``, totals) and ``config``.

    Layer fields: fan_in, fan_out, he_std, recommended_std, std_ratio, s2_star
    (= theory.neutral_scale(fan_out, fan_in)), s2_star_per_unit, recommended_std_norm
    (= theory.neutral_std), p_dead (by this layer; any scale), p_dead_layer (2^-fan_out),
    log10_spread (std of log10 M_l/M_0 over alive networks; any scale), log10_spread_layer,
    log10_typical_factor_he (this layer's geometric-mean per-unit factor under He, given alive),
    and for He (``_he``) and the recommendation (``_rec``): log10_mean, log10_median, log10_p05,
    log10_p95 of M_l/M_0 (M = per-unit squared norm; dead networks count as -inf).
    With ``measure``: p_dead_meas_*, log10_median_meas_*, log10_spread_meas_*.
    """
    from . import __version__
    from .api import build_network, check_positive_int

    net = build_network(widths=widths, depth=depth, fan_in=fan_in)
    trials = check_positive_int("--trials", trials, minimum=2)
    seed = check_positive_int("--seed", seed, minimum=0)
    n = list(net.widths)
    depth = net.depth
    he_std = np.sqrt(2.0 / np.array(n[:-1], dtype=float))
    rec_std = recommended_std_per_unit(n)
    s2_star = np.array([theory.neutral_scale(o, i) for i, o in zip(n[:-1], n[1:])])
    s2_unit = rec_std**2 * np.array(n[:-1])
    dead = theory.p_dead(n)
    moments = theory.log_ratio_moments(n, 2.0)
    per_unit = np.log(n[0] / np.array(n[1:], dtype=float))  # log M_l/M_0 = log R_l + this
    try:
        q_he = theory.log_ratio_quantiles(n, 2.0, _PROBS, given_alive=False)
        q_rec = theory.log_ratio_quantiles(n, s2_unit, _PROBS, given_alive=False)
    except InputError as exc:
        raise InputError(f"--widths {','.join(map(str, n))}: {exc}") from None
    q_he = (q_he + per_unit[:, None]) / LN10
    q_rec = (q_rec + per_unit[:, None]) / LN10
    log10_mean_rec = np.cumsum(np.log(s2_unit / 2.0)) / LN10
    layer_law = {w: _layer_moments(w) for w in set(n[1:])}

    layers = []
    for i in range(depth):
        n_in, n_out = n[i], n[i + 1]
        mean_log, var_log = layer_law[n_out]
        layers.append(
            {
                "layer": i + 1,
                "fan_in": n_in,
                "fan_out": n_out,
                "he_std": float(he_std[i]),
                "recommended_std": float(rec_std[i]),
                "std_ratio": float(rec_std[i] / he_std[i]),
                "s2_star": float(s2_star[i]),
                "s2_star_per_unit": float(s2_unit[i]),
                "recommended_std_norm": float(math.sqrt(s2_star[i] / n_in)),
                "p_dead": float(dead[i]),
                "p_dead_layer": math.ldexp(1.0, -n_out),
                "log10_spread": float(math.sqrt(moments["var"][i]) / LN10),
                "log10_spread_layer": float(math.sqrt(var_log) / LN10),
                "log10_typical_factor_he": float(
                    (math.log(4.0 / n_out) + mean_log - math.log(2.0)) / LN10
                ),
                "log10_mean_he": 0.0,
                "log10_median_he": float(q_he[i, 1]),
                "log10_p05_he": float(q_he[i, 0]),
                "log10_p95_he": float(q_he[i, 2]),
                "log10_mean_rec": float(log10_mean_rec[i]),
                "log10_median_rec": float(q_rec[i, 1]),
                "log10_p05_rec": float(q_rec[i, 0]),
                "log10_p95_rec": float(q_rec[i, 2]),
            }
        )
    if measure:
        meas = {
            "he": _measure(net, trials, seed),
            "rec": _measure(neutral_network(n), trials, seed),
        }
        for key, values in meas.items():
            for i, row in enumerate(layers):
                row[f"p_dead_meas_{key}"] = float(values["p_dead"][i])
                row[f"log10_median_meas_{key}"] = float(values["median"][i])
                spread = float(values["spread"][i])
                row[f"log10_spread_meas_{key}"] = spread if math.isfinite(spread) else None

    bottlenecks = [_bottleneck(layers, l, measure) for l in find_bottlenecks(n)]
    summary = _summary(layers, n, bottlenecks)
    config = {
        "package": "propagate-init",
        "version": __version__,
        "widths": n,
        "depth": depth,
        "activation": "relu",
        "bias_std": 0.0,
        "law": "Gaussian weights, zero bias: exact finite-width law (Hanin & Rolnick 2018)",
        "measured": measure,
        "trials": trials if measure else None,
        "seed": seed if measure else None,
        "batch": 1 if measure else None,
    }
    return RunResult(config=config, layers=layers, summary=summary, kind="recommend")


def _pct(p: float) -> str:
    return f"{100 * p:.3g} %" if p >= 1e-4 else f"{p:.2g}"


def _bottleneck(layers: list[dict], layer: int, measured: bool) -> dict:
    row = layers[layer - 1]
    others_dead = 1.0 - math.prod(1.0 - r["p_dead_layer"] for r in layers if r is not row)
    var_here = (row["log10_spread_layer"]) ** 2
    var_total = layers[-1]["log10_spread"] ** 2
    share = var_here / var_total if var_total > 0 else 1.0
    factor = 10 ** row["log10_typical_factor_he"]
    text = (
        f"layer {layer} ({row['fan_in']} -> {row['fan_out']}) is a bottleneck: by itself it kills "
        f"2^-{row['fan_out']} = {_pct(row['p_dead_layer'])} of inputs (all other layers together "
        f"{_pct(others_dead)}) and carries {100 * share:.0f} % of the log-norm variance at the "
        f"output; under He it shrinks the typical per-unit signal by {factor:.2f}x (geometric "
        "mean over alive networks) while the mean is kept. Its recommended std "
        f"{row['recommended_std']:.3g} (He {row['he_std']:.3g}, {row['std_ratio']:.2f}x) "
        "re-centres the typical signal; only a wider layer lowers the deaths and the spread."
    )
    out = {
        "layer": layer,
        "fan_in": row["fan_in"],
        "fan_out": row["fan_out"],
        "p_dead_layer": row["p_dead_layer"],
        "p_dead_other_layers": others_dead,
        "variance_share": share,
        "typical_factor_he": factor,
        "message": text,
    }
    if measured:
        before = layers[layer - 2]["p_dead_meas_he"] if layer > 1 else 0.0
        out["p_dead_layer_meas"] = row["p_dead_meas_he"] - before
        out["message"] += (
            f" Measured: {_pct(out['p_dead_layer_meas'])} of inputs die at this layer."
        )
    return out


def _summary(layers: list[dict], widths: list[int], bottlenecks: list[dict]) -> dict:
    last = layers[-1]
    depth = len(layers)
    sum_inv = float(np.sum(1.0 / np.array(widths[1:], dtype=float)))

    def med(x):
        return "dead" if not math.isfinite(x) else f"10^{x:.2f}"

    he_end = last["log10_median_he"]
    he_text = f"at {med(he_end)} of the input's" if math.isfinite(he_end) else "dead"
    words = [
        f"He keeps the mean per-unit second moment exactly (E M_{depth}/M_0 = 1), but the median "
        f"network ends {he_text}; the recommended stds "
        f"keep the typical per-unit signal (median {med(last['log10_median_rec'])}), and their "
        f"mean grows to 10^{last['log10_mean_rec']:.2f} instead.",
        f"Whatever the scale, {_pct(last['p_dead'])} of inputs give an all-zero output and the "
        f"log10 spread over networks is {last['log10_spread']:.2f} (sum of 1/n_l = {sum_inv:.3g}):"
        " only width changes these.",
    ]
    words += [b["message"] for b in bottlenecks]
    return {
        "message": " ".join(words),
        "bottlenecks": bottlenecks,
        "sum_inverse_width": sum_inv,
        "p_dead": last["p_dead"],
        "log10_spread": last["log10_spread"],
        "log10_median_he": last["log10_median_he"],
        "log10_median_rec": last["log10_median_rec"],
        "log10_mean_rec": last["log10_mean_rec"],
    }
