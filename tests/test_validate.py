"""Argument checks: the value back in its plain type, or a sentence naming the argument, the value and the rule."""

import numpy as np
import pytest

from nstlib import validate


def test_whole_numbers_come_back_as_int():
    assert validate.positive_int(3, "steps") == 3
    value = validate.positive_int(np.int64(7), "steps")  # NumPy integers are whole numbers too
    assert value == 7 and type(value) is int
    assert validate.non_negative_int(0, "seed") == 0
    assert validate.whole_number(5, "n", low=2, high=5) == 5 and validate.whole_number(2, "n", low=2, high=5) == 2
    assert validate.optional_positive_int(None, "size") is None
    assert validate.optional_positive_int(256, "size") == 256


@pytest.mark.parametrize("call, message", [
    (lambda: validate.positive_int(0, "steps"), "steps=0 must be a positive whole number"),
    (lambda: validate.positive_int(2.0, "steps"), "steps=2.0 must be a positive whole number"),
    (lambda: validate.positive_int(True, "steps"), "steps=True must be a positive whole number"),
    (lambda: validate.positive_int("3", "steps"), "steps='3' must be a positive whole number"),
    (lambda: validate.non_negative_int(-1, "seed"), "seed=-1 must be a whole number >= 0"),
    (lambda: validate.whole_number(6, "n", low=2, high=5), "n=6 must be a whole number between 2 and 5"),
    (lambda: validate.whole_number(1, "n", low=2, high=5), "n=1 must be a whole number between 2 and 5"),
    (lambda: validate.whole_number(1, "n", low=2), "n=1 must be a whole number >= 2"),
    (lambda: validate.positive_int(0, "size", hint=" (the longer side in pixels)"),
     "size=0 must be a positive whole number (the longer side in pixels)"),
    (lambda: validate.optional_positive_int(-4, "size"), "size=-4 must be a positive whole number or None"),
])
def test_whole_number_messages(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value) == message


def test_non_negative_numbers():
    assert validate.non_negative_number(0, "lr") == 0.0
    assert validate.non_negative_number(3, "w") == 3.0 and type(validate.non_negative_number(3, "w")) is float
    assert validate.non_negative_number("1e-3", "lr") == 0.001  # text that is a number is read as one
    assert validate.non_negative_number(np.float32(0.5), "w") == 0.5
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=rf"w={bad!r} must be a finite number >= 0"):
            validate.non_negative_number(bad, "w")
    for bad in ("lots", None, [1]):
        with pytest.raises(ValueError, match=r"w=.* must be a number$"):
            validate.non_negative_number(bad, "w")
