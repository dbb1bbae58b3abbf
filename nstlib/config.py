"""Configuration in one place: environment settings, quick mode, the device, the seed.

Settings are read from environment variables each time they are asked for, so a change made
after import (by a test or a notebook cell) takes effect at once:

=====================  ==========================================================
``NSTLIB_QUICK``       ``1`` turns on quick mode (below).
``NSTLIB_CACHE``       folder for downloads; default ``$XDG_CACHE_HOME/nstlib``
                       or ``~/.cache/nstlib`` (macOS: ``~/Library/Caches/nstlib``,
                       Windows: ``%LOCALAPPDATA%\\nstlib\\Cache``; :func:`cache_dir`).
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
nothing made in quick mode can be mistaken for a real result. It states the rule for images,
datasets and models (a cached copy is used where there is one, a synthetic stand-in otherwise);
:func:`nstlib.data.samples.availability_note` says which sample images this machine has.
Quick mode lives here and at those entry points, not in notebook cells: notebooks call nstlib
as a student would.
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
    """The download cache folder (not created here).

    ``NSTLIB_CACHE`` when set; else ``$XDG_CACHE_HOME/nstlib`` when ``XDG_CACHE_HOME`` is set; else
    the platform's user cache folder: ``~/.cache/nstlib`` on Linux (and other Unix systems), and on
    macOS and Windows what :func:`platformdirs.user_cache_dir` says (``~/Library/Caches/nstlib``,
    ``%LOCALAPPDATA%\\nstlib\\Cache``).
    """
    explicit = os.environ.get(ENV_CACHE)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if not xdg and sys.platform in ("darwin", "win32"):
        import platformdirs

        return Path(platformdirs.user_cache_dir("nstlib", appauthor=False))
    return Path(xdg or Path.home() / ".cache").expanduser() / "nstlib"


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
{'=' * 70}
QUICK MODE (NSTLIB_QUICK=1): a smoke test, NOT a real result.
  images <= {MAX_SIZE} px, at most {MAX_STEPS} optimisation/training steps,
  seeded RANDOM VGG19 weights instead of ImageNet weights,
  images, datasets, models: the cached (or NSTLIB_MIRROR) copy where
  there is one, otherwise a synthetic stand-in (never a download).
Unset NSTLIB_QUICK (and have internet access) for the real course.
{'=' * 70}"""
"""Printed once by :func:`announce`; at most 70 characters a line, so it fits the book's column."""

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


# ---- progress bars ---------------------------------------------------------

HEADLESS_MININTERVAL = 10.0
"""Seconds between redraws of a progress bar in a notebook run without a front end (nbval, papermill, the book)."""


def live_frontend() -> bool:
    """True when the code runs in a Jupyter kernel and the current cell came from a live front end.

    The test is ``get_ipython().kernel._allow_stdin``: ipykernel sets it for each cell from the
    request's ``allow_stdin`` flag, which interactive front ends (JupyterLab, Notebook, VS Code,
    Colab) send as true and headless runners (nbval, nbclient, papermill, Jupyter Book) as false.
    False without IPython, without a kernel (plain Python, terminal IPython) or without ipywidgets.
    """
    try:
        from IPython import get_ipython
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    kernel = getattr(get_ipython(), "kernel", None)
    return bool(kernel is not None and getattr(kernel, "_allow_stdin", False))


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return getattr(get_ipython(), "kernel", None) is not None


def progress_bar(iterable=None, **kwargs):
    """A tqdm progress bar (same arguments as ``tqdm.tqdm``) that leaves no widget in a saved notebook.

    * In a live front end (:func:`live_frontend`) it is tqdm's notebook widget while it runs;
      :meth:`close` then replaces the widget's output in place (``display_id``) by plain text: the
      final bar line, or nothing when ``leave=False`` and it finished. A widget output saved in a
      notebook says "model not found" once the kernel is gone; this text does not.
    * In a kernel without a front end (nbval, papermill, nbclient, the course book) it is a text bar
      on stderr redrawn at most every :data:`HEADLESS_MININTERVAL` seconds, and a ``leave=False`` bar
      is not shown at all (it would vanish when done, and nobody watches it).
    * Elsewhere (scripts, the command line, terminal IPython) it is ``tqdm.tqdm``'s text bar.
    """
    from tqdm.std import tqdm as text_bar

    if _in_kernel():
        if live_frontend():
            try:
                return _widget_bar_class()(iterable, **kwargs)
            except ImportError:  # ipywidgets without a progress widget: text below
                pass
        else:
            kwargs = {"mininterval": HEADLESS_MININTERVAL, **kwargs}
            if not kwargs.get("leave", True):
                kwargs["disable"] = True
    return text_bar(iterable, **kwargs)


_WIDGET_BAR = None


def _widget_bar_class():
    """tqdm's notebook bar, shown with a display id so that closing it leaves text, not a widget."""
    global _WIDGET_BAR
    if _WIDGET_BAR is not None:
        return _WIDGET_BAR
    from tqdm.notebook import tqdm as notebook_bar

    class WidgetBar(notebook_bar):
        def __init__(self, *args, **kwargs):
            kwargs["display"] = False  # displayed below, with a display id
            super().__init__(*args, **kwargs)
            self._handle = None
            if not self.disable:
                from IPython.display import display

                self._handle = display(self.container, display_id=True)
                self.displayed = True

        def close(self):
            if self.disable:  # closed already, or never shown
                return
            super().close()
            failed = bool(self.total and self.n < self.total)  # tqdm's own test (it turns the bar red)
            text = str(self) if self.leave or failed else ""
            if self._handle is not None:
                self._handle.update({"text/plain": text}, raw=True)
            for widget in (*self.container.children, self.container):
                widget.close()

    _WIDGET_BAR = WidgetBar
    return WidgetBar
