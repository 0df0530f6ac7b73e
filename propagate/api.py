"""The Python API: validate user-level arguments, build the network, run, summarise.

``propagate.run(...)`` returns the same :class:`RunResult` the CLI prints.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .activations import make_activation
from .data import Dataset, load_data
from .errors import InputError
from .measure import log10_mean, summarize_layers, verdict
from .network import EngineConfig, Network, simulate
from .results import RunResult
from .schemes import resolve_scheme

__all__ = [
    "run",
    "build_network",
    "network_args",
    "NETWORK_ARGS",
    "parse_widths",
    "check_positive_int",
    "check_finite",
    "check_scale",
]

DTYPES = {"float32": np.float32, "float64": np.float64}
HEADS = ("probe", "softmax")


def check_positive_int(name: str, value, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` as an int in [minimum, maximum], else a one-line InputError naming ``name``.

    Whole numbers are parsed exactly (no detour through float), so large seeds stay distinct.
    """
    allowed = f"a whole number >= {minimum}" + (f" and <= {maximum}" if maximum else "")
    if isinstance(value, bool) or value is None:
        raise InputError(f"{name} {value!r} is not allowed; give {allowed}")
    if isinstance(value, int | np.integer):
        number = int(value)
    else:
        text = str(value).strip()
        try:
            number = int(text)
        except ValueError:
            try:
                as_float = float(text)
            except ValueError:
                raise InputError(f"{name} {value!r} is not a number; give {allowed}") from None
            if not math.isfinite(as_float) or as_float != int(as_float):
                raise InputError(f"{name} {value!r} is not allowed; give {allowed}") from None
            number = int(as_float)
    if number < minimum or (maximum is not None and number > maximum):
        raise InputError(f"{name} {value!r} is not allowed; give {allowed}")
    return number


MAX_DEPTH = 100_000  # layers; deeper stacks are better studied with the exact law directly
MAX_WIDTH = 1_000_000
SCALE_RANGE = (1e-100, 1e100)  # std, gain, bias std: their squares stay normal float64


def check_scale(name: str, value, *, allow_zero: bool = False) -> float | None:
    """A std or gain: finite, > 0 (or 0 when allowed) and within 1e-100..1e100."""
    x = check_finite(name, value, nonnegative=allow_zero, positive=not allow_zero)
    if x is None or (allow_zero and x == 0):
        return x
    lo, hi = SCALE_RANGE
    if not lo <= x <= hi:
        raise InputError(f"{name} {value!r} is not allowed; give a value between {lo:g} and {hi:g}")
    return x


def check_finite(
    name: str, value: float | None, *, positive: bool = False, nonnegative: bool = False
) -> float | None:
    """Finite float (optionally > 0 or >= 0), else a one-line InputError naming ``name``."""
    if value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        want = "> 0" if positive else (">= 0" if nonnegative else "finite")
        raise InputError(f"{name} {value!r} is not a number; give a {want} number") from None
    if not math.isfinite(x):
        raise InputError(f"{name} {value!r} is not allowed; give a finite number")
    mantissa = value.lower().split("e")[0] if isinstance(value, str) else ""
    if x == 0 and any(c in "123456789" for c in mantissa):  # e.g. 1e-400
        raise InputError(f"{name} {value!r} is not allowed; it rounds to 0 in float64")
    if positive and x <= 0:
        raise InputError(f"{name} {value!r} is not allowed; give a number > 0")
    if nonnegative and x < 0:
        raise InputError(f"{name} {value!r} is not allowed; give a number >= 0")
    return x


def parse_widths(text: str | Sequence[int]) -> tuple[int, ...]:
    """'64,32,10' or a sequence -> validated widths (each a whole number >= 1, at least two)."""
    items = [s.strip() for s in text.split(",")] if isinstance(text, str) else list(text)
    if len(items) < 2 or any(item == "" for item in items):
        raise InputError(
            f"--widths {text!r} is not allowed; give at least two comma-separated whole numbers "
            ">= 1 (input width first), e.g. 64,64,64"
        )
    if len(items) > MAX_DEPTH + 1:
        raise InputError(f"--widths has {len(items) - 1} layers; at most {MAX_DEPTH} are allowed")
    return tuple(check_positive_int("--widths entry", item, maximum=MAX_WIDTH) for item in items)


NETWORK_ARGS = (
    "depth",
    "fan_in",
    "widths",
    "scheme",
    "activation",
    "negative_slope",
    "bias_std",
    "dist",
    "gain",
    "mode",
    "std",
    "trunc_bounds",
)


def network_args(values: dict) -> dict:
    """The architecture and init arguments of :func:`build_network` picked out of ``values``
    (a caller's ``locals()``), so every entry point passes the same set the same way."""
    return {name: values[name] for name in NETWORK_ARGS}


