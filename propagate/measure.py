"""From per-trial statistics to per-layer measurements beside predictions, and a verdict.

Across trials every quantity is summarised by the log10 of its mean (computed in log space, so it
is exact at any depth), its median and its 5-95 % band. A value that is exactly zero (a dead
network) has log10 = -inf, written as null in JSON.
"""

from __future__ import annotations

import math
import re

import numpy as np

from . import theory
from .finite_width import CARRIED_BY_FEW, finite_width_predictions, fmt_power
from .network import EngineConfig, Network, TrialStats

__all__ = ["summarize_layers", "verdict", "log10_mean", "FLOAT_LIMITS"]

LN10 = math.log(10.0)

# log10 of the smallest normal and the largest finite value: a naive pass's activations of
# typical size sqrt(q) leave the range when log10 q crosses twice these.
FLOAT_LIMITS = {
    "float32": (math.log10(np.finfo(np.float32).tiny), math.log10(np.finfo(np.float32).max)),
    "float64": (math.log10(np.finfo(np.float64).tiny), math.log10(np.finfo(np.float64).max)),
}
# the verdict lists a std per layer up to this many layers; beyond, one per distinct fan-in
_LISTED_LAYERS = 12


def log10_mean(logs: np.ndarray, axis: int = 0) -> np.ndarray:
    """log10 of the mean of exp(logs) along ``axis`` (natural logs in, -inf allowed)."""
    logs = np.moveaxis(np.asarray(logs, dtype=np.float64), axis, -1)
    top = np.max(logs, axis=-1)
    safe = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(under="ignore"):
        total = np.exp(logs - safe[..., None]).sum(axis=-1)
    with np.errstate(divide="ignore"):
        out = (safe + np.log(total) - math.log(logs.shape[-1])) / LN10
    return np.where(np.isfinite(top), out, -np.inf)


def _relative_se(logs: np.ndarray) -> np.ndarray:
    """Standard error of the mean of exp(logs) over axis 0, relative to that mean."""
    top = np.max(logs, axis=0)
    safe = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(under="ignore"):
        scaled = np.exp(logs - safe)
    mean = scaled.mean(axis=0)
    n = logs.shape[0]
    sd = scaled.std(axis=0, ddof=1) if n > 1 else np.full_like(mean, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mean > 0, sd / np.sqrt(n) / mean, np.nan)


