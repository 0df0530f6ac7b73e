"""Sweeps over (scheme, fan-in, depth): measured beside the exact finite-width law, one row a cell.

Each cell is a constant-width ReLU stack (``depth`` layers of width ``fan_in``, no bias) pushed
through the engine with ``trials`` independent networks of ``batch`` inputs. Its row holds

* ``p_dead``: the fraction of (trial, input) pairs whose last layer h_L is identically zero,
  beside ``p_dead_exact`` = 1 - (1 - 2^-n)^L (any continuous symmetric law, Haar included), a
  z-score and, for batch 1, an exact two-sided binomial p-value;
* ``q_spread_log10``: the std over alive networks of log10 q_L (None below 10 alive), beside the
  exact law's
  ``q_spread_log10_exact`` (Gaussian weights);
* ``median_drift_log10``: median over networks of log10 q_L minus log10 of the mean-field q_1
  (how far the typical network has drifted from the scale it started at), measured and exact;
* ``mean_ratio``: mean over networks of q_L / the mean-field q_L (exact in expectation for every
  symmetric law; narrow deep nets fall short because the mean is carried by rare networks);
* ``ks_distance``/``ks_p``: one-sample Kolmogorov-Smirnov distance of the measured log R_L
  (networks alive at layer L, ``ks_n`` of them) from the exact law (Gaussian weights, batch 1);
* ``alive``: networks with q_L > 0, i.e. h_{L-1} not identically zero.

Execution. Cells are independent pure functions of their configuration (every random draw is
keyed by a per-cell seed derived from the sweep seed and the cell's coordinates), so they run
serially, on local processes (``concurrent.futures`` with the spawn start method; the engine
runs single-threaded inside each) or on a Dask cluster with identical results. Each finished
cell is written atomically to ``<out>/cells/<hash>.json`` as it arrives, the hash covering the
cell's full configuration; a manifest records the settings shared by all cells. A rerun loads
finished cells instead of recomputing them, and an interrupted sweep loses nothing that had
finished. A checkpoint that is not valid JSON, not a cell, or made under other settings stops the
sweep with a one-line error naming the file; it is never mixed in.

Default batch: 1. P(dead) per input and the exact law are statements about one input, so with
one input per network every column above is an exact comparison (and the binomial and KS tests
are valid); a larger batch adds no independent networks.

References: Hanin & Rolnick 2018 (arXiv:1803.01719).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .errors import InputError

__all__ = [
    "SweepResult",
    "SweepInterrupted",
    "run_sweep",
    "run_cell",
    "cell_hash",
    "load_sweep",
    "parse_int_list",
    "parse_scheme_list",
    "ROW_FIELDS",
    "DEFAULT_BATCH",
    "DEFAULT_TRIALS",
]

CELL_FORMAT = 1
MANIFEST_FORMAT = 1
DEFAULT_BATCH = 1
DEFAULT_TRIALS = 1000
SCHEDULER_TIMEOUT_S = 5.0
LN10 = math.log(10.0)
_DTYPES = ("float32", "float64")
_MIN_ALIVE = 10  # alive networks needed before a spread is reported
_KS_GRID = 129  # exact CDF points for the KS test (PCHIP in between: error ~1e-5)

ROW_FIELDS = (
    "scheme", "distribution", "law_exact", "fan_in", "depth", "trials", "batch", "seed",
    "p_dead", "p_dead_exact", "p_dead_z", "p_dead_binom_p",
    "q_spread_log10", "q_spread_log10_exact",
    "median_drift_log10", "median_drift_log10_exact",
    "mean_ratio", "mean_ratio_rel_se",
    "ks_distance", "ks_p", "ks_n", "alive",
)  # fmt: skip


def _plain_value(key: str, value) -> bool:
    """Whether a checkpoint row's ``value`` has a type this module writes for ``key``: text
    for the names, else null, a bool or a finite number (the writer refuses NaN)."""
    if key in ("scheme", "distribution"):
        return isinstance(value, str)
    if value is None or isinstance(value, bool | int):
        return True
    return isinstance(value, float) and math.isfinite(value)


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep; ``args[0]`` says how many cells are saved and where."""


