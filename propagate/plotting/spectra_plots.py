"""Figures of ``propagate spectra`` results, redrawn from the saved results dict alone.

(c) ``spectra_weights``: histograms of the singular values of a few layers' weights with the
    Marchenko-Pastur density (in sigma, not lambda) and its predicted edges, or the atom at the
    gain for orthogonal schemes.
(d) ``spectra_jacobian``: densities of log10 of the nonzero singular values of the input-output
    Jacobian at several depths, with the predicted and measured root-mean-square singular value
    marked and the zero fraction and variance ratio beside their predictions.
(e) ``spectra_correlation``: the cosine of input pairs against depth (measured mean and 5-95 %
    band against the iterated correlation map), and 1 - c on log-log axes with the ReLU
    asymptote 9 pi^2 / (2 l^2).

Inputs are result dicts as written to JSON (``RunResult.to_dict()`` or ``json.load``); a log10
of an exact zero is null there and is drawn as a gap. The dict is deep-copied before use, so
plotting can never change a result. Figures are ``matplotlib.figure.Figure`` objects on the Agg
canvas (no pyplot state) saved atomically.
"""

from __future__ import annotations

import copy
import math
import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .. import theory_spectra
from ..errors import InputError
from . import atomic_savefig

__all__ = [
    "plot_spectra_result",
    "weights_figure",
    "jacobian_figure",
    "correlation_figure",
]

_DPI = 110
_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _num(value) -> float:
    """A float from a JSON value: None (an exact zero's log, or a missing value) becomes NaN."""
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _array(values) -> np.ndarray:
    return np.array([_num(v) for v in values], dtype=float)


def _setup_line(cfg: dict) -> str:
    widths = cfg.get("widths", [])
    arch = (
        f"depth {cfg.get('depth')}, width {widths[1]}"
        if len(set(widths)) == 1
        else "widths " + ",".join(map(str, widths))
    )
    return (
        f"{cfg.get('scheme')} ({cfg.get('distribution')}), {cfg.get('activation')}, {arch}, "
        f"{cfg.get('trials')} networks, seed {cfg.get('seed')}"
    )


def _pick(items: list, count: int) -> list:
    """Up to ``count`` items spread evenly, always the first and the last."""
    if len(items) <= count:
        return list(items)
    idx = np.unique(np.round(np.linspace(0, len(items) - 1, count)).astype(int))
    return [items[i] for i in idx]


