"""Figures of ``propagate run`` and ``propagate compare`` results, and the ``plot`` dispatcher.

(a) ``q_depth``: log10 of the pre-activation second moment q_l against the layer l; per scheme
    the mean over networks (solid), the median (dashed), the 5-95 % band over networks (shaded)
    and the mean-field prediction (black dotted).
(b) ``grad_depth``: log10 of the gradient second moment g_l = E[(dloss/dh_l)^2] per unit against
    l = 0..L (l = 0 is the input gradient), the same way (the band when the result has one).

Inputs are result dicts as written to JSON (``RunResult.to_dict()``, or ``json.load`` of a
results file): a log10 value of an exact zero (a dead network) is null there, or -inf after
``RunResult.from_dict``. Either way it is drawn as a gap, never as a number; layers where every
network is dead are marked with a cross at the bottom of the panel. The dicts are only read.

Figures are ``matplotlib.figure.Figure`` objects rendered by the Agg/SVG/PDF canvases, never
pyplot, so plotting leaves no global state behind.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Sequence

import numpy as np
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from ..errors import InputError
from . import atomic_savefig

__all__ = [
    "FORMATS",
    "check_format",
    "plot_run_results",
    "plot_compare_result",
    "plot_result_file_dict",
]

FORMATS = ("png", "svg", "pdf")

# tab10 without its grey (kept for the style legend); enough for every scheme in the registry
# before the colours repeat.
_COLOURS = (
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
    "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#393b79",
)  # fmt: skip
_DPI = 130
_NBSP = "\u00a0"  # keeps "x ~ N(0, I)" and "(a = 0.2)" on one line when the subtitle wraps
# Reproducible files: no creation dates, fixed SVG ids.
_METADATA = {"png": {"Software": None}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}
_RC = {"svg.hashsalt": "propagate", "font.size": 10, "axes.titlesize": 11}
# log10 of float32's smallest normal, doubled: a naive float32 pass loses q below it.
_FLOAT32_Q_UNDERFLOW = 2 * math.log10(np.finfo(np.float32).tiny)
_FLOAT32_Q_OVERFLOW = 2 * math.log10(np.finfo(np.float32).max)


def check_format(fmt: str) -> str:
    """'png', 'svg' or 'pdf' (case-insensitive), else a one-line InputError."""
    key = str(fmt).strip().lower().lstrip(".")
    if key not in FORMATS:
        raise InputError(f"--format {fmt!r} is not allowed; choose one of: {', '.join(FORMATS)}")
    return key


# ------------------------------------------------------------------------------ reading
def _number(value) -> float:
    """A float, or NaN for null / -inf / anything that is not a finite number (drawn as a gap)."""
    if isinstance(value, bool) or value is None:
        return math.nan
    try:
        x = float(value)
    except (TypeError, ValueError):
        return math.nan
    return x if math.isfinite(x) else math.nan


def _is_dead(value) -> bool:
    """Whether a log10 field says 'exactly zero': null in JSON or -inf after loading."""
    if value is None:
        return True
    try:
        return float(value) == -math.inf
    except (TypeError, ValueError):
        return False


def _layers(result: dict, label: str) -> list[dict]:
    layers = result.get("layers") if isinstance(result, dict) else None
    if not isinstance(layers, list) or not layers or not all(isinstance(r, dict) for r in layers):
        raise InputError(f"{label} has no per-layer results to plot")
    return layers


def _column(layers: list[dict], key: str, label: str, required: bool = True) -> np.ndarray | None:
    if not any(key in row for row in layers):
        if required:
            raise InputError(f"{label} lacks the per-layer field {key!r}; cannot plot it")
        return None
    return np.array([_number(row.get(key)) for row in layers])


def _dead_mask(layers: list[dict], key: str) -> np.ndarray:
    return np.array([key in row and _is_dead(row[key]) for row in layers])


def _run_label(result: dict) -> str:
    config = result.get("config") if isinstance(result.get("config"), dict) else {}
    name = str(config.get("scheme", "run"))
    if config.get("std") is not None and config.get("kind") == "fixed":
        name += f" (std {_number(config['std']):g})"
    return name


def _unique(names: list[str]) -> list[str]:
    """Disambiguate repeated names with '#2', '#3', ... so every legend entry is distinct."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} #{seen[name]}")
    return out