# ------------------------------------------------------------------------------- validation
def parse_int_list(
    name: str, value: str | Sequence[int], *, minimum: int = 1, maximum: int | None = None
) -> tuple[int, ...]:
    """'2,4,8' or a sequence -> sorted distinct whole numbers in [minimum, maximum]; one-line
    errors."""
    from .api import check_positive_int

    items = [s.strip() for s in value.split(",")] if isinstance(value, str) else list(value)
    if not items or any(item == "" for item in items):
        raise InputError(
            f"{name} {value!r} is not allowed; give comma-separated whole numbers >= {minimum}, "
            "e.g. 2,4,8"
        )
    numbers = [
        check_positive_int(f"{name} entry", item, minimum=minimum, maximum=maximum)
        for item in items
    ]
    seen = set()
    for number in numbers:
        if number in seen:
            raise InputError(f"{name} {value!r} lists {number} twice; give each value once")
        seen.add(number)
    return tuple(sorted(numbers))


def parse_scheme_list(value: str | Sequence[str]) -> tuple[str, ...]:
    """'he-normal,torch' -> canonical scheme names (order kept); unknown names list the valid."""
    from .schemes import SCHEMES, lookup

    items = [s.strip() for s in value.split(",")] if isinstance(value, str) else list(value)
    if not items or any(not isinstance(s, str) or s == "" for s in items):
        raise InputError(
            f"--schemes {value!r} is not allowed; give comma-separated scheme names, one of: "
            + ", ".join(SCHEMES)
        )
    names: list[str] = []
    for item in items:
        canonical = lookup(item).name
        if canonical == "lsuv":
            raise InputError(
                "--schemes lsuv is not allowed in sweeps: its scale is set from "
                "data per network, so no fixed law describes it"
            )
        if canonical in names:
            raise InputError(
                f"--schemes {value!r} lists {canonical} twice (as {item!r}); give each once"
            )
        names.append(canonical)
    return tuple(names)


# ------------------------------------------------------------------------------- cells
def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def cell_hash(cell: dict) -> str:
    """Name of a cell's checkpoint: a hash of its full configuration."""
    return _digest(cell)[:24]


def cell_seed(seed: int, scheme: str, fan_in: int, depth: int) -> int:
    """Per-cell root seed: distinct cells draw independent networks, reproducibly anywhere."""
    return int(_digest(["propagate-sweep", seed, scheme, fan_in, depth])[:15], 16)


