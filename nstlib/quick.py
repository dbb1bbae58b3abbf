"""Quick mode: the whole course at smoke-test scale, fully offline.

Set ``NSTLIB_QUICK=1`` and every nstlib routine

* caps images at :data:`MAX_SIZE` pixels on the longer side,
* caps optimisation and training at :data:`MAX_STEPS` steps,
* uses seeded random VGG19 weights instead of downloading ImageNet weights, and
* uses deterministic synthetic stand-ins for images and datasets it cannot
  find in the cache or the mirror (it never touches the network).

The first time quick mode changes anything it prints one banner, so nothing made
in quick mode can be mistaken for a real result. Quick mode lives here, not in
notebook cells: notebooks call nstlib as a student would.
"""

from __future__ import annotations

import sys

from . import settings

MAX_SIZE = 64
"""Longest image side (pixels) in quick mode."""

MAX_STEPS = 5
"""Most optimisation or training steps in quick mode."""

BANNER = f"""\
{'=' * 78}
QUICK MODE (NSTLIB_QUICK=1): a smoke test, NOT a real result.
  images <= {MAX_SIZE} px, at most {MAX_STEPS} optimisation/training steps,
  seeded RANDOM VGG19 weights instead of ImageNet weights,
  synthetic stand-ins for images and datasets that are not cached.
Unset NSTLIB_QUICK (and have internet access) for the real course.
{'=' * 78}"""

_announced = False


def is_quick() -> bool:
    """True when quick mode is on (``NSTLIB_QUICK=1``)."""
    return settings.quick_mode()


def announce() -> None:
    """Print the quick-mode banner, once per process."""
    global _announced
    if not _announced:
        _announced = True
        print(BANNER, file=sys.stdout, flush=True)


def cap_size(size: int | None) -> int | None:
    """``size`` capped at :data:`MAX_SIZE` in quick mode (``None`` becomes MAX_SIZE)."""
    if not is_quick():
        return size
    announce()
    return MAX_SIZE if size is None else min(size, MAX_SIZE)


def cap_steps(steps: int) -> int:
    """``steps`` capped at :data:`MAX_STEPS` in quick mode."""
    if not is_quick():
        return steps
    announce()
    return min(steps, MAX_STEPS)
