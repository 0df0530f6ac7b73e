"""Figures: the only place that imports matplotlib (a leaf: it reads result dicts and draws).

Modules: ``run_plots`` (q_l and gradients against depth; the ``propagate plot`` dispatcher),
``spectra_plots`` and ``sweep_plots``. They build ``matplotlib.figure.Figure`` objects directly
(no pyplot global state) and save them with :func:`atomic_savefig`.
"""

from __future__ import annotations

import os
import tempfile

from ..errors import InputError


def atomic_savefig(fig, path: str, **savefig_kwargs) -> str:
    """Save ``fig`` to ``path`` through a temporary file in the same folder, then rename.

    The format is the extension of ``path`` (png, svg, pdf). Either the complete figure or no
    new file exists afterwards. An output folder that cannot be written raises a one-line
    :class:`~propagate.errors.InputError`. Returns ``path``.
    """
    folder = os.path.dirname(os.path.abspath(path))
    fmt = os.path.splitext(path)[1].lstrip(".").lower() or "png"
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=f".{fmt}", dir=folder)
    except OSError as exc:
        raise InputError(f"cannot write to {folder!r}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format=fmt, **savefig_kwargs)
        umask = os.umask(0o22)  # mkstemp makes 0600 files; give the figure the usual mode
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise InputError(f"cannot write {path!r}: {exc.strerror or exc}") from None
        raise
    return path