def _chunk_trials(fan_in: int, depth: int, itemsize: int) -> int:
    """Trials per engine chunk so a chunk's weights stay cached (no regeneration) and small."""
    per_trial = depth * fan_in * fan_in * itemsize
    k = int((32 << 20) // max(per_trial, 1))
    return max(8, min(64, k - k % 8))


def _settings(trials, batch, seed, dtype) -> dict:
    from . import __version__

    return {
        "trials": trials,
        "batch": batch,
        "seed": seed,
        "dtype": dtype,
        "version": __version__,
        "cell_format": CELL_FORMAT,
    }


def _cells(schemes, fan_ins, depths, settings) -> list[dict]:
    cells = []
    for scheme in schemes:
        for fan_in in fan_ins:
            for depth in depths:
                cells.append({"scheme": scheme, "fan_in": fan_in, "depth": depth, **settings})
    return cells


def run_cell(cell: dict, engine_workers: int | None = 1) -> dict:
    """Simulate one cell and summarise it; a pure function of ``cell`` (spawn/Dask safe).

    Returns:
        {"cell": cell, "row": the tidy row, "elapsed_s": seconds}.
    """
    from .activations import make_activation
    from .network import EngineConfig, Network, simulate
    from .schemes import resolve_scheme

    start = time.perf_counter()
    act = make_activation("relu")
    net = Network(
        widths=(cell["fan_in"],) * (cell["depth"] + 1),
        activation=act,
        init=resolve_scheme(cell["scheme"], activation=act),
    )
    itemsize = np.dtype(cell["dtype"]).itemsize
    cfg = EngineConfig(
        batch=cell["batch"],
        trials=cell["trials"],
        seed=cell_seed(cell["seed"], cell["scheme"], cell["fan_in"], cell["depth"]),
        dtype=np.dtype(cell["dtype"]).type,
        workers=engine_workers,
        chunk_trials=_chunk_trials(cell["fan_in"], cell["depth"], itemsize),
    )
    stats = simulate(net, cfg)
    row = summarize_cell(cell, net, cfg, stats)
    return {"cell": cell, "row": row, "elapsed_s": time.perf_counter() - start}


def _float(x) -> float | None:
    """Plain float; None for not-a-number (not applicable). -inf stays -inf."""
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


def _exact_cdf_interpolant(widths, s2, lo: float, hi: float):
    """F(log R_L | alive) on [lo, hi] from the exact law, as a monotone interpolant."""
    from scipy.interpolate import PchipInterpolator

    from . import theory

    if not hi > lo:
        hi = lo + 1e-9
    grid = np.linspace(lo, hi, _KS_GRID)
    cdf = np.maximum.accumulate(theory.log_ratio_cdf(widths, s2, grid)[-1])
    return PchipInterpolator(grid, cdf, extrapolate=False)


def summarize_cell(cell: dict, net, cfg, stats) -> dict:
    """The tidy row of one cell from its per-trial statistics (see the module docstring)."""
    from scipy import stats as sps

    from . import theory
    from .finite_width import law_support, log_q_quantiles, log_q_variance
    from .measure import log10_mean

    n, depth, trials, batch = cell["fan_in"], cell["depth"], cell["trials"], cell["batch"]
    widths = [n] * (depth + 1)
    dead_rule, band_ok, _ = law_support(net)
    dead_ok = dead_rule == "cumulative"
    s2 = np.asarray(widths[:-1]) * net.weight_vars
    m0 = float(np.exp(stats.log_m0[0]))
    mf = theory.mean_field(widths, net.weight_vars, net.activation, input_second_moment=m0)
    log10_q1_mf = mf["log_q"][0] / LN10
    log_q_last = stats.log_q[:, -1]
    alive = np.isfinite(log_q_last)

    dead = stats.dead_inputs[:, -1]
    p_dead = float(np.mean(dead))
    p_exact = float(theory.p_dead(widths)[-1]) if dead_ok else None
    z = binom_p = None
    if p_exact is not None:
        if batch == 1:
            k = int(round(float(np.sum(dead))))
            binom_p = float(sps.binomtest(k, trials, p_exact).pvalue)
            se = math.sqrt(p_exact * (1.0 - p_exact) / trials)
        else:  # inputs of one network are dependent: the SE comes from per-network fractions
            se = float(np.std(dead, ddof=1) / math.sqrt(trials)) if trials > 1 else 0.0
        z = (p_dead - p_exact) / se if se > 0 else (0.0 if p_dead == p_exact else None)

    enough = alive.sum() >= _MIN_ALIVE
    spread = float(np.std(log_q_last[alive] / LN10, ddof=1)) if enough else None
    spread_exact = math.sqrt(log_q_variance(widths, depth)) / LN10 if band_ok else None
    median = float(np.median(log_q_last)) / LN10 - log10_q1_mf
    median_exact = None
    if band_ok:
        q50 = log_q_quantiles(widths, s2, (0.5,), input_second_moment=m0, layers=[depth])
        median_exact = float(q50[0, 0]) / LN10 - log10_q1_mf

    log10_mean_q = float(log10_mean(log_q_last))
    mean_ratio = 10.0 ** np.clip(log10_mean_q - mf["log_q"][-1] / LN10, -300, 300)
    mean_ratio = float(mean_ratio) if math.isfinite(log10_mean_q) else 0.0
    rel_se = None
    if alive.any() and trials > 1:
        scaled = np.exp(log_q_last - np.max(log_q_last))
        rel_se = float(np.std(scaled, ddof=1) / math.sqrt(trials) / np.mean(scaled))

    ks_d = ks_p = None
    ks_n = 0
    if band_ok and batch == 1:
        log_r = stats.log_m[:, -1] - stats.log_m0  # R_L = n_L m_L / (n_0 m_0), n_L = n_0
        sample = np.sort(log_r[np.isfinite(log_r)])
        ks_n = int(sample.size)
        if ks_n >= 2:
            cdf = _exact_cdf_interpolant(widths, s2, float(sample[0]), float(sample[-1]))
            f = np.clip(cdf(sample), 0.0, 1.0)
            i = np.arange(1, ks_n + 1)
            ks_d = float(max(np.max(i / ks_n - f), np.max(f - (i - 1) / ks_n)))
            ks_p = float(sps.kstwo.sf(ks_d, ks_n))

    return {
        "scheme": cell["scheme"],
        "distribution": net.layer_inits[0].distribution,
        "law_exact": bool(band_ok),
        "fan_in": n,
        "depth": depth,
        "trials": trials,
        "batch": batch,
        "seed": cfg.seed,
        "p_dead": p_dead,
        "p_dead_exact": p_exact,
        "p_dead_z": _float(z),
        "p_dead_binom_p": _float(binom_p),
        "q_spread_log10": _float(spread),
        "q_spread_log10_exact": _float(spread_exact),
        "median_drift_log10": _float(median),
        "median_drift_log10_exact": _float(median_exact),
        "mean_ratio": mean_ratio,
        "mean_ratio_rel_se": _float(rel_se),
        "ks_distance": ks_d,
        "ks_p": ks_p,
        "ks_n": ks_n,
        "alive": int(alive.sum()),
    }


# ------------------------------------------------------------------------------- checkpoints
def _default_out(settings: dict) -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "propagate", "sweeps", _digest(settings)[:16])


