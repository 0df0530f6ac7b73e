"""``compare``: one architecture and seed, several schemes, side by side; and its CLI commands.

The predicted per-layer factors of q for ReLU at constant width n = 64 are closed forms
(THEORY.md section 8): gauss N(0, 0.01^2) gives n 0.01^2 / 2 = 0.0032, torch's layer default
Var W = 1/(3 n) gives 1/6, xavier-normal 1/n gives 1/2, he-normal 2/n gives 1.
"""

from __future__ import annotations

import json
import os

import pytest
import typer
from typer.testing import CliRunner

os.environ.setdefault("MPLBACKEND", "Agg")

from propagate import api  # noqa: E402
from propagate.cli_plots import register, write_run_plots  # noqa: E402
from propagate.compare import check_scheme_list, compare  # noqa: E402
from propagate.errors import InputError  # noqa: E402
from propagate.results import FORMAT_VERSION, RunResult  # noqa: E402

FOUR = ["gauss", "torch", "xavier-normal", "he-normal"]
ARCH = dict(depth=30, fan_in=64, batch=32, trials=12, seed=1)
EXPECTED = {
    "gauss": ("vanishing", 0.0032),
    "torch": ("vanishing", 1 / 6),
    "xavier-normal": ("vanishing", 0.5),
    "he-normal": ("stable", 1.0),
}
CLI_ARCH = ["--depth", "12", "--fan-in", "32", "--batch", "16", "--trials", "4"]


@pytest.fixture(scope="module")
def four() -> RunResult:
    return compare(FOUR, **ARCH)


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
    register(app)
    return app


def invoke(app, args):
    return CliRunner().invoke(app, args)


def assert_one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert err.startswith("propagate: error: "), err
    assert "\n" not in err, err
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in err, err


# ------------------------------------------------------------------------------ library
def test_four_schemes_verdicts_and_factors(four):
    assert four.kind == "compare"
    assert four.summary["schemes"] == FOUR
    rows = {row["scheme"]: row for row in four.summary["table"]}
    assert list(rows) == FOUR
    for name, (verdict, factor) in EXPECTED.items():
        assert rows[name]["verdict"] == verdict, name
        assert rows[name]["factor_per_layer"] == pytest.approx(factor, rel=1e-9), name
        # measured beside predicted: 30 layers of a factor, within a few percent per layer
        assert rows[name]["factor_per_layer_measured"] == pytest.approx(factor, rel=0.1), name
    assert four.summary["verdicts"] == {n: v for n, (v, _) in EXPECTED.items()}


def test_each_scheme_is_exactly_its_own_run(four):
    """Identical architecture, inputs and seed: each entry equals a plain run of that scheme."""
    runs = four.extra["runs"]
    assert [r["config"]["scheme"] for r in runs] == FOUR
    assert runs[1] == api.run(scheme="torch", **ARCH).to_dict()
    widths = {tuple(r["config"]["widths"]) for r in runs}
    seeds = {r["config"]["seed"] for r in runs}
    assert widths == {(64,) * 31} and seeds == {1}
    assert four.config["schemes"] == FOUR and four.config["widths"] == [64] * 31
    assert "scheme" not in four.config and "weight_var" not in four.config


def test_side_by_side_tables(four):
    rows = {row["scheme"]: row for row in four.summary["table"]}
    for run_dict in four.extra["runs"]:
        name, last = run_dict["config"]["scheme"], run_dict["layers"][-1]
        row = rows[name]
        assert row["log10_q_last"] == last["log10_q"]
        assert row["log10_q_pred_last"] == last["log10_q_pred"]
        assert row["log10_q_median_last"] == last["log10_q_median"]
        assert row["dead_fraction_last"] == last["dead_fraction"]
        assert row["log10_input_grad"] == run_dict["summary"]["log10_input_grad"]
        assert row["recommended_std"] == pytest.approx((2 / 64) ** 0.5)  # He at fan-in 64
    assert len(four.layers) == 30
    assert four.layers[-1]["log10_q[gauss]"] == rows["gauss"]["log10_q_last"]
    assert set(four.layers[0]) >= {f"log10_grad_pred[{n}]" for n in FOUR}


def test_round_trip_and_rerun_identical(four):
    text = four.to_json()
    assert RunResult.from_dict(json.loads(text)).to_json() == text
    assert compare(FOUR, **ARCH).to_json() == text
    header = four.to_csv().splitlines()[0]
    assert header.startswith("layer,log10_q[gauss],log10_q[torch]")


@pytest.mark.parametrize(
    "schemes,needle",
    [
        ("", "empty"),
        ([], "empty"),
        ("gauss,,torch", "empty name"),
        ("gauss,gauss", "twice"),
        ("he-normal,kaiming-normal", "twice"),
        ("gauss,nonsense", "unknown scheme 'nonsense'"),
        ("xavier", "different formulas"),
    ],
)
def test_bad_scheme_lists_fail_before_running(schemes, needle, monkeypatch):
    def must_not_run(**kwargs):
        raise AssertionError("ran a network before validating the scheme list")

    monkeypatch.setattr(api, "run", must_not_run)
    with pytest.raises(InputError) as info:
        compare(schemes, depth=4, fan_in=8)
    message = str(info.value)
    assert needle in message and "\n" not in message
    assert "he-normal" in message and "lsuv" in message  # the valid names are listed


def test_scheme_list_accepts_aliases_and_spaces():
    assert check_scheme_list(" gauss , kaiming_normal ") == ["gauss", "he-normal"]


