"""Self-checks for the notebooks' exercises.

A student writes ``my_gram_matrix``; the next cell runs
``check_exercise(my_gram_matrix, nstlib.gram_matrix, example)``, which compares the two with
``torch.testing.assert_close`` and prints a verdict. It never raises, so a notebook with
unfinished exercises still runs from top to bottom (and in CI).
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def check_exercise(student: Callable, reference: Callable, *inputs, rtol: float = 1e-4, atol: float = 1e-6, name: str | None = None) -> None:
    """Compare ``student(*inputs)`` with ``reference(*inputs)`` and print a verdict (⏳, ❌ or ✅).

    Inputs are cloned for each call, so a function that modifies its input cannot fool the check.
    Nothing is returned, so a notebook cell that ends with the check shows only the verdict.
    """
    label = name or getattr(student, "__name__", "your function")
    clone = lambda: [x.clone() if isinstance(x, torch.Tensor) else x for x in inputs]  # noqa: E731
    try:
        got = student(*clone())
    except NotImplementedError:
        print(f"⏳ {label}: not implemented yet. Replace the `raise NotImplementedError` line with your code.")
        return
    except Exception as error:  # a student's bug: explain, do not crash the notebook
        print(f"❌ {label} raised {type(error).__name__}: {error}")
        return
    expected = reference(*clone())
    try:
        torch.testing.assert_close(got, expected, rtol=rtol, atol=atol, check_dtype=False)
    except (AssertionError, TypeError, ValueError, RuntimeError) as error:
        print(f"❌ {label} differs from {getattr(reference, '__qualname__', 'the reference')}:\n{error}")
        return
    print(f"✅ {label} matches {getattr(reference, '__module__', '')}.{getattr(reference, '__qualname__', '')}")