# ----------------------------------------------------------------------------- (c) weights
def _weight_panel(ax, row: dict) -> None:
    edges = _array(row["hist"]["edges"])
    counts = np.array(row["hist"]["counts"], dtype=float)
    total = counts.sum()
    widths = np.diff(edges)
    shape = f"{row['fan_out']}x{row['fan_in']} ({row['shape']})"
    if row.get("distribution") == "orthogonal":
        gain = _num(row["mp_lo"])
        rel = (edges / gain - 1.0) * 1e12  # deviation from the atom, in units of 1e-12
        ax.bar(
            rel[:-1],
            counts / max(total, 1),
            width=np.diff(rel),
            align="edge",
            color="#9ecae1",
            edgecolor="#3182bd",
            label="measured (fraction per bin)",
        )
        ax.axvline(0.0, color="k", ls="--", lw=1.2, label="predicted atom: every σ = gain")
        worst = max(abs(row["sv_min"] / gain - 1.0), abs(row["sv_max"] / gain - 1.0))
        ax.set_ylabel("fraction of singular values")
        ax.text(
            0.02,
            0.97,
            f"gain {gain:.6g}\nmax |σ/gain - 1| = {worst:.1e}\n"
            f"fraction off the atom (> 1e-9): {row['ks_mp']:.3g}",
            transform=ax.transAxes,
            va="top",
            fontsize=8,
        )
        ax.set_xlim(rel[0], rel[-1])
        ax.set_ylim(0, 1.3)
        ax.set_xlabel("σ / gain - 1 of W_l (units of 1e-12)")
    else:
        density = counts / (max(total, 1) * widths)
        ax.bar(
            edges[:-1],
            density,
            width=widths,
            align="edge",
            color="#9ecae1",
            edgecolor="none",
            label="measured (all networks)",
        )
        lo, hi = _num(row["mp_lo"]), _num(row["mp_hi"])
        sigma = np.linspace(max(lo, 1e-9), hi, 600)[1:-1]
        lam_density = theory_spectra.mp_pdf(
            sigma**2, row["fan_out"], row["fan_in"], row["weight_var"]
        )
        ax.plot(
            sigma,
            2.0 * sigma * lam_density,
            color="k",
            lw=1.4,
            label="Marchenko-Pastur (predicted)",
        )
        for x in (lo, hi):
            ax.axvline(x, color="k", ls="--", lw=0.9)
        ax.axvline(math.nan, color="k", ls="--", lw=0.9, label="predicted edges")
        ax.set_ylabel("density (per unit of σ)")
        ax.text(
            0.98,
            0.97,
            f"KS {row['ks_mp']:.3g}\n<sv^2> / pred "
            f"{row['mean_sq_sv'] / row['mean_sq_sv_pred']:.4f}\nsv range "
            f"{row['sv_min']:.3g}..{row['sv_max']:.3g}",
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=8,
        )
        ax.set_ylim(0, max(density.max(), np.nanmax(2.0 * sigma * lam_density)) * 1.25)
        ax.set_xlim(edges[0], edges[-1])
        ax.set_xlabel("singular value σ of W_l (unitless)")
    q = row["fan_in"] / row["fan_out"]
    ax.set_title(f"layer {row['layer']}: W is {shape}, q = n_in/n_out = {q:.3g}", fontsize=10)


def weights_figure(result: dict) -> Figure:
    """(c) Weight singular-value histograms of up to three layers against Marchenko-Pastur."""
    layers = [row for row in result["layers"] if row.get("hist")]
    if not layers:
        raise InputError("the results hold no weight singular-value histograms")
    # distinct shapes first, then spread over depth
    chosen, seen = [], set()
    for row in layers:
        key = (row["fan_out"], row["fan_in"])
        if key not in seen:
            seen.add(key)
            chosen.append(row)
    chosen = _pick(chosen, 3) if len(chosen) >= 3 else _pick(layers, 3)
    fig = _new_figure(4.2 * len(chosen), 3.9)
    axes = fig.subplots(1, len(chosen), squeeze=False)[0]
    for ax, row in zip(axes, chosen):
        _weight_panel(ax, row)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(
        handles, labels, loc="outside lower center", ncols=len(labels), fontsize=8, frameon=False
    )
    law = (
        "the atom at the gain"
        if chosen[0].get("distribution") == "orthogonal"
        else "the Marchenko-Pastur law"
    )
    fig.suptitle(
        f"Weight singular values against {law} (predicted from the scheme, not "
        "fitted)\n" + _setup_line(result["config"]),
        fontsize=11,
    )
    return fig