def test_override_that_a_scheme_refuses_fails_before_running(monkeypatch):
    monkeypatch.setattr(api, "run", lambda **kw: (_ for _ in ()).throw(AssertionError("ran")))
    with pytest.raises(InputError, match="does not apply"):
        compare(["he-normal", "lsuv"], depth=4, fan_in=8, std=0.1)


# ------------------------------------------------------------------------------ CLI
def test_cli_compare_table_json_out_and_plot(app, tmp_path):
    out, figs = tmp_path / "out", tmp_path / "figs"
    args = [
        "compare",
        "--schemes",
        ",".join(FOUR),
        *CLI_ARCH,
        "--out",
        str(out),
        "--plot",
        str(figs),
    ]
    result = invoke(app, args)
    assert result.exit_code == 0, result.output
    for name in FOUR:
        assert name in result.stdout
    assert "vanishing" in result.stdout and "stable" in result.stdout
    assert sorted(os.listdir(out)) == ["results.csv", "results.json"]
    assert sorted(os.listdir(figs)) == ["compare.png"]
    saved = json.loads((out / "results.json").read_text())
    assert saved["kind"] == "compare" and saved["format_version"] == FORMAT_VERSION

    as_json = invoke(app, ["compare", "--schemes", "gauss,he-normal", *CLI_ARCH, "--json"])
    assert as_json.exit_code == 0
    data = json.loads(as_json.stdout)
    assert [r["scheme"] for r in data["summary"]["table"]] == ["gauss", "he-normal"]


def test_cli_plot_redraws_every_kind_and_format(app, tmp_path):
    out = tmp_path / "out"
    assert (
        invoke(app, ["compare", "--schemes", "gauss,torch", *CLI_ARCH, "--out", str(out)]).exit_code
        == 0
    )
    result = invoke(app, ["plot", str(out / "results.json"), "--format", "svg"])
    assert result.exit_code == 0, result.output
    assert (out / "compare.svg").stat().st_size > 1000
    run_file = tmp_path / "run.json"
    run_file.write_text(api.run(scheme="gauss", depth=5, fan_in=8, batch=8, trials=3).to_json())
    result = invoke(app, ["plot", str(run_file), "--out", str(tmp_path / "f"), "--format", "pdf"])
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(tmp_path / "f")) == ["grad_depth.pdf", "q_depth.pdf"]


def test_write_run_plots_hook(tmp_path):
    result = api.run(scheme="he-normal", depth=5, fan_in=8, batch=8, trials=3)
    paths = write_run_plots(result, str(tmp_path), "png")
    assert [os.path.basename(p) for p in paths] == ["q_depth.png", "grad_depth.png"]
    with pytest.raises(InputError, match="--format"):
        write_run_plots(result, str(tmp_path / "x"), "jpeg")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "content,needle",
    [
        ("{not json", "not valid JSON"),
        (
            '{"format": "propagate-results", "format_version": 999, "kind": "run"}',
            "format_version 999",
        ),
        ('{"hello": "world"}', "not a propagate results file"),
        ("", "not valid JSON"),
    ],
)
def test_cli_plot_bad_results_file(app, tmp_path, content, needle):
    path = tmp_path / "results.json"
    path.write_text(content)
    out = tmp_path / "figs"
    assert_one_line_error(invoke(app, ["plot", str(path), "--out", str(out)]), needle)
    assert not out.exists()
    assert os.listdir(tmp_path) == ["results.json"]


def test_cli_plot_missing_file_and_bad_format(app, tmp_path):
    assert_one_line_error(invoke(app, ["plot", str(tmp_path / "nope.json")]), "no such file")
    good = tmp_path / "r.json"
    good.write_text(api.run(scheme="gauss", depth=3, fan_in=4, batch=4, trials=2).to_json())
    assert_one_line_error(invoke(app, ["plot", str(good), "--format", "gif"]), "png, svg, pdf")
    assert os.listdir(tmp_path) == ["r.json"]


@pytest.mark.parametrize(
    "schemes,needle",
    [("gauss,nope", "unknown scheme 'nope'"), ("gauss,gauss", "twice"), ("", "empty")],
)
def test_cli_compare_bad_schemes(app, tmp_path, schemes, needle):
    out = tmp_path / "out"
    result = invoke(app, ["compare", "--schemes", schemes, *CLI_ARCH, "--out", str(out)])
    assert_one_line_error(result, needle)
    assert not out.exists()


def test_cli_unwritable_folders_fail_first_and_write_nothing(app, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    out = tmp_path / "out"
    result = invoke(
        app,
        [
            "compare",
            "--schemes",
            "gauss,torch",
            *CLI_ARCH,
            "--out",
            str(out),
            "--plot",
            str(blocker / "figs"),
        ],
    )
    assert_one_line_error(result, "--plot")
    result = invoke(
        app,
        [
            "compare",
            "--schemes",
            "gauss,torch",
            *CLI_ARCH,
            "--out",
            str(blocker),
            "--plot",
            str(tmp_path / "figs"),
        ],
    )
    assert_one_line_error(result, "--out", "not a folder")
    assert sorted(os.listdir(tmp_path)) == ["a-file"]
    good = tmp_path / "a-file"
    run_file = tmp_path / "r.json"
    run_file.write_text(api.run(scheme="gauss", depth=3, fan_in=4, batch=4, trials=2).to_json())
    assert_one_line_error(invoke(app, ["plot", str(run_file), "--out", str(good / "sub")]), "--out")
    assert sorted(os.listdir(tmp_path)) == ["a-file", "r.json"]


def test_every_command_has_help(app):
    for command in ("compare", "plot"):
        result = invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "Example:" in result.stdout
