"""Which deep-learning frameworks are installed, and their :mod:`dl.lm` models."""

from __future__ import annotations

import importlib
import importlib.util

PREFERENCE = ("torch", "tensorflow", "jax")
# fastest first, per implementation: the seed's LSTM on 2 CPU cores (README, "Speed of dl train")
FASTEST = {"concise": ("torch", "jax", "tensorflow"), "scratch": ("jax", "tensorflow", "torch")}
# the cells each framework's own layers compute in the book's form (torch's GRU differs)
CONCISE_CELLS = {"torch": ("rnn", "lstm"), "tensorflow": ("rnn", "gru", "lstm"),
                 "jax": ("rnn", "gru", "lstm")}
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


def choose_model(name: str | None, impl: str | None, cell: str,
                 output_tanh: bool = True) -> tuple[str, str]:
    """``(backend, impl)`` for a model: what was asked, the rest filled in with the fastest
    installed choice that computes it. ``impl=None`` means the framework's own layers where
    they compute the model (``'concise'``), else ``'scratch'``."""
    backend = choose(name)  # checks the name; the fastest installed if None
    impls = [impl] if impl else ["concise", "scratch"]
    for candidate in impls:
        names = [name] if name else [n for n in FASTEST[candidate] if n in installed()]
        for option in names:
            if candidate == "scratch" or (output_tanh and cell in CONCISE_CELLS[option]):
                return option, candidate
    return backend, impls[-1]  # asked for what no layer computes: the model says why


def model_class(name: str, impl: str = "scratch"):
    """Backend ``name``'s model class (imports the framework): ``LanguageModel`` for the
    scratch implementation, ``LayersModel`` (the framework's own layers) for ``'concise'``."""
    module = importlib.import_module(f"dl.{choose(name)}.lm")
    return module.LayersModel if impl == "concise" else module.LanguageModel