def _legend_label(name: str, result: dict) -> str:
    summary = result.get("summary") if isinstance(result.get("summary"), dict) else {}
    verdict = summary.get("verdict")
    factor = _number(summary.get("factor_per_layer"))
    if verdict is None or not math.isfinite(factor):
        return name
    return f"{name}: {verdict}, q \u00d7{factor:.3g} per layer"


def _context_line(results: list[dict]) -> str:
    """The set-up in one line: architecture, activation, networks x inputs, dtype, seed.

    A part that differs between the runs shows every value, joined by ' / '.
    """

    def parts(result: dict) -> tuple[str, ...]:
        c = result.get("config") if isinstance(result.get("config"), dict) else {}
        widths = c.get("widths") or []
        if widths and len(set(widths)) == 1:
            arch = f"depth {c.get('depth', len(widths) - 1)}, width {widths[0]}"
        elif widths:
            arch = "widths " + ",".join(map(str, widths[:6])) + (",..." if len(widths) > 6 else "")
        else:
            arch = f"depth {c.get('depth', '?')}"
        act = str(c.get("activation", "?"))
        if _number(c.get("negative_slope")) > 0 and act != "relu":
            act += f" (a = {_number(c['negative_slope']):g})"
        if _number(c.get("bias_std")) > 0:
            act += f", bias std {_number(c['bias_std']):g}"
        data = c.get("data") or "x ~ N(0, I)"
        parts = (
            arch,
            act,
            f"{c.get('trials', '?')} networks x {c.get('batch', '?')} inputs",
            f"({data}),",
            str(c.get("dtype", "?")) + ",",
            f"seed {c.get('seed', '?')}",
        )
        # the architecture may break at its commas; the other parts stay whole
        return (parts[0], *(part.replace(" ", _NBSP) for part in parts[1:]))

    columns = zip(*(parts(r) for r in results), strict=True)
    shown = [" / ".join(dict.fromkeys(values)) for values in columns]
    return f"{shown[0]}, {shown[1]}; " + " ".join(shown[2:])


# ------------------------------------------------------------------------------ drawing
def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _isolated(values: np.ndarray) -> np.ndarray:
    """Finite points with no finite neighbour: a line through them would draw nothing."""
    ok = np.isfinite(values)
    left = np.concatenate([[False], ok[:-1]])
    right = np.concatenate([ok[1:], [False]])
    return ok & ~left & ~right


def _draw_series(ax, x, mean, median, lo, hi, pred, dead, colour, few_layers: bool) -> None:
    """One scheme: band (back), median, mean, mean-field line (front); gaps where not finite.

    Isolated finite points (depth 1, or a value between dead layers) get a marker, and an
    isolated band a vertical bar, so that nothing measured is invisible.
    """
    if lo is not None and hi is not None:
        ok = np.isfinite(lo) & np.isfinite(hi)
        if ok.any():
            ax.fill_between(
                x,
                np.where(ok, lo, np.nan),
                np.where(ok, hi, np.nan),
                where=ok,
                color=colour,
                alpha=0.16,
                linewidth=0,
                zorder=1,
            )
            alone = ok & _isolated(np.where(ok, lo, np.nan))
            if alone.any():
                ax.vlines(
                    x[alone], lo[alone], hi[alone], color=colour, alpha=0.3, linewidth=7, zorder=1
                )
    dash = (0, (5, 2.5))
    if median is not None:
        ax.plot(x, median, color=colour, linestyle=dash, linewidth=1.3, alpha=0.9, zorder=2)
        alone = _isolated(median)
        ax.plot(
            x[alone],
            median[alone],
            linestyle="none",
            marker="_",
            markersize=12,
            markeredgewidth=1.5,
            color=colour,
            zorder=2,
        )
    marks = np.ones_like(mean, dtype=bool) if few_layers else _isolated(mean)
    ax.plot(x, mean, color=colour, linewidth=2.0, zorder=3)
    ax.plot(
        x[marks], mean[marks], linestyle="none", marker="o", markersize=3.5, color=colour, zorder=3
    )
    if pred is not None:
        ax.plot(x, pred, color="black", linestyle=(0, (1, 2)), linewidth=1.1, zorder=4)
        alone = _isolated(pred)
        ax.plot(
            x[alone],
            pred[alone],
            linestyle="none",
            marker="+",
            markersize=9,
            color="black",
            zorder=4,
        )
    if dead.any():
        ax.plot(
            x[dead],
            np.full(int(dead.sum()), 0.025),
            linestyle="none",
            marker="x",
            markersize=5,
            color=colour,
            transform=ax.get_xaxis_transform(),
            clip_on=False,
            zorder=5,
        )


