"""Data loading: files, the digits set, standardisation and every way a file can be wrong."""

from __future__ import annotations

import json

import numpy as np
import pytest

from propagate.cli import main
from propagate.data import load_data, standardize
from propagate.errors import InputError


def test_standardize_keeps_constant_features_zero():
    x = np.array([[1.0, 5.0, 2.0], [3.0, 5.0, 4.0], [5.0, 5.0, 9.0]])
    z = standardize(x)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-15)
    np.testing.assert_allclose(z.std(axis=0), [1.0, 0.0, 1.0], atol=1e-15)
    assert np.all(z[:, 1] == 0)


def test_npy_and_npz_load(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(50, 6))
    np.save(tmp_path / "a.npy", x)
    np.savez(tmp_path / "b.npz", x=x, y=np.arange(50) % 3)
    a = load_data(str(tmp_path / "a.npy"))
    b = load_data(str(tmp_path / "b.npz"))
    np.testing.assert_allclose(a.x, standardize(x), rtol=1e-12)
    np.testing.assert_array_equal(a.x, b.x)
    assert b.n_classes == 3 and a.labels is None
    raw = load_data(str(tmp_path / "a.npy"), standardize_features=False)
    np.testing.assert_array_equal(raw.x, x)


def _bad_files(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    np.save(tmp_path / "nan.npy", np.array([[1.0, np.nan], [0.0, 1.0]]))
    np.save(tmp_path / "str.npy", np.array([["a", "b"]]))
    np.save(tmp_path / "3d.npy", np.zeros((2, 2, 2)))
    (tmp_path / "junk.npy").write_bytes(b"not numpy at all")
    np.savez(tmp_path / "two.npz", a=np.zeros((2, 2)), b=np.zeros((2, 2)))
    x = np.arange(8.0).reshape(4, 2)
    bad_labels = {
        "neg.npz": ([0, 1, -1, 2], "hold -1"),
        "frac.npz": ([0, 1.5, 1, 2], "hold 1.5"),
        "nan.npz": ([0, np.nan, 1, 2], "hold nan"),
        "huge.npz": ([0, 1e9, 1, 2], "from 0 to 99999"),
        "str.npz": (["a", "b", "a", "b"], "whole numbers"),
        "short.npz": ([0, 1, 1], r"one per sample, \(4,\)"),
        "flat.npz": ([[0, 1], [1, 0], [0, 1], [1, 0]], "one label per sample"),
        "zeros.npz": ([0, 0, 0, 0], "at least two classes"),
    }
    for name, (y, _) in bad_labels.items():
        np.savez(tmp_path / name, x=x, y=np.array(y))
    np.savez(tmp_path / "objy.npz", x=x, y=np.array([{}, 1, 2, 3], dtype=object))
    return {
        **{name: needle for name, (_, needle) in bad_labels.items()},
        "objy.npz": "array 'y' needs pickle",
        "obj.npy": "pickle",
        "nan.npy": "NaN",
        "str.npy": "numeric",
        "3d.npy": "2 dimensions",
        "junk.npy": "not a readable",
        "two.npz": "which array",
        "missing.npy": "no such file",
    }


def test_every_bad_file_gets_a_one_line_error(tmp_path):
    for name, needle in _bad_files(tmp_path).items():
        with pytest.raises(InputError, match=needle):
            load_data(str(tmp_path / name))


def test_bad_files_exit_2_from_the_cli(tmp_path, capsys):
    for name in _bad_files(tmp_path):
        with pytest.raises(SystemExit) as info:
            main(["run", "--depth", "2", "--fan-in", "2", "--data", str(tmp_path / name)])
        err = capsys.readouterr().err
        assert info.value.code == 2 and len(err.strip().splitlines()) == 1, name


def test_wrong_width_names_both_widths(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(10, 13)))
    with pytest.raises(SystemExit) as info:
        main(["run", "--depth", "2", "--fan-in", "64", "--data", str(tmp_path / "x.npy")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "13 features" in err and "64" in err


def test_digits_main_job(capsys):
    pytest.importorskip("sklearn")
    with pytest.raises(SystemExit) as info:
        main(
            [
                "run",
                "--depth",
                "30",
                "--fan-in",
                "64",
                "--scheme",
                "gauss",
                "--data",
                "digits",
                "--trials",
                "10",
                "--batch",
                "5000",
                "--json",
            ]
        )
    assert info.value.code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["config"]["data"] == "digits" and data["config"]["batch"] == 1797
    # all 1797 standardised digits: 61 of 64 features vary, so m_0 = 61/64 exactly
    assert data["summary"]["log10_m0"] == pytest.approx(np.log10(61 / 64), abs=1e-12)
    assert data["summary"]["verdict"] == "vanishing"


def test_softmax_classes_must_cover_the_labels(tmp_path, capsys):
    np.savez(
        tmp_path / "d.npz", x=np.random.default_rng(0).normal(size=(30, 4)), y=np.arange(30) % 5
    )
    args = ["run", "--depth", "2", "--fan-in", "4", "--data", str(tmp_path / "d.npz")]
    with pytest.raises(SystemExit) as info:
        main([*args, "--head", "softmax", "--classes", "3", "--json"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "fewer than the 5 classes" in err
    with pytest.raises(SystemExit) as info:
        main([*args, "--head", "softmax", "--json"])
    assert info.value.code == 0
    assert json.loads(capsys.readouterr().out)["summary"]["head"]["classes"] == 5