def _describe(settings: dict) -> str:
    return ", ".join(
        f"{k}={settings.get(k)}" for k in ("trials", "batch", "seed", "dtype", "version")
    )


class _Store:
    """Checkpoint folder: ``manifest.json`` (shared settings) and ``cells/<hash>.json``."""

    def __init__(self, out: str, settings: dict):
        from .results import atomic_write

        self.out, self.settings = out, settings
        self.cells_dir = os.path.join(out, "cells")
        self.manifest = os.path.join(out, "manifest.json")
        self._write = atomic_write
        if os.path.exists(out) and not os.path.isdir(out):
            raise InputError(f"--out {out!r} exists and is not a folder")
        if os.path.exists(self.manifest):
            data = self._read(
                self.manifest, "sweep manifest", "delete the folder or use another --out"
            )
            if (
                data.get("format") != "propagate-sweep-manifest"
                or data.get("format_version") != MANIFEST_FORMAT
            ):
                raise InputError(
                    f"{self.manifest} is not a propagate sweep manifest (foreign file): use "
                    "another --out folder or delete it"
                )
            if data.get("settings") != settings:
                raise InputError(
                    f"--out {out!r} holds a sweep made with {_describe(data.get('settings') or {})}"
                    f" (this one: {_describe(settings)}): use another --out folder, or delete "
                    f"{self.cells_dir} to start over"
                )
        elif os.path.isdir(self.cells_dir) and os.listdir(self.cells_dir):
            raise InputError(
                f"{self.cells_dir} holds files but {self.manifest} is missing (foreign or damaged "
                "checkpoint): use another --out folder or delete it"
            )
        self.done: dict[str, dict] = {}
        if os.path.isdir(self.cells_dir):
            for name in sorted(os.listdir(self.cells_dir)):
                if name.endswith(".json") and not name.startswith("."):
                    self._load_cell(os.path.join(self.cells_dir, name))

    @staticmethod
    def _read(path: str, what: str, fix: str) -> dict:
        try:
            with open(path) as fh:
                data = json.load(fh)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            reason = getattr(exc, "msg", None) or getattr(exc, "strerror", None) or str(exc)
            raise InputError(f"{what} {path} is corrupt ({reason}): {fix}") from None
        if not isinstance(data, dict):
            raise InputError(f"{what} {path} is corrupt (not a JSON object): {fix}")
        return data

    def _load_cell(self, path: str) -> None:
        fix = "delete it (that cell is recomputed) or use another --out folder"
        data = self._read(path, "checkpoint", fix)
        stem = os.path.basename(path)[:-5]
        cell, row = data.get("cell"), data.get("row")
        if (
            data.get("format") != "propagate-sweep-cell"
            or not isinstance(cell, dict)
            or not isinstance(row, dict)
        ):
            raise InputError(f"checkpoint {path} is not a propagate sweep cell (foreign): {fix}")
        if cell_hash(cell) != stem:
            raise InputError(
                f"checkpoint {path} does not match its name (edited or foreign): {fix}"
            )
        if {k: cell.get(k) for k in self.settings} != self.settings:
            raise InputError(f"checkpoint {path} was made under other settings (foreign): {fix}")
        missing = [k for k in ROW_FIELDS if k not in row]
        if missing or any(row[k] != cell[k] for k in ("scheme", "fan_in", "depth", "trials")):
            raise InputError(f"checkpoint {path} is incomplete or inconsistent: {fix}")
        bad = [k for k in ROW_FIELDS if not _plain_value(k, row[k])]
        if (row["ks_p"] is None) != (row["ks_distance"] is None):
            bad.append("ks_p/ks_distance")
        if bad:
            raise InputError(f"checkpoint {path} is corrupt (bad value of {', '.join(bad)}): {fix}")
        self.done[stem] = data

    def start(self, grid: dict) -> None:
        manifest = {
            "format": "propagate-sweep-manifest",
            "format_version": MANIFEST_FORMAT,
            "settings": self.settings,
            "last_grid": grid,
        }
        self._write(self.manifest, json.dumps(manifest, indent=2))

    def put(self, record: dict) -> None:
        from .results import jsonable

        key = cell_hash(record["cell"])
        if key in self.done:
            return
        data = {"format": "propagate-sweep-cell", "format_version": CELL_FORMAT, **record}
        self._write(
            os.path.join(self.cells_dir, key + ".json"),
            json.dumps(jsonable(data), indent=1, allow_nan=False),
        )
        # keep exactly what a rerun will read back (JSON has no -inf: null)
        self.done[key] = json.loads(json.dumps(jsonable(data)))


