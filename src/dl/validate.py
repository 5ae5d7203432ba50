"""Argument checks whose messages name the argument and the accepted range."""

import math
import numbers


def check_positive(name: str, value, allow_zero: bool = False, integer: bool = False) -> None:
    """Raise ValueError naming ``name`` unless ``value`` is a positive (or >= 0) finite number."""
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"{name} must be {'an integer' if integer else 'a number'}, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero) or not math.isfinite(value):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
