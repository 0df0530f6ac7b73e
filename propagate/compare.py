"""Several init schemes on one architecture and seed: one result with all of them side by side.

``compare(["gauss", "torch", "xavier-normal", "he-normal"], depth=30, fan_in=64)`` runs
:func:`propagate.api.run` once per scheme with otherwise identical arguments (same widths,
activation, inputs, seed: the networks differ only by the law their weights are drawn from) and
returns a :class:`RunResult` of kind ``"compare"``:

* ``extra["runs"]``: each scheme's full run result dict (what ``propagate run --json`` prints);
* ``summary["table"]``: one row per scheme (verdict, predicted and measured factor per layer,
  log10 q at the last layer measured / predicted / median, log10 input gradient measured and
  predicted, dead fraction at the last layer, recommended std);
* ``layers``: one row per layer with ``<field>[<scheme>]`` columns (log10 q, its prediction,
  log10 gradient, its prediction, dead fraction), so the CSV is the side-by-side table by depth.
"""

from __future__ import annotations

import math

from .api import NETWORK_ARGS
from .errors import InputError
from .results import RunResult, jsonable

__all__ = ["compare", "check_scheme_list", "PER_LAYER_FIELDS"]

# Fields copied per scheme into the side-by-side per-layer table.
PER_LAYER_FIELDS = (
    "log10_q",
    "log10_q_pred",
    "log10_q_median",
    "log10_grad",
    "log10_grad_pred",
    "dead_fraction",
)
# run() arguments that would make the schemes differ by more than their law.
_ARCHITECTURE = tuple(name for name in NETWORK_ARGS if name != "scheme")
# run config keys that describe one scheme's law: kept in each run, not in the shared config.
_PER_SCHEME_CONFIG = frozenset(
    {
        "scheme",
        "kind",
        "distribution",
        "mode",
        "scale",
        "gain",
        "gain_source",
        "std",
        "trunc_bounds",
        "weight_var_rule",
        "weight_var",
        "weight_std",
    }
)


def check_scheme_list(schemes) -> list[str]:
    """Validate a scheme list ('a,b,c' or a sequence); canonical names in the given order.

    Empty lists, unknown or ambiguous names and duplicates (also two spellings of one scheme,
    e.g. ``he-normal`` and ``kaiming-normal``) raise a one-line InputError listing valid names.
    """
    from .schemes import SCHEMES, lookup

    valid = ", ".join(SCHEMES)
    if isinstance(schemes, str):
        items = [s.strip() for s in schemes.split(",")]
    elif schemes is None:
        items = []
    else:
        try:
            items = [s.strip() if isinstance(s, str) else s for s in schemes]
        except TypeError:
            raise InputError(
                f"--schemes {schemes!r} is not a list of names; choose from: {valid}"
            ) from None
    if not items or all(item == "" for item in items):
        raise InputError(
            f"--schemes is empty; give one or more comma-separated names from: {valid}"
        )
    if any(item == "" for item in items):
        raise InputError(
            f"--schemes {','.join(map(str, items))!r} has an empty name; give "
            f"comma-separated names from: {valid}"
        )
    canonical: list[str] = []
    for item in items:
        try:
            name = lookup(item).name
        except InputError as exc:
            message = str(exc)
            if valid not in message:  # an ambiguous label names only its candidates
                message += f"; all schemes: {valid}"
            raise InputError(f"--schemes: {message}") from None
        if name in canonical:
            same = "" if item == name else f" ({item!r} is {name})"
            raise InputError(
                f"--schemes names {name} twice{same}; give each scheme once, from: {valid}"
            )
        canonical.append(name)
    return canonical


def compare(schemes, **run_kwargs) -> RunResult:
    """Run every scheme with identical architecture, inputs and seed; one side-by-side result.

    Args:
        schemes: scheme names or aliases (``propagate schemes``), a list or 'a,b,c'.
        **run_kwargs: any :func:`propagate.api.run` argument except ``scheme`` (depth, fan_in,
            widths, activation, batch, trials, seed, ...), the same for every scheme.

    Returns:
        RunResult with ``kind="compare"``; see the module docstring for its sections.

    Raises:
        InputError: a bad scheme list (before anything runs) or a bad run argument.
    """
    from . import __version__
    from .api import build_network, run

    names = check_scheme_list(schemes)
    if "scheme" in run_kwargs:
        raise InputError("give the schemes to compare as the list, not as scheme=")
    # Every scheme with these architecture/init arguments must build before any of them runs.
    arch = {k: run_kwargs[k] for k in _ARCHITECTURE if k in run_kwargs}
    for name in names:
        build_network(scheme=name, **arch)
    runs = [run(scheme=name, **run_kwargs) for name in names]
    run_dicts = [r.to_dict() for r in runs]

    table = []
    for name, r in zip(names, runs, strict=True):
        last, s = r.layers[-1], r.summary
        table.append({
            "scheme": name,
            "verdict": s["verdict"],
            "factor_per_layer": s["factor_per_layer"],
            "factor_per_layer_measured": s["factor_per_layer_measured"],
            "log10_q_last": last["log10_q"],
            "log10_q_pred_last": last["log10_q_pred"],
            "log10_q_median_last": last["log10_q_median"],
            "log10_input_grad": s["log10_input_grad"],
            "log10_input_grad_pred": s["log10_input_grad_pred"],
            "dead_fraction_last": last["dead_fraction"],
            "recommended_std": s["recommended_std"],
            "weight_var_rule": r.config["weight_var_rule"],
        })  # fmt: skip
    layers = []
    for i in range(runs[0].config["depth"]):
        row: dict = {"layer": i + 1}
        for field in PER_LAYER_FIELDS:
            for name, r in zip(names, runs, strict=True):
                row[f"{field}[{name}]"] = r.layers[i][field]
        layers.append(row)

    shared = {
        k: v
        for k, v in runs[0].config.items()
        if k not in _PER_SCHEME_CONFIG
        and all(jsonable(r.config.get(k)) == jsonable(v) for r in runs[1:])
    }
    config = {"package": "propagate-init", "version": __version__, "schemes": names}
    config.update({k: v for k, v in shared.items() if k not in config})
    order = {"vanishing": 0, "exploding": 0, "stable": 1}
    stable = [row["scheme"] for row in table if order.get(row["verdict"]) == 1]
    warnings = [
        f"{name}: {w}"
        for name, r in zip(names, runs, strict=True)
        for w in r.summary.get("warnings", [])
    ]
    summary = {
        "schemes": names,
        "table": table,
        "verdicts": {row["scheme"]: row["verdict"] for row in table},
        "message": _message(table, stable),
        "warnings": warnings,
    }
    return RunResult(
        config=config, layers=layers, summary=summary, kind="compare", extra={"runs": run_dicts}
    )


def _message(table: list[dict], stable: list[str]) -> str:
    def change(row: dict) -> str:
        f = row["factor_per_layer"]
        return f"{row['scheme']} x{f:.3g}" if math.isfinite(f) else row["scheme"]

    moving = [change(row) for row in table if row["verdict"] != "stable"]
    parts = []
    if stable:
        parts.append("stable: " + ", ".join(stable) + ".")
    if moving:
        parts.append("Per-layer factor of q elsewhere: " + ", ".join(moving) + ".")
    return " ".join(parts)