# ------------------------------------------------------------------------------- executors
def _worker_init() -> None:
    """Pool workers leave Ctrl-C to the parent, which saves finished cells and stops them."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _spawn_safe() -> bool:
    """Whether spawned workers can re-import ``__main__`` (not so for code read from stdin)."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return path is None or os.path.exists(path)


def _terminate(pool) -> None:
    """Stop a ProcessPoolExecutor now: kill its workers, then join its manager thread.

    Joining matters: a manager thread left running meets interpreter exit with its wake-up pipe
    closed and prints a traceback (CPython 3.11-3.13).
    """
    terminate = getattr(pool, "terminate_workers", None)  # Python >= 3.14
    if terminate is not None:
        terminate()
        return
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
    for proc in processes:
        proc.join(timeout=10)
    pool.shutdown(wait=True, cancel_futures=True)


def _cost(cell: dict) -> float:
    factor = 3.0 if cell["scheme"] == "orthogonal" else 1.0
    return factor * cell["depth"] * (cell["fan_in"] ** 2 + 64) * cell["trials"]


def _run_serial(todo, put, engine_workers=None):
    for cell in todo:
        put(run_cell(cell, engine_workers))


def _run_processes(todo, put, workers: int):
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init)
    futures = []
    try:
        futures = [pool.submit(run_cell, cell, 1) for cell in todo]
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                put(fut.result())
    except BaseException:
        for fut in futures:  # save whatever finished before the interruption
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                put(fut.result())
        _terminate(pool)
        raise
    pool.shutdown(wait=True)


def _probe(address: str) -> None:
    """Open and close one connection to the scheduler (raises on a bad or unreachable address).

    Done before creating a ``Client``: a Client whose start fails lingers and, at interpreter
    exit, waits out its own close timeout with a traceback.
    """
    import asyncio

    from distributed.comm import connect

    async def once():
        comm = await connect(address, timeout=f"{SCHEDULER_TIMEOUT_S}s")
        await comm.close()

    asyncio.run(once())


def _connect(address: str):
    try:
        from distributed import Client
    except ImportError:
        raise InputError(
            "--scheduler needs Dask distributed: pip install 'propagate-init[distributed]' "
            "(from a checkout: pip install '.[distributed]')"
        ) from None
    try:
        _probe(address)
        return Client(address, timeout=f"{SCHEDULER_TIMEOUT_S}s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(
            f"--scheduler {address!r}: no Dask scheduler reachable within "
            f"{SCHEDULER_TIMEOUT_S:g} s ({reason[:120]}); start one (dask scheduler) or drop "
            "--scheduler; finished cells are kept"
        ) from None


def _run_dask(todo, put, client):
    from distributed import as_completed

    futures = []
    try:
        futures = [
            client.submit(run_cell, cell, 1, key=f"propagate-cell-{cell_hash(cell)}", pure=False)
            for cell in todo
        ]
        for fut in as_completed(futures, loop=client.loop):
            put(fut.result())
    except BaseException:
        for fut in futures:
            if fut.status == "finished":
                put(fut.result())
        client.cancel(futures)
        raise
    finally:
        client.close()


