"""``propagate compare`` and ``propagate plot``, and the figure hook of ``propagate run --plot``.

Thin commands: parse, call one library function (:func:`propagate.compare.compare`,
:func:`propagate.plotting.run_plots.plot_result_file_dict`), write. Output folders and the
figure format are checked before any computing, and every file is written atomically, so a bad
folder ends with one line and exit status 2 and nothing half written.

Wire into the app with ``register(app)``. matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

import math
import os
from typing import Annotated

import typer

from .cli_options import (
    Activation,
    Batch,
    BiasStd,
    Classes,
    Csv,
    Data,
    Depth,
    Dist,
    DType,
    FanIn,
    Gain,
    Head,
    Json,
    Kernels,
    Mode,
    NoStd,
    Seed,
    Slope,
    Std,
    Trials,
    TruncBounds,
    Widths,
    Workers,
    fail,
    network_options,
)
from .errors import InputError

__all__ = [
    "compare",
    "plot",
    "register",
    "write_run_plots",
    "check_plot_target",
    "print_compare",
    "PlotDir",
    "Format",
]

FORMATS = ("png", "svg", "pdf")
DEFAULT_SCHEMES = "gauss,torch,xavier-normal,he-normal"

PlotDir = Annotated[
    str | None,
    typer.Option("--plot", metavar="DIR", help="Folder for the figures (created if needed)."),
]
Format = Annotated[str, typer.Option("--format", metavar="png|svg|pdf", help="Figure file format.")]
Schemes = Annotated[
    str,
    typer.Option(
        "--schemes",
        metavar="A,B,...",
        help="Comma-separated schemes or aliases to compare; `propagate schemes` lists them.",
    ),
]
CompareOut = Annotated[
    str | None,
    typer.Option(
        "--out", metavar="DIR", help="Folder for results.json and results.csv (written atomically)."
    ),
]
PlotOut = Annotated[
    str | None,
    typer.Option(
        "--out", metavar="DIR", help="Folder for the figures (default: the results file's folder)."
    ),
]
ResultsPath = Annotated[
    str,
    typer.Argument(
        metavar="RESULTS.json", help="A results.json written by propagate (--out or --json)."
    ),
]


# ------------------------------------------------------------------------------ helpers
def _check_format(fmt: str) -> str:
    key = str(fmt).strip().lower().lstrip(".")
    if key not in FORMATS:
        raise InputError(f"--format {fmt!r} is not allowed; choose one of: {', '.join(FORMATS)}")
    return key


def _check_folder(path: str | None, flag: str) -> None:
    """Fail early (before computing) when ``path`` cannot become a writable folder."""
    if path is None:
        return
    if str(path).strip() == "":
        raise InputError(f"{flag} '' is not a folder name")
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise InputError(f"{flag} {path!r} exists and is not a folder")
        existing = path
    else:
        existing = os.path.dirname(os.path.abspath(path))
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing):
            raise InputError(f"{flag} {path!r} cannot be created: {existing!r} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{flag} {path!r} cannot be written: permission denied on {existing!r}")


def check_plot_target(out_dir: str | None, fmt: str, flag: str = "--plot") -> str:
    """Validate a figure folder and format before any computing; the normalised format."""
    fmt = _check_format(fmt)
    _check_folder(out_dir, flag)
    return fmt


def write_run_plots(result, out_dir: str, fmt: str = "png") -> list[str]:
    """Figures of a result (RunResult or its dict) into ``out_dir``; the paths written.

    For ``propagate run --plot DIR``: q_depth.<fmt> and grad_depth.<fmt>. Raises a one-line
    InputError for a bad format or folder.
    """
    from .plotting.run_plots import plot_result_file_dict

    fmt = check_plot_target(out_dir, fmt)
    data = result.to_dict() if hasattr(result, "to_dict") else result
    return plot_result_file_dict(data, out_dir, fmt)


def _fmt_factor(value) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    if value == 0:
        return "0"
    return f"{value:.4g}" if 1e-3 <= abs(value) < 1e4 else f"{value:.3e}"


def _fmt_std(value) -> str:
    if isinstance(value, list):
        return "per layer"
    return f"{value:.4g}"


def print_compare(result, console=None) -> None:
    """One rich table: a row per scheme, measured beside predicted; then the message."""
    from rich.console import Console
    from rich.table import Table

    from .report import fmt_log10

    if console is None:
        console = Console(highlight=False)
        if not console.is_terminal:
            console = Console(highlight=False, width=120)
    cfg, summary = result.config, result.summary
    widths = cfg.get("widths", [])
    arch = (
        f"depth {cfg.get('depth')}, width {widths[1]}"
        if len(set(widths)) == 1
        else "widths " + ",".join(map(str, widths))
    )
    console.print(
        f"[bold]propagate compare[/bold]: {arch}, {cfg.get('activation')}, "
        f"{cfg.get('trials')} networks x {cfg.get('batch')} inputs "
        f"({cfg.get('data') or 'x ~ N(0, I)'}), {cfg.get('dtype')}, seed {cfg.get('seed')}; "
        "same inputs and seed for every scheme"
    )
    depth = cfg.get("depth")
    table = Table(
        caption="factor: per-layer multiplier of q, mean field (meas: measured). log10 values: "
        f"q_L = pre-activation second moment per unit at the last layer L = {depth} (mean "
        "over networks), pred = mean-field prediction, median over networks; grad_0 = second "
        "moment of the input gradient; dead%: units off for every input at layer L; fix std: "
        "the He std for this activation",
        caption_justify="left",
    )
    columns = [
        ("scheme (Var W)", "left"),
        ("verdict", "left"),
        ("factor", "right"),
        ("meas", "right"),
        ("q_L", "right"),
        ("pred", "right"),
        ("median", "right"),
        ("grad_0", "right"),
        ("pred", "right"),
        ("dead%", "right"),
        ("fix std", "right"),
    ]
    for name, justify in columns:
        table.add_column(name, justify=justify, no_wrap=True)
    colours = {"stable": "green", "vanishing": "yellow", "exploding": "red"}
    for row in summary["table"]:
        colour = colours.get(row["verdict"], "white")
        rule = row.get("weight_var_rule")
        table.add_row(
            f"[bold]{row['scheme']}[/bold]" + (f"\n[dim]{rule}[/dim]" if rule else ""),
            f"[{colour}]{row['verdict']}[/{colour}]",
            _fmt_factor(row["factor_per_layer"]),
            _fmt_factor(row["factor_per_layer_measured"]),
            fmt_log10(row["log10_q_last"]),
            fmt_log10(row["log10_q_pred_last"]),
            fmt_log10(row["log10_q_median_last"]),
            fmt_log10(row["log10_input_grad"]),
            fmt_log10(row["log10_input_grad_pred"]),
            f"{100 * row['dead_fraction_last']:.1f}",
            _fmt_std(row["recommended_std"]),
        )
    console.print(table)
    if summary.get("message"):
        console.print(summary["message"])
    for line in summary.get("warnings", []):
        console.print(f"[red]warning:[/red] {line}")


# ------------------------------------------------------------------------------ commands
def compare(
    schemes: Schemes = DEFAULT_SCHEMES,
    depth: Depth = None,
    fan_in: FanIn = None,
    widths: Widths = None,
    activation: Activation = "relu",
    negative_slope: Slope = None,
    bias_std: BiasStd = "0",
    dist: Dist = None,
    gain: Gain = None,
    mode: Mode = None,
    std: Std = None,
    trunc_bounds: TruncBounds = None,
    batch: Batch = "256",
    trials: Trials = "100",
    seed: Seed = "0",
    dtype: DType = "float32",
    data: Data = None,
    no_standardize: NoStd = False,
    head: Head = "probe",
    classes: Classes = None,
    json_out: Json = False,
    csv: Csv = None,
    out: CompareOut = None,
    plot_dir: PlotDir = None,
    fmt: Format = "png",
    workers: Workers = None,
    kernels: Kernels = "auto",
) -> None:
    """Several init schemes on one architecture, inputs and seed: one table, one figure.

    Example: propagate compare --schemes gauss,torch,xavier-normal,he-normal --depth 30
    --fan-in 64 --plot figs
    """
    from .compare import check_scheme_list
    from .compare import compare as compare_api
    from .results import check_csv_target, save_outputs

    try:
        names = check_scheme_list(schemes)
        fmt = check_plot_target(plot_dir, fmt)
        _check_folder(out, "--out")
        check_csv_target(csv, out, plot_dir)
        arch = network_options({**locals(), "scheme": None})
        del arch["scheme"]
        result = compare_api(
            names,
            **arch,
            batch=batch,
            trials=trials,
            seed=seed,
            dtype=dtype,
            data=data,
            standardize=not no_standardize,
            head=head,
            classes=classes,
            workers=workers,
            kernels=kernels,
        )
        written = save_outputs(result, out, csv)
        if plot_dir is not None:
            written += write_run_plots(result, plot_dir, fmt)
    except InputError as exc:
        fail(str(exc))
    if json_out:
        typer.echo(result.to_json())
    else:
        print_compare(result)
        for path in written:
            typer.echo(f"wrote {path}")


def plot(results: ResultsPath, out: PlotOut = None, fmt: Format = "png") -> None:
    """Redraw the figures of a saved results.json (run, compare, spectra or sweep).

    Example: propagate plot out/results.json --out figs --format svg
    """
    from .results import load_result

    try:
        fmt = _check_format(fmt)
        result = _load_any(results, load_result)
        out_dir = out if out is not None else (os.path.dirname(os.path.abspath(results)))
        _check_folder(out_dir, "--out")
        written = write_run_plots(result, out_dir, fmt)
    except InputError as exc:
        fail(str(exc))
    for path in written:
        typer.echo(f"wrote {path}")


def _load_any(path: str, load_result):
    """A run/compare/spectra/recommend result, or a sweep (which has rows, not layers)."""
    import json

    try:
        with open(path) as fh:
            kind = json.load(fh).get("kind")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        kind = None  # load_result gives the one-line error
    if kind == "sweep":
        from .sweep import load_sweep

        return load_sweep(path)
    return load_result(path)


def register(app: typer.Typer) -> None:
    """Add ``compare`` and ``plot`` to the ``propagate`` app."""
    app.command(name="compare")(compare)
    app.command(name="plot")(plot)
