"""Configuration in one place: environment settings, quick mode, the device, the seed.

Settings are read from environment variables each time they are asked for, so a change made
after import (by a test or a notebook cell) takes effect at once:

=====================  ==========================================================
``NSTLIB_QUICK``       ``1`` turns on quick mode (below).
``NSTLIB_CACHE``       folder for downloads; default ``$XDG_CACHE_HOME/nstlib``
                       or ``~/.cache/nstlib``.
``NSTLIB_MIRROR``      a local folder or a base URL holding copies of the sample
                       images under their manifest paths (``style/wave.jpg``);
                       used instead of the pinned URLs, with the same checks.
``NSTLIB_RESULTS``     folder where notebooks and the command line write results;
                       default ``results/`` in the current folder.
=====================  ==========================================================

**Quick mode** runs the whole course at smoke-test scale, fully offline. With
``NSTLIB_QUICK=1`` the entry points (``load_image``, ``stylize``, ``train_transform_net``,
``VGGFeatures``, the data fetchers) ask this module to

* cap images at :data:`MAX_SIZE` pixels on the longer side (:func:`cap_size`),
* cap optimisation and training at :data:`MAX_STEPS` steps (:func:`cap_steps`),
* use seeded random VGG19 weights instead of downloading ImageNet weights, and
* use deterministic synthetic stand-ins for images and datasets they cannot
  find in the cache or the mirror (quick mode never touches the network).

The first time quick mode changes anything it prints one banner (:func:`announce`), so
nothing made in quick mode can be mistaken for a real result. Quick mode lives here and at
those entry points, not in notebook cells: notebooks call nstlib as a student would.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import numpy as np
import torch




ENV_QUICK = "NSTLIB_QUICK"
ENV_CACHE = "NSTLIB_CACHE"
ENV_MIRROR = "NSTLIB_MIRROR"
ENV_RESULTS = "NSTLIB_RESULTS"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def quick_mode() -> bool:
    """True when ``NSTLIB_QUICK`` is set to 1/true/yes/on."""
    value = os.environ.get(ENV_QUICK, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(
        f"{ENV_QUICK}={os.environ[ENV_QUICK]!r} is not understood: set it to 1 for quick mode or 0 (or unset it) for real runs"
    )


def cache_dir() -> Path:
    """The download cache folder (not created here)."""
    explicit = os.environ.get(ENV_CACHE)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "nstlib"


def mirror() -> str | None:
    """The mirror (local folder or base URL) for sample images, or None."""
    value = os.environ.get(ENV_MIRROR, "").strip()
    return value or None


def results_dir() -> Path:
    """Where results are written (not created here)."""
    return Path(os.environ.get(ENV_RESULTS) or "results").expanduser()


# ---- quick mode ------------------------------------------------------------
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


def announce() -> None:
    """Print the quick-mode banner, once per process."""
    global _announced
    if not _announced:
        _announced = True
        print(BANNER, file=sys.stdout, flush=True)


def cap_size(size: int | None) -> int | None:
    """``size`` capped at :data:`MAX_SIZE` in quick mode (``None`` becomes MAX_SIZE)."""
    if not quick_mode():
        return size
    announce()
    return MAX_SIZE if size is None else min(size, MAX_SIZE)


def cap_steps(steps: int) -> int:
    """``steps`` capped at :data:`MAX_STEPS` in quick mode."""
    if not quick_mode():
        return steps
    announce()
    return min(steps, MAX_STEPS)


# ---- device and seed -------------------------------------------------------

def get_device(prefer: str | None = None, verbose: bool = False) -> torch.device:
    """The best available device: CUDA, then Apple's MPS, then the CPU.

    ``prefer`` ("cuda", "mps", "cpu") forces a choice and raises ``ValueError``
    when that device is not available. With ``verbose=True`` it prints what it
    picked and, without a GPU, how to get one on Colab (and the quick-mode banner when
    quick mode is on, so notebooks show it in their setup cell).
    """
    if prefer is not None:
        try:
            device = torch.device(prefer)
        except (RuntimeError, TypeError):
            raise ValueError(f"device={prefer!r} is not one of 'cuda', 'mps', 'cpu'") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device='cuda' was asked for but no CUDA GPU is available; use device='cpu' or enable a GPU")
        if device.type == "mps" and not _mps_available():
            raise ValueError("device='mps' was asked for but Apple's MPS is not available; use device='cpu'")
        if device.type not in {"cuda", "mps", "cpu"}:
            raise ValueError(f"device={prefer!r} is not one of 'cuda', 'mps', 'cpu'")
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    elif _mps_available():
        device = torch.device("mps")
    else:
        device = torch.device("cpu")
    if verbose:
        if quick_mode():
            announce()
        if device.type == "cuda":
            print(f"Using GPU: {torch.cuda.get_device_name(device)}")
        elif device.type == "mps":
            print("Using Apple GPU (MPS)")
        else:
            print(
                "Using the CPU (no GPU found). Everything works, just slower: keep sizes small.\n"
                "On Colab: Runtime > Change runtime type > Hardware accelerator: GPU, then rerun."
            )
    return device


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def set_seed(seed: int) -> int:
    """Seed Python's ``random``, NumPy and torch (CPU and every GPU); returns ``seed``."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative integer")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return seed
