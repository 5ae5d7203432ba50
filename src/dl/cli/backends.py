"""Which deep-learning frameworks are installed, and their :mod:`dl.lm` models."""

from __future__ import annotations

import importlib
import importlib.util

from dl.errors import InputError

PREFERENCE = ("torch", "tensorflow", "jax")
IMPLS = ("scratch", "concise")  # the book's cells in array ops; the framework's own layers
# (backend, implementation), fastest first for the seed's LSTM on a CPU, as `dl bench
# --impl scratch,concise` measures it (the figures: README, "Implementations and backends")
FASTEST = (
    ("torch", "concise"),
    ("tensorflow", "scratch"),
    ("jax", "scratch"),
    ("jax", "concise"),
    ("torch", "scratch"),
    ("tensorflow", "concise"),
)
# the cells each framework's own layers compute in the book's form (torch's GRU differs)
CONCISE_CELLS = {
    "torch": ("rnn", "lstm"),
    "tensorflow": ("rnn", "gru", "lstm"),
    "jax": ("rnn", "gru", "lstm"),
}
_NEEDS = {"tensorflow": ("tensorflow", "tf_keras"), "jax": ("jax",), "torch": ("torch",)}


class BackendError(InputError):
    """A backend was asked for that is not installed."""


def installed() -> list[str]:
    """The backends whose packages are importable, in order of preference."""
    return [
        name
        for name in PREFERENCE
        if all(importlib.util.find_spec(package) for package in _NEEDS[name])
    ]


def choose(name: str | None) -> str:
    """``name`` if installed; ``None`` -> the fastest installed backend."""
    available = installed()
    if not available:
        raise BackendError(
            "no deep-learning framework is installed; install one with "
            "`pip install 'dl-rnn[torch]'` (or tensorflow, jax)"
        )
    if name is None:
        return available[0]
    if name not in PREFERENCE:
        raise BackendError(f"backend {name!r} is not one of {', '.join(PREFERENCE)}")
    if name not in available:
        raise BackendError(
            f"backend {name!r} is not installed here (installed: "
            f"{', '.join(available)}); install it with "
            f"`pip install 'dl-rnn[{name}]'`"
        )
    return name


def computes(backend: str, impl: str, cell: str, output_tanh: bool = True) -> bool:
    """Whether ``impl`` of ``backend`` computes the book's ``cell``: the scratch cells always;
    the framework's own layers the cells of :data:`CONCISE_CELLS`, never without output tanh."""
    return impl == "scratch" or (output_tanh and cell in CONCISE_CELLS[backend])


def choose_model(
    name: str | None, impl: str | None, cell: str, output_tanh: bool = True
) -> tuple[str, str]:
    """``(backend, impl)`` for a model: what was asked, the rest filled in with the fastest
    installed pair (:data:`FASTEST`) that computes it: the framework's own layers
    (``'concise'``) compute the book's cells but torch's GRU, and never an LSTM without the
    output tanh; ``'scratch'`` computes every model."""
    backend, available = choose(name), installed()  # checks the name
    for option, candidate in FASTEST:
        if (
            name in (None, option)
            and impl in (None, candidate)
            and option in available
            and computes(option, candidate, cell, output_tanh)
        ):
            return option, candidate
    return backend, impl  # asked for what no layer computes: the model says why


def model_class(name: str, impl: str = "scratch"):
    """Backend ``name``'s model class (imports the framework): ``LanguageModel`` for the
    scratch implementation, ``LayersModel`` (the framework's own layers) for ``'concise'``."""
    module = importlib.import_module(f"dl.{choose(name)}.lm")
    return {"scratch": module.LanguageModel, "concise": module.LayersModel}[impl]


def collective_timeout(seconds: float) -> None:
    """JAX's collectives (several devices or processes) wait ``seconds`` before they give up
    (:func:`dl.jax.engine.collective_timeout`); call before JAX starts."""
    from dl.jax.engine import collective_timeout as set_timeout

    set_timeout(seconds)