def build_network(
    *,
    depth=None,
    fan_in=None,
    widths=None,
    scheme="he-normal",
    activation="relu",
    negative_slope=None,
    bias_std=0.0,
    dist=None,
    gain=None,
    mode=None,
    std=None,
    trunc_bounds=None,
) -> Network:
    """Validate architecture and init arguments and build the :class:`Network`."""
    if widths is not None:
        if depth is not None or fan_in is not None:
            raise InputError("give either --widths or --depth/--fan-in, not both")
        widths = parse_widths(widths)
    else:
        depth = check_positive_int("--depth", 30 if depth is None else depth, maximum=MAX_DEPTH)
        fan_in = check_positive_int("--fan-in", 64 if fan_in is None else fan_in, maximum=MAX_WIDTH)
        widths = (fan_in,) * (depth + 1)
    if not isinstance(activation, str):
        raise InputError(
            f"--activation {activation!r} is not allowed; give relu, leaky-relu, linear or tanh"
        )
    act = make_activation(
        activation, check_finite("--negative-slope", negative_slope, nonnegative=True)
    )
    bias = "normal"
    if isinstance(bias_std, str) and bias_std.strip().lower() == "torch":
        bias, bias_std = "torch", 0.0
    else:
        try:
            bias_std = check_scale("--bias-std", bias_std, allow_zero=True) or 0.0
        except InputError as exc:
            raise InputError(f"{exc} (or 'torch' for nn.Linear's uniform bias)") from None
    gain = check_scale("--gain", gain)
    std = check_scale("--std", std)
    if trunc_bounds is not None:
        if not isinstance(trunc_bounds, tuple | list) or len(trunc_bounds) != 2:
            raise InputError(
                f"--trunc-bounds {trunc_bounds!r} is not allowed; give two numbers a,b"
            )
        a, b = (check_finite("--trunc-bounds", v) for v in trunc_bounds)
        if not a < b:
            raise InputError(
                f"--trunc-bounds {a},{b} is not allowed; the lower bound must be "
                "below the upper one"
            )
        trunc_bounds = (a, b)
    if not isinstance(scheme, str):
        raise InputError(f"--scheme {scheme!r} is not allowed; see `propagate schemes`")
    spec = resolve_scheme(
        scheme, activation=act, dist=dist, gain=gain, mode=mode, std=std, trunc_bounds=trunc_bounds
    )
    try:
        return Network(widths=widths, activation=act, init=spec, bias_std=bias_std, bias=bias)
    except ArithmeticError:
        raise InputError(
            f"--scheme {spec.name} with these --std/--trunc-bounds gives no usable weight law "
            "(the truncation window is too narrow for the std); widen --trunc-bounds"
        ) from None


def _exactness(net: Network) -> str:
    """What is exact about this run's numbers and predictions, in one sentence."""
    if net.activation.is_rectifier:
        return (
            "forward and backward passes exact at any depth (log-domain scale, positively "
            "homogeneous activation); mean-field predictions exact in expectation at every width"
            + ("" if net.init.scheme.kind != "orthogonal" else " for the second moments")
        )
    return (
        "backward pass exact at any depth (linear in the gradient); forward pass exact where the "
        "true pre-activation is representable in the working dtype (tanh is not homogeneous); "
        "mean-field predictions are the infinite-width limit (quadrature)"
    )


def _init_config(net: Network) -> dict:
    init = net.init.to_dict()
    init["weight_var_rule"] = init.pop("weight_var")
    return init


