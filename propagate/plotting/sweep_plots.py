"""Heatmaps of a ``propagate sweep``: one figure per scheme over fan-in x depth.

Each figure has four panels, one cell per (fan-in, depth):

(a) P(dead) in %: inputs whose last layer is identically zero, measured, with the exact
    1 - (1 - 2^-n)^L in brackets;
(b) median drift: median over networks of log10 q_L minus log10 of the mean-field q_1 (0: the
    typical network keeps its scale), measured, with the exact law in brackets (Gaussian weights);
(c) spread: std of log10 q_L over alive networks, measured (exact);
(d) mean: log10 of measured mean q_L over the mean-field prediction (0: the mean is preserved).

Cells where more than half the networks are dead have no median: drawn hatched grey, "dead".
Inputs are sweep result dicts (``SweepResult.to_dict()`` or ``json.load`` of results.json);
figures use ``matplotlib.figure.Figure`` with the Agg canvas, never pyplot.
"""

from __future__ import annotations

import math
import os

import numpy as np
from matplotlib import colors, rc_context
from matplotlib.figure import Figure

from ..errors import InputError
from . import atomic_savefig

__all__ = ["plot_sweep_result", "sweep_figure"]

_DPI = 130
_RC = {"svg.hashsalt": "propagate", "font.size": 9, "axes.titlesize": 10}
_METADATA = {"png": {"Software": None}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}
_FORMATS = ("png", "svg", "pdf")


def _value(x) -> float:
    """float, NaN for null / non-finite (drawn as 'no value')."""
    if x is None or isinstance(x, bool):
        return math.nan
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v if math.isfinite(v) else math.nan


def _grid(rows, fan_ins, depths, key, transform=None) -> np.ndarray:
    out = np.full((len(depths), len(fan_ins)), np.nan)
    for row in rows:
        try:
            i, j = depths.index(row["depth"]), fan_ins.index(row["fan_in"])
        except ValueError:
            continue
        v = _value(row.get(key))
        out[i, j] = transform(v) if transform is not None and math.isfinite(v) else v
    return out


def _ink(rgba) -> str:
    r, g, b = rgba[:3]
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def _panel(fig, ax, values, exact, fmt, cmap, norm, title, label, dead_mask, fan_ins, depths):
    cmap = cmap.with_extremes(bad="#d9d9d9")
    mesh = ax.imshow(
        np.ma.masked_invalid(values),
        cmap=cmap,
        norm=norm,
        origin="lower",
        aspect="auto",
        interpolation="nearest",
    )
    ax.set_xticks(range(len(fan_ins)), [str(n) for n in fan_ins])
    ax.set_yticks(range(len(depths)), [str(d) for d in depths])
    ax.set_xlabel("fan-in (width n)")
    ax.set_ylabel("depth L")
    ax.set_title(title, loc="left")
    bar = fig.colorbar(mesh, ax=ax, fraction=0.046, pad=0.03)
    bar.set_label(label)
    for i in range(len(depths)):
        for j in range(len(fan_ins)):
            v = values[i, j]
            if math.isfinite(v):
                text = format(v, fmt)
                e = exact[i, j] if exact is not None else math.nan
                if math.isfinite(e):
                    text += f"\n({format(e, fmt)})"
                colour = _ink(cmap(norm(v)))
            elif dead_mask[i, j]:
                text, colour = "dead", "black"
                ax.add_patch(_hatch(j, i))
            else:
                text, colour = "n/a", "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color=colour)


def _hatch(x, y):
    from matplotlib.patches import Rectangle

    return Rectangle(
        (x - 0.5, y - 0.5), 1, 1, fill=False, hatch="///", edgecolor="#999999", linewidth=0
    )


def _diverging(values: np.ndarray, floor: float) -> colors.Normalize:
    """Symmetric limits around 0 (white), so the colour of 0 means 'kept' in every figure."""
    finite = np.abs(values[np.isfinite(values)])
    top = max(float(finite.max()) if finite.size else floor, floor)
    return colors.Normalize(vmin=-top, vmax=top)


