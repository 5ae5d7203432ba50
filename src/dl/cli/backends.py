"""Which deep-learning frameworks are installed, and their :mod:`dl.lm` models."""

from __future__ import annotations

import importlib
import importlib.util

# fastest first: `dl train` on CPU ran at 30k (torch), 20k (tensorflow), 17k (jax) tokens/s (README)
PREFERENCE = ("torch", "tensorflow", "jax")
_NEEDS = {"tensorflow": ("tensorflow", "tf_keras"), "jax": ("jax",), "torch": ("torch",)}


class BackendError(ValueError):
    """A backend was asked for that is not installed."""


def installed() -> list[str]:
    """The backends whose packages are importable, in order of preference."""
    return [name for name in PREFERENCE
            if all(importlib.util.find_spec(package) for package in _NEEDS[name])]


def choose(name: str | None) -> str:
    """``name`` if installed; ``None`` -> the fastest installed backend."""
    available = installed()
    if not available:
        raise BackendError("no deep-learning framework is installed; install one with "
                           "`pip install 'dl-rnn[torch]'` (or tensorflow, jax)")
    if name is None:
        return available[0]
    if name not in PREFERENCE:
        raise BackendError(f"backend {name!r} is not one of {', '.join(PREFERENCE)}")
    if name not in available:
        raise BackendError(f"backend {name!r} is not installed here (installed: "
                           f"{', '.join(available)}); install it with "
                           f"`pip install 'dl-rnn[{name}]'`")
    return name


def model_class(name: str, impl: str = "scratch"):
    """Backend ``name``'s model class (imports the framework): ``LanguageModel`` for the
    scratch implementation, ``LayersModel`` (the framework's own layers) for ``'concise'``."""
    module = importlib.import_module(f"dl.{choose(name)}.lm")
    return module.LayersModel if impl == "concise" else module.LanguageModel
