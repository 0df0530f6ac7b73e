"""``propagate sweep`` and ``propagate recommend``: thin typer commands over the library.

``register(app)`` adds both commands to the main typer app (``cli.py``). Each command parses,
calls one library function (:func:`propagate.sweep.run_sweep`,
:func:`propagate.recommend.recommend`) and writes; bad input ends with one line on stderr and
exit status 2, Ctrl-C during a sweep with exit status 130 after every finished cell is saved.
"""

from __future__ import annotations

import math
from typing import Annotated

import typer

from .cli_options import Depth, FanIn, Json, Seed, Widths, fail
from .cli_plots import Format
from .errors import InputError

__all__ = ["register", "sweep", "recommend"]

FanIns = Annotated[
    str,
    typer.Option("--fan-in", metavar="N1,N2,...", help="Widths to sweep (constant-width stacks)."),
]
Depths = Annotated[str, typer.Option("--depth", metavar="L1,L2,...", help="Depths to sweep.")]
Schemes = Annotated[
    str,
    typer.Option(
        "--schemes", metavar="S1,S2,...", help="Init schemes (`propagate schemes` lists them)."
    ),
]
SweepTrials = Annotated[
    str, typer.Option("--trials", metavar="INT", help="Independent networks per cell.")
]
SweepBatch = Annotated[
    str,
    typer.Option(
        "--batch", metavar="INT", help="Inputs per network (1: every exact column is exact)."
    ),
]
Out = Annotated[
    str | None,
    typer.Option(
        "--out",
        metavar="DIR",
        help="Checkpoint folder (cells/, manifest.json) and results.json/"
        ".csv; a rerun resumes. Default: the user cache.",
    ),
]
Workers = Annotated[
    str | None,
    typer.Option("--workers", metavar="INT", help="Local processes (default: one per core)."),
]
Scheduler = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        metavar="ADDRESS",
        help="Run cells on a Dask scheduler, e.g. tcp://127.0.0.1:8786 (extra 'distributed').",
    ),
]
Csv = Annotated[
    str | None,
    typer.Option(
        "--csv", metavar="PATH", help="Write the table as CSV (missing folders are created)."
    ),
]
Plot = Annotated[
    str | None,
    typer.Option(
        "--plot", metavar="DIR", help="Write heatmaps over fan-in x depth, one PNG per scheme."
    ),
]
Progress = Annotated[
    bool | None,
    typer.Option(
        "--progress/--no-progress", help="Progress bar on stderr (default: when it is a terminal)."
    ),
]
Measure = Annotated[
    bool, typer.Option("--measure", help="Also simulate networks under both stds (one input each).")
]
RecTrials = Annotated[
    str, typer.Option("--trials", metavar="INT", help="Networks simulated with --measure.")
]


def sweep(
    fan_in: FanIns = "2,4,8,16,32,64,128",
    depth: Depths = "10,30,100",
    schemes: Schemes = "he-normal,he-uniform,orthogonal,gauss,torch",
    trials: SweepTrials = "1000",
    batch: SweepBatch = "1",
    seed: Seed = "0",
    out: Out = None,
    workers: Workers = None,
    scheduler: Scheduler = None,
    json_out: Json = False,
    csv: Csv = None,
    plot: Plot = None,
    fmt: Format = "png",
    progress: Progress = None,
) -> None:
    """Measure P(dead), log-norm spread, median drift and mean per (scheme, fan-in, depth) cell.

    Each cell is compared with the exact finite-width law; one row per cell. Cells run in
    parallel, are checkpointed as they finish, and a rerun resumes.

    Example: propagate sweep --fan-in 2,4,8,16,32,64 --depth 10,30,100 --out sweep1
    """
    from .cli_plots import check_plot_target
    from .results import check_csv_target, save_outputs
    from .sweep import SweepInterrupted, run_sweep

    try:
        fmt = check_plot_target(plot, fmt)  # bad figure targets fail before the cells run
        outputs = ("results.json", "results.csv", "manifest.json")
        check_csv_target(csv, out, plot, outputs)
        result = run_sweep(
            fan_ins=fan_in,
            depths=depth,
            schemes=schemes,
            trials=trials,
            batch=batch,
            seed=seed,
            out=out,
            workers=workers,
            scheduler=scheduler,
            progress=progress,
        )
        written = save_outputs(result, out, csv)
        if plot is not None:
            from .plotting.sweep_plots import plot_sweep_result

            written += plot_sweep_result(result.to_dict(), plot, fmt)
    except InputError as exc:
        fail(str(exc))
    except SweepInterrupted as exc:
        typer.echo(f"propagate: {exc.args[0]}", err=True)
        raise typer.Exit(130) from None
    if json_out:
        typer.echo(result.to_json())
    else:
        _print_sweep(result)
        for path in written:
            typer.echo(f"wrote {path}")


