"""Terminal rendering of results with rich: tables a person reads at a glance."""

from __future__ import annotations

import math

import numpy as np
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

__all__ = ["print_run", "print_schemes", "fmt_log10", "layer_rows_to_show"]


def fmt_log10(value: float | None, digits: int = 1) -> str:
    """'-75.1' for a finite log10, '-inf' (dead: exactly 0) otherwise; never '-0.0'."""
    if value is None or not math.isfinite(value):
        return "-inf"
    if abs(value) >= 1e7:  # a log10 this large (e.g. -1.6e28) in digits would fill the row
        return f"{value:.3g}"
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def fmt_ratio(value: float) -> str:
    if value == 0:
        return "0"
    if 0.01 <= value < 1000:
        return f"{value:.3f}"
    return f"{value:.2e}"


def _ratio_cell(row: dict) -> str:
    """'1.19±0.25': measured/predicted with the standard error of the mean over networks."""
    ratio, se = row["q_ratio"], row.get("q_rel_se")
    if ratio is None:  # beyond float64: its log10
        return f"10^{fmt_log10(row['log10_q_ratio'])}"
    if se is None or not math.isfinite(se) or ratio == 0 or not 0.01 <= ratio < 1000:
        return fmt_ratio(ratio)
    return f"{ratio:.2f}±{ratio * se:.2f}"


def layer_rows_to_show(depth: int, all_layers: bool = False, head: int = 4, tail: int = 3):
    """Indices of layers to print: all up to 32 layers, else the first, the last and a stride."""
    if all_layers or depth <= 32:
        return list(range(depth))
    stride = max(1, round(depth / 10))
    middle = range(head, depth - tail, stride)
    return sorted(set(range(head)) | set(middle) | set(range(depth - tail, depth)))


def _console() -> Console:
    """Rich console; 120 columns when the output is not a terminal (files, pipes)."""
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=120)
    return console