def _band(logs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """log10 median, 5 % and 95 % quantiles over axis 0 (no interpolation across -inf)."""
    l10 = logs / LN10
    med = np.median(l10, axis=0)
    lo = np.percentile(l10, 5, axis=0, method="inverted_cdf")
    hi = np.percentile(l10, 95, axis=0, method="inverted_cdf")
    return med, lo, hi


def predictions(net: Network, cfg: EngineConfig, stats: TrialStats) -> dict[str, np.ndarray]:
    """Mean-field (and exact-law) predictions for this network, natural logs."""
    # inputs and probe are shared by all trials: predict with their realised second moments
    m0 = float(np.exp(stats.log_m0[0]))
    weight_vars, q_given = net.weight_vars, None
    if net.init.scheme.kind == "lsuv":
        # LSUV sets each network's pre-activation variance (over batch and units, about their
        # grand mean) to 1 by construction, so q_l = 1 + grand mean^2 = 1 + O(1/n_l); iterating
        # the recursion with the realised weights instead would compound the per-network
        # correlation between a layer's factor and its input (Jensen: +2 % per layer at width
        # 64). Backward: the realised (post-LSUV) variances, geometric mean over networks.
        weight_vars, q_given = np.exp(np.mean(stats.log_weight_var, axis=0)), 1.0
    # the probe g ~ N(0, I) is drawn per network: E g_L = 1; a softmax head's g_L is measured
    log_g_top = 0.0
    if cfg.head == "softmax":
        log_g_top = float(log10_mean(stats.log_g[:, -1]) * LN10)
    pred = theory.mean_field(
        list(net.widths),
        list(weight_vars),
        net.activation,
        bias_var=net.bias_stds**2,
        input_second_moment=m0,
        log_g_top=log_g_top,
        q_given=q_given,
    )
    return pred


def summarize_layers(net: Network, cfg: EngineConfig, stats: TrialStats) -> tuple[list, dict]:
    """Per-layer dicts (the JSON ``layers`` list) and the prediction arrays used."""
    pred = predictions(net, cfg, stats)
    exact_backward = net.activation.has_dead_layers and not net.has_bias
    g_pred = pred["log_g_mean"] if exact_backward else pred["log_g"]
    d_pred = pred["log_d_mean"] if exact_backward else pred["log_d"]
    q_mean = log10_mean(stats.log_q)
    q_med, q_lo, q_hi = _band(stats.log_q)
    q_rse = _relative_se(stats.log_q)
    g_mean = log10_mean(stats.log_g)
    g_med, g_lo, g_hi = _band(stats.log_g)
    p_dead_pred = theory.p_dead(list(net.widths)) if exact_backward else np.zeros(net.depth)
    layers = []
    for i in range(net.depth):
        li = net.layer_inits[i]
        q_pred = pred["log_q"][i] / LN10
        row = {
            "layer": i + 1,
            "fan_in": net.widths[i],
            "fan_out": net.widths[i + 1],
            "weight_var": li.weight_var,
            "weight_var_realised": float(10 ** log10_mean(stats.log_weight_var[:, i])),
            "log10_q": float(q_mean[i]),
            "log10_q_pred": float(q_pred),
            "q_ratio": _ratio(q_mean[i], q_pred),
            "log10_q_ratio": float(q_mean[i] - q_pred) if math.isfinite(q_mean[i]) else -math.inf,
            "q_rel_se": float(q_rse[i]),
            "log10_q_median": float(q_med[i]),
            "log10_q_p05": float(q_lo[i]),
            "log10_q_p95": float(q_hi[i]),
            "log10_var": float(log10_mean(stats.log_var[:, i])),
            "log10_m": float(log10_mean(stats.log_m[:, i])),
            "log10_m_pred": float(pred["log_m"][i] / LN10),
            "dead_fraction": float(np.mean(stats.dead_units[:, i])),
            "zero_fraction": float(np.mean(stats.zero_fraction[:, i])),
            "p_dead": float(np.mean(stats.dead_inputs[:, i])),
            "p_dead_pred": float(p_dead_pred[i]),
            "log10_grad": float(g_mean[i + 1]),
            "log10_grad_pred": float(g_pred[i + 1] / LN10),
            "log10_grad_median": float(g_med[i + 1]),
            "log10_grad_p05": float(g_lo[i + 1]),
            "log10_grad_p95": float(g_hi[i + 1]),
            "log10_delta": float(log10_mean(stats.log_d[:, i])),
            "log10_delta_pred": float(d_pred[i] / LN10),
            "log10_wgrad": float(log10_mean(stats.log_wgrad[:, i])),
            "log10_wgrad_pred": float(pred["log_wgrad"][i] / LN10),
        }
        if net.init.scheme.kind == "lsuv":
            row["lsuv_factor"] = float(np.exp(np.mean(stats.lsuv_log_factor[:, i])))
            row["lsuv_iterations"] = float(np.mean(stats.lsuv_iterations[:, i]))
        layers.append(row)
    batch = min(cfg.batch, cfg.data.n_samples) if cfg.data is not None else cfg.batch
    finite, notes = finite_width_predictions(net, stats, batch=batch)
    for row, extra in zip(layers, finite):
        # only what is predicted: a null log10 field would read back as -inf ("dead")
        row.update({key: value for key, value in extra.items() if value is not None})
    heavy = _heavy_tail_note(layers, net)
    if heavy and not any(CARRIED_BY_FEW in note for note in notes):
        notes.append(heavy)
    signal_share = None
    if net.has_bias:
        plain = theory.mean_field(
            list(net.widths),
            list(net.weight_vars),
            net.activation,
            bias_var=0.0,
            input_second_moment=float(np.exp(stats.log_m0[0])),
        )
        signal_share = float((plain["log_q"][-1] - pred["log_q"][-1]) / LN10)
    extras = {
        "finite_width_notes": notes,
        "signal_share": signal_share,
        "log10_input_grad": float(g_mean[0]),
        "log10_input_grad_pred": float(g_pred[0] / LN10),
        "log10_m0": float(log10_mean(stats.log_m0)),
    }
    return layers, {"pred": pred, **extras}


def _heavy_tail_note(layers: list[dict], net: Network) -> str | None:
    """A note when the top layer's mean q over networks lies above 95 % of the networks: the
    finite-width spread makes the mean a statistic of the few largest networks."""
    top = layers[-1]
    mean, med, lo, hi = (
        top[k] for k in ("log10_q", "log10_q_median", "log10_q_p05", "log10_q_p95")
    )
    if not (math.isfinite(mean) and math.isfinite(hi) and mean > hi):
        return None
    sum_inv = float(np.sum(1.0 / np.asarray(net.widths[1:], dtype=float)))
    return (
        f"at layer {net.depth} the mean q over networks ({fmt_power(mean)}) lies above 95 % of "
        f"them (median {fmt_power(med)}, 5-95 %: {fmt_power(lo)} to {fmt_power(hi)}): a few "
        "large networks carry it, as the spread of log q at finite width makes them (sum of "
        f"1/n_l = {sum_inv:.2f}); its ratio to the mean field is then noisy (see ±). The median "
        "is the typical network."
    )


# share of the top layer's units dead for the whole batch from which the verdict says why
_DEAD_UNITS_NOTE = 0.1


def _ratio(measured_log10: float, predicted_log10: float) -> float | None:
    """measured / predicted; 0 for a dead layer; None (JSON null) beyond float64, where
    ``log10_q_ratio`` still holds it."""
    if not math.isfinite(measured_log10):
        return 0.0
    diff = measured_log10 - predicted_log10
    return float(10**diff) if abs(diff) < 300 else None


def _crossing(log10_values: np.ndarray, per_layer: float, limit: float, below: bool) -> int | None:
    """First 1-based layer where the series crosses ``limit``, extrapolated past the end."""
    hit = np.nonzero(log10_values < limit if below else log10_values > limit)[0]
    if hit.size:
        return int(hit[0]) + 1
    if not math.isfinite(per_layer) or abs(per_layer) < 1e-6:
        return None
    if (below and per_layer >= 0) or (not below and per_layer <= 0):
        return None
    last = log10_values[-1]
    steps = math.ceil((limit - last) / per_layer)
    return int(len(log10_values) + max(steps, 1))


def verdict(
    net: Network, layers: list[dict], gradient_in: float, signal_share: float | None = None
) -> dict:
    """Vanishing / exploding / stable, per-layer factor, naive-float limits and the fix.

    Args:
        signal_share: with biases, log10 of the input signal's share of q_L (mean field with
            and without bias); None without biases.
    """
    q_pred = np.array([row["log10_q_pred"] for row in layers])
    q_meas = np.array([row["log10_q"] for row in layers])
    g_pred = np.array([row["log10_grad_pred"] for row in layers])
    depth = net.depth
    act = net.activation
    # per-layer factor of the second moment (geometric mean over the stack)
    if depth > 1:
        factor_pred = (q_pred[-1] - q_pred[0]) / (depth - 1)
        finite = math.isfinite(q_meas[-1]) and math.isfinite(q_meas[0])
        factor_meas = (q_meas[-1] - q_meas[0]) / (depth - 1) if finite else -math.inf
        last_step = q_pred[-1] - q_pred[-2]  # extrapolate with the top layer's own factor
    else:
        factor_pred = factor_meas = last_step = 0.0
    total_change = q_pred[-1] - q_pred[0]
    washed_out = signal_share is not None and signal_share < -1
    # the typical network: median over networks, and the share of inputs that die
    med = [row["log10_q_median"] for row in layers]
    typical_change = med[-1] - med[0] if math.isfinite(med[0]) else 0.0
    p_dead_last = layers[-1]["p_dead"]
    typical_lost = typical_change < -1 or p_dead_last > 0.05
    regime = "mean"
    if total_change < -1 or washed_out:
        kind = "vanishing"
        regime = "input-share" if washed_out else "mean"
    elif total_change > 1:
        kind = "exploding"
    elif typical_lost:
        kind, regime = "vanishing", "typical"
    else:
        kind, regime = "stable", None
    # tanh is not geometric: near its critical point q decays algebraically (about 1/l)
    geometric = act.is_rectifier
    gain2 = 1.0 if act.name == "tanh" else 2.0 / (1.0 + act.negative_slope**2)
    rec = [math.sqrt(gain2 / n) for n in net.widths[:-1]]
    naive = {}
    step = last_step if geometric else 0.0  # no geometric extrapolation for tanh
    for name, (lo, hi) in FLOAT_LIMITS.items():
        naive[name] = {
            "underflow_layer": _crossing(q_pred, step, 2 * lo, below=True),
            "overflow_layer": _crossing(q_pred, step, 2 * hi, below=False),
        }
    factor = 10**factor_pred
    words = []
    if washed_out:
        words.append(
            f"the biases hold the pre-activation second moment near 10^{q_pred[-1]:.1f} "
            f"(measured 10^{q_meas[-1]:.1f}; 10^{q_pred[0]:.1f} at layer 1), but the input's "
            f"share of it at layer {depth} is 10^{signal_share:.1f}: the input signal is washed "
            "out by the biases."
        )
    elif regime == "typical":
        median_text = (
            f"10^{typical_change:+.1f} of layer 1's" if math.isfinite(typical_change) else "dead"
        )
        words.append(
            f"the mean second moment is preserved (factor {factor:.4g} per layer, exact in "
            f"expectation), but the typical network is not: the median network's q_{depth} is "
            f"{median_text}, and {100 * p_dead_last:.1f} % of inputs give an all-zero "
            f"h_{depth}. The layers are too narrow for this depth (see the notes below)."
        )
    elif kind == "stable":
        words.append(
            f"the pre-activation second moment changes by a factor {factor:.4g} per layer "
            f"(10^{total_change:+.2f} over {depth} layers; "
            f"measured 10^{q_meas[-1] - q_meas[0]:+.2f})."
        )
    else:
        words.append(
            f"each layer multiplies the pre-activation second moment by {factor:.4g}: after "
            f"{depth} layers it is 10^{q_pred[-1]:.1f} (measured 10^{q_meas[-1]:.1f}), against "
            f"10^{q_pred[0]:.1f} at layer 1."
        )
    wgrads = np.array([row["log10_wgrad"] for row in layers])
    g_in = gradient_in - layers[-1]["log10_grad"]
    if np.all(np.isfinite(wgrads)):
        spread = (
            f"about 10^{np.median(wgrads):.1f}"
            if np.ptp(wgrads) < 2
            else f"from 10^{wgrads.min():.1f} to 10^{wgrads.max():.1f}"
        )
        words.append(
            f"The input gradient is 10^{g_in:.1f} of the output's, and the weight gradients "
            f"(squared norm per input) are {spread}."
        )
    dead_last = layers[-1]["dead_fraction"]
    aligned = act.is_rectifier and act.negative_slope == 0.0 and not washed_out
    if aligned and dead_last >= _DEAD_UNITS_NOTE:
        words.append(
            f"{100 * dead_last:.0f} % of layer {depth}'s units are off for every input: "
            "ReLU aligns the inputs' activations with depth (their correlation tends to 1"
            + ("" if net.has_bias else ", whatever the weight scale")
            + "), so units switch on for all inputs or for none."
        )
    if kind != "stable":
        key = "underflow_layer" if kind == "vanishing" else "overflow_layer"
        at32, at64 = naive["float32"][key], naive["float64"][key]
        what = "underflows" if kind == "vanishing" else "overflows"
        if at32 is not None:
            words.append(
                f"A naive float32 pass {what} near layer {at32}"
                + (f" (float64 near layer {at64})." if at64 is not None else ".")
            )
    fans = sorted(set(net.widths[:-1]))
    if act.name == "tanh":
        rule = "std = sqrt(1/fan_in) (critical for tanh without bias)"
    elif act.name == "linear":
        rule = "std = sqrt(1/fan_in) (variance-preserving without an activation)"
    elif act.negative_slope:
        rule = f"std = sqrt(2/((1+a^2) fan_in)) with a = {act.negative_slope:g} (He)"
    else:
        rule = "std = sqrt(2/fan_in) (He)"
    current = [math.sqrt(li.weight_var) for li in net.layer_inits]
    already = all(abs(c / r - 1) < 1e-6 for c, r in zip(current, rec))
    tail = ""
    if regime == "typical":
        lead = "The std already follows the rule" if already else "Rule:"
        tail = (
            "; widen the layers, or see `propagate recommend` for the std that keeps the "
            "typical norm"
        )
    elif already:
        lead = "The std already follows the rule"
        if act.name == "tanh" and kind == "vanishing":
            tail = "; at this critical point q decays algebraically (about 1/l), not geometrically"
    else:
        lead = "For comparison, the variance-preserving rule is" if kind == "stable" else "Fix:"
    if len(fans) == 1:
        words.append(f"{lead} {rule} = {rec[0]:.4g} at fan-in {fans[0]}{tail}.")
    elif len(rec) <= _LISTED_LAYERS:
        values = ", ".join(f"{r:.3g}" for r in rec)
        words.append(f"{lead} {rule}, per layer: {values}{tail}.")
    else:  # a long stack: the distinct fan-ins, not thousands of numbers
        shown = ", ".join(f"{math.sqrt(gain2 / n):.3g} at fan-in {n}" for n in fans[:8])
        more = f" and {len(fans) - 8} more fan-ins" if len(fans) > 8 else ""
        words.append(
            f"{lead} {rule}: {shown}{more} (every layer's value is in "
            f"recommended_std_per_layer){tail}."
        )
    return {
        "verdict": kind,
        "regime": regime,
        "factor_per_layer": float(f"{factor:.12g}"),
        "factor_per_layer_measured": float(10**factor_meas) if math.isfinite(factor_meas) else 0.0,
        "log10_change_pred": float(total_change),
        "log10_change": float(q_meas[-1] - q_meas[0]) if math.isfinite(q_meas[-1]) else -math.inf,
        "recommended_std": rec[0] if len(set(rec)) == 1 else rec,
        "recommended_std_per_layer": rec,
        "naive": naive,
        "gradient_log10_change_pred": float(g_pred[0] - g_pred[-1]) if depth > 1 else 0.0,
        "log10_input_grad": gradient_in,
        "log10_signal_share": signal_share,
        "log10_typical_change": float(typical_change),
        # a rounded -0.04 must not read "10^-0.0"
        "message": re.sub(r"\^-(0\.0+)(?![0-9])", r"^\1", " ".join(words)),
    }
