"""Figures: every one is written (valid PNG/SVG/PDF), quickly, atomically, never changing results.

The plotting modules draw on ``matplotlib.figure.Figure`` with the Agg canvas (no pyplot), so no
display is needed; MPLBACKEND=Agg is set anyway for anything else that imports matplotlib.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
import types

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

from propagate.api import run  # noqa: E402
from propagate.errors import InputError  # noqa: E402
from propagate.plotting import atomic_savefig  # noqa: E402
from propagate.plotting.run_plots import (  # noqa: E402
    plot_compare_result,
    plot_result_file_dict,
    plot_run_results,
)
from propagate.results import RunResult  # noqa: E402

HEADERS = {"png": b"\x89PNG\r\n\x1a\n", "pdf": b"%PDF-"}
SMALL = dict(depth=8, fan_in=16, batch=32, trials=8, seed=3)


def assert_valid_figure(path: str, fmt: str) -> None:
    assert os.path.isfile(path), path
    assert path.endswith("." + fmt)
    with open(path, "rb") as fh:
        data = fh.read()
    assert len(data) > 1000, f"{path} is only {len(data)} bytes"
    if fmt == "svg":
        assert data.lstrip().startswith(b"<?xml") and b"<svg" in data[:2000]
        assert data.rstrip().endswith(b"</svg>")
    else:
        assert data.startswith(HEADERS[fmt])
    if fmt == "pdf":
        assert data.rstrip().endswith(b"%%EOF")


def no_temporary_files(folder: str) -> bool:
    return not any(name.startswith(".tmp-") for name in os.listdir(folder))


@pytest.fixture(scope="module")
def runs() -> list[dict]:
    return [run(scheme=s, **SMALL).to_dict() for s in ("gauss", "xavier-normal", "he-normal")]


@pytest.fixture(scope="module")
def dead_run() -> dict:
    """Width 2, depth 40: most networks die, so log10 fields are null (-inf) from some layer."""
    result = run(depth=40, fan_in=2, batch=4, trials=8, scheme="he-normal").to_dict()
    assert any(row["log10_q"] is None for row in result["layers"])
    assert result["summary"]["log10_input_grad"] is None
    return result


@pytest.fixture(scope="module")
def compare_dict() -> dict:
    from propagate.compare import compare

    return compare(["gauss", "torch", "he-normal"], **SMALL).to_dict()


# ------------------------------------------------------------------------------ written
@pytest.mark.parametrize("fmt", ["png", "svg", "pdf"])
def test_run_figures_written_in_every_format(runs, tmp_path, fmt):
    paths = plot_run_results(runs, tmp_path, fmt=fmt)
    assert [os.path.basename(p) for p in paths] == [f"q_depth.{fmt}", f"grad_depth.{fmt}"]
    for path in paths:
        assert_valid_figure(path, fmt)
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(p) for p in paths)


def test_single_run_and_names(runs, tmp_path):
    paths = plot_run_results(runs[:1], tmp_path)
    assert len(paths) == 2
    paths = plot_run_results(runs[:2], tmp_path / "named", names=["one", "two"])
    for path in paths:
        assert_valid_figure(path, "png")
    with pytest.raises(InputError, match="names for"):
        plot_run_results(runs[:2], tmp_path, names=["only one"])


@pytest.mark.parametrize("fmt", ["png", "svg", "pdf"])
def test_compare_figure_written(compare_dict, tmp_path, fmt):
    paths = plot_compare_result(compare_dict, tmp_path, fmt)
    assert [os.path.basename(p) for p in paths] == [f"compare.{fmt}"]
    assert_valid_figure(paths[0], fmt)


def test_dead_network_draws_gaps_not_numbers(dead_run, tmp_path):
    """null log10 values (JSON) and -inf (after from_dict) both plot, as gaps."""
    loaded = RunResult.from_dict(dead_run)
    as_loaded = {
        "kind": "run",
        "config": loaded.config,
        "layers": loaded.layers,
        "summary": loaded.summary,
    }
    assert any(row["log10_q"] == float("-inf") for row in as_loaded["layers"])
    for label, data in (("json", dead_run), ("loaded", as_loaded)):
        for path in plot_run_results([data], tmp_path / label):
            assert_valid_figure(path, "png")


def test_depth_one(tmp_path):
    result = run(depth=1, fan_in=8, batch=16, trials=4, scheme="gauss").to_dict()
    for path in plot_result_file_dict(result, tmp_path):
        assert_valid_figure(path, "png")


def test_each_figure_under_two_seconds(runs, compare_dict, tmp_path):
    plot_run_results(runs[:1], tmp_path / "warm")  # imports and font cache, once
    start = time.perf_counter()
    plot_run_results(runs, tmp_path / "run")
    per_figure = (time.perf_counter() - start) / 2
    start = time.perf_counter()
    plot_compare_result(compare_dict, tmp_path / "cmp")
    assert per_figure < 2.0
    assert time.perf_counter() - start < 2.0


# ------------------------------------------------------------------------------ results kept
def test_plotting_never_changes_results(runs, compare_dict, dead_run, tmp_path):
    for data in (*runs, compare_dict, dead_run):
        before = copy.deepcopy(data)
        text = json.dumps(data, allow_nan=False)
        plot_result_file_dict(data, tmp_path / data["kind"], "png")
        assert data == before
        assert json.dumps(data, allow_nan=False) == text


def test_rerun_after_plotting_gives_identical_json(tmp_path):
    first = run(scheme="xavier-normal", **SMALL)
    text = first.to_json()
    plot_run_results([first.to_dict()], tmp_path)
    assert first.to_json() == text
    assert run(scheme="xavier-normal", **SMALL).to_json() == text


def test_plotting_imports_no_pyplot(tmp_path, runs):
    """The library and CLI modules never import matplotlib; plotting never imports pyplot."""
    path = tmp_path / "r.json"
    path.write_text(json.dumps(runs[0]))
    code = (
        "import sys, json\n"
        "import propagate, propagate.cli, propagate.cli_plots, propagate.compare\n"
        "assert 'matplotlib' not in sys.modules, 'imported matplotlib too early'\n"
        "from propagate.plotting.run_plots import plot_result_file_dict\n"
        f"plot_result_file_dict(json.load(open({str(path)!r})), {str(tmp_path)!r})\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
    )
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONWARNINGS": "error"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr


# ------------------------------------------------------------------------------ dispatch
def test_dispatch_unknown_kind_is_one_line(runs, tmp_path):
    with pytest.raises(InputError) as info:
        plot_result_file_dict({**runs[0], "kind": "mystery"}, tmp_path)
    assert "\n" not in str(info.value) and "mystery" in str(info.value)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("kind", ["spectra", "sweep"])
def test_dispatch_delegates_spectra_and_sweep(kind, tmp_path, monkeypatch):
    calls = []

    def fake(result_dict, out_dir, fmt="png"):
        calls.append((result_dict["kind"], out_dir, fmt))
        return ["fake"]

    module = types.ModuleType(f"propagate.plotting.{kind}_plots")
    setattr(module, f"plot_{kind}_result", fake)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    assert plot_result_file_dict({"kind": kind}, str(tmp_path), "svg") == ["fake"]
    assert calls == [(kind, str(tmp_path), "svg")]


def test_bad_format_and_bad_input(runs, tmp_path):
    with pytest.raises(InputError, match="png, svg, pdf"):
        plot_run_results(runs, tmp_path, fmt="bmp")
    with pytest.raises(InputError):
        plot_run_results([], tmp_path)
    with pytest.raises(InputError, match="no per-layer"):
        plot_run_results([{**runs[0], "layers": []}], tmp_path)
    with pytest.raises(InputError, match="log10_q"):
        plot_run_results([{**runs[0], "layers": [{"layer": 1}]}], tmp_path)
    with pytest.raises(InputError, match="runs"):
        plot_compare_result({"kind": "compare"}, tmp_path)
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------------ atomic
def test_unwritable_folder_is_one_line_and_writes_nothing(runs, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for out in (blocker, blocker / "sub"):
        with pytest.raises(InputError) as info:
            plot_run_results(runs, out)
        assert "\n" not in str(info.value)
    assert sorted(os.listdir(tmp_path)) == ["a-file"]
    assert blocker.read_text() == "not a folder"


def test_atomic_savefig_leaves_nothing_half_written(tmp_path):
    class Failing:
        def savefig(self, fh, **kwargs):
            fh.write(b"\x89PNG half")
            raise OSError(28, "No space left on device")

    class Broken:
        def savefig(self, fh, **kwargs):
            fh.write(b"partial")
            raise RuntimeError("renderer failed")

    target = tmp_path / "fig.png"
    target.write_bytes(b"old complete figure")
    with pytest.raises(InputError, match="No space left"):
        atomic_savefig(Failing(), str(target))
    with pytest.raises(RuntimeError):
        atomic_savefig(Broken(), str(target))
    assert target.read_bytes() == b"old complete figure"
    assert os.listdir(tmp_path) == ["fig.png"]
    assert no_temporary_files(str(tmp_path))
