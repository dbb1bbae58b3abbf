"""Argument checks shared by every module: one place for "must be a whole number" and friends.

Each check returns the value in its plain Python type or raises ``ValueError`` naming the
argument, the value and what was expected, so a student's typo reads as a sentence.
"""

from __future__ import annotations

import math
import numbers
from typing import Any


def whole_number(value: Any, argument: str, *, low: int = 1, high: int | None = None, hint: str = "") -> int:
    """``value`` as an ``int`` in ``[low, high]``; booleans and floats are refused.

    ``hint`` is appended to the message (for example ``" (the longer side in pixels)"``).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low or (high is not None and value > high):
        if high is not None:
            bound = f"between {low} and {high}"
        elif low == 1:
            bound = "positive"
        else:
            bound = f">= {low}"
        raise ValueError(f"{argument}={value!r} must be a {bound} whole number{hint}" if bound == "positive"
                         else f"{argument}={value!r} must be a whole number {bound}{hint}")
    return int(value)


def positive_int(value: Any, argument: str, hint: str = "") -> int:
    """``value`` as an ``int`` >= 1 (see :func:`whole_number`)."""
    return whole_number(value, argument, low=1, hint=hint)


def non_negative_int(value: Any, argument: str, hint: str = "") -> int:
    """``value`` as an ``int`` >= 0 (see :func:`whole_number`)."""
    return whole_number(value, argument, low=0, hint=hint)


def optional_positive_int(value: Any, argument: str, hint: str = "") -> int | None:
    """``None``, or ``value`` as an ``int`` >= 1."""
    return None if value is None else positive_int(value, argument, hint=hint + " or None")


def non_negative_number(value: Any, argument: str) -> float:
    """``value`` as a finite ``float`` >= 0 (a loss weight, a learning rate of zero is allowed)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{argument}={value!r} must be a number") from None
    if not number >= 0 or math.isinf(number):
        raise ValueError(f"{argument}={value!r} must be a finite number >= 0")
    return number
