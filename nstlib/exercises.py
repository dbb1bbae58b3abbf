"""Self-checks for the notebooks' exercises.

A student writes ``my_gram_matrix``; the next cell runs
``check_exercise(my_gram_matrix, nstlib.gram_matrix, example)``, which compares the two results and
prints a one-line verdict a student can act on:

* ``⏳ my_gram_matrix: not implemented yet. ...`` while the stub still raises ``NotImplementedError``;
* ``❌ my_gram_matrix raised ValueError: ...`` when the function fails;
* ``❌ my_gram_matrix differs from gram_matrix: shape (4, 4) but expected (2, 4, 4); hint: ...`` (or
  the dtype, or the largest difference of the values and where it is), with a hint;
* ``✅ my_gram_matrix matches nstlib.losses.gram_matrix``.

Values agree when ``|got - expected| <= atol + rtol * |expected|`` everywhere (the rule of
``torch.testing.assert_close``). It never raises, so a notebook with unfinished exercises still runs
from top to bottom (and in CI).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch


def check_exercise(student: Callable, reference: Callable, *inputs, rtol: float = 1e-4, atol: float = 1e-6,
                   check_dtype: bool = False, hint: str | None = None, name: str | None = None) -> None:
    """Compare ``student(*inputs)`` with ``reference(*inputs)`` and print a one-line verdict (⏳, ❌ or ✅).

    Results may be tensors, numbers, or tuples, lists and dicts of them. ``check_dtype=True`` also
    requires the same dtype (``float32`` is not ``float64``) and a tensor where a tensor is expected.
    ``hint`` is added to a verdict about wrong values (e.g. ``"did you divide by C*H*W?"``). Inputs are
    cloned for each call, so a function that modifies its input cannot fool the check. Nothing is
    returned, so a notebook cell that ends with the check shows only the verdict.
    """
    label = name or getattr(student, "__name__", "your function")
    clone = lambda: [x.clone() if isinstance(x, torch.Tensor) else x for x in inputs]  # noqa: E731
    try:
        got = student(*clone())
    except NotImplementedError:
        print(f"⏳ {label}: not implemented yet. Replace the `raise NotImplementedError` line with your code.")
        return
    except Exception as error:  # a student's bug: explain, do not crash the notebook
        print(f"❌ {label} raised {type(error).__name__}: {_one_line(error)}")
        return
    expected = reference(*clone())
    problem = difference(got, expected, rtol=rtol, atol=atol, check_dtype=check_dtype, hint=hint)
    if problem:
        print(f"❌ {label} differs from {getattr(reference, '__qualname__', 'the reference')}: {problem}")
        return
    print(f"✅ {label} matches {getattr(reference, '__module__', '')}.{getattr(reference, '__qualname__', '')}")


def difference(got, expected, *, rtol: float = 1e-4, atol: float = 1e-6, check_dtype: bool = False,
               hint: str | None = None, where: str = "") -> str | None:
    """What differs between ``got`` and ``expected``, in one line with a hint, or None when they agree.

    ``where`` names the part being compared (``"item 1: "`` inside a tuple) and prefixes the message.
    """
    if isinstance(expected, Mapping):
        if not isinstance(got, Mapping) or set(got) != set(expected):
            return f"{where}returned {_describe(got)} but expected a dict with keys {sorted(map(str, expected))}"
        parts = ((got[key], expected[key], f"{where}[{key!r}]: ") for key in expected)
    elif isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            return (f"{where}returned {_describe(got)} but expected a {type(expected).__name__} of "
                    f"{len(expected)} items; hint: return all of them, e.g. `return a, b`")
        parts = ((g, e, f"{where}item {i}: ") for i, (g, e) in enumerate(zip(got, expected)))
    else:
        return _leaf_difference(got, expected, rtol, atol, check_dtype, hint, where)
    for g, e, inner in parts:
        problem = difference(g, e, rtol=rtol, atol=atol, check_dtype=check_dtype, hint=hint, where=inner)
        if problem:
            return problem
    return None


def _leaf_difference(got, expected, rtol, atol, check_dtype, hint, where) -> str | None:
    """:func:`difference` for one tensor, number or other object."""
    if got is None and expected is not None:
        return f"{where}returned None but expected {_describe(expected)}; hint: did you forget `return`?"
    if isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            if check_dtype or not isinstance(got, (numbers.Number, np.ndarray)):
                fix = "torch.from_numpy(...)" if isinstance(got, np.ndarray) else "torch.tensor(...)"
                return f"{where}returned {_describe(got)} but expected a torch.Tensor; hint: convert it with {fix}"
            got = torch.as_tensor(got)
        return _tensor_difference(got, expected, rtol, atol, check_dtype, hint, where)
    if isinstance(expected, numbers.Number) and not isinstance(expected, bool):
        if isinstance(got, torch.Tensor) and got.numel() == 1 and not check_dtype:
            got = got.item()
        if not isinstance(got, numbers.Number) or (check_dtype and type(got) is not type(expected)):
            return f"{where}returned {_describe(got)} but expected {_describe(expected)}"
        if not abs(got - expected) <= atol + rtol * abs(expected):
            return f"{where}returned {got!r} but expected {expected!r}" + _hint(hint)
        return None
    if got != expected:
        return f"{where}returned {_describe(got)} but expected {_describe(expected)}" + _hint(hint)
    return None


def _tensor_difference(got: torch.Tensor, expected: torch.Tensor, rtol, atol, check_dtype, hint, where) -> str | None:
    """Shape, then dtype (when checked), then values."""
    if got.shape != expected.shape:
        return f"{where}shape {tuple(got.shape)} but expected {tuple(expected.shape)}; hint: {_shape_hint(got.shape, expected.shape)}"
    if check_dtype and got.dtype != expected.dtype:
        fix = {torch.float32: ".float()", torch.float64: ".double()", torch.uint8: ".to(torch.uint8)"}.get(expected.dtype, f".to({expected.dtype})")
        return f"{where}dtype {got.dtype} but expected {expected.dtype}; hint: convert with {fix}"
    g = got.detach().to("cpu", torch.float64)
    e = expected.detach().to("cpu", torch.float64)
    if g.numel() == 0:
        return None
    if torch.isnan(g).any() and not torch.isnan(e).any():
        return f"{where}the result holds NaN values; hint: a division by zero, or a square root or log of a negative number?"
    gap = (g - e).abs().nan_to_num(nan=0.0)
    excess = gap - (atol + rtol * e.abs())
    if not (excess > 0).any():
        return None
    index = tuple(int(i) for i in np.unravel_index(int(excess.argmax()), tuple(e.shape)))
    at = f" at {list(index)}" if index else ""
    message = (f"{where}values differ: largest difference {float(gap.max()):.3g}{at} "
               f"(got {float(g[index]):.6g}, expected {float(e[index]):.6g})")
    return message + _hint(hint or _factor_hint(g, e, atol))


def _factor_hint(got: torch.Tensor, expected: torch.Tensor, atol: float) -> str | None:
    """'every value is k times the expected one' when the two differ by one constant factor k."""
    small = max(atol, 1e-12)
    mask = expected.abs() > small
    if int(mask.sum()) == 0:
        return None
    ratios = got[mask] / expected[mask]
    k = float(ratios.median())
    constant = bool(((ratios - k).abs() <= 1e-3 * abs(k)).all()) and bool((got[~mask].abs() <= small * max(1.0, abs(k))).all())
    if constant and k != 0 and abs(k - 1) > 1e-3:
        return f"every value is {k:.4g} times the expected one: a constant factor is missing or extra (a normalisation?)"
    return None


def _shape_hint(got: torch.Size, expected: torch.Size) -> str:
    """A likely cause of a shape mismatch."""
    if tuple(got) == tuple(expected)[1:]:
        return "the first (batch) dimension is missing: keep it, or add it with .unsqueeze(0)"
    if tuple(got)[1:] == tuple(expected) and got[0] == 1:
        return "there is an extra leading dimension of size 1: remove it with .squeeze(0)"
    without_ones = ([d for d in got if d != 1], [d for d in expected if d != 1])
    if without_ones[0] == without_ones[1]:
        if len(got) > len(expected):
            return "an extra dimension of size 1: remove it with .squeeze(dim)"
        return "a dimension of size 1 is missing: add it with .unsqueeze(dim)"
    if got.numel() == expected.numel():
        return "the same number of values in another arrangement: check your reshape, permute or transpose"
    if len(got) < len(expected):
        return "a dimension is missing: did you sum or index over one too many?"
    return "check which dimensions you sum, reshape or index"


def _hint(hint: str | None) -> str:
    return f"; hint: {hint}" if hint else ""


def _describe(value) -> str:
    """A short description of a value: 'a tensor of shape (2, 3)', 'a float (0.5)', 'None'."""
    if value is None:
        return "None"
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    if isinstance(value, np.ndarray):
        return f"a numpy array of shape {value.shape} and dtype {value.dtype}"
    if isinstance(value, numbers.Number):
        return f"a {type(value).__name__} ({value!r})"
    if isinstance(value, Sequence) and not isinstance(value, str):
        return f"a {type(value).__name__} of {len(value)} items"
    return f"a {type(value).__name__}"


def _one_line(error: BaseException) -> str:
    """The first line of an error message (a student reads one line)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else "(no message)"