def _finite_range(*arrays) -> tuple[float, float] | None:
    values = np.concatenate([a[np.isfinite(a)] for a in arrays if a is not None])
    return (float(values.min()), float(values.max())) if values.size else None


def _draw_q(ax, runs: list[dict], names: list[str]) -> bool:
    """Panel (a); returns whether any layer was dead in every network."""
    any_dead = False
    arrays = []
    for i, (result, name) in enumerate(zip(runs, names, strict=True)):
        layers = _layers(result, name)
        x = np.array([_number(r.get("layer", k + 1)) for k, r in enumerate(layers)])
        mean = _column(layers, "log10_q", name)
        pred = _column(layers, "log10_q_pred", name, required=False)
        median = _column(layers, "log10_q_median", name, required=False)
        lo = _column(layers, "log10_q_p05", name, required=False)
        hi = _column(layers, "log10_q_p95", name, required=False)
        dead = _dead_mask(layers, "log10_q")
        any_dead |= bool(dead.any())
        _draw_series(
            ax, x, mean, median, lo, hi, pred, dead, _COLOURS[i % len(_COLOURS)], len(x) <= 16
        )
        arrays += [mean, pred, median, lo, hi]
    span = _finite_range(*arrays)
    if span is not None:
        for level, what in (
            (_FLOAT32_Q_UNDERFLOW, "underflows"),
            (_FLOAT32_Q_OVERFLOW, "overflows"),
        ):
            if span[0] - 3 <= level <= span[1] + 3:
                ax.axhline(level, color="0.45", linewidth=0.9, linestyle="-.", zorder=0)
                ax.annotate(
                    f"a naive float32 pass {what} here (q = $10^{{{level:.1f}}}$)",
                    (0.01, level),
                    xycoords=("axes fraction", "data"),
                    xytext=(0, 3 if what == "overflows" else -3),
                    textcoords="offset points",
                    fontsize=8,
                    color="0.35",
                    va="bottom" if what == "overflows" else "top",
                )
    ax.set_title("(a) Pre-activation second moment through depth", loc="left")
    ax.set_xlabel("layer l")
    ax.set_ylabel("log10 q_l (pre-activation second moment)\nper unit, in input units\u00b2")
    return any_dead


def _draw_grad(ax, runs: list[dict], names: list[str]) -> bool:
    """Panel (b), l = 0..L with l = 0 the input gradient; returns whether any layer was dead."""
    any_dead = False
    for i, (result, name) in enumerate(zip(runs, names, strict=True)):
        layers = _layers(result, name)
        summary = result.get("summary") if isinstance(result.get("summary"), dict) else {}
        x = np.concatenate([[0.0], [_number(r.get("layer", k + 1)) for k, r in enumerate(layers)]])

        def with_input(key: str, first, required: bool = False, layers=layers, name=name):
            col = _column(layers, key, name, required=required)
            return None if col is None else np.concatenate([[_number(first)], col])

        mean = with_input("log10_grad", summary.get("log10_input_grad"), required=True)
        pred = with_input("log10_grad_pred", summary.get("log10_input_grad_pred"))
        # no spread of the input gradient is recorded: gaps at l = 0
        median = with_input("log10_grad_median", None)
        lo = with_input("log10_grad_p05", None)
        hi = with_input("log10_grad_p95", None)
        dead = np.concatenate(
            [[_is_dead(summary.get("log10_input_grad", 0.0))], _dead_mask(layers, "log10_grad")]
        )
        any_dead |= bool(dead.any())
        _draw_series(
            ax, x, mean, median, lo, hi, pred, dead, _COLOURS[i % len(_COLOURS)], len(x) <= 17
        )
    ax.set_title(
        "(b) Gradient second moment through depth (backward from the probe at l = L)", loc="left"
    )
    ax.set_xlabel("layer l (l = 0: input gradient)")
    ax.set_ylabel("log10 g_l (gradient second moment)\nof \u2202loss/\u2202h_l per unit")
    return any_dead