def recommend(
    widths: Widths = None,
    depth: Depth = None,
    fan_in: FanIn = None,
    measure: Measure = False,
    trials: RecTrials = "2000",
    seed: Seed = "0",
    json_out: Json = False,
) -> None:
    """The std per layer that keeps the typical signal stable, beside He's (ReLU, no bias).

    Shows the expected P(dead) and the log-norm band under both, and explains bottlenecks.

    Example: propagate recommend --widths 64,64,4,64,64 --measure
    """
    from .recommend import recommend as recommend_api

    try:
        result = recommend_api(
            widths, depth=depth, fan_in=fan_in, measure=measure, trials=trials, seed=seed
        )
    except InputError as exc:
        fail(str(exc))
    if json_out:
        typer.echo(result.to_json())
    else:
        _print_recommend(result)


def register(app: typer.Typer) -> None:
    """Add ``sweep`` and ``recommend`` to the main app."""
    app.command(name="sweep")(sweep)
    app.command(name="recommend")(recommend)


# ----------------------------------------------------------------------------------- printing
def _console():
    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=150)
    return console


def _num(x, fmt: str = ".2f", none: str = "-") -> str:
    if x is None:
        return none
    if isinstance(x, float) and not math.isfinite(x):
        return "dead"
    return format(x, fmt)


def _pct(x) -> str:
    if x is None:
        return "-"
    percent = 100 * x
    return f"{percent:.2g}" if 0 < percent < 0.1 else f"{percent:.1f}"


def _print_sweep(result) -> None:
    from rich.table import Table

    console = _console()
    cfg, summary = result.config, result.summary
    console.print(
        f"[bold]propagate sweep[/bold]: {len(result.rows)} cells ({', '.join(cfg['schemes'])}; "
        f"fan-in {','.join(map(str, cfg['fan_ins']))}; depth "
        f"{','.join(map(str, cfg['depths']))}), {cfg['trials']} networks x {cfg['batch']} "
        f"input(s) per cell, ReLU, no bias, seed {cfg['seed']}"
    )
    table = Table(
        caption="P(dead) %: inputs whose h_L is all zero, measured / exact. spread: std of "
        "log10 q_L over alive networks. drift: median log10 q_L - log10 q_1 (mean field). "
        "mean: measured mean q_L / mean field. KS: distance of log R_L from the exact law (p). "
        "exact columns: Gaussian weights ('-' otherwise).",
        caption_justify="left",
    )
    for name in (
        "scheme",
        "n",
        "L",
        "P(dead) %",
        "exact",
        "spread",
        "exact",
        "drift",
        "exact",
        "mean",
        "KS D (p)",
    ):
        table.add_column(name, justify="left" if name == "scheme" else "right", no_wrap=True)
    for row in result.rows:
        ks = "-" if row["ks_distance"] is None else f"{row['ks_distance']:.3f} ({row['ks_p']:.2g})"
        table.add_row(
            row["scheme"],
            str(row["fan_in"]),
            str(row["depth"]),
            _pct(row["p_dead"]),
            _pct(row["p_dead_exact"]),
            _num(row["q_spread_log10"]),
            _num(row["q_spread_log10_exact"]),
            _num(row["median_drift_log10"], ".1f", "dead"),
            _num(row["median_drift_log10_exact"], ".1f", "dead" if row["law_exact"] else "-"),
            _num(row["mean_ratio"], ".3g"),
            ks,
        )
    console.print(table)
    computed, reused = summary["computed"], summary["reused"]
    how = {"serial": "serially", "dask": f"on Dask at {summary.get('scheduler')}"}.get(
        summary["executor"], f"on {summary.get('workers')} local processes"
    )
    done = (
        f"{computed} cells computed {how} in {summary['wall_s']:.1f} s"
        if computed
        else ("nothing to compute")
    )
    console.print(f"{done}; {reused} reused from {summary['out']}")
    checks = []
    if summary.get("p_dead_min_binom_p") is not None:
        checks.append(
            f"P(dead) binomial test: smallest p {summary['p_dead_min_binom_p']:.2g} over "
            f"{summary['p_dead_cells']} cells"
        )
    elif summary.get("p_dead_max_abs_z") is not None:
        checks.append(f"P(dead): largest |z| {summary['p_dead_max_abs_z']:.2f}")
    if summary.get("ks_min_p") is not None:
        checks.append(
            f"KS of log R_L against the exact law: smallest p {summary['ks_min_p']:.2g} over "
            f"{summary['ks_cells']} cells"
        )
    if checks:
        console.print("agreement: " + "; ".join(checks))
    for note in summary.get("notes", []):
        console.print(f"[yellow]note:[/yellow] {note}")


