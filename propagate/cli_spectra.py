"""``propagate spectra``: weight and Jacobian singular values and the correlation map.

A thin command: parse, call :func:`propagate.spectra.spectra`, print a table (or ``--json``),
write ``--out`` (results.json, results.csv) and ``--plot`` figures atomically. Folders and the
figure format are checked before any computing, so bad input ends with one line on stderr,
exit status 2 and nothing written. Wire into the app with ``register(app)``.
"""

from __future__ import annotations

import math
from typing import Annotated

import typer

from .cli_options import (
    Activation,
    AllLayers,
    BiasStd,
    Data,
    Depth,
    Dist,
    FanIn,
    Gain,
    Json,
    Mode,
    NoStd,
    Out,
    Scheme,
    Seed,
    Slope,
    Std,
    Trials,
    TruncBounds,
    Widths,
    Workers,
    fail,
    network_options,
)  # fmt: skip
from .cli_plots import Format, PlotDir, check_plot_target
from .errors import InputError

__all__ = ["spectra", "register", "print_spectra"]

Every = Annotated[str | None, typer.Option(
    "--every", metavar="K", help="Jacobian spectrum every K layers and at the last "
    "(default: about ten checkpoints).")]  # fmt: skip
Inputs = Annotated[
    str,
    typer.Option(
        "--inputs", metavar="K", help="Jacobian inputs per network (the first K of the batch)."
    ),
]
Pairs = Annotated[
    str,
    typer.Option(
        "--pairs", metavar="K", help="Input pairs per c0 for the correlation map (0 skips it)."
    ),
]
C0 = Annotated[
    str,
    typer.Option("--c0", metavar="C1,C2,...", help="Cosines of the input pairs, each in [-1, 1]."),
]


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "-inf" if value < 0 else "inf"
    if value == 0:
        return "0"
    if 1e-3 <= abs(value) < 1e4:
        return f"{value:.{digits}g}"
    return f"{value:.2e}"


def _fmt_log(value, digits: int = 2) -> str:
    if value is None or not math.isfinite(value):
        return "-inf" if value is not None and value < 0 else "-"
    return f"{value:.{digits}f}"


def _fmt_cos(value) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value + 0.0:.4f}".replace("-0.0000", "0.0000")


def print_spectra(result, *, all_layers: bool = False, console=None) -> None:
    """Three tables (weights, Jacobian checkpoints, correlation map) and the summary."""
    from rich.console import Console
    from rich.table import Table

    from .report import layer_rows_to_show

    if console is None:
        console = Console(highlight=False)
        if not console.is_terminal:
            console = Console(highlight=False, width=120)
    cfg, layers, summary = result.config, result.layers, result.summary
    widths = cfg["widths"]
    arch = (
        f"depth {cfg['depth']}, width {widths[1]}"
        if len(set(widths)) == 1
        else "widths " + ",".join(map(str, widths))
    )
    console.print(
        f"[bold]propagate spectra[/bold]: {arch}, {cfg['activation']}, scheme {cfg['scheme']} "
        f"({cfg['distribution']}, Var W = {cfg['weight_var_rule']}), {cfg['trials']} networks, "
        f"{cfg['inputs_per_trial']} Jacobian inputs each, seed {cfg['seed']}"
    )
    law = layers[0]["law"]
    law = "the Marchenko-Pastur law" if law == "marchenko-pastur" else f"the {law}"
    table = Table(
        title="weight singular values",
        caption=f"sv: singular values of W_l over all networks; pred: {law} from the nominal "
        "variance and shape (never fitted); MP edges: predicted sv_min..sv_max; cond: median "
        "over networks; <sv^2>: mean squared singular value / predicted; KS: distance of the "
        "squared singular values to the law (rigid eigenvalues: far below iid KS levels)",
        caption_justify="left",
    )
    for name in (
        "layer",
        "shape",
        "sv min",
        "sv max",
        "MP edges",
        "sv mean",
        "pred",
        "cond",
        "<sv^2>/pred",
        "KS",
    ):
        table.add_column(name, justify="right", no_wrap=True)
    previous = -1
    for i in layer_rows_to_show(len(layers), all_layers):
        if i != previous + 1:
            table.add_row("...", *[""] * 9)
        previous = i
        row = layers[i]
        table.add_row(
            str(row["layer"]),
            f"{row['fan_out']}x{row['fan_in']}",
            f"{row['sv_min']:.4g}",
            f"{row['sv_max']:.4g}",
            f"{row['mp_lo']:.4g}..{row['mp_hi']:.4g}",
            f"{row['sv_mean']:.4f}",
            f"{row['sv_mean_pred']:.4f}",
            _fmt(row["cond"]),
            f"{row['mean_sq_sv'] / row['mean_sq_sv_pred']:.4f}",
            f"{row['ks_mp']:.2g}",
        )
    console.print(table)

    jac = result.extra["jacobian"]
    table = Table(
        title="input-output Jacobian J = dh_l/dx",
        caption="log10 values; <sv^2>: mean over inputs and networks of tr(J^T J)/n_0 (pred: "
        "exact mean); var/mean^2 of the squared singular values per network (pred: Pennington "
        "et al., N -> inf; finite width shifts it by O(l^2/N) and caps it at n_0 - 1, so it "
        "sits below once the prediction nears that cap); zero%: exactly zero singular "
        "values (pred: rank bound from active units); sv max / sv min: mean log10 of the "
        "largest / smallest nonzero singular value; log||Je||^2: mean over unit inputs "
        "(pred: exact E[log] for Gaussian ReLU)",
        caption_justify="left",
    )
    for name in (
        "layer",
        "<sv^2>",
        "pred",
        "var/mean^2",
        "pred",
        "zero%",
        "pred",
        "sv max",
        "sv min",
        "log||Je||^2",
        "pred",
    ):
        table.add_column(name, justify="right", no_wrap=True)
    for row in jac["checkpoints"]:
        table.add_row(
            str(row["layer"]),
            _fmt_log(row["log10_mean_sq_sv"]),
            _fmt_log(row["log10_mean_sq_sv_pred"]),
            _fmt(row["var_over_mean2"]),
            _fmt(row["var_over_mean2_pred"]),
            f"{100 * row['zero_fraction']:.1f}",
            f"{100 * row['zero_fraction_pred']:.1f}",
            _fmt_log(row["log10_sv_max"]),
            _fmt_log(row["log10_sv_min"]),
            _fmt_log(row["mean_log10_sq_norm"]),
            _fmt_log(row["mean_log10_sq_norm_pred"]),
        )
    console.print(table)

    corr = result.extra.get("correlation")
    if corr:
        table = Table(
            title="correlation map: cos(h_l(x), h_l(y)), measured / iterated map",
            caption="mean over networks and pairs / mean-field iterate"
            + ("; asymptote 1 - 9 pi^2/(2 l^2)" if corr.get("asymptote") else ""),
            caption_justify="left",
        )
        table.add_column("layer", justify="right")
        for series in corr["series"]:
            table.add_column(f"c0 = {series['c0']:g}", justify="right", no_wrap=True)
        if corr.get("asymptote"):
            table.add_column("asymptote", justify="right")
        shown = [0] + [row["layer"] for row in jac["checkpoints"]]
        for layer in shown:
            cells = [str(layer)]
            for series in corr["series"]:
                cells.append(
                    f"{_fmt_cos(series['mean'][layer])} / {_fmt_cos(series['pred'][layer])}"
                )
            if corr.get("asymptote"):
                value = corr["asymptote"][layer]
                # 1 - 9 pi^2/(2 l^2) is a large-l statement: meaningless while it is negative
                cells.append(_fmt_cos(value) if value is not None and value > 0 else "-")
            table.add_row(*cells)
        console.print(table)
    console.print(summary["message"])
    for line in summary.get("warnings", []):
        console.print(f"[red]warning:[/red] {line}")


