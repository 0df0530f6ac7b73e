"""Result objects and their JSON/CSV round-trip; atomic writes.

JSON has no infinities: a log10 value of an exact zero (a dead network) is written as null and
read back as -inf. Every other number is finite by construction.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

from .errors import InputError

__all__ = [
    "RunResult",
    "atomic_write",
    "check_csv_target",
    "check_format_version",
    "save_outputs",
    "check_output_file",
    "load_result",
    "FORMAT_VERSION",
    "jsonable",
]

FORMAT_VERSION = 1


def jsonable(value: Any) -> Any:
    """Nested copy with non-finite floats as None and numpy scalars/arrays as Python values."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, str):
        return jsonable(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


def _restore(value: Any, key: str = "") -> Any:
    """Inverse of ``jsonable`` for log fields: null log10 values become -inf."""
    if isinstance(value, dict):
        return {k: _restore(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore(v, key) for v in value]
    if value is None and key.startswith("log10_"):
        return -math.inf
    return value


def check_format_version(data: dict, what: str) -> None:
    """Refuse (one line) a saved result written in another format version."""
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise InputError(
            f"{what} has format_version {version!r}; this propagate reads version {FORMAT_VERSION}"
        )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_output_file(path: str, option: str = "output") -> str:
    """The real path a result may be written to, or a one-line InputError.

    Only regular files are ever replaced: a device, folder, socket or pipe at ``path`` is
    refused; a symbolic link is followed, so its target is what gets replaced.
    """
    if not isinstance(path, str) or not path.strip():
        raise InputError(f"{option} {path!r} is not a file path")
    real = os.path.realpath(path)
    if os.path.exists(real) and not os.path.isfile(real):
        raise InputError(f"{option} {path!r} exists and is not a regular file; give a file path")
    folder = os.path.dirname(real)
    while not os.path.exists(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)  # the nearest existing ancestor must be a folder
    if not os.path.isdir(folder):
        raise InputError(f"{option} {path!r}: {folder!r} is not a folder")
    # found before the run, not after it: access(2) also reports a read-only file system
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(
            f"{option} {path!r}: cannot write in {folder!r} (no permission or read-only); give "
            "a writable path"
        )
    return real


def check_csv_target(
    csv_path: str | None = None,
    out_dir: str | None = None,
    plot_dir: str | None = None,
    out_files: tuple[str, ...] = ("results.json", "results.csv"),
) -> None:
    """Refuse, before anything runs, a --csv file that cannot be written
    (:func:`check_output_file`), would overwrite what --out writes (``out_files`` and anything
    inside ``out_dir``'s sub-folders) or names the --plot folder."""
    if csv_path is None:
        return
    csv = check_output_file(csv_path, "--csv")
    if out_dir is not None:
        out = os.path.realpath(out_dir)
        if (
            csv == out
            or csv in {os.path.join(out, name) for name in out_files}
            or (os.path.dirname(csv) != out and csv.startswith(out + os.sep))
        ):
            raise InputError(
                f"--csv {csv_path!r} would overwrite what --out {out_dir!r} writes; give "
                "another file"
            )
    if plot_dir is not None and csv == os.path.realpath(plot_dir):
        raise InputError(f"--csv {csv_path!r} is also the --plot folder; give another file")


def atomic_write(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder, then rename.

    Nothing is left half-written: either the old file (or none) or the complete new one exists.
    Only a regular file (or a link to one) is ever replaced.
    """
    _write_all([(path, text)])


def _write_all(files: list[tuple[str, str]]) -> None:
    """Write every (path, text) to a temporary file beside its target, and only once all are
    complete rename them into place: a failure on any leaves every old file as it was."""
    staged: list[tuple[str, str]] = []
    try:
        for path, text in files:
            path = check_output_file(path)
            staged.append((_stage(path, text), path))
        for tmp, path in staged:
            try:
                os.replace(tmp, path)
            except OSError as exc:
                raise InputError(f"cannot write {path!r}: {exc.strerror or exc}") from None
    finally:
        for tmp, _ in staged:
            if os.path.exists(tmp):
                os.unlink(tmp)


def _stage(path: str, text: str) -> str:
    """``text`` in a new temporary file in ``path``'s folder (created if missing); its name."""
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    except OSError as exc:
        raise InputError(f"cannot write to {folder!r}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            fh.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
    except OSError as exc:
        os.unlink(tmp)
        raise InputError(f"cannot write {path!r}: {exc.strerror or exc}") from None
    return tmp


def save_outputs(result, out_dir: str | None = None, csv_path: str | None = None) -> list[str]:
    """Write ``results.json`` and ``results.csv`` into ``out_dir`` and/or the CSV to
    ``csv_path``, all or none (see ``_write_all``); returns the paths written, in order.

    ``result`` is any result object with ``to_json()`` and ``to_csv()``.
    """
    files = []
    if out_dir is not None:
        files += [
            (os.path.join(out_dir, "results.json"), result.to_json),
            (os.path.join(out_dir, "results.csv"), result.to_csv),
        ]
    if csv_path is not None:
        files.append((csv_path, result.to_csv))
    _write_all([(path, text()) for path, text in files])
    return [path for path, _ in files]


@dataclass
class RunResult:
    """What ``propagate run`` measured and predicted.

    Attributes:
        config: every resolved parameter (scheme, distribution, per-layer weight variance, seed,
            package version, ...).
        layers: one dict per layer (1-based ``layer``), see README for the fields.
        summary: verdict, per-layer factor, recommended std, input gradient, head, warnings.
    """

    config: dict
    layers: list[dict]
    summary: dict
    kind: str = "run"
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = {
            "format": "propagate-results",
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "config": self.config,
            "layers": self.layers,
            "summary": self.summary,
        }
        out.update(self.extra)
        return jsonable(out)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def to_csv(self) -> str:
        """One row per layer with every scalar layer field."""
        buf = io.StringIO()
        rows = jsonable(self.layers)
        names: list[str] = []
        for row in rows:
            for key, value in row.items():
                if key not in names and not isinstance(value, dict | list):
                    names.append(key)
        writer = csv.DictWriter(buf, fieldnames=names, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in names})
        return buf.getvalue()

    @classmethod
    def from_dict(cls, data: dict) -> RunResult:
        if not isinstance(data, dict) or data.get("format") != "propagate-results":
            raise InputError("not a propagate results file (no 'format: propagate-results')")
        check_format_version(data, "results file")
        restored = _restore(data)
        known = {"format", "format_version", "kind", "config", "layers", "summary"}
        try:
            return cls(
                config=restored["config"],
                layers=restored["layers"],
                summary=restored["summary"],
                kind=restored.get("kind", "run"),
                extra={k: v for k, v in restored.items() if k not in known},
            )
        except KeyError as exc:
            raise InputError(f"results file lacks the {exc.args[0]!r} section") from None


def load_result(path: str) -> RunResult:
    """Read a results.json written by ``propagate``; one-line InputError when it is not one."""
    try:
        with open(path) as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise InputError(f"{path!r}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path!r} cannot be read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path!r} is not valid JSON (line {exc.lineno}): corrupt file?") from None
    except (RecursionError, TypeError, ValueError):
        raise InputError(f"{path!r} is not a propagate results file") from None
    return RunResult.from_dict(data)
