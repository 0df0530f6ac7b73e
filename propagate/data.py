"""Input data: a .npy/.npz array of shape (samples, features), or a data set a package ships.

Files are read with ``allow_pickle=False``: an object array (which needs pickle) is refused
with a one-line error instead of being executed. Features are standardised to zero mean and
unit variance (constant features stay 0) unless asked not to.
"""

from __future__ import annotations

import math
import os
import zipfile
from dataclasses import dataclass

import numpy as np

from .errors import InputError

__all__ = ["Dataset", "load_data", "standardize", "BUILTIN_DATASETS"]

BUILTIN_DATASETS = ("digits",)


@dataclass(frozen=True)
class Dataset:
    """A fixed input matrix.

    Attributes:
        x: (samples, features) float64 inputs (standardised unless ``standardized`` is False).
        labels: (samples,) integer class labels, or None when the source has none.
        name: where it came from (file path or built-in name).
        standardized: whether features were standardised.
    """

    x: np.ndarray
    labels: np.ndarray | None
    name: str
    standardized: bool

    @property
    def n_samples(self) -> int:
        return int(self.x.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.x.shape[1])

    @property
    def n_classes(self) -> int | None:
        return None if self.labels is None else int(self.labels.max()) + 1


def standardize(x: np.ndarray) -> np.ndarray:
    """Per-feature (x - mean) / std over samples; features with zero spread become 0.

    Each feature is first divided by its largest magnitude (the result is the same), so values
    near 1e300 or 1e-320 neither overflow nor underflow.
    """
    peak = np.max(np.abs(x), axis=0)
    x = x / np.where(peak > 0, peak, 1.0)
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    centred = x - mean
    safe = np.where(std > 0, std, 1.0)
    return np.where(std > 0, centred / safe, 0.0)


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise InputError(
            "--data digits needs scikit-learn, which ships the data set: "
            "pip install 'propagate-init[data]' (from a checkout: pip install '.[data]')"
        ) from None
    bunch = load_digits()
    return np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target, dtype=np.int64)


def _load_file(path: str) -> tuple[np.ndarray, np.ndarray | None]:
    if not os.path.exists(path):
        raise InputError(
            f"--data {path!r}: no such file; give a .npy/.npz file or one of: "
            + ", ".join(BUILTIN_DATASETS)
        )
    if os.path.isdir(path):
        raise InputError(f"--data {path!r} is a directory; give a .npy or .npz file")
    labels = None
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
    except OSError as exc:
        raise InputError(f"--data {path!r} cannot be read: {exc.strerror or exc}") from None
    if magic != b"\x93NUMPY" and not magic.startswith(b"PK"):
        # np.load would treat anything else as a pickle: say what it really is
        raise InputError(f"--data {path!r} is not a readable .npy/.npz file (no NumPy header)")
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise InputError(
                f"--data {path!r} holds a pickled object array, which is refused for safety; "
                "save a plain numeric array"
            ) from None
        raise InputError(f"--data {path!r} is not a readable .npy/.npz file ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"--data {path!r} is not a readable .npy/.npz file ({exc})") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            keys = list(loaded.files)
            key = next((k for k in ("x", "X", "data", "inputs") if k in keys), None)
            if key is None and len(keys) == 1:
                key = keys[0]
            if key is None:
                raise InputError(
                    f"--data {path!r}: cannot tell which array holds the inputs among "
                    f"{keys}; name it 'x' (labels, if any, 'y')"
                )
            array = _npz_array(loaded, key, path)
            label_key = next((k for k in ("y", "labels", "target") if k in keys and k != key), None)
            if label_key is not None:
                labels = _check_labels(_npz_array(loaded, label_key, path), path, label_key)
    else:
        array = loaded
    return array, labels


def _npz_array(loaded, name: str, path: str) -> np.ndarray:
    """One array of an .npz, refusing (one line) an array that would need pickle."""
    try:
        return loaded[name]
    except ValueError:
        raise InputError(
            f"--data {path!r}: array {name!r} needs pickle, which is refused for safety; save "
            "plain numeric arrays"
        ) from None


MAX_CLASSES = 100_000


def _check_labels(value: np.ndarray, path: str, key: str) -> np.ndarray:
    """Class labels as int64: whole numbers 0 .. MAX_CLASSES - 1, at least two classes."""
    where = f"--data {path!r}: labels {key!r}"
    if value.ndim != 1:
        raise InputError(f"{where} have shape {value.shape}; one label per sample is needed")
    if value.dtype.kind not in "biuf":
        raise InputError(f"{where} hold {value.dtype} values; whole numbers 0, 1, ... are needed")
    numbers = value.astype(np.float64)
    bad = ~np.isfinite(numbers) | (numbers != np.round(numbers)) | (numbers < 0)
    bad |= numbers >= MAX_CLASSES
    if np.any(bad):
        first = value[np.argmax(bad)].item()
        raise InputError(
            f"{where} hold {first!r}; labels are whole numbers from 0 to {MAX_CLASSES - 1}"
        )
    labels = numbers.astype(np.int64)
    if labels.size and labels.max() < 1:
        raise InputError(f"{where} are all 0; a softmax needs labels of at least two classes")
    return labels


def load_data(source: str, *, standardize_features: bool = True) -> Dataset:
    """Load inputs from a file path or a built-in name (``digits``).

    Args:
        source: ``digits`` (scikit-learn's 8x8 handwritten digits, 1797 x 64) or a path to a
            .npy/.npz file holding a (samples, features) numeric array.
        standardize_features: standardise each feature to mean 0, variance 1.

    Raises:
        InputError: missing or unreadable file, pickled content, non-numeric or non-finite
            values, wrong number of dimensions, empty array.
    """
    if source.strip().lower() in BUILTIN_DATASETS:
        array, labels = _load_digits()
        name = source.strip().lower()
    else:
        array, labels = _load_file(source)
        name = source
    if array.dtype.kind not in "biuf":
        raise InputError(
            f"--data {name!r} holds {array.dtype} values; a numeric (int, float or bool) array "
            "is needed"
        )
    if array.ndim != 2:
        raise InputError(
            f"--data {name!r} has shape {array.shape}; expected 2 dimensions (samples, features)"
        )
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise InputError(f"--data {name!r} has shape {array.shape}; it holds no values")
    x = np.asarray(array, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        raise InputError(f"--data {name!r} holds {bad} NaN or infinite values; clean them first")
    if labels is not None and labels.shape != (x.shape[0],):
        raise InputError(
            f"--data {name!r}: the labels have shape {labels.shape}; one per sample, "
            f"({x.shape[0]},), is needed"
        )
    if standardize_features:
        x = standardize(x)
        if not np.any(x):
            raise InputError(
                f"--data {name!r}: after standardising every value is 0 (a single sample, or "
                "no feature varies); use more samples or --no-standardize"
            )
    elif not np.any(x):
        raise InputError(f"--data {name!r} holds only zeros; there is no signal to propagate")
    if not math.isfinite(float(np.max(np.abs(x)))):
        raise InputError(f"--data {name!r} overflows float64 after standardisation")
    return Dataset(x=x, labels=labels, name=name, standardized=standardize_features)
