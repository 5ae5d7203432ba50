"""Argument checks whose messages name the argument and the accepted range."""

import math
import numbers

from dl.errors import InputError


def parse_device(name: str | None) -> tuple[str, int | None]:
    """``(kind, index)`` of a device name: ``None`` -> ``('gpu', None)`` (a GPU if there is
    one, else the CPU), ``'cpu'`` -> ``('cpu', 0)``, ``'gpu'``/``'cuda'`` -> ``('gpu', 0)``,
    ``'gpu:N'``/``'cuda:N'`` -> ``('gpu', N)``."""
    if name is None:
        return "gpu", None
    if name in ("gpu", "cuda"):
        return "gpu", 0
    kind, _, index = name.partition(":")
    if kind == "cpu" and index in ("", "0"):
        return "cpu", 0
    if kind in ("gpu", "cuda") and index.isdigit():
        return "gpu", int(index)
    raise InputError(f"device {name!r}: give cpu, gpu, gpu:N or cuda:N")


def check_gpu(name: str | None, index: int, count: int, framework: str) -> None:
    """Raise InputError naming the device unless GPU ``index`` is one of ``count``."""
    if index >= count:
        raise InputError(
            f"device {name!r}: {framework} sees {count} GPU(s) here; use "
            f"--device cpu{' or gpu:0' if count else ''}"
        )


def check_positive(name: str, value, allow_zero: bool = False, integer: bool = False) -> None:
    """Raise InputError naming ``name`` unless ``value`` is a positive (or >= 0) finite number."""
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        raise InputError(f"{name} must be {'an integer' if integer else 'a number'}, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero) or not math.isfinite(value):
        bound = ">= 0" if allow_zero else "> 0"
        raise InputError(f"{name} must be {bound}, got {value!r}")
