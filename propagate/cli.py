"""The ``propagate`` command: thin typer commands over the library.

Each command parses, calls one library function and writes. Bad input of any kind ends with one
line on stderr (``propagate: error: ...``) and exit status 2, never a traceback.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Annotated

import typer

from .cli_options import (
    Activation,
    AllLayers,
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
)
from .cli_plots import Format, PlotDir, check_plot_target, write_run_plots
from .cli_plots import register as register_plot_commands
from .cli_spectra import register as register_spectra_command
from .cli_sweep import register as register_sweep_commands
from .errors import InputError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Signal propagation in deep ReLU networks at initialization: measured beside theory.",
)


def _print_version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"propagate {__version__} (distribution propagate-init)")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the version and exit.",
            is_eager=True,
            callback=_print_version,
        ),
    ] = False,
) -> None:
    """Signal propagation in deep ReLU networks at initialization: measured beside theory."""


@app.command()
def run(
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
    out: Out = None,
    workers: Workers = None,
    kernels: Kernels = "auto",
    all_layers: AllLayers = False,
    plot_dir: PlotDir = None,
    fmt: Format = "png",
) -> None:
    """Push many independent networks forward and backward; per-layer statistics beside theory.

    Example: propagate run --depth 30 --fan-in 64 --scheme gauss
    """
    from .api import run as run_api
    from .report import print_run
    from .results import check_csv_target, save_outputs

    try:
        fmt = check_plot_target(plot_dir, fmt)
        _check_out_folder(out)
        check_csv_target(csv, out, plot_dir)
        result = run_api(
            **network_options(locals()),
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
        print_run(result, all_layers=all_layers)
        for path in written:
            typer.echo(f"wrote {path}")


def _check_out_folder(out_dir: str | None) -> None:
    """Refuse an unusable --out folder before anything is computed or written."""
    from .results import check_output_file

    if out_dir is not None:
        if not out_dir.strip():
            raise InputError("--out '' is not a folder path")
        if os.path.exists(out_dir) and not os.path.isdir(out_dir):
            raise InputError(f"--out {out_dir!r} exists and is not a folder")
        for name in ("results.json", "results.csv"):
            check_output_file(os.path.join(out_dir, name), "--out")


@app.command()
def schemes(
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the schemes as a JSON array on stdout.")
    ] = False,
) -> None:
    """List every init scheme: law, variance and bound/std formulas, framework names and traps."""
    from .report import print_schemes
    from .results import jsonable
    from .schemes import scheme_table

    rows = scheme_table()
    if json_out:
        import json

        typer.echo(json.dumps(jsonable(rows), indent=2))
    else:
        print_schemes(rows)


register_plot_commands(app)
register_spectra_command(app)
register_sweep_commands(app)


def _kind(exc: BaseException, *names: str) -> bool:
    """Whether ``exc`` is one of click's exceptions by class name (typer may vendor click)."""
    return any(cls.__name__ in names for cls in type(exc).__mro__)


def _interrupted() -> None:
    """Ctrl-C: say so and leave at once (nothing is written before a run completes; worker
    threads still inside a layer's product are not waited for)."""
    typer.echo("propagate: interrupted", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: usage errors become one line and exit status 2."""
    command = typer.main.get_command(app)
    args = sys.argv[1:] if argv is None else argv
    try:
        rv = command.main(args=args, prog_name="propagate", standalone_mode=False)
    except KeyboardInterrupt:
        _interrupted()
    except BrokenPipeError:
        sys.exit(0)
    except Exception as exc:
        if _kind(exc, "NoArgsIsHelpError", "NoArgsIsHelp"):
            ctx = getattr(exc, "ctx", None)
            typer.echo(ctx.get_help() if ctx is not None else "")
            sys.exit(0)
        if _kind(exc, "UsageError", "ClickException"):
            typer.echo(f"propagate: error: {exc.format_message()}", err=True)
            sys.exit(2)
        if _kind(exc, "Abort"):
            _interrupted()
        if _kind(exc, "Exit"):
            code = getattr(exc, "exit_code", 0)
            if code == 130:  # typer turns Ctrl-C into Exit(130)
                _interrupted()
            sys.exit(code)
        if os.environ.get("PROPAGATE_DEBUG"):
            raise
        if isinstance(exc, MemoryError):  # past the estimate (a memory limit, other programs)
            typer.echo(
                "propagate: error: out of memory while running; use fewer --trials or a smaller "
                "--batch (the estimate that admitted this run assumed the memory was free)",
                err=True,
            )
            sys.exit(2)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            typer.echo("propagate: error: no space left on the output device", err=True)
            sys.exit(2)
        # a bug, not bad input: one line (PROPAGATE_DEBUG=1 shows the traceback)
        message = str(exc).splitlines()[0][:300] if str(exc) else ""
        typer.echo(f"propagate: internal error: {type(exc).__name__}: {message}", err=True)
        sys.exit(1)
    if rv == 130:  # click returns typer's Exit(130) for Ctrl-C when not standalone
        _interrupted()
    sys.exit(rv if isinstance(rv, int) else 0)