# ------------------------------------------------------------------------------- the sweep
@dataclass
class SweepResult:
    """A sweep's tidy table: ``rows`` (one per cell, ``ROW_FIELDS``), ``config``, ``summary``."""

    config: dict
    rows: list[dict]
    summary: dict
    kind: str = field(default="sweep", init=False)

    def to_dict(self) -> dict:
        from .results import FORMAT_VERSION, jsonable

        return jsonable(
            {
                "format": "propagate-results",
                "format_version": FORMAT_VERSION,
                "kind": "sweep",
                "config": self.config,
                "rows": self.rows,
                "summary": self.summary,
            }
        )

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def to_csv(self) -> str:
        import csv
        import io

        from .results import jsonable

        buf = io.StringIO()
        writer = csv.DictWriter(
            buf, fieldnames=list(ROW_FIELDS), extrasaction="ignore", lineterminator="\n"
        )
        writer.writeheader()
        for row in jsonable(self.rows):
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in ROW_FIELDS})
        return buf.getvalue()

    @classmethod
    def from_dict(cls, data: dict) -> SweepResult:
        if (
            not isinstance(data, dict)
            or data.get("format") != "propagate-results"
            or data.get("kind") != "sweep"
        ):
            raise InputError("not a propagate sweep results file (kind 'sweep')")
        from .results import check_format_version

        check_format_version(data, "sweep results file")
        try:
            return cls(config=data["config"], rows=data["rows"], summary=data["summary"])
        except KeyError as exc:
            raise InputError(f"sweep results file lacks the {exc.args[0]!r} section") from None