# ----------------------------------------------------------------------------- (d) Jacobian
def jacobian_figure(result: dict) -> Figure:
    """(d) log10 singular-value densities of J at up to six depths, predicted moments marked."""
    jac = result.get("jacobian")
    if not jac or not jac.get("histograms"):
        raise InputError("the results hold no Jacobian spectra")
    rows = {row["layer"]: row for row in jac["checkpoints"]}
    n0 = result["config"]["widths"][0]
    hists = _pick([h for h in jac["histograms"]], 6)
    ncols = {1: 1, 2: 2, 4: 2}.get(len(hists), 3)
    nrows = math.ceil(len(hists) / ncols)
    fig = _new_figure(4.3 * ncols, 3.2 * nrows + 1.0)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(hists) :]:
        ax.set_visible(False)
    for ax, hist in zip(axes, hists):
        row = rows[hist["layer"]]
        nonzero = hist["n_total"] - hist["n_zero"]
        if hist["counts"] and nonzero > 0:
            edges = _array(hist["edges"])
            counts = np.array(hist["counts"], dtype=float)
            ax.stairs(
                counts / (nonzero * np.diff(edges)),
                edges,
                fill=True,
                color="#9ecae1",
                label="measured, nonzero singular values",
            )
        else:
            ax.text(0.5, 0.5, "every Jacobian is zero", transform=ax.transAxes, ha="center")
        pred = 0.5 * _num(row["log10_mean_sq_sv_pred"])
        meas = 0.5 * _num(row["log10_mean_sq_sv"])
        ax.axvline(pred, color="k", ls="--", lw=1.3, label="predicted rms singular value")
        if math.isfinite(meas):
            ax.axvline(meas, color="#d62728", ls=":", lw=1.6, label="measured rms singular value")
        ratio, ratio_pred = _num(row["var_over_mean2"]), _num(row["var_over_mean2_pred"])
        lines = [
            f"zero: {100 * row['zero_fraction']:.1f}% (pred {100 * row['zero_fraction_pred']:.1f}%)"
        ]
        if math.isfinite(ratio):
            lines.append(
                f"var/mean^2 of σ^2: {ratio:.3g}"
                + (f" (N->inf: {ratio_pred:.3g})" if math.isfinite(ratio_pred) else "")
            )
            if math.isfinite(ratio_pred) and ratio_pred > n0 - 1:
                lines.append(f"  (the limit needs l << N; at most n_0 - 1 = {n0 - 1} here)")
        ax.text(0.02, 0.97, "\n".join(lines), transform=ax.transAxes, va="top", fontsize=8)
        ax.set_title(f"depth l = {hist['layer']}", fontsize=10)
        ax.set_xlabel("log10 singular value of J = dh_l/dx")
        ax.set_ylabel("density (per decade)")
        ax.set_ylim(0, ax.get_ylim()[1] * 1.35)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(
        handles, labels, loc="outside lower center", ncols=len(labels), fontsize=8, frameon=False
    )
    fig.suptitle(
        "Input-output Jacobian: log singular values through depth "
        "(zeros counted apart)\n"
        + _setup_line(result["config"])
        + f", {jac.get('inputs_per_trial')} inputs each",
        fontsize=11,
    )
    return fig


