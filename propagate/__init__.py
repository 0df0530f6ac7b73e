"""propagate: signal propagation in deep ReLU networks at initialization.

Measurement beside closed-form theory: many independent networks pushed forward and backward
in NumPy (log domain, exact at any depth), per-layer statistics next to their predictions.

>>> import propagate
>>> result = propagate.run(depth=30, fan_in=64, scheme="gauss", trials=20)  # doctest: +SKIP
>>> result.summary["verdict"]  # doctest: +SKIP
'vanishing'
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("propagate-init")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.1.0"
del PackageNotFoundError, version

from .errors import InputError  # noqa: E402

__all__ = ["run", "RunResult", "load_result", "InputError", "__version__"]

_LAZY = {"run": "api", "RunResult": "results", "load_result": "results"}


def __getattr__(name: str):
    """Import the public API on first use, so ``propagate --help`` starts fast."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'propagate' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