def sweep_figure(result: dict, scheme: str) -> Figure:
    """The four-panel heatmap figure of one scheme (see the module docstring)."""
    from matplotlib import colormaps

    cfg = result["config"]
    fan_ins, depths = list(cfg["fan_ins"]), list(cfg["depths"])
    rows = [r for r in result["rows"] if r.get("scheme") == scheme]
    if not rows:
        raise InputError(f"the sweep has no cells of scheme {scheme!r}")
    law_exact = any(r.get("law_exact") for r in rows)
    dead = _grid(rows, fan_ins, depths, "p_dead", lambda v: 100 * v)
    dead_exact = _grid(rows, fan_ins, depths, "p_dead_exact", lambda v: 100 * v)
    majority_dead = np.nan_to_num(dead, nan=0.0) >= 50.0
    drift = _grid(rows, fan_ins, depths, "median_drift_log10")
    drift_exact = _grid(rows, fan_ins, depths, "median_drift_log10_exact")
    spread = _grid(rows, fan_ins, depths, "q_spread_log10")
    spread_exact = _grid(rows, fan_ins, depths, "q_spread_log10_exact")
    mean = _grid(
        rows, fan_ins, depths, "mean_ratio", lambda v: math.log10(v) if v > 0 else math.nan
    )
    all_dead = _grid(rows, fan_ins, depths, "alive") == 0

    width = max(5.2, 2.2 + 0.75 * len(fan_ins))  # room for the panel titles on small grids
    height = 1.5 + 0.75 * len(depths)
    fig = Figure(figsize=(2 * width, 2 * height + 0.7), dpi=_DPI, layout="constrained")
    axes = fig.subplots(2, 2)
    law = rows[0].get("distribution", "?")
    exact_note = (
        "brackets: exact finite-width law"
        if law_exact
        else f"brackets: exact P(dead); no exact law for the median and spread of {law} weights"
    )
    fig.suptitle(
        f"propagate sweep: {scheme} ({law} weights), ReLU, no bias, {cfg['trials']} networks x "
        f"{cfg['batch']} input(s) per cell, seed {cfg['seed']}\n{exact_note}",
        fontsize=10,
    )
    _panel(
        fig,
        axes[0, 0],
        dead,
        dead_exact,
        ".1f",
        colormaps["magma_r"],
        colors.Normalize(0.0, 100.0),
        "(a) P(dead): inputs with h_L = 0",
        "% of inputs",
        np.zeros_like(majority_dead),
        fan_ins,
        depths,
    )
    _panel(
        fig,
        axes[0, 1],
        drift,
        drift_exact,
        ".1f",
        colormaps["RdBu"],
        _diverging(drift, 1.0),
        "(b) typical drift: median log10 (q_L / q_1)",
        "decades (0: typical scale kept)",
        majority_dead,
        fan_ins,
        depths,
    )
    _panel(
        fig,
        axes[1, 0],
        spread,
        spread_exact,
        ".2f",
        colormaps["viridis"],
        colors.Normalize(
            0.0, max(float(np.nanmax(spread)) if np.isfinite(spread).any() else 1.0, 1e-3)
        ),
        "(c) spread: std of log10 q_L over alive networks",
        "decades",
        ~np.isfinite(spread),
        fan_ins,
        depths,
    )
    _panel(
        fig,
        axes[1, 1],
        mean,
        None,
        ".2f",
        colormaps["PuOr"],
        _diverging(mean, 0.5),
        "(d) mean q_L: log10 (measured / mean field)",
        "decades (0: mean preserved)",
        all_dead,
        fan_ins,
        depths,
    )
    return fig


def plot_sweep_result(result_dict: dict, out_dir, fmt: str = "png") -> list[str]:
    """One heatmap figure per scheme, ``sweep_<scheme>.<fmt>`` in ``out_dir``; the paths.

    Args:
        result_dict: a sweep result (``SweepResult.to_dict()`` or its JSON).
        out_dir: output folder (created).
        fmt: png, svg or pdf.
    """
    key = str(fmt).strip().lower().lstrip(".")
    if key not in _FORMATS:
        raise InputError(f"--format {fmt!r} is not allowed; choose one of: {', '.join(_FORMATS)}")
    if (
        not isinstance(result_dict, dict)
        or result_dict.get("kind") != "sweep"
        or "rows" not in result_dict
        or "config" not in result_dict
    ):
        raise InputError("not a propagate sweep result (kind 'sweep' with config and rows)")
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise InputError(f"output folder {out_dir!r} exists and is not a folder")
    paths = []
    for scheme in result_dict["config"]["schemes"]:
        fig = sweep_figure(result_dict, scheme)
        path = os.path.join(out_dir, f"sweep_{scheme}.{key}")
        with rc_context(_RC):
            atomic_savefig(fig, path, metadata=_METADATA[key])
        paths.append(path)
    return paths
