"""Option types shared by every command (one definition, so flags mean the same everywhere)."""

from __future__ import annotations

from typing import Annotated

import typer

from .errors import InputError

# Numbers are taken as text and validated by the library, so an error names the bad value.
Depth = Annotated[
    str | None, typer.Option("--depth", metavar="INT", help="Number of layers L (default 30).")
]
FanIn = Annotated[
    str | None, typer.Option("--fan-in", metavar="INT", help="Constant width n (default 64).")
]
Widths = Annotated[
    str | None,
    typer.Option(
        "--widths", metavar="N0,N1,...", help="Comma-separated widths n0,n1,...,nL (n0 = input)."
    ),
]
Scheme = Annotated[
    str,
    typer.Option(
        "--scheme", help="Init scheme or framework alias; `propagate schemes` lists them."
    ),
]
Activation = Annotated[str, typer.Option("--activation", help="relu, leaky-relu, linear or tanh.")]
Slope = Annotated[
    str | None,
    typer.Option("--negative-slope", metavar="A", help="Leaky ReLU slope a (default 0.01)."),
]
BiasStd = Annotated[
    str,
    typer.Option(
        "--bias-std",
        metavar="S|torch",
        help="Std of N(0, s^2) biases (default 0: none), or 'torch' for nn.Linear's own "
        "U(+-1/sqrt(fan_in)) bias.",
    ),
]
Dist = Annotated[
    str | None,
    typer.Option(
        "--dist",
        help="Override the law: normal, uniform or truncnormal (Keras/JAX: cut at +-2 "
        "std, corrected).",
    ),
]
Gain = Annotated[
    str | None,
    typer.Option(
        "--gain",
        metavar="G",
        help="Override the gain (variance scale = gain^2); default follows the activation.",
    ),
]
Mode = Annotated[str | None, typer.Option("--mode", help="fan_in, fan_out or fan_avg.")]
Std = Annotated[
    str | None,
    typer.Option(
        "--std",
        metavar="SIGMA",
        help="Fixed per-entry std (gauss: default 0.01; torch-trunc-normal: pre-cut std).",
    ),
]
Batch = Annotated[str, typer.Option("--batch", metavar="INT", help="Inputs per network.")]
Trials = Annotated[str, typer.Option("--trials", metavar="INT", help="Independent networks.")]
Seed = Annotated[str, typer.Option("--seed", metavar="INT", help="Root of all randomness.")]
DType = Annotated[str, typer.Option("--dtype", help="float32 (default) or float64.")]
Data = Annotated[
    str | None,
    typer.Option(
        "--data", help="'digits' (needs the [data] extra) or a .npy/.npz of (samples, features)."
    ),
]
NoStd = Annotated[bool, typer.Option("--no-standardize", help="Keep the data's raw feature scale.")]
Head = Annotated[str, typer.Option("--head", help="probe (random Gaussian) or softmax.")]
Classes = Annotated[
    str | None,
    typer.Option(
        "--classes", metavar="INT", help="Classes of the softmax head (default 10, or the data's)."
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
Csv = Annotated[
    str | None,
    typer.Option(
        "--csv",
        metavar="PATH",
        help="Write the per-layer table as CSV (atomically; missing folders are created).",
    ),
]
Out = Annotated[
    str | None,
    typer.Option("--out", help="Folder for results.json and results.csv (written atomically)."),
]
Workers = Annotated[
    str | None,
    typer.Option(
        "--workers", metavar="INT", help="Threads over trial chunks (results do not depend on it)."
    ),
]
Kernels = Annotated[
    str,
    typer.Option(
        "--kernels",
        metavar="auto|numpy|numba",
        help="Who runs the per-layer passes of relu/leaky-relu layers: numba's fused kernels "
        "(with the 'fast' extra) or NumPy; auto picks numba for large runs. Results agree to "
        "rounding.",
    ),
]
AllLayers = Annotated[bool, typer.Option("--all-layers", help="Show every layer in the table.")]


TruncBounds = Annotated[
    str | None,
    typer.Option("--trunc-bounds", help="torch-trunc-normal absolute cut-offs a,b (default -2,2)."),
]


def fail(message: str) -> None:
    """One line on stderr and exit status 2: how every command reports bad input."""
    typer.echo(f"propagate: error: {message}", err=True)
    raise typer.Exit(2)


def parse_trunc_bounds(value: str | None) -> tuple[float, float] | None:
    """'-2,2' -> (-2.0, 2.0); None stays None."""
    if value is None:
        return None
    parts = value.split(",")
    if len(parts) != 2:
        raise InputError(f"--trunc-bounds {value!r} is not allowed; give two numbers a,b")
    try:
        return float(parts[0]), float(parts[1])
    except ValueError:
        raise InputError(f"--trunc-bounds {value!r} is not two numbers") from None


def network_options(values: dict) -> dict:
    """Architecture and init options of a command (its ``locals()``) as library arguments."""
    from .api import network_args

    args = network_args(values)
    args["trunc_bounds"] = parse_trunc_bounds(args["trunc_bounds"])
    return args