def print_run(result, *, all_layers: bool = False, console: Console | None = None) -> None:
    """Config line, per-layer table (measured, predicted, band, dead %, gradients), verdict."""
    console = console or _console()
    cfg, layers, summary = result.config, result.layers, result.summary
    widths = cfg["widths"]
    arch = (
        f"depth {cfg['depth']}, width {widths[1]}"
        if len(set(widths)) == 1
        else "widths " + ",".join(map(str, widths))
    )
    data = cfg["data"] or "x ~ N(0, I)"
    # a --std given with a scheme other than gauss replaces that scheme's variance rule
    fixed = cfg.get("std") is not None and cfg["scheme"] != "gauss"
    scheme = f"{cfg['scheme']} with --std {cfg['std']:g}" if fixed else cfg["scheme"]
    console.print(
        f"[bold]propagate run[/bold]: {arch}, {cfg['activation']}, scheme {scheme} "
        f"({cfg['distribution']}, Var W = {cfg['weight_var_rule']}), {cfg['trials']} networks x "
        f"{cfg['batch']} inputs ({data}), {cfg['dtype']}, seed {cfg['seed']}"
    )
    variances = {row["weight_var"] for row in layers}
    if len(variances) == 1:
        realised = np.mean([row["weight_var_realised"] for row in layers])
        console.print(
            f"weight variance per entry: {layers[0]['weight_var']:.4g} nominal, "
            f"{realised:.4g} realised (mean over layers and networks)"
        )
    table = Table(
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        caption="log10 values. q: pre-activation second moment per unit (mean over networks); "
        "pred: mean-field prediction; ratio: measured/predicted ± its standard error; 5-95%: "
        "spread over networks; "
        "dead: units off for every input; grad: second moment of dloss/dh_l per unit; "
        "wgrad: ||dloss/dW_l||^2 per input",
        caption_justify="left",
    )
    columns = [
        ("layer", "right"),
        ("q", "right"),
        ("pred", "right"),
        ("ratio", "right"),
        ("q 5-95%", "center"),
        ("dead%", "right"),
        ("grad", "right"),
        ("pred", "right"),
        ("wgrad", "right"),
        ("pred", "right"),
    ]
    varying = len(variances) > 1 or len(set(widths)) > 1
    if varying:
        columns[1:1] = [("n_in>n_out", "right"), ("Var W", "right")]
    # a narrow terminal keeps the forward and gradient columns readable and drops the weight
    # gradient ones (they stay in --json/--csv) rather than cutting every number short
    narrow = console.width < (112 if varying else 96)
    if narrow:
        columns = columns[:-2]
    for name, justify in columns:
        table.add_column(name, justify=justify, no_wrap=True)
    shown = layer_rows_to_show(len(layers), all_layers)
    previous = -1
    for i in shown:
        if i != previous + 1:
            table.add_row("...", *[""] * (len(columns) - 1))
        previous = i
        row = layers[i]
        cells = [
            str(row["layer"]),
            fmt_log10(row["log10_q"]),
            fmt_log10(row["log10_q_pred"]),
            _ratio_cell(row),
            f"{fmt_log10(row['log10_q_p05'])}..{fmt_log10(row['log10_q_p95'])}",
            f"{100 * row['dead_fraction']:.1f}",
            fmt_log10(row["log10_grad"]),
            fmt_log10(row["log10_grad_pred"]),
            fmt_log10(row["log10_wgrad"]),
            fmt_log10(row["log10_wgrad_pred"]),
        ]
        if varying:
            cells[1:1] = [f"{row['fan_in']}>{row['fan_out']}", f"{row['weight_var']:.3g}"]
        table.add_row(*cells[: len(columns)])
    console.print(table)
    verdict = summary["verdict"]
    colour = {"stable": "green", "vanishing": "yellow", "exploding": "red"}.get(verdict, "white")
    console.print(f"[bold {colour}]{verdict.upper()}[/bold {colour}] {summary['message']}")
    if "head" in summary:
        h = summary["head"]
        console.print(
            f"softmax head ({h['classes']} classes): "
            f"mean max-probability {h['mean_max_prob']:.3f}, "
            f"entropy {h['mean_entropy']:.3f} of log K = {h['log_classes']:.3f} "
            f"({100 * h['entropy_over_log_classes']:.0f}%), mean loss "
            + (
                f"{h['mean_loss']:.3f}"
                if h["mean_loss"] is not None and h["mean_loss"] < 1e6
                else f"10^{fmt_log10(h['log10_mean_loss'], 2)}"
            )
        )
    for line in summary.get("finite_width_notes", []):
        if line.startswith(("finite-width band:", "finite-width law:")):
            continue  # methodology caveats: in the JSON, not on every run's screen
        console.print(f"[yellow]note:[/yellow] {line}")
    for line in summary.get("warnings", []):
        console.print(f"[red]warning:[/red] {line}")


def print_schemes(rows: list[dict], console: Console | None = None) -> None:
    """The formulas in one table, then each scheme's aliases, framework names and traps as
    paragraphs (in a table column they would wrap a few letters per line)."""
    from rich.padding import Padding

    console = console or _console()
    table = Table(title="init schemes (named by formula)")
    table.add_column("scheme", no_wrap=True)
    for col in ("law", "variance", "bound / std", "ReLU factor"):
        table.add_column(col, overflow="fold")
    for row in rows:
        cells = [
            escape(str(row.get(key, "")))
            for key in ("law", "variance", "bound_or_std", "relu_factor")
        ]
        table.add_row(f"[bold]{escape(row['name'])}[/bold]", *cells)
    console.print(table)
    for row in rows:
        console.print(f"\n[bold]{escape(row['name'])}[/bold]")
        lines = []
        if row.get("aliases"):
            lines.append(f"also called: {escape(', '.join(row['aliases']))}")
        if row.get("frameworks"):
            lines.append(f"framework names: {escape(str(row['frameworks']))}")
        if row.get("traps"):
            lines.append(f"[yellow]trap:[/yellow] {escape(str(row['traps']))}")
        for line in lines:
            console.print(Padding(line, (0, 0, 0, 2), expand=False))
