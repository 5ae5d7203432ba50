"""Framework-neutral checkpoints: float32 weights in safetensors plus their description in JSON.

A checkpoint named ``stem`` in a run directory is two files:

- ``stem.safetensors``: the parameters under their canonical names (those of the book's scratch
  code, see :mod:`dl.lm`), float32, with the whole description embedded in the file's header,
  and where given the optimizer's state under its canonical ``opt.`` names (:mod:`dl.optim`),
  so that weights and moments are always of the same step, and for a checkpoint taken in the
  middle of an epoch the recurrent state carried into the next batch (``state.0``,
  ``state.1``, ... : the backend's state tensors in order, see :func:`dl.train.state_arrays`);
- ``stem.json``: the same description, readable (format version, model configuration,
  tokenizer and vocabulary, training configuration, data fingerprint, epoch, metrics).

The weights file is the one that loads, so a checkpoint is written with a single atomic
rename and can never be half old and half new; the JSON is written after it as a copy for
people and tools. Nothing is pickled.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from dl import optim
from dl.errors import InputError
from dl.files import atomic_write

FORMAT = "dl-checkpoint"
FORMAT_VERSION = 1
_META_KEY = "dl"
STATE_PREFIX = "state."  # the carried recurrent state of a checkpoint taken mid-epoch


class CheckpointError(InputError):
    """A checkpoint is missing, truncated, foreign or from a newer version of dl."""


def weights_path(directory: str | os.PathLike, stem: str = "model") -> Path:
    return Path(directory) / f"{stem}.safetensors"


def exists(directory: str | os.PathLike, stem: str = "model") -> bool:
    return weights_path(directory, stem).is_file()


def save(
    directory: str | os.PathLike,
    params: dict[str, np.ndarray],
    meta: dict,
    stem: str = "model",
    optimizer_state: dict[str, np.ndarray] | None = None,
    carried_state: list[np.ndarray] | None = None,
) -> Path:
    """Write ``params`` (name -> array, stored as float32), ``optimizer_state`` (``opt.``
    names, :mod:`dl.optim`), ``carried_state`` (``state.0``, ...) and ``meta`` (JSON-able)
    atomically, in one file.

    Returns the path of the weights file. ``meta`` gets the keys ``format`` and
    ``format_version``.
    """
    from safetensors.numpy import save as to_safetensors

    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, **meta}
    text = json.dumps(meta, indent=2, sort_keys=True, allow_nan=True)
    tensors = {
        name: np.array(value, dtype=np.float32, order="C")
        for name, value in {
            **params,
            **(optimizer_state or {}),
            **{f"{STATE_PREFIX}{i}": a for i, a in enumerate(carried_state or ())},
        }.items()
    }
    path = weights_path(directory, stem)
    atomic_write(path, to_safetensors(tensors, metadata={_META_KEY: text}))
    atomic_write(path.with_suffix(".json"), text + "\n")
    return path


def load(directory: str | os.PathLike, stem: str = "model") -> tuple[dict[str, np.ndarray], dict]:
    """``(params, meta)`` of the checkpoint ``stem`` in ``directory``; raises
    :class:`CheckpointError` naming the file when it is missing, truncated, foreign or newer."""
    params, _, meta = load_with_optimizer(directory, stem)
    return params, meta


def load_with_optimizer(
    directory: str | os.PathLike, stem: str = "model"
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict]:
    """``(params, optimizer_state, meta)``, as :func:`load`; the state is empty where the
    checkpoint holds none."""
    params, optimizer_state, _, meta = load_run(directory, stem)
    return params, optimizer_state, meta


def load_run(
    directory: str | os.PathLike, stem: str = "model"
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], list[np.ndarray], dict]:
    """``(params, optimizer_state, carried_state, meta)``, as :func:`load_with_optimizer`;
    ``carried_state`` is empty unless the checkpoint was taken in the middle of an epoch."""
    from safetensors import SafetensorError
    from safetensors.numpy import load as from_safetensors

    path = weights_path(directory, stem)
    if not path.is_file():
        raise CheckpointError(
            f"{path}: no checkpoint there; train one with `dl train --out "
            f"{Path(directory)}` or check the run directory"
        )
    data = path.read_bytes()
    try:
        params = from_safetensors(data)
        header = _header(data)
    except (SafetensorError, ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(
            f"{path}: not a readable safetensors file ({err}); the file is "
            "truncated or damaged, train again or restore it"
        ) from None
    meta = _meta_of(path, header.get("__metadata__", {}))
    params, optimizer_state = optim.split(params)
    count = sum(name.startswith(STATE_PREFIX) for name in params)
    carried = [params.pop(f"{STATE_PREFIX}{i}") for i in range(count)]
    return params, optimizer_state, carried, meta


def _header(data: bytes) -> dict:
    """The JSON header of a safetensors file (its first 8 bytes give the header's length)."""
    size = int.from_bytes(data[:8], "little")
    if len(data) < 8 or size > len(data) - 8:
        raise ValueError("header runs past the end of the file")
    return json.loads(data[8 : 8 + size].decode("utf-8"))


def _meta_of(path: Path, metadata: dict) -> dict:
    if _META_KEY not in metadata:
        raise CheckpointError(
            f"{path}: a safetensors file not written by dl (no '{_META_KEY}' "
            "description in its header); dl loads only its own checkpoints"
        )
    try:
        meta = json.loads(metadata[_META_KEY])
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: its description is not valid JSON ({err})") from None
    found = meta.get("format") if isinstance(meta, dict) else None
    if found != FORMAT:
        raise CheckpointError(
            f"{path}: not a dl checkpoint (format {found!r} where {FORMAT!r} was expected)"
        )
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: written in checkpoint format {version!r}, newer than "
            f"this dl reads ({FORMAT_VERSION}); upgrade with "
            "`pip install -U dl-rnn`"
        )
    return meta