def run(
    *,
    depth: int | None = None,
    fan_in: int | None = None,
    widths=None,
    scheme: str = "he-normal",
    activation: str = "relu",
    negative_slope: float | None = None,
    bias_std: float = 0.0,
    dist: str | None = None,
    gain: float | None = None,
    mode: str | None = None,
    std: float | None = None,
    trunc_bounds=None,
    batch: int = 256,
    trials: int = 100,
    seed: int = 0,
    dtype: str = "float32",
    data: str | Dataset | None = None,
    standardize: bool = True,
    head: str = "probe",
    classes: int | None = None,
    workers: int | None = None,
    chunk_trials: int | None = None,
    kernels: str = "auto",
) -> RunResult:
    """Push ``trials`` independent networks forward and backward; measured beside predicted.

    Args:
        depth, fan_in: constant-width stack of ``depth`` layers (defaults 30 and 64), or
        widths: (n_0, ..., n_L) or '64,32,10'.
        scheme: init scheme name or framework alias (``propagate schemes`` lists them).
        activation: relu, leaky-relu (``negative_slope``, default 0.01), linear, tanh.
        bias_std: std of N(0, bias_std^2) biases (0: none), or 'torch' for torch's
            nn.Linear bias U(+-1/sqrt(fan_in)).
        dist, gain, mode, std, trunc_bounds: overrides of the scheme's formula.
        batch: inputs per network; trials: independent networks; seed: root of all randomness.
        dtype: 'float32' (default: fast, enough for second moments with the scale kept in
            log space) or 'float64'.
        data: None (x ~ N(0, I)), 'digits', a .npy/.npz path, or a :class:`Dataset`.
        head: 'probe' (random Gaussian probe <g, h_L>) or 'softmax' (cross-entropy, ``classes``).
        workers, chunk_trials: execution only; results do not depend on them.
        kernels: 'auto', 'numpy' or 'numba' (fused passes for relu/leaky-relu, from the
            ``fast`` extra); execution only, results agree to rounding (``propagate.kernels``).

    Returns:
        RunResult with ``config``, ``layers`` and ``summary``.
    """
    from . import __version__

    net = build_network(**network_args(locals()))
    batch = check_positive_int("--batch", batch)
    trials = check_positive_int("--trials", trials)
    seed = check_positive_int("--seed", seed, minimum=0)
    if dtype not in DTYPES:
        raise InputError(f"--dtype {dtype!r} is not allowed; choose one of: float32, float64")
    if head not in HEADS:
        raise InputError(f"--head {head!r} is not allowed; choose one of: {', '.join(HEADS)}")
    if classes is not None and head != "softmax":
        raise InputError(f"--classes {classes} only applies with --head softmax")
    if not standardize and data is None:
        raise InputError("--no-standardize only applies with --data (x ~ N(0, I) is standard)")
    if workers is not None:
        workers = check_positive_int("--workers", workers)
    if chunk_trials is not None:
        chunk_trials = check_positive_int("--chunk-trials", chunk_trials)
    if data is not None and not isinstance(data, str | Dataset):
        raise InputError(f"--data {type(data).__name__} is not allowed; give 'digits' or a path")
    dataset = load_data(data, standardize_features=standardize) if isinstance(data, str) else data
    if dataset is not None:
        if dataset.n_features != net.widths[0]:
            raise InputError(
                f"--data {dataset.name!r} has {dataset.n_features} features but the network's "
                f"input width is {net.widths[0]}; use --fan-in {dataset.n_features} or --widths "
                f"{dataset.n_features},..."
            )
        batch = min(batch, dataset.n_samples)
        peak = float(np.max(np.abs(dataset.x)))
        log10_m0 = 2 * math.log10(peak) + math.log10(float(np.mean((dataset.x / peak) ** 2)))
        if abs(log10_m0) > 290:
            raise InputError(
                f"--data {dataset.name!r}: its second moment is 1e{log10_m0:.0f}, outside what "
                "float64 predictions can hold; drop --no-standardize or rescale the data"
            )
    if classes is None:
        classes = dataset.n_classes if dataset is not None and dataset.n_classes else 10
    classes = check_positive_int("--classes", classes, minimum=2)
    if head == "softmax" and dataset is not None and dataset.n_classes:
        if classes < dataset.n_classes:
            raise InputError(
                f"--classes {classes} is fewer than the {dataset.n_classes} classes of the "
                f"labels of --data {dataset.name!r} (0 to {dataset.n_classes - 1}); give at "
                f"least {dataset.n_classes}, or leave --classes out"
            )
    if batch * min(net.widths[1:]) < 2:
        raise InputError(
            f"--batch {batch} x width {min(net.widths[1:])} gives fewer than 2 values per layer; "
            "a variance needs at least 2: raise --batch"
        )
    cfg = EngineConfig(
        batch=batch,
        trials=trials,
        seed=seed,
        dtype=DTYPES[dtype],
        data=dataset,
        head=head,
        classes=classes,
        workers=workers,
        chunk_trials=chunk_trials,
        kernels=kernels,
    )
    stats = simulate(net, cfg)
    layers, extras = summarize_layers(net, cfg, stats)
    summary = verdict(net, layers, extras["log10_input_grad"], extras["signal_share"])
    summary["log10_input_grad_pred"] = extras["log10_input_grad_pred"]
    summary["log10_m0"] = extras["log10_m0"]
    summary["finite_width_notes"] = extras["finite_width_notes"]
    warnings = []
    if stats.scale_range_warning:
        warnings.append(
            "within one network, inputs' squared norms spanned more than 1e30; statistics may "
            "have lost digits for the smallest"
            + (": rerun with --dtype float64" if dtype == "float32" else "")
        )
    act = net.activation
    if kernels == "numba" and stats.kernels != "numba":
        warnings.append(
            f"--kernels numba: {act.name} layers have no fused kernels; NumPy ran them "
            "(fused kernels cover relu and leaky-relu)"
        )
    if not act.has_dead_layers and np.any(stats.dead_inputs > 0):
        warnings.append(
            f"some inputs' h_l is exactly 0 under {act.name}, which cannot switch a unit off: "
            f"their scale fell out of {dtype}'s range within one network (a tiny "
            "--negative-slope?), and their statistics are lost"
            + (
                ": rerun with --dtype float64"
                + (" or a larger --negative-slope" if act.name == "leaky-relu" else "")
                if dtype == "float32"
                else (": use a larger --negative-slope" if act.name == "leaky-relu" else "")
            )
        )
    if stats.resolution_warning:
        floor = "1e-10" if dtype == "float32" else "1e-27"
        warnings.append(
            f"a pre-activation variance fell below {floor} of its second moment (inputs "
            f"aligned, or biases dominate): {dtype} cannot resolve it and that log10_var is "
            "rounding noise (or null)"
            + ("; rerun with --dtype float64" if dtype == "float32" else "")
        )
    if stats.subnormal_warning:
        warnings.append(
            "within one network a layer's output fell below float32's normal range (a tiny "
            "--negative-slope with every unit negative?); those entries kept few digits: "
            "rerun with --dtype float64"
        )
    if "range" in stats.tanh_warnings:
        limit = "1e-38" if dtype == "float32" else "1e-308"
        warnings.append(
            "tanh saturates: within one network the derivatives 1 - tanh(z)^2 of a layer "
            f"spanned more than {dtype} holds (below {limit} of the largest), so the gradients of "
            "the most saturated units and inputs were lost and log10_grad, log10_delta and "
            "log10_wgrad may read too small (-inf where all were lost)"
            + ("; rerun with --dtype float64" if dtype == "float32" else "; lower --std")
        )
    if "cap" in stats.tanh_warnings:
        warnings.append(
            "tanh: pre-activations exceeded 1e30, where tanh is evaluated (it is +-1 there to any "
            "precision) and its derivative too: gradients below such layers are overestimated, "
            "by up to the excess in the exponent; lower --std"
        )
    if net.init.scheme.kind == "lsuv":
        from .network import LSUV_MAX_ITER

        capped = int(np.sum(stats.lsuv_iterations >= LSUV_MAX_ITER))
        if capped:
            warnings.append(
                f"lsuv: {capped} (network, layer) pairs did not reach variance 1 within "
                f"{LSUV_MAX_ITER} iterations (biases dominate?); those layers keep their last scale"
            )
    if head == "softmax":
        ratio = float(np.mean(stats.head["entropy"]) / math.log(classes))
        if ratio < 0.5:
            warnings.append(
                f"the softmax is saturated at initialization: entropy {100 * ratio:.0f}% of "
                "log K, mean max-probability "
                f"{float(np.mean(stats.head['max_prob'])):.2f}; the logits are too large"
            )
        elif ratio > 0.999 and summary["verdict"] == "vanishing":
            warnings.append(
                "the softmax outputs are uniform: the logits have vanished with the signal"
            )
        log10_loss = float(log10_mean(stats.head["log_loss"]))
        summary["head"] = {
            "classes": classes,
            "mean_max_prob": float(np.mean(stats.head["max_prob"])),
            "mean_entropy": float(np.mean(stats.head["entropy"])),
            "log_classes": math.log(classes),
            "entropy_over_log_classes": float(np.mean(stats.head["entropy"]) / math.log(classes)),
            "mean_loss": None if log10_loss >= 300 else 10.0**log10_loss,  # null: see log10
            "log10_mean_loss": log10_loss,
        }
    summary["warnings"] = warnings
    config = {
        "package": "propagate-init",
        "version": __version__,
        "widths": list(net.widths),
        "depth": net.depth,
        "activation": net.activation.name,
        "negative_slope": net.activation.negative_slope,
        "bias": "none" if not net.has_bias else net.bias,
        "bias_std": [float(v) for v in net.bias_stds],
        **_init_config(net),
        "weight_var": [li.weight_var for li in net.layer_inits],
        "weight_std": [li.std for li in net.layer_inits],
        "batch": batch,
        "trials": trials,
        "seed": seed,
        "dtype": dtype,
        "data": None if dataset is None else dataset.name,
        "standardized": None if dataset is None else dataset.standardized,
        "head": head,
        "classes": classes if head == "softmax" else None,
        "rng": "SFC64 per (seed, stream, layer, block of trials); see propagate.rng",
        "kernels": stats.kernels,
        "exactness": _exactness(net),
    }
    return RunResult(config=config, layers=layers, summary=summary)
