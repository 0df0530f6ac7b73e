"""The command line: help everywhere, JSON contract and round-trip, bad input exits 2."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from propagate.cli import app, main
from propagate.kernels import numba_installed
from propagate.results import RunResult, load_result

LAYER_FIELDS = (
    "layer",
    "fan_in",
    "fan_out",
    "weight_var",
    "log10_q",
    "log10_q_pred",
    "log10_q_median",
    "log10_q_p05",
    "log10_q_p95",
    "dead_fraction",
    "log10_grad",
    "log10_grad_pred",
    "log10_wgrad",
    "log10_wgrad_pred",
)


def _cli(args, capsys):
    """Run the console entry point in-process; (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


def _command_names():
    import typer

    group = typer.main.get_command(app)
    return sorted(group.commands)


def test_every_command_has_help(capsys):
    names = _command_names()
    assert {"run", "schemes"} <= set(names)
    for name in names:
        code, out, _ = _cli([name, "--help"], capsys)
        assert code == 0 and "Usage" in out and len(out.splitlines()) > 3, name
    code, out, _ = _cli(["--help"], capsys)
    assert code == 0 and all(name in out for name in names)


def test_main_job_json_contract(capsys):
    code, out, err = _cli(
        [
            "run",
            "--depth",
            "30",
            "--fan-in",
            "64",
            "--scheme",
            "gauss",
            "--trials",
            "20",
            "--batch",
            "32",
            "--json",
        ],
        capsys,
    )
    assert code == 0, err
    data = json.loads(out)
    assert set(data) >= {"config", "layers", "summary"}
    cfg = data["config"]
    assert cfg["scheme"] == "gauss" and cfg["seed"] == 0 and cfg["version"]
    assert cfg["distribution"] == "normal" and len(cfg["weight_var"]) == 30
    assert cfg["weight_var"][0] == pytest.approx(1e-4, rel=1e-12)
    assert len(data["layers"]) == 30
    for i, row in enumerate(data["layers"]):
        assert row["layer"] == i + 1
        for key in LAYER_FIELDS:
            assert key in row and row[key] is not None, key
    last = data["layers"][-1]
    # predicted log10 q_30 = log10(64 * 1e-4) + 29 log10(32 * 1e-4) = -74.54, times the
    # realised second moment m_0 of the input batch every network sees
    expected = math.log10(64e-4) + 29 * math.log10(32e-4) + data["summary"]["log10_m0"]
    assert abs(data["summary"]["log10_m0"]) < 0.05
    assert last["log10_q_pred"] == pytest.approx(expected, abs=1e-9)
    assert abs(last["log10_q"] - expected) < 0.5
    summary = data["summary"]
    assert summary["verdict"] == "vanishing"
    assert summary["factor_per_layer"] == pytest.approx(32e-4, rel=1e-9)
    assert summary["recommended_std"] == pytest.approx(math.sqrt(2 / 64), rel=1e-12)
    assert summary["naive"]["float32"]["underflow_layer"] == 31


def test_json_round_trips_and_files_are_written_atomically(tmp_path, capsys):
    out_dir = tmp_path / "res"
    csv_path = tmp_path / "table.csv"
    code, out, err = _cli(
        [
            "run",
            "--depth",
            "4",
            "--fan-in",
            "8",
            "--trials",
            "5",
            "--json",
            "--out",
            str(out_dir),
            "--csv",
            str(csv_path),
        ],
        capsys,
    )
    assert code == 0, err
    printed = json.loads(out)
    loaded = load_result(str(out_dir / "results.json"))
    assert json.loads(loaded.to_json()) == printed
    assert RunResult.from_dict(printed).to_dict() == printed
    rows = (out_dir / "results.csv").read_text().splitlines()
    assert rows[0].startswith("layer,fan_in,fan_out") and len(rows) == 5
    assert csv_path.read_text() == (out_dir / "results.csv").read_text()
    assert sorted(os.listdir(out_dir)) == ["results.csv", "results.json"]  # no temp files left


def test_dead_networks_are_null_in_json_and_round_trip(capsys):
    code, out, _ = _cli(
        ["run", "--widths", "4,1,1,1,1,1,1,1,1", "--trials", "4", "--batch", "2", "--json"], capsys
    )
    assert code == 0
    data = json.loads(out)
    assert data["layers"][-1]["log10_q_median"] is None  # every network dead: exactly 0
    restored = RunResult.from_dict(data)
    assert restored.layers[-1]["log10_q_median"] == -math.inf


def test_same_seed_same_numbers_and_api_matches_cli(capsys):
    import propagate

    args = ["run", "--depth", "5", "--fan-in", "16", "--trials", "9", "--seed", "4", "--json"]
    first = json.loads(_cli(args, capsys)[1])
    second = json.loads(_cli(args + ["--workers", "1"], capsys)[1])
    assert first["layers"] == second["layers"]
    api = propagate.run(depth=5, fan_in=16, trials=9, seed=4)
    assert json.loads(api.to_json())["layers"] == first["layers"]
    other = json.loads(_cli(args[:-3] + ["--seed", "5", "--json"], capsys)[1])
    assert other["layers"] != first["layers"]


BAD = [
    (["--depth", "0"], "--depth"),
    (["--depth", "-3"], "--depth"),
    (["--depth", "abc"], "abc"),
    (["--fan-in", "2.5"], "--fan-in"),
    (["--widths", "8,0,8"], "--widths"),
    (["--widths", "8"], "--widths"),
    (["--widths", "8,x"], "'x'"),
    (["--depth", "3", "--widths", "8,8"], "either"),
    (["--scheme", "nope"], "he-normal"),
    (["--scheme", "he-normal", "--mode", "fan_sideways"], "fan_in"),
    (["--scheme", "he-normal", "--dist", "cauchy"], "uniform"),
    (["--activation", "gelu"], "relu"),
    (["--std", "nan"], "nan"),
    (["--std", "inf"], "inf"),
    (["--std", "-0.1"], "-0.1"),
    (["--gain", "0"], "--gain"),
    (["--activation", "leaky-relu", "--negative-slope", "-0.5"], "-0.5"),
    (["--batch", "1", "--fan-in", "1", "--depth", "2"], "--batch"),
    (["--trials", "0"], "--trials"),
    (["--dtype", "float16"], "float32"),
    (["--head", "sigmoid"], "softmax"),
    (["--data", "/no/such/file.npy"], "no such file"),
    (["--bogus-flag"], "bogus"),
    (["--classes", "5"], "only applies with --head softmax"),
    (["--no-standardize"], "only applies with --data"),
    (["--std", "abc"], "give a > 0 number"),
]


@pytest.mark.parametrize("args,needle", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_exit_2(args, needle, capsys):
    code, out, err = _cli(["run", *args], capsys)
    assert code == 2
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith("propagate: error:") and needle in err


def test_memory_estimate_refuses_before_allocating(capsys, monkeypatch):
    import propagate.network as network

    code, _, err = _cli(
        ["run", "--depth", "2000", "--fan-in", "4096", "--batch", "65536", "--trials", "1000000"],
        capsys,
    )
    assert code == 2 and "even one network needs about" in err and "GiB" in err
    # a 80 MiB machine: two chunks at once (two workers) need ~92 MiB, one alone ~54 MiB
    monkeypatch.setattr(network, "_available_memory", lambda: 80 << 20)
    code, _, err = _cli(["run", "--fan-in", "256", "--batch", "4096", "--depth", "3"], capsys)
    assert code == 2 and "use at most 1 trial," in err


def test_unwritable_out_folder_is_one_line_and_leaves_nothing(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    code, _, err = _cli(
        ["run", "--depth", "2", "--fan-in", "4", "--trials", "2", "--out", str(blocker)], capsys
    )
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert blocker.read_text() == "keep me"


def test_module_entry_point_and_no_traceback_in_a_subprocess(tmp_path):
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "propagate",
            "run",
            "--depth",
            "3",
            "--fan-in",
            "8",
            "--trials",
            "3",
        ],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and "layer" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "propagate", "run", "--depth", "-3"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_schemes_listing_names_the_traps(capsys):
    code, out, _ = _cli(["schemes", "--json"], capsys)
    assert code == 0
    rows = json.loads(out)
    names = {row["name"] for row in rows}
    assert {
        "gauss",
        "torch",
        "lecun-normal",
        "xavier-uniform",
        "he-normal",
        "orthogonal",
        "lsuv",
        "torch-trunc-normal",
        "he-truncnormal",
    } <= names
    text = json.dumps(rows).lower()
    assert "caffe" in text and "truncated" in text
    code, out, _ = _cli(["schemes"], capsys)
    assert code == 0 and "kaiming" in out.lower()


def test_softmax_head_reports_saturation(capsys):
    code, out, _ = _cli(
        [
            "run",
            "--depth",
            "10",
            "--fan-in",
            "32",
            "--scheme",
            "gauss",
            "--head",
            "softmax",
            "--classes",
            "7",
            "--trials",
            "5",
            "--json",
        ],
        capsys,
    )
    assert code == 0
    head = json.loads(out)["summary"]["head"]
    # gauss 0.01 leaves logits ~1e-13: the softmax is exactly uniform at init
    assert head["mean_max_prob"] == pytest.approx(1 / 7, rel=1e-6)
    assert head["entropy_over_log_classes"] == pytest.approx(1.0, abs=1e-6)
    assert head["mean_loss"] == pytest.approx(math.log(7), rel=1e-6)


def test_realised_weight_variance_is_reported(capsys):
    code, out, _ = _cli(
        [
            "run",
            "--depth",
            "3",
            "--fan-in",
            "100",
            "--scheme",
            "he-uniform",
            "--trials",
            "50",
            "--json",
        ],
        capsys,
    )
    rows = json.loads(out)["layers"]
    for row in rows:
        assert row["weight_var"] == pytest.approx(0.02, rel=1e-12)
        # 50 x 100 x 100 uniform entries: relative SE of the sample variance sqrt(0.8/5e5)
        assert abs(row["weight_var_realised"] / 0.02 - 1) < 4 * np.sqrt(0.8 / 5e5)


def _interrupt_run(tmp_path, extra, ready, env=None):
    """Start a long ``propagate run --out``, send SIGINT once ``ready(pid)`` holds; stderr."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "res"
    proc = subprocess.Popen(
        [sys.executable, "-m", "propagate", "run", "--depth", "3000", "--fan-in", "256",
         "--batch", "256", "--trials", "8", "--out", str(out), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not ready(proc.pid) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert not out.exists()
    return err


def _cpu_seconds(pid: int) -> float:
    import os

    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads /proc")
def test_ctrl_c_inside_the_layers_says_interrupted_exits_130_and_writes_nothing(tmp_path):
    # NumPy alone runs this 3000-layer stack for tens of seconds; the imports take well under
    # 3 s of CPU, so the signal lands inside the layers on any machine
    err = _interrupt_run(tmp_path, ["--kernels", "numpy"], lambda pid: _cpu_seconds(pid) > 3)
    assert err.strip() == "propagate: interrupted"


@pytest.mark.skipif(not numba_installed(), reason="needs numba (the fast extra)")
@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="reads /proc")
def test_ctrl_c_while_numba_compiles_is_not_swallowed(tmp_path):
    # an empty numba cache makes it compile (seconds); the signal is sent as soon as LLVM is
    # loaded. Raised inside LLVM's callbacks a KeyboardInterrupt was dropped ("Exception
    # ignored") and the run went on to exit 0; it is now held until the kernels are ready.
    def llvm_loaded(pid):
        with open(f"/proc/{pid}/maps") as fh:
            return "llvmlite" in fh.read()

    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    err = _interrupt_run(tmp_path, ["--kernels", "numba"], llvm_loaded, env)
    assert err.strip() == "propagate: interrupted"


def test_version_and_written_files_are_reported(tmp_path, capsys):
    from propagate import __version__

    code, out, _ = _cli(["--version"], capsys)
    assert code == 0 and out.strip() == f"propagate {__version__} (distribution propagate-init)"
    args = ["run", "--depth", "3", "--fan-in", "8", "--trials", "4", "--batch", "8"]
    res, csv = tmp_path / "res", tmp_path / "c.csv"
    code, out, _ = _cli([*args, "--out", str(res), "--csv", str(csv)], capsys)
    assert code == 0
    assert out.splitlines()[-3:] == [
        f"wrote {res / 'results.json'}",
        f"wrote {res / 'results.csv'}",
        f"wrote {csv}",
    ]
    code, out, _ = _cli([*args, "--std", "0.05"], capsys)
    assert "scheme he-normal with --std 0.05 (normal, Var W = 0.0025)" in " ".join(out.split())


def test_compare_takes_init_overrides_csv_and_kernels(tmp_path, capsys):
    args = ["compare", "--schemes", "gauss,he-normal", "--depth", "4", "--fan-in", "8",
            "--trials", "6", "--batch", "8", "--kernels", "numpy"]  # fmt: skip
    csv = tmp_path / "cmp.csv"
    code, out, _ = _cli([*args, "--std", "0.3", "--json", "--csv", str(csv)], capsys)
    assert code == 0
    runs = json.loads(out)["runs"]
    # one --std for every scheme: the same law, so the same numbers
    assert runs[0]["layers"] == runs[1]["layers"]
    assert runs[0]["config"]["weight_std"] == [0.3] * 4
    header = csv.read_text().splitlines()[0].split(",")
    assert "log10_q[gauss]" in header and "log10_q[he-normal]" in header
    code, _, err = _cli([*args, "--gain", "1"], capsys)
    assert code == 2 and "does not apply to gauss" in err and err.count("\n") == 1
    code, _, err = _cli([*args, "--kernels", "fast"], capsys)
    assert code == 2 and "unknown --kernels 'fast'" in err


def test_sweep_checks_figure_and_csv_targets_before_running(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # its checkpoints
    args = ["sweep", "--fan-in", "2", "--depth", "3", "--schemes", "he-normal",
            "--trials", "20", "--no-progress"]  # fmt: skip
    code, _, err = _cli([*args, "--plot", str(tmp_path / "f"), "--format", "bmp"], capsys)
    assert code == 2 and "--format 'bmp' is not allowed" in err
    (tmp_path / "afile").write_text("")
    code, _, err = _cli([*args, "--csv", str(tmp_path / "afile" / "x.csv")], capsys)
    assert code == 2 and "is not a folder" in err
    code, out, _ = _cli([*args, "--plot", str(tmp_path / "f"), "--format", "svg"], capsys)
    assert code == 0 and out.strip().endswith(f"wrote {tmp_path / 'f' / 'sweep_he-normal.svg'}")


def test_verdict_names_the_std_per_fan_in_for_long_stacks():
    from propagate import run

    short = run(widths=(8, 4, 8, 4, 8), trials=4, batch=8)
    assert "per layer: 0.5, 0.707, 0.5, 0.707." in short.summary["message"]
    long = run(widths=(8, 4) * 20 + (8,), trials=4, batch=8)
    message = long.summary["message"]
    assert "0.707 at fan-in 4, 0.5 at fan-in 8 (every layer's value is in" in message
    assert len(long.summary["recommended_std_per_layer"]) == 40
    assert len(message) < 1000


def test_verdict_explains_dead_units_and_notes_a_mean_carried_by_few_networks():
    from propagate import run

    # He keeps q (the mean is exact at every width), but at depth 30 about a third of the units
    # are off for the whole batch: said once, with its cause, and no heavy-tail note
    he = run(depth=30, fan_in=64, trials=40, batch=64)
    assert he.summary["verdict"] == "stable"
    dead = he.layers[-1]["dead_fraction"]
    assert 0.2 < dead < 0.5
    assert (
        f"{100 * dead:.0f} % of layer 30's units are off for every input" in he.summary["message"]
    )
    assert not any("lies above 95 %" in n for n in he.summary["finite_width_notes"])
    assert "^-0.0" not in he.summary["message"]  # the input gradient, 10^-0.0x, reads 10^0.0
    # gauss 0.01 at depth 150: the mean over networks sits above their 95th percentile
    deep = run(depth=150, fan_in=64, scheme="gauss", trials=100, batch=64)
    top = deep.layers[-1]
    assert top["log10_q"] > top["log10_q_p95"]
    note = [n for n in deep.summary["finite_width_notes"] if "lies above 95 %" in n]
    assert len(note) == 1 and f"median 10^{top['log10_q_median']:.1f}" in note[0]
    # biases that wash out the input: that, not alignment, is the story
    torch = run(depth=30, fan_in=64, scheme="torch", bias_std="torch", trials=20, batch=64)
    assert torch.layers[-1]["dead_fraction"] > 0.1
    assert "units are off for every input" not in torch.summary["message"]


def test_colliding_output_targets_are_refused_before_anything_is_written(tmp_path, capsys):
    args = ["run", "--depth", "3", "--fan-in", "8", "--trials", "4", "--batch", "8"]
    out = tmp_path / "o"
    for extra, what in (
        (["--out", str(out), "--csv", str(out / "results.json")], "would overwrite"),
        (["--out", str(out), "--csv", str(out)], "would overwrite"),
        (["--plot", str(out), "--csv", str(out)], "is also the --plot folder"),
    ):
        code, _, err = _cli([*args, *extra], capsys)
        assert code == 2 and what in err and err.count("\n") == 1
        assert not out.exists()
    (tmp_path / "afile").write_text("keep")
    code, _, err = _cli([*args, "--csv", str(tmp_path / "afile" / "sub" / "x.csv")], capsys)
    assert code == 2 and "is not a folder" in err
    assert (tmp_path / "afile").read_text() == "keep"


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--negative-slope", "1e-400"), ("--bias-std", "1E-400"), ("--std", "2e-999")],
)
def test_values_that_round_to_zero_are_refused(flag, value, capsys):
    args = ["run", "--depth", "2", "--fan-in", "4", "--activation", "leaky-relu", flag, value]
    code, _, err = _cli(args, capsys)
    assert code == 2 and f"{flag} {value!r} is not allowed" in err and "rounds to 0" in err


def test_written_zeros_still_mean_zero(capsys):
    code, out, _ = _cli(["run", "--depth", "2", "--fan-in", "4", "--bias-std", "0E5"], capsys)
    assert code == 0 and "propagate run:" in out


def test_outputs_are_written_all_or_none(tmp_path, monkeypatch):
    """--out and --csv: a failure on the last file leaves every earlier one as it was."""
    from propagate import results, run
    from propagate.errors import InputError

    out = tmp_path / "out"
    results.save_outputs(run(depth=2, fan_in=4, trials=2, batch=4), str(out))
    before = {name: (out / name).read_bytes() for name in ("results.json", "results.csv")}
    stage = results._stage

    def failing(path, text):
        if path.endswith("x.csv"):
            raise InputError(f"cannot write {path!r}: No space left on device")
        return stage(path, text)

    monkeypatch.setattr(results, "_stage", failing)
    other = run(depth=3, fan_in=4, trials=2, batch=4)
    with pytest.raises(InputError, match="No space left"):
        results.save_outputs(other, str(out), str(tmp_path / "x.csv"))
    assert {name: (out / name).read_bytes() for name in before} == before
    assert sorted(p.name for p in out.iterdir()) == ["results.csv", "results.json"]  # no temps
    monkeypatch.setattr(results, "_stage", stage)
    results.save_outputs(other, str(out), str(tmp_path / "x.csv"))
    assert (out / "results.json").read_bytes() != before["results.json"]


def test_an_unwritable_output_folder_is_refused_before_the_run(tmp_path, monkeypatch, capsys):
    import propagate.results as results

    monkeypatch.setattr(results.os, "access", lambda path, mode: False)
    code, _, err = _cli(["run", "--depth", "2", "--csv", str(tmp_path / "x.csv")], capsys)
    assert code == 2 and "cannot write in" in err and "x.csv" in err
    assert len(err.strip().splitlines()) == 1


def test_tanh_saturation_and_ratios_beyond_float64_are_said_not_hidden():
    from propagate import run
    from propagate.report import fmt_log10

    # std 300: derivatives 1 - tanh^2 of one layer span thousands of nats, beyond float32
    hot = run(depth=4, fan_in=16, activation="tanh", scheme="gauss", std=300.0, trials=4, batch=8)
    assert any(w.startswith("tanh saturates") for w in hot.summary["warnings"])
    calm = run(depth=4, fan_in=16, activation="tanh", scheme="gauss", std=0.25, trials=4, batch=8)
    assert not any("tanh" in w for w in calm.summary["warnings"])
    capped = run(depth=2, fan_in=8, activation="tanh", scheme="gauss", std=1e40, trials=2, batch=4)
    assert any("exceeded 1e30" in w for w in capped.summary["warnings"])
    # a linear stack of width 4 and depth 5000 with 4 networks: measured/predicted ~ 10^-550
    # (the mean is carried by networks 4 trials never sample): null ratio, exact log10
    deep = run(
        depth=5000, fan_in=4, activation="linear", scheme="gauss", std=0.5, trials=4, batch=4
    )
    top = deep.layers[-1]
    assert top["log10_q_ratio"] == pytest.approx(top["log10_q"] - top["log10_q_pred"], abs=1e-12)
    assert top["log10_q_ratio"] < -300 and top["q_ratio"] is None
    assert json.loads(deep.to_json())["layers"][-1]["q_ratio"] is None
    assert fmt_log10(-1.5613e28) == "-1.56e+28" and fmt_log10(-0.04) == "0.0"


def test_softmax_loss_is_kept_as_a_logarithm_beyond_float64():
    """Logits of 10^1000+: the loss ~ S (max u - u_y) grows with depth, it is not capped."""
    from propagate import run

    args = dict(scheme="gauss", std=1e50, head="softmax", trials=3, batch=4)
    shallow, deep = run(depth=20, **args).summary["head"], run(depth=30, **args).summary["head"]
    # each layer multiplies q by 64 * 1e100 / 2, the logits (and the loss) by its square root
    step = 0.5 * math.log10(32 * 1e100)
    assert deep["log10_mean_loss"] - shallow["log10_mean_loss"] == pytest.approx(10 * step, abs=1)
    assert deep["mean_loss"] is None and deep["mean_max_prob"] == 1.0
    plain = run(depth=3, fan_in=16, head="softmax", trials=3, batch=8).summary["head"]
    assert plain["mean_loss"] == pytest.approx(10 ** plain["log10_mean_loss"], rel=1e-12)
    assert 0.5 < plain["mean_loss"] < 10