def _style_handles(dead: bool, band: bool) -> list:
    grey = "0.35"
    handles = [
        Line2D([], [], color=grey, linewidth=2.0, label="mean over networks"),
        Line2D([], [], color=grey, linewidth=1.3, linestyle=(0, (5, 2.5)), label="median"),
    ]
    if band:
        handles.append(Patch(facecolor=grey, alpha=0.25, label="5-95 % of networks"))
    handles.append(
        Line2D(
            [],
            [],
            color="black",
            linewidth=1.1,
            linestyle=(0, (1, 2)),
            label="mean-field prediction",
        )
    )
    if dead:
        handles.append(
            Line2D(
                [],
                [],
                color=grey,
                linestyle="none",
                marker="x",
                label="every network dead\n(exactly 0: no value)",
            )
        )
    return handles


def _legends(fig: Figure, names: list[str], runs: list[dict], dead: bool, band: bool) -> None:
    scheme_handles = [
        Line2D(
            [], [], color=_COLOURS[i % len(_COLOURS)], linewidth=2.5, label=_legend_label(name, run)
        )
        for i, (name, run) in enumerate(zip(names, runs, strict=True))
    ]
    fig.legend(
        handles=scheme_handles,
        loc="outside right upper",
        title="scheme",
        fontsize=9,
        title_fontsize=9,
        alignment="left",
        frameon=False,
    )
    fig.legend(
        handles=_style_handles(dead, band), loc="outside right lower", fontsize=9, frameon=False
    )


def _subtitle(ax, text: str) -> None:
    """The set-up in small grey type between the panel title and the axes, wrapped to fit."""
    lines = textwrap.wrap(text, 95, break_on_hyphens=False)
    ax.set_title(ax.get_title(loc="left"), loc="left", pad=6 + 11 * len(lines))
    ax.annotate(
        "\n".join(lines),
        xy=(0, 1),
        xycoords="axes fraction",
        xytext=(0, 4),
        textcoords="offset points",
        fontsize=8.5,
        color="0.3",
        va="bottom",
        ha="left",
    )


def _last_layer(runs: list[dict]) -> float:
    last = [_number(r["layers"][-1].get("layer", len(r["layers"]))) for r in runs]
    last = [v for v in last if math.isfinite(v)]
    return max(last) if last else 1.0