def load_sweep(path: str) -> SweepResult:
    """Read a sweep's results.json; one-line InputError when it is not one."""
    try:
        with open(path) as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise InputError(f"{path!r}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise InputError(f"{path!r} is not valid JSON: corrupt file?") from None
    return SweepResult.from_dict(data)


def _progress_bar(enabled: bool | None):
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("sweep"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )


def run_sweep(
    *,
    fan_ins: str | Sequence[int],
    depths: str | Sequence[int],
    schemes: str | Sequence[str],
    trials: int = DEFAULT_TRIALS,
    batch: int = DEFAULT_BATCH,
    seed: int = 0,
    dtype: str = "float32",
    out: str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool | None = None,
    on_cell: Callable[[dict], None] | None = None,
) -> SweepResult:
    """Measure every (scheme, fan_in, depth) cell beside the exact law; resumable.

    Args:
        fan_ins, depths: widths n and depths L ('2,4,8' or sequences; distinct, >= 1).
        schemes: init scheme names or aliases (``propagate schemes``), distinct.
        trials: independent networks per cell; batch: inputs per network (default 1, exact).
        seed: root of every cell's seed; dtype: engine working dtype.
        out: checkpoint folder (default: the user cache, keyed by the settings).
        workers: local processes (default: one per core; 1 runs in this process).
        scheduler: address of a Dask scheduler; cells run there instead.
        progress: show a progress bar on stderr (default: when stderr is a terminal).
        on_cell: called with each newly finished record (tests, logging).

    Returns:
        SweepResult with rows in (scheme, fan_in, depth) order.

    Raises:
        InputError: bad arguments, an unreachable scheduler, a corrupt or foreign checkpoint.
        SweepInterrupted: Ctrl-C; every finished cell is saved first.
    """
    from .api import MAX_DEPTH, MAX_WIDTH, check_positive_int

    fan_ins = parse_int_list("--fan-in", fan_ins, maximum=MAX_WIDTH)
    depths = parse_int_list("--depth", depths, maximum=MAX_DEPTH)
    schemes = parse_scheme_list(schemes)
    trials = check_positive_int("--trials", trials)
    batch = check_positive_int("--batch", batch)
    seed = check_positive_int("--seed", seed, minimum=0)
    if dtype not in _DTYPES:
        raise InputError(f"--dtype {dtype!r} is not allowed; choose one of: float32, float64")
    if workers is not None:
        workers = check_positive_int("--workers", workers)
    if scheduler is not None and not str(scheduler).strip():
        raise InputError("--scheduler '' is not an address; give e.g. tcp://127.0.0.1:8786")

    settings = _settings(trials, batch, seed, dtype)
    cells = _cells(schemes, fan_ins, depths, settings)
    out = out or _default_out(settings)
    store = _Store(out, settings)
    grid = {"schemes": list(schemes), "fan_ins": list(fan_ins), "depths": list(depths)}
    todo = sorted((c for c in cells if cell_hash(c) not in store.done), key=_cost, reverse=True)
    reused = len(cells) - len(todo)
    notes: list[str] = []
    if scheduler is not None:
        executor, n_workers = "dask", None
    else:
        n_workers = min(workers or (os.cpu_count() or 1), max(len(todo), 1))
        executor = "processes" if n_workers > 1 else "serial"
        if executor == "processes" and not _spawn_safe():
            executor, n_workers = "serial", 1
            notes.append(
                "ran serially: __main__ is not an importable file (stdin?), so worker "
                "processes cannot be spawned; call run_sweep from a script or the CLI"
            )

    bar = _progress_bar(progress)
    task = None
    if bar is not None:
        bar.start()
        task = bar.add_task("cells", total=len(cells), completed=reused)

    def put(record: dict) -> None:
        store.put(record)
        if bar is not None:
            bar.advance(task)
        if on_cell is not None:
            on_cell(record)

    start = time.perf_counter()
    try:
        if todo and scheduler is not None:
            client = _connect(scheduler)  # fails fast, before anything is written
            store.start(grid)
            _run_dask(todo, put, client)
        else:
            store.start(grid)
            if todo and executor == "processes":
                _run_processes(todo, put, n_workers)
            elif todo:
                # --workers 1 means one core; otherwise (one cell left) the engine may thread
                _run_serial(todo, put, engine_workers=1 if workers == 1 else None)
    except KeyboardInterrupt:
        finished = sum(cell_hash(c) in store.done for c in cells)
        raise SweepInterrupted(
            f"interrupted: {finished} of {len(cells)} cells are saved in {out}; rerun the same "
            "command to finish the rest"
        ) from None
    finally:
        if bar is not None:
            bar.stop()
    wall = time.perf_counter() - start

    records = [store.done[cell_hash(c)] for c in cells]
    rows = [rec["row"] for rec in records]
    from . import __version__

    config = {
        "package": "propagate-init",
        "version": __version__,
        "schemes": list(schemes),
        "fan_ins": list(fan_ins),
        "depths": list(depths),
        "trials": trials,
        "batch": batch,
        "seed": seed,
        "dtype": dtype,
        "activation": "relu",
        "bias_std": 0.0,
        "cell_seed": "sha256 of (seed, scheme, fan_in, depth); each cell has its own networks",
        "exact_basis": (
            "batch 1: every exact column is the exact law of one input"
            if batch == 1
            else f"batch {batch}: P(dead) per input is exact; the q band treats the batch as one "
            "input (approximation); no binomial or KS test (inputs of a network are dependent)"
        ),
    }
    summary = {
        "cells": len(cells),
        "computed": len(todo),
        "reused": reused,
        "executor": executor,
        "workers": n_workers,
        "scheduler": scheduler,
        "wall_s": wall,
        "cell_seconds": float(sum(rec.get("elapsed_s", 0.0) for rec in records)),
        "out": out,
        **_agreement(rows),
        "notes": notes,
    }
    return SweepResult(config=config, rows=rows, summary=summary)


def _agreement(rows: list[dict]) -> dict:
    """Worst-case agreement figures over the table (for a one-line verdict)."""
    z = [abs(r["p_dead_z"]) for r in rows if r.get("p_dead_z") is not None]
    binom = [r["p_dead_binom_p"] for r in rows if r.get("p_dead_binom_p") is not None]
    ks = [(r["ks_p"], r["ks_distance"]) for r in rows if r.get("ks_p") is not None]
    return {
        "p_dead_max_abs_z": max(z) if z else None,
        "p_dead_min_binom_p": min(binom) if binom else None,
        "p_dead_cells": len(binom),
        "ks_min_p": min(p for p, _ in ks) if ks else None,
        "ks_max_distance": max(d for _, d in ks) if ks else None,
        "ks_cells": len(ks),
    }