def spectra(
    depth: Depth = None,
    fan_in: FanIn = None,
    widths: Widths = None,
    scheme: Scheme = "he-normal",
    activation: Activation = "relu",
    negative_slope: Slope = None,
    bias_std: BiasStd = "0",
    dist: Dist = None,
    gain: Gain = None,
    mode: Mode = None,
    std: Std = None,
    trunc_bounds: TruncBounds = None,
    trials: Trials = "16",
    seed: Seed = "0",
    inputs: Inputs = "2",
    every: Every = None,
    pairs: Pairs = "4",
    c0: C0 = "-0.5,0,0.5,0.9",
    data: Data = None,
    no_standardize: NoStd = False,
    json_out: Json = False,
    out: Out = None,
    plot_dir: PlotDir = None,
    fmt: Format = "png",
    workers: Workers = None,
    all_layers: AllLayers = False,
) -> None:
    """Weight and input-output Jacobian singular values and the correlation map, beside theory.

    Weights against Marchenko-Pastur (or the orthogonal atom), the Jacobian against its exact
    mean, Pennington's variance and the active-unit rank bound, cosines of input pairs against
    the iterated arc-cosine map.

    Example: propagate spectra --depth 30 --fan-in 512 --scheme he-normal --plot figs
    """
    from .results import save_outputs
    from .spectra import spectra as spectra_api

    written = []
    try:
        fmt = check_plot_target(plot_dir, fmt)
        check_plot_target(out, "png", flag="--out")  # the same folder check, before computing
        result = spectra_api(
            **network_options(locals()),
            trials=trials,
            seed=seed,
            inputs=inputs,
            every=every,
            pairs=pairs,
            c0=c0,
            data=data,
            standardize=not no_standardize,
            workers=workers,
        )
        written += save_outputs(result, out)
        if plot_dir is not None:
            from .plotting.spectra_plots import plot_spectra_result

            written += plot_spectra_result(result.to_dict(), plot_dir, fmt)
    except InputError as exc:
        fail(str(exc))
    if json_out:
        typer.echo(result.to_json())
    else:
        print_spectra(result, all_layers=all_layers)
        for path in written:
            typer.echo(f"wrote {path}")


def register(app: typer.Typer) -> None:
    """Add ``spectra`` to the ``propagate`` app."""
    app.command(name="spectra")(spectra)
