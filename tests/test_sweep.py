"""``propagate sweep``: the tidy table against the exact law, identical results serially, on local
processes and on Dask, resumable checkpoints, Ctrl-C, bad input (one line, exit 2)."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from propagate.cli_sweep import register
from propagate.errors import InputError
from propagate.sweep import (
    ROW_FIELDS,
    SweepInterrupted,
    load_sweep,
    parse_int_list,
    parse_scheme_list,
    run_sweep,
)

ALPHA = 1e-3
SMALL = dict(fan_ins="2,4", depths="3,6", schemes="he-normal,orthogonal,torch", trials=64)
SCHEMES5 = "he-normal,he-uniform,orthogonal,gauss,torch"

# a shim so subprocess tests work before and after cli.py registers the commands
SHIM = (
    "import sys\n"
    "from propagate import cli\n"
    "from propagate.cli_sweep import register\n"
    "if 'sweep' not in {c.name for c in cli.app.registered_commands}:\n"
    "    register(cli.app)\n"
    "cli.main(sys.argv[1:])\n"
)


def app() -> typer.Typer:
    application = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    register(application)
    return application


def invoke(*args: str):
    return CliRunner().invoke(app(), list(args))


def one_line_error(result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output)
    err = result.stderr.strip()
    assert err.startswith("propagate: error: ") and "\n" not in err, err
    assert "Traceback" not in result.output
    return err


def read(path: str) -> str:
    with open(path) as fh:
        return fh.read()


def cell_files(out) -> list[str]:
    folder = os.path.join(out, "cells")
    if not os.path.isdir(folder):
        return []
    return sorted(f for f in os.listdir(folder) if f.endswith(".json") and not f.startswith("."))


# ======================================================================= the table
@pytest.fixture(scope="module")
def exact_sweep(tmp_path_factory):
    """Gaussian cells with enough networks for binomial and KS tests (batch 1: exact)."""
    out = tmp_path_factory.mktemp("exact")
    return run_sweep(
        fan_ins="2,4,8",
        depths="4,12",
        schemes="he-normal,gauss,he-uniform",
        trials=2000,
        seed=5,
        out=str(out),
        workers=1,
    )


def test_rows_hold_every_field_and_agree_with_the_exact_law(exact_sweep):
    rows = exact_sweep.rows
    assert len(rows) == 18 and all(set(r) == set(ROW_FIELDS) for r in rows)
    assert [(r["scheme"], r["fan_in"], r["depth"]) for r in rows[:3]] == [
        ("he-normal", 2, 4),
        ("he-normal", 2, 12),
        ("he-normal", 4, 4),
    ]
    for row in rows:
        # P(dead) per input is exact for every continuous symmetric law
        assert row["p_dead_exact"] == pytest.approx(
            1 - (1 - 2.0 ** -row["fan_in"]) ** row["depth"], rel=1e-12
        )
        assert row["p_dead_binom_p"] > ALPHA, row
        if row["law_exact"]:
            assert row["ks_p"] is not None and row["ks_p"] > ALPHA, row
            # KS uses log R_L of networks alive at layer L; "alive" counts q_L > 0 (layer L-1)
            assert row["ks_n"] == row["trials"] - round(row["p_dead"] * row["trials"])
            assert row["ks_n"] <= row["alive"]
            if row["q_spread_log10"] is not None:
                # the sd of log10 q: sample sd within 5 SE (SE ~ sd sqrt(kurtosis-ish / 2n))
                se = row["q_spread_log10_exact"] * 2.0 / np.sqrt(row["alive"])
                assert abs(row["q_spread_log10"] - row["q_spread_log10_exact"]) < 5 * se, row
        else:
            assert row["ks_p"] is None and row["q_spread_log10_exact"] is None
            assert row["median_drift_log10_exact"] is None
    # gauss and he-normal share the law up to a shift of log10(s2/2) per layer
    he = {(r["fan_in"], r["depth"]): r for r in rows if r["scheme"] == "he-normal"}
    for r in rows:
        if r["scheme"] == "gauss" and r["median_drift_log10_exact"] is not None:
            h = he[(r["fan_in"], r["depth"])]
            shift = (r["depth"] - 1) * np.log10(r["fan_in"] * 1e-4 / 2.0)
            assert abs(r["median_drift_log10_exact"] - h["median_drift_log10_exact"] - shift) < 1e-6
    summary = exact_sweep.summary
    assert summary["computed"] == 18 and summary["reused"] == 0
    assert summary["ks_min_p"] > ALPHA and summary["ks_cells"] >= 8


def test_mean_is_kept_where_widths_are_large(tmp_path):
    result = run_sweep(
        fan_ins="64",
        depths="3",
        schemes="he-normal,he-uniform,orthogonal",
        trials=400,
        out=str(tmp_path),
        workers=1,
    )
    for row in result.rows:
        assert row["p_dead"] == 0.0
        assert abs(row["mean_ratio"] - 1.0) < 4 * row["mean_ratio_rel_se"], row


def test_json_and_csv_round_trip(tmp_path):
    result = run_sweep(**SMALL, out=str(tmp_path / "ck"), workers=1)
    path = tmp_path / "results.json"
    path.write_text(result.to_json())
    loaded = load_sweep(str(path))
    assert loaded.rows == json.loads(result.to_json())["rows"]
    assert loaded.config["schemes"] == ["he-normal", "orthogonal", "torch"]
    table = list(csv.DictReader(io.StringIO(result.to_csv())))
    assert len(table) == 12 and list(table[0]) == list(ROW_FIELDS)
    with pytest.raises(InputError):
        load_sweep(str(tmp_path / "missing.json"))


# ================================================================= identical everywhere
def test_serial_and_local_processes_give_identical_rows(tmp_path):
    serial = run_sweep(**SMALL, out=str(tmp_path / "serial"), workers=1)
    procs = run_sweep(**SMALL, out=str(tmp_path / "procs"), workers=2)
    assert serial.summary["executor"] == "serial" and procs.summary["executor"] == "processes"
    assert serial.to_dict()["rows"] == procs.to_dict()["rows"]


def test_dask_local_cluster_gives_identical_rows(tmp_path):
    distributed = pytest.importorskip("distributed")
    serial = run_sweep(**SMALL, out=str(tmp_path / "serial"), workers=1)
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    ) as cluster:
        on_dask = run_sweep(
            **SMALL, out=str(tmp_path / "dask"), scheduler=cluster.scheduler_address
        )
    assert on_dask.summary["executor"] == "dask"
    assert serial.to_dict()["rows"] == on_dask.to_dict()["rows"]


def test_unreachable_scheduler_is_one_line_and_keeps_cells(tmp_path):
    pytest.importorskip("distributed")
    out = str(tmp_path / "ck")
    run_sweep(fan_ins="2", depths="3", schemes="he-normal", trials=16, out=out, workers=1)
    before = cell_files(out)
    start = time.perf_counter()
    result = invoke(
        "sweep",
        "--fan-in",
        "2,4",
        "--depth",
        "3",
        "--schemes",
        "he-normal",
        "--trials",
        "16",
        "--out",
        out,
        "--scheduler",
        "tcp://127.0.0.1:9",
    )
    err = one_line_error(result)
    assert "no Dask scheduler reachable" in err and time.perf_counter() - start < 30
    assert cell_files(out) == before


def test_missing_distributed_extra_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(InputError, match=r"propagate-init\[distributed\]"):
        run_sweep(
            fan_ins="2",
            depths="3",
            schemes="he-normal",
            trials=8,
            out=str(tmp_path),
            scheduler="tcp://127.0.0.1:8786",
        )


# ======================================================================= checkpoints
def test_rerun_skips_finished_cells_and_extends_the_grid(tmp_path):
    out = str(tmp_path)
    seen = []
    first = run_sweep(**SMALL, out=out, workers=1, on_cell=seen.append)
    assert len(seen) == 12 and first.summary["computed"] == 12
    stamps = {f: os.stat(os.path.join(out, "cells", f)).st_mtime_ns for f in cell_files(out)}
    seen.clear()
    again = run_sweep(**SMALL, out=out, workers=1, on_cell=seen.append)
    assert seen == [] and again.summary["reused"] == 12
    assert again.to_dict()["rows"] == first.to_dict()["rows"]
    # a wider grid computes only the new cells; the old files are untouched
    bigger = run_sweep(**{**SMALL, "depths": "3,6,9"}, out=out, workers=1, on_cell=seen.append)
    assert len(seen) == 6 and bigger.summary["reused"] == 12
    for name, stamp in stamps.items():
        assert os.stat(os.path.join(out, "cells", name)).st_mtime_ns == stamp


def test_interrupted_sweep_resumes_without_recomputing(tmp_path):
    """SIGINT a running sweep (2 worker processes), rerun, compare with an uninterrupted run."""
    out = str(tmp_path / "interrupted")
    grid = [
        "--fan-in",
        "16,32",
        "--depth",
        "10,20,30,40",
        "--schemes",
        "he-normal,torch",
        "--trials",
        "600",
        "--seed",
        "9",
    ]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SHIM,
            "sweep",
            *grid,
            "--out",
            out,
            "--workers",
            "2",
            "--no-progress",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while len(cell_files(out)) < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "cells are saved" in err and "Traceback" not in err
    finished = cell_files(out)
    assert 3 <= len(finished) < 16
    contents = {f: read(os.path.join(out, "cells", f)) for f in finished}

    seen = []
    resumed = run_sweep(
        fan_ins="16,32",
        depths="10,20,30,40",
        schemes="he-normal,torch",
        trials=600,
        seed=9,
        out=out,
        workers=1,
        on_cell=seen.append,
    )
    assert len(seen) == 16 - len(finished) and resumed.summary["reused"] == len(finished)
    for name, text in contents.items():  # finished cells were not recomputed nor rewritten
        assert read(os.path.join(out, "cells", name)) == text
    straight = run_sweep(
        fan_ins="16,32",
        depths="10,20,30,40",
        schemes="he-normal,torch",
        trials=600,
        seed=9,
        out=str(tmp_path / "straight"),
        workers=2,
    )
    assert resumed.to_dict()["rows"] == straight.to_dict()["rows"]


def test_keyboard_interrupt_in_process_saves_finished_cells(tmp_path):
    out = str(tmp_path)

    def stop_after_two(record, count=[0]):  # noqa: B006 - a counter across calls
        count[0] += 1
        if count[0] == 2:
            raise KeyboardInterrupt

    with pytest.raises(SweepInterrupted, match="2 of 12 cells are saved"):
        run_sweep(**SMALL, out=out, workers=1, on_cell=stop_after_two)
    assert len(cell_files(out)) == 2


def _edit_row(text: str, **values) -> str:
    data = json.loads(text)
    data["row"].update(values)
    return json.dumps(data)  # NaN is written as the non-standard token NaN


@pytest.mark.parametrize(
    "damage,expected",
    [
        (lambda text: text[: len(text) // 2], "is corrupt"),
        (lambda text: text.replace('"p_dead": ', '"p_dead": 0.123456, "x": '), "does not match"),
        (lambda text: json.dumps({"format": "something-else"}), "foreign"),
        (lambda text: _edit_row(text, ks_p=float("nan")), "bad value of ks_p"),
        (lambda text: _edit_row(text, p_dead="x"), "bad value of p_dead"),
        (lambda text: _edit_row(text, ks_p=None, ks_distance=0.5), "ks_p/ks_distance"),
    ],
)
def test_corrupt_or_foreign_checkpoint_is_one_line_exit_2(tmp_path, damage, expected):
    out = str(tmp_path)
    run_sweep(**SMALL, out=out, workers=1)
    victim = os.path.join(out, "cells", cell_files(out)[3])
    with open(victim) as fh:
        text = fh.read()
    if expected == "does not match":  # edit the cell's own configuration
        data = json.loads(text)
        data["cell"]["trials"] = 65
        text = json.dumps(data)
        expected = "does not match its name"
    else:
        text = damage(text)
    with open(victim, "w") as fh:
        fh.write(text)
    result = invoke(
        "sweep",
        "--fan-in",
        "2,4",
        "--depth",
        "3,6",
        "--schemes",
        "he-normal,orthogonal,torch",
        "--trials",
        "64",
        "--out",
        out,
    )
    err = one_line_error(result)
    assert expected in err and os.path.basename(victim) in err and "delete" in err


def test_checkpoints_of_other_settings_are_refused(tmp_path):
    out = str(tmp_path)
    run_sweep(**SMALL, out=out, workers=1)
    result = invoke(
        "sweep",
        "--fan-in",
        "2,4",
        "--depth",
        "3,6",
        "--trials",
        "65",
        "--schemes",
        "he-normal",
        "--out",
        out,
    )
    err = one_line_error(result)
    assert "trials=64" in err and "another --out" in err
    # a stray cells folder without a manifest
    stray = tmp_path / "stray"
    (stray / "cells").mkdir(parents=True)
    (stray / "cells" / "x.json").write_text("{}")
    assert "manifest" in one_line_error(
        invoke("sweep", "--fan-in", "2", "--depth", "3", "--out", str(stray))
    )


# ======================================================================= the command
def test_cli_writes_json_csv_out_and_plots(tmp_path):
    out, plots, table = tmp_path / "ck", tmp_path / "plots", tmp_path / "t.csv"
    result = invoke(
        "sweep",
        "--fan-in",
        "2,4,8",
        "--depth",
        "3,6",
        "--schemes",
        "he-normal,torch",
        "--trials",
        "64",
        "--out",
        str(out),
        "--csv",
        str(table),
        "--plot",
        str(plots),
        "--workers",
        "1",
        "--json",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["kind"] == "sweep" and len(data["rows"]) == 12
    assert sorted(os.listdir(plots)) == ["sweep_he-normal.png", "sweep_torch.png"]
    for name in os.listdir(plots):
        assert (plots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "results.json").exists() and (out / "results.csv").exists()
    assert table.read_text().splitlines()[0] == ",".join(ROW_FIELDS)
    text = invoke(
        "sweep",
        "--fan-in",
        "2,4,8",
        "--depth",
        "3,6",
        "--schemes",
        "he-normal,torch",
        "--trials",
        "64",
        "--out",
        str(out),
    )
    assert text.exit_code == 0 and "12 reused" in text.stdout and "he-normal" in text.stdout


def test_generic_plot_dispatcher_redraws_a_sweep(tmp_path):
    from propagate.plotting.run_plots import plot_result_file_dict

    result = run_sweep(**SMALL, out=str(tmp_path / "ck"), workers=1)
    data = json.loads(result.to_json())
    paths = plot_result_file_dict(data, str(tmp_path / "p"), "svg")
    assert [os.path.basename(p) for p in paths] == [
        "sweep_he-normal.svg",
        "sweep_orthogonal.svg",
        "sweep_torch.svg",
    ]


@pytest.mark.parametrize(
    "args,shown",
    [
        (["--fan-in", ""], "--fan-in"),
        (["--fan-in", "2,4,2"], "lists 2 twice"),
        (["--fan-in", "0,4"], "'0'"),
        (["--depth", "3,,5"], "--depth"),
        (["--depth", "1.5"], "1.5"),
        (["--schemes", "he-normal,bogus"], "choose one of: gauss"),
        (["--schemes", "he-normal,kaiming-normal"], "twice"),
        (["--schemes", ""], "--schemes"),
        (["--schemes", "lsuv"], "lsuv"),
        (["--trials", "0"], "--trials"),
        (["--batch", "x"], "--batch"),
        (["--workers", "0"], "--workers"),
        (["--scheduler", " "], "--scheduler"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, args, shown):
    base = {"--fan-in": "2", "--depth": "3", "--schemes": "he-normal", "--trials": "8"}
    for key, value in zip(args[::2], args[1::2]):
        base[key] = value
    argv = ["sweep", "--out", str(tmp_path)]
    for key, value in base.items():
        argv += [key, value]
    assert shown in one_line_error(invoke(*argv))


def test_parsers():
    assert parse_int_list("--fan-in", "8, 2,4") == (2, 4, 8)
    assert parse_scheme_list("kaiming-normal,torch") == ("he-normal", "torch")
    with pytest.raises(InputError, match="twice"):
        parse_int_list("--depth", [3, 3])


def test_help_and_python_m_propagate(tmp_path):
    assert "resumes" in invoke("sweep", "--help").stdout
    assert "bottleneck" in invoke("recommend", "--help").stdout
    from propagate import cli

    if "sweep" not in {c.name for c in cli.app.registered_commands}:
        pytest.skip("cli.py does not register cli_sweep yet (lead: register(app))")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "propagate",
            "sweep",
            "--fan-in",
            "2",
            "--depth",
            "3",
            "--schemes",
            "he-normal",
            "--trials",
            "8",
            "--out",
            str(tmp_path),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["kind"] == "sweep"
    bad = subprocess.run(
        [sys.executable, "-m", "propagate", "sweep", "--fan-in", "2,2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1


def test_a_sweep_file_of_another_format_version_is_refused(tmp_path):
    from propagate.sweep import SweepResult

    data = run_sweep(**SMALL, workers=1, out=str(tmp_path)).to_dict()
    assert SweepResult.from_dict(data).rows == data["rows"]
    with pytest.raises(InputError, match="format_version 999"):
        SweepResult.from_dict({**data, "format_version": 999})