# ----------------------------------------------------------------------------- (e) correlation
def correlation_figure(result: dict) -> Figure:
    """(e) Cosine of input pairs against depth: measured mean and band, iterates, asymptote."""
    corr = result.get("correlation")
    if not corr or not corr.get("series"):
        raise InputError("the results hold no correlation map")
    layers = np.array(corr["layers"], dtype=float)
    fig = _new_figure(11.0, 4.3)
    ax_c, ax_e = fig.subplots(1, 2)
    few = len(layers) <= 12
    lowest = math.inf  # smallest positive 1 - c of a mean or a prediction: the log axis floor
    for colour, series in zip(_COLOURS * 4, corr["series"]):
        mean, pred = _array(series["mean"]), _array(series["pred"])
        lo, hi = _array(series["p05"]), _array(series["p95"])
        label = f"c0 = {series['c0']:g}"
        marker = "o" if few else None
        ax_c.fill_between(layers, lo, hi, color=colour, alpha=0.18, lw=0)
        ax_c.plot(layers, mean, color=colour, lw=1.6, marker=marker, ms=3, label=label)
        ax_c.plot(layers, pred, color="k", ls="--", lw=0.9)
        with np.errstate(invalid="ignore"):
            eps, eps_pred = 1.0 - mean, 1.0 - pred
            eps_lo, eps_hi = 1.0 - hi, 1.0 - lo
        keep = layers >= 1
        ok = keep & (eps > 0)
        ax_e.fill_between(
            layers[keep],
            np.where(eps_lo[keep] > 0, eps_lo[keep], np.nan),
            np.where(eps_hi[keep] > 0, eps_hi[keep], np.nan),
            color=colour,
            alpha=0.18,
            lw=0,
        )
        ax_e.plot(layers[ok], eps[ok], color=colour, lw=1.6, marker=marker, ms=3)
        good = keep & (eps_pred > 0)
        ax_e.plot(layers[good], eps_pred[good], color="k", ls="--", lw=0.9)
        lowest = min(lowest, *eps[ok], *eps_pred[good])
    ax_c.plot([], [], color="k", ls="--", lw=0.9, label="iterated map (mean field)")
    ax_c.fill_between([], [], [], color="grey", alpha=0.25, label="5-95 % over networks, pairs")
    if corr.get("asymptote"):
        asym = 1.0 - _array(corr["asymptote"])
        keep = (layers >= 1) & np.isfinite(asym) & (asym < 1.0)  # 9 pi^2/(2 l^2) < 1: l >= 7
        ax_e.plot(
            layers[keep],
            asym[keep],
            color="0.35",
            ls=":",
            lw=1.6,
            label="asymptote 9 pi^2 / (2 l^2)",
        )
        ax_e.legend(loc="lower left", fontsize=8, frameon=False)
    ax_c.set_ylabel("cos(h_l(x), h_l(y))")
    ax_c.set_title("cosine of input pairs through depth", fontsize=10)
    ax_c.legend(loc="lower right", fontsize=8, frameon=False)
    ax_e.set_xscale("log")
    ax_e.set_yscale("log")
    if math.isfinite(lowest):
        ax_e.set_ylim(bottom=max(0.3 * lowest, 1e-16))
    if layers[-1] > 40:  # decades of depth: a log axis that still shows l = 0
        ax_c.set_xscale("symlog", linthresh=1.0)
        ax_c.set_xlim(0, layers[-1] * 1.1)
        ax_c.set_xlabel("layer l (log scale beyond 1)")
    else:
        ax_c.set_xlabel("layer l")
    ax_e.set_xlabel("layer l (log scale)")
    ax_e.set_ylabel("1 - cos (log scale)")
    ax_e.set_title("distance from full correlation", fontsize=10)
    fig.suptitle(
        "Correlation map: measured against the iterated arc-cosine map\n"
        + _setup_line(result["config"])
        + f", {corr.get('pairs')} pairs per c0",
        fontsize=11,
    )
    return fig


# ----------------------------------------------------------------------------- entry point
def plot_spectra_result(result_dict: dict, out_dir: str, fmt: str = "png") -> list[str]:
    """Draw (c), (d) and (e) from a saved spectra results dict into ``out_dir``; the paths.

    Files: ``spectra_weights.<fmt>``, ``spectra_jacobian.<fmt>`` and, when the result has a
    correlation map, ``spectra_correlation.<fmt>``; each written atomically. An unwritable folder
    raises a one-line InputError. ``result_dict`` is never modified.
    """
    from .run_plots import check_format

    fmt = check_format(fmt)
    if not isinstance(result_dict, dict) or result_dict.get("kind") != "spectra":
        raise InputError("not a spectra result (kind must be 'spectra')")
    result = copy.deepcopy(result_dict)
    try:
        figures = [
            ("spectra_weights", weights_figure(result)),
            ("spectra_jacobian", jacobian_figure(result)),
        ]
        if result.get("correlation"):
            figures.append(("spectra_correlation", correlation_figure(result)))
    except (KeyError, TypeError, IndexError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(
            f"the spectra result is incomplete or from another version ({exc!r})"
        ) from None
    paths = []
    for stem, fig in figures:
        path = os.path.join(out_dir, f"{stem}.{fmt}")
        atomic_savefig(fig, path)
        paths.append(path)
    return paths