def _print_recommend(result) -> None:
    from rich.table import Table

    from .report import fmt_log10, layer_rows_to_show

    console = _console()
    cfg, layers, summary = result.config, result.layers, result.summary
    widths = cfg["widths"]
    arch = (
        f"depth {cfg['depth']}, width {widths[0]}"
        if len(set(widths)) == 1
        else "widths " + ",".join(map(str, widths))
    )
    console.print(
        f"[bold]propagate recommend[/bold]: {arch}, ReLU, Gaussian weights, no bias "
        "(exact finite-width law)"
    )
    measured = cfg["measured"]
    table = Table(
        caption="std: per-entry weight std (He sqrt(2/fan_in); rec keeps the typical per-unit "
        "signal, from s2*). dead %: inputs dead by this layer, any scale. spread: std of log10 "
        "M_l/M_0 over alive networks, any scale. median [5..95%]: log10 of M_l/M_0 over networks, "
        "M = ||h||^2/n (-inf: dead)."
        + (" meas: simulated, one input per network." if measured else ""),
        caption_justify="left",
    )
    cols = ["layer", "n_in>n_out", "He std", "rec std", "x He", "dead %", "spread",
            "He median [5..95%]", "rec median [5..95%]"]  # fmt: skip
    if measured:
        cols += ["meas dead %", "meas He", "meas rec"]
    for name in cols:
        table.add_column(name, justify="right", no_wrap=True)

    def band(row, key):
        lo, med, hi = (fmt_log10(row[f"log10_{q}_{key}"], 2) for q in ("p05", "median", "p95"))
        return f"{med} [{lo}..{hi}]"

    previous = -1
    for i in layer_rows_to_show(len(layers)):
        if i != previous + 1:
            table.add_row("...", *[""] * (len(cols) - 1))
        previous = i
        r = layers[i]
        cells = [
            str(r["layer"]),
            f"{r['fan_in']}>{r['fan_out']}",
            f"{r['he_std']:.4g}",
            f"{r['recommended_std']:.4g}",
            f"{r['std_ratio']:.3f}",
            _pct(r["p_dead"]),
            f"{r['log10_spread']:.2f}",
            band(r, "he"),
            band(r, "rec"),
        ]
        if measured:
            cells += [
                _pct(r["p_dead_meas_he"]),
                fmt_log10(r["log10_median_meas_he"], 2),
                fmt_log10(r["log10_median_meas_rec"], 2),
            ]
        table.add_row(*cells)
    console.print(table)
    console.print(summary["message"])