def _finish_axes(ax, x_range: tuple[float, float]) -> None:
    ax.grid(True, color="0.88", linewidth=0.7, zorder=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    lo, hi = x_range
    pad = max(0.5, 0.02 * (hi - lo))  # a lone layer still gets whole-number ticks around it
    ax.set_xlim(lo - pad, hi + pad)


def _save(fig: Figure, out_dir: str, stem: str, fmt: str) -> str:
    path = os.path.join(out_dir, f"{stem}.{fmt}")
    with rc_context(_RC):
        atomic_savefig(fig, path, metadata=_METADATA[fmt])
    return path


def _check_out_dir(out_dir) -> str:
    if not isinstance(out_dir, str | os.PathLike) or str(out_dir) == "":
        raise InputError(f"output folder {out_dir!r} is not a path")
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise InputError(f"output folder {out_dir!r} exists and is not a folder")
    return out_dir


def _check_runs(results: Sequence[dict], names: Sequence[str] | None) -> tuple[list, list]:
    if isinstance(results, dict) or not isinstance(results, Sequence) or not results:
        raise InputError("give one or more run results to plot")
    runs = list(results)
    for result in runs:
        if not isinstance(result, dict):
            raise InputError("a run result to plot is not a results dict")
        if result.get("kind", "run") != "run":
            raise InputError(f"cannot plot a {result.get('kind')!r} result as a run")
    if names is None:
        labels = _unique([_run_label(r) for r in runs])
    else:
        labels = [str(n) for n in names]
        if len(labels) != len(runs):
            raise InputError(f"{len(labels)} names for {len(runs)} run results")
        labels = _unique(labels)
    return runs, labels


def _has_band(runs: list[dict], key: str) -> bool:
    return any(key in row for r in runs for row in r.get("layers", []) if isinstance(row, dict))


# ------------------------------------------------------------------------------ public
def plot_run_results(
    results: Sequence[dict], out_dir, fmt: str = "png", names: Sequence[str] | None = None
) -> list[str]:
    """Figures (a) ``q_depth.<fmt>`` and (b) ``grad_depth.<fmt>`` with every run on each.

    Args:
        results: one or more run result dicts (``RunResult.to_dict()`` or a loaded
            results.json), typically the same set-up under different schemes.
        out_dir: folder for the figures (created if needed).
        fmt: png (default), svg or pdf.
        names: legend names, one per result (default: each result's scheme).

    Returns:
        The paths written, in order (a), (b).
    """
    fmt = check_format(fmt)
    out_dir = _check_out_dir(out_dir)
    runs, labels = _check_runs(results, names)
    context = _context_line(runs)
    paths = []
    with rc_context(_RC):
        fig_q = _new_figure(10.5, 5.2)
        ax = fig_q.add_subplot()
        dead = _draw_q(ax, runs, labels)
        _finish_axes(ax, (1, _last_layer(runs)))
        _subtitle(ax, context)
        _legends(fig_q, labels, runs, dead, _has_band(runs, "log10_q_p05"))
        fig_g = _new_figure(10.5, 5.2)
        ax = fig_g.add_subplot()
        dead = _draw_grad(ax, runs, labels)
        _finish_axes(ax, (0, _last_layer(runs)))
        _subtitle(ax, context)
        _legends(fig_g, labels, runs, dead, _has_band(runs, "log10_grad_p05"))
    # draw both before writing either: a drawing error leaves no file behind
    paths.append(_save(fig_q, out_dir, "q_depth", fmt))
    paths.append(_save(fig_g, out_dir, "grad_depth", fmt))
    return paths


def plot_compare_result(result_dict: dict, out_dir, fmt: str = "png") -> list[str]:
    """One figure ``compare.<fmt>``: panels (a) q_l and (b) g_l with every scheme compared."""
    fmt = check_format(fmt)
    out_dir = _check_out_dir(out_dir)
    runs = result_dict.get("runs") if isinstance(result_dict, dict) else None
    if not isinstance(runs, list) or not runs:
        raise InputError("the compare result has no 'runs' to plot")
    runs, labels = _check_runs(runs, None)
    with rc_context(_RC):
        fig = _new_figure(11, 9.5)
        ax_q, ax_g = fig.subplots(2, 1, sharex=True)
        dead = _draw_q(ax_q, runs, labels)
        dead |= _draw_grad(ax_g, runs, labels)
        for ax in (ax_q, ax_g):
            _finish_axes(ax, (0, _last_layer(runs)))
        ax_q.tick_params(labelbottom=True)
        _subtitle(ax_q, "schemes compared on one set-up: " + _context_line(runs))
        _legends(fig, labels, runs, dead, _has_band(runs, "log10_q_p05"))
    return [_save(fig, out_dir, "compare", fmt)]


def plot_result_file_dict(result_dict: dict, out_dir, fmt: str = "png") -> list[str]:
    """Redraw the figures of any saved result by its ``kind``; returns the paths written.

    run -> (a), (b); compare -> one two-panel figure; spectra and sweep -> their modules'
    ``plot_spectra_result`` / ``plot_sweep_result``. Anything else: one-line InputError.
    """
    fmt = check_format(fmt)
    if not isinstance(result_dict, dict):
        raise InputError("not a propagate results dict")
    kind = result_dict.get("kind", "run")
    if kind == "run":
        return plot_run_results([result_dict], out_dir, fmt)
    if kind == "compare":
        return plot_compare_result(result_dict, out_dir, fmt)
    if kind in ("spectra", "sweep"):
        module_name = f"{__package__}.{kind}_plots"
        try:
            import importlib

            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            raise InputError(f"this propagate cannot draw {kind!r} results yet") from None
        return getattr(module, f"plot_{kind}_result")(result_dict, _check_out_dir(out_dir), fmt)
    raise InputError(
        f"cannot plot results of kind {kind!r}; known kinds: run, compare, spectra, sweep"
    )
