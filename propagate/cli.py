"""The ``propagate`` command: thin typer commands over the library.

Each command parses, calls one library function and writes. Bad input of any kind ends with one
line on stderr (``propagate: error: ...``) and exit status 2, never a traceback.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import click
import typer

from .errors import InputError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Signal propagation in deep ReLU networks at initialization: measured beside theory.",
)

# ------------------------------------------------------------------ shared option types
Depth = Annotated[int | None, typer.Option("--depth", help="Number of layers L (default 30).")]
FanIn = Annotated[int | None, typer.Option("--fan-in", help="Constant width n (default 64).")]
Widths = Annotated[str | None, typer.Option(
    "--widths", help="Comma-separated widths n0,n1,...,nL (n0 = input width).")]
Scheme = Annotated[str, typer.Option(
    "--scheme", help="Init scheme or framework alias; `propagate schemes` lists them.")]
Activation = Annotated[str, typer.Option(
    "--activation", help="relu, leaky-relu, linear or tanh.")]
Slope = Annotated[float | None, typer.Option(
    "--negative-slope", help="Leaky ReLU slope a (default 0.01).")]
BiasStd = Annotated[float, typer.Option("--bias-std", help="Std of N(0, s^2) biases.")]
Dist = Annotated[str | None, typer.Option(
    "--dist", help="Override the law: normal, uniform or truncnormal (Keras/JAX: cut at +-2 "
    "std, corrected).")]
Gain = Annotated[float | None, typer.Option(
    "--gain", help="Override the gain (variance scale = gain^2); default follows the activation.")]
Mode = Annotated[str | None, typer.Option("--mode", help="fan_in, fan_out or fan_avg.")]
Std = Annotated[float | None, typer.Option(
    "--std", help="Fixed per-entry std (gauss: default 0.01; torch-trunc-normal: pre-cut std).")]
Batch = Annotated[int, typer.Option("--batch", help="Inputs per network.")]
Trials = Annotated[int, typer.Option("--trials", help="Independent networks.")]
Seed = Annotated[int, typer.Option("--seed", help="Root of all randomness.")]
DType = Annotated[str, typer.Option("--dtype", help="float32 (default) or float64.")]
Data = Annotated[str | None, typer.Option(
    "--data", help="'digits' (needs the [data] extra) or a .npy/.npz of (samples, features).")]
NoStd = Annotated[bool, typer.Option(
    "--no-standardize", help="Keep the data's raw feature scale.")]
Head = Annotated[str, typer.Option("--head", help="probe (random Gaussian) or softmax.")]
Classes = Annotated[int | None, typer.Option("--classes", help="Classes of the softmax head.")]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
Csv = Annotated[str | None, typer.Option("--csv", help="Write the per-layer table as CSV.")]
Out = Annotated[str | None, typer.Option(
    "--out", help="Folder for results.json and results.csv (written atomically).")]
Workers = Annotated[int | None, typer.Option(
    "--workers", help="Threads over trial chunks (results do not depend on it).")]
AllLayers = Annotated[bool, typer.Option("--all-layers", help="Show every layer in the table.")]


def _fail(message: str) -> None:
    typer.echo(f"propagate: error: {message}", err=True)
    raise typer.Exit(2)


def _trunc(value: str | None):
    if value is None:
        return None
    parts = value.split(",")
    if len(parts) != 2:
        raise InputError(f"--trunc-bounds {value!r} is not allowed; give two numbers a,b")
    try:
        return float(parts[0]), float(parts[1])
    except ValueError:
        raise InputError(f"--trunc-bounds {value!r} is not two numbers") from None


@app.command()
def run(
    depth: Depth = None, fan_in: FanIn = None, widths: Widths = None,
    scheme: Scheme = "he-normal", activation: Activation = "relu", negative_slope: Slope = None,
    bias_std: BiasStd = 0.0, dist: Dist = None, gain: Gain = None, mode: Mode = None,
    std: Std = None,
    trunc_bounds: Annotated[str | None, typer.Option(
        "--trunc-bounds", help="torch-trunc-normal absolute cut-offs a,b (default -2,2).")] = None,
    batch: Batch = 256, trials: Trials = 100, seed: Seed = 0, dtype: DType = "float32",
    data: Data = None, no_standardize: NoStd = False, head: Head = "probe",
    classes: Classes = None, json_out: Json = False, csv: Csv = None, out: Out = None,
    workers: Workers = None, all_layers: AllLayers = False,
) -> None:
    """Push many independent networks forward and backward; per-layer statistics beside theory.

    Example: propagate run --depth 30 --fan-in 64 --scheme gauss
    """
    from .api import run as run_api
    from .report import print_run

    try:
        result = run_api(
            depth=depth, fan_in=fan_in, widths=widths, scheme=scheme, activation=activation,
            negative_slope=negative_slope, bias_std=bias_std, dist=dist, gain=gain, mode=mode,
            std=std, trunc_bounds=_trunc(trunc_bounds), batch=batch, trials=trials, seed=seed,
            dtype=dtype, data=data, standardize=not no_standardize, head=head, classes=classes,
            workers=workers,
        )
        _write_outputs(result, csv, out)
    except InputError as exc:
        _fail(str(exc))
    if json_out:
        typer.echo(result.to_json())
    else:
        print_run(result, all_layers=all_layers)


def _write_outputs(result, csv_path: str | None, out_dir: str | None) -> None:
    from .results import atomic_write

    if out_dir is not None:
        if os.path.exists(out_dir) and not os.path.isdir(out_dir):
            raise InputError(f"--out {out_dir!r} exists and is not a folder")
        atomic_write(os.path.join(out_dir, "results.json"), result.to_json())
        atomic_write(os.path.join(out_dir, "results.csv"), result.to_csv())
    if csv_path is not None:
        atomic_write(csv_path, result.to_csv())


@app.command()
def schemes(json_out: Json = False) -> None:
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


def main(argv: list[str] | None = None) -> None:
    """Console entry point: usage errors become one line and exit status 2."""
    command = typer.main.get_command(app)
    args = sys.argv[1:] if argv is None else argv
    try:
        rv = command.main(args=args, prog_name="propagate", standalone_mode=False)
    except click.exceptions.NoArgsIsHelp as exc:  # pragma: no cover - click version dependent
        typer.echo(exc.ctx.get_help() if exc.ctx else "")
        sys.exit(0)
    except click.UsageError as exc:
        typer.echo(f"propagate: error: {exc.format_message()}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        typer.echo("propagate: interrupted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("propagate: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    sys.exit(rv if isinstance(rv, int) else 0)

